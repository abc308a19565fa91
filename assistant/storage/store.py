"""The session store: :class:`SessionStore` (sessions, turns, notes, search, history) and
:class:`TurnWriter` (a reply streamed into its row, crash-safe). See :mod:`assistant.storage`."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from assistant import paths
from assistant.errors import InputError
from assistant.storage import migrations as schema
from assistant.storage.export import export_session
from assistant.storage.records import Attachment, SearchHit, Session, StoredTurn

log = logging.getLogger("synesthesia.storage")

DB_NAME = "sessions.db"


# ----------------------------------------------------------------------------- the store


class SessionStore:
    """All sessions of one user. Thread-safe: one connection guarded by a lock.

    Open with :meth:`open`; close with :meth:`close` (or use it as a context manager).
    """

    def __init__(self, db_path: Path, *, root: Path | None = None, write: bool = False) -> None:
        """Open (creating and migrating) the database at ``db_path``.

        A database written by a newer version (migrations this one does not know) is never
        written to: it opens read-only with a one-line warning, and any write raises
        :class:`InputError`; with ``write=True`` (the caller cannot work without saving)
        opening it is refused in one line instead.
        """
        self.db_path = Path(db_path)
        self.root = Path(root) if root is not None else self.db_path.parent
        self._lock = threading.RLock()
        try:
            self.newer_migrations = schema.unknown_migrations(self.db_path)
            if self.newer_migrations:
                if write:
                    raise InputError(self._newer_message(
                        "this version does not write to it (upgrade, or set SYNESTHESIA_DATA_DIR to another folder)"))
                self._db = self._connect(read_only=True)
                log.warning("warning: %s", self._newer_message("opened read-only, nothing is saved"))
                return
            if not self.db_path.parent.exists():
                paths.private_dir(self.db_path.parent)
            paths.create_private_file(self.db_path)  # SQLite gives its -wal and -shm files the same mode
            self._db = self._connect(read_only=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self.migrate()
        except sqlite3.DatabaseError as e:
            raise InputError(f"{self.db_path}: unusable session database ({e})") from e

    @classmethod
    def open(cls, path: str | Path | None = None, *, write: bool = False) -> "SessionStore":
        """The store at ``path`` (a ``.db`` file), by default ``sessions.db`` in the user data dir.
        ``write=True``: refuse (one line) a database this version may not write to."""
        return cls(Path(path) if path else paths.data_dir() / DB_NAME, write=write)

    @property
    def read_only(self) -> bool:
        """True for a database written by a newer version: readable, never written."""
        return bool(self.newer_migrations)

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        if read_only:
            db = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True,
                                 check_same_thread=False, isolation_level=None, timeout=10.0)
        else:
            db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None, timeout=10.0)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        return db

    def _newer_message(self, consequence: str) -> str:
        return (f"{self.db_path}: written by a newer version of Synesthesia (migrations unknown here: "
                f"{', '.join(self.newer_migrations)}); {consequence}")

    def _check_writable(self) -> None:
        if self.read_only:
            raise InputError(self._newer_message("opened read-only, this version does not change it (upgrade to)"))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "SessionStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) under the store's lock."""
        self._check_writable()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; return their names."""
        self._check_writable()
        applied: list[str] = []
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)"
            )
            done = {r[0] for r in self._db.execute("SELECT name FROM _migrations")}
            for name, fn in schema.MIGRATIONS:
                if name in done:
                    continue
                with self._tx():
                    fn(self._db)
                    self._db.execute(
                        "INSERT INTO _migrations(name, applied) VALUES (?, ?)", (name, time.time())
                    )
                applied.append(name)
        return applied

    def applied_migrations(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT name FROM _migrations ORDER BY rowid")]

    def session_dir(self, session_id: int) -> Path:
        return self.root / "sessions" / str(session_id)

    # -- sessions

    def create_session(self, title: str | None = None) -> Session:
        now = time.time()
        title = (title or "").strip() or "New session"
        with self._lock, self._tx():
            cur = self._db.execute(
                "INSERT INTO sessions(title, created, updated) VALUES (?, ?, ?)", (title, now, now)
            )
        return Session(cur.lastrowid, title, now, now, 0)

    def list_sessions(self, limit: int | None = None, *, after: Session | None = None,
                      match: str = "") -> list[Session]:
        """Sessions, the most recently used first.

        ``limit``: at most this many; ``after``: the ones that come after this session in that
        order (the last one of the previous page); ``match``: only those whose title holds every
        word of it (or whose id it is, as ``42`` or ``#42``). A page costs the same however many
        sessions there are.
        """
        where, params = _session_filter(match)
        if after is not None:
            where.append("(s.updated < ? OR (s.updated = ? AND s.id < ?))")
            params += [after.updated, after.updated, after.id]
        sql = f"SELECT {_SESSION_COLUMNS} FROM sessions s"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.updated DESC, s.id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        with self._lock:
            return [Session(*r) for r in self._db.execute(sql, params)]

    def count_sessions(self, match: str = "") -> int:
        """How many sessions there are (with ``match``: how many :meth:`list_sessions` would list)."""
        where, params = _session_filter(match)
        sql = "SELECT COUNT(*) FROM sessions s" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            return self._db.execute(sql, params).fetchone()[0]

    def get_session(self, session_id: int | str) -> Session:
        """The session, or :class:`InputError` naming the id when there is none."""
        try:
            sid = int(session_id)
        except (TypeError, ValueError):
            raise InputError(f"{session_id!r}: not a session id (see `assistant sessions list`)") from None
        with self._lock:
            r = self._db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.id = ?", (sid,)).fetchone()
        if r is None:
            raise InputError(f"session {sid}: no such session (see `assistant sessions list`)")
        return Session(*r)

    def last_session(self) -> Session | None:
        """The most recently used session (what the app resumes on start)."""
        found = self.list_sessions(limit=1)
        return found[0] if found else None

    def rename_session(self, session_id: int, title: str) -> Session:
        title = title.strip()
        if not title:
            raise InputError("a session title cannot be empty")
        self.get_session(session_id)
        with self._lock, self._tx():
            self._db.execute("UPDATE sessions SET title = ? WHERE id = ?", (title, int(session_id)))
        return self.get_session(session_id)

    def delete_session(self, session_id: int) -> None:
        """Delete the session, its turns, notes and files."""
        self.get_session(session_id)
        with self._lock, self._tx():
            self._db.execute("DELETE FROM sessions WHERE id = ?", (int(session_id),))
        shutil.rmtree(self.session_dir(int(session_id)), ignore_errors=True)

    def touch(self, session_id: int) -> None:
        with self._lock, self._tx():
            self._db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (time.time(), session_id))

    # -- notes

    def add_note(self, session_id: int, text: str) -> int:
        self.get_session(session_id)
        with self._lock, self._tx():
            cur = self._db.execute(
                "INSERT INTO notes(session_id, created, text) VALUES (?, ?, ?)",
                (session_id, time.time(), text),
            )
        return cur.lastrowid

    def notes(self, session_id: int) -> list[tuple[float, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT created, text FROM notes WHERE session_id = ? ORDER BY id", (session_id,)
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- turns

    def begin_turn(
        self,
        session_id: int,
        text: str,
        *,
        images: Sequence[Any] = (),
        audio: Sequence[Any] = (),
        commit_every: float = 0.25,
    ) -> "TurnWriter":
        """Record the user's side of a turn now (attachments copied) and return a writer for the reply.

        ``images``: paths or PIL images; ``audio``: paths or ``(samples, sample_rate)``.
        The turn stays ``partial`` until :meth:`TurnWriter.finish`.
        """
        self.get_session(session_id)
        now = time.time()
        with self._lock, self._tx():
            cur = self._db.execute(
                "INSERT INTO turns(session_id, created, user_text, partial) VALUES (?, ?, ?, 1)",
                (session_id, now, text),
            )
            turn_id = cur.lastrowid
            self._db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, session_id))
            if text.strip():
                self._db.execute(
                    "UPDATE sessions SET title = ? WHERE id = ? AND title = 'New session'",
                    (_title_from(text), session_id),
                )
        try:
            for i, item in enumerate(images):
                self._attach(session_id, turn_id, "user", "image", item, f"{turn_id}-{i}")
            for i, item in enumerate(audio):
                self._attach(session_id, turn_id, "user", "audio", item, f"{turn_id}-a{i}")
        except Exception:
            self.delete_turn(turn_id)
            raise
        return TurnWriter(self, session_id, turn_id, commit_every=commit_every)

    def record_turn(
        self,
        session_id: int,
        text: str,
        reply: Any,
        *,
        images: Sequence[Any] = (),
        audio: Sequence[Any] = (),
        save_audio: bool = True,
    ) -> StoredTurn:
        """Record a finished turn in one call. ``reply`` is the assistant's ``Reply`` (or a string)."""
        writer = self.begin_turn(session_id, text, images=images, audio=audio)
        return writer.finish(reply, save_audio=save_audio)

    def _attach(self, session_id: int, turn_id: int, role: str, kind: str, item: Any, stem: str) -> None:
        self._check_writable()
        folder = self.session_dir(session_id)
        paths.private_dir(folder.parent, warn=False)
        paths.private_dir(folder, warn=False)
        if isinstance(item, (str, Path)):
            src = Path(item).expanduser()
            if not src.is_file():
                raise InputError(f"{src}: no such file")
            name = src.name
            dest = folder / f"{stem}-{_safe_name(name)}"
            shutil.copyfile(src, dest)
        elif kind == "audio" and isinstance(item, tuple) and len(item) == 2:
            import soundfile

            samples, rate = item
            name = f"{'reply' if role == 'assistant' else 'recording'}.wav"
            dest = folder / f"{stem}-{name}"
            soundfile.write(dest, samples, int(rate), subtype="PCM_16")
        elif kind == "image" and hasattr(item, "save"):  # a PIL image
            name = Path(getattr(item, "filename", "") or "image.png").name
            dest = folder / f"{stem}-{Path(_safe_name(name)).stem}.png"
            item.save(dest, format="PNG")
        else:
            raise InputError(f"cannot store a {kind} attachment of type {type(item).__name__}")
        paths.private_file(dest)
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO attachments(turn_id, role, kind, name, path) VALUES (?, ?, ?, ?, ?)",
                (turn_id, role, kind, name, str(dest.relative_to(self.root))),
            )

    def delete_turn(self, turn_id: int) -> None:
        with self._lock:
            rows = self._db.execute("SELECT path FROM attachments WHERE turn_id = ?", (turn_id,)).fetchall()
            with self._tx():
                self._db.execute("DELETE FROM turns WHERE id = ?", (turn_id,))
        for (rel,) in rows:
            (self.root / rel).unlink(missing_ok=True)

    def turns(self, session_id: int, *, last: int | None = None) -> list[StoredTurn]:
        """The session's turns, oldest first; ``last``: only the latest ``last`` of them."""
        where, params = "session_id = ?", [session_id]
        if last is not None:
            where = "id IN (SELECT id FROM turns WHERE session_id = ? ORDER BY id DESC LIMIT ?)"
            params.append(int(last))
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM turns WHERE {where} ORDER BY id", params).fetchall()
            atts = self._db.execute(
                f"SELECT * FROM attachments WHERE turn_id IN (SELECT id FROM turns WHERE {where}) ORDER BY id",
                params,
            ).fetchall()
        return self._with_attachments(rows, atts)

    def get_turn(self, turn_id: int) -> StoredTurn:
        """One turn with its attachments (reads that turn only, however long its session)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM turns WHERE id = ?", (turn_id,)).fetchall()
            atts = self._db.execute("SELECT * FROM attachments WHERE turn_id = ? ORDER BY id", (turn_id,)).fetchall()
        if not rows:
            raise InputError(f"turn {turn_id}: no such turn")
        return self._with_attachments(rows, atts)[0]

    def _with_attachments(self, rows: list[sqlite3.Row], atts: list[sqlite3.Row]) -> list[StoredTurn]:
        by_turn: dict[int, list[Attachment]] = {}
        for a in atts:
            by_turn.setdefault(a["turn_id"], []).append(
                Attachment(a["id"], a["role"], a["kind"], a["name"], self.root / a["path"])
            )
        return [self._turn(r, by_turn.get(r["id"], [])) for r in rows]

    @staticmethod
    def _turn(r: sqlite3.Row, attachments: list[Attachment]) -> StoredTurn:
        return StoredTurn(
            id=r["id"],
            session_id=r["session_id"],
            created=r["created"],
            user_text=r["user_text"],
            reply_text=r["reply_text"],
            transcript=json.loads(r["transcript"]),
            evidence=json.loads(r["evidence"]),
            timings=json.loads(r["timings"]),
            partial=bool(r["partial"]),
            finished=r["finished"],
            stop_reason=r["stop_reason"],
            attachments=attachments,
        )

    def history(self, session_id: int, *, max_chars: int | None = None,
                max_turns: int | None = None) -> list[dict[str, str]]:
        """The session as chat messages ({role, content}), for resuming a conversation.

        The latest turns, oldest first: at most ``max_turns`` of them, and at most ``max_chars``
        characters of message text in all (a turn that would pass it ends the history there).
        Turns are read newest first and reading stops at the bound, so resuming a long session
        costs no more than resuming one that just fits.
        """
        sql = "SELECT user_text, reply_text, transcript FROM turns WHERE session_id = ? ORDER BY id DESC"
        params: list[Any] = [session_id]
        if max_turns is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(max_turns)))
        newest_first: list[list[dict[str, str]]] = []
        size = 0
        with self._lock:
            rows = self._db.execute(sql, params)
            try:
                for user_text, reply_text, transcript in rows:
                    messages = _turn_messages(user_text, reply_text, json.loads(transcript))
                    size += sum(len(m["content"]) for m in messages)
                    if max_chars is not None and size > max_chars:
                        break
                    newest_first.append(messages)
            finally:
                rows.close()  # stop reading at the bound
        return [m for messages in reversed(newest_first) for m in messages]

    # -- search

    def search(self, query: str, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search over every turn (user text, replies, transcripts), best matches first.

        ``query`` is plain words (each must occur, prefixes match: ``pari`` finds "Paris");
        FTS5 syntax is not required, and quotes and operators in it are treated as text.
        """
        words = re.findall(r"\w+", query, flags=re.UNICODE)
        if not words:
            return []
        match = " ".join('"' + w.replace('"', '""') + '"*' for w in words)
        sql = (
            "SELECT t.session_id, s.title, t.id, "
            "snippet(turns_fts, -1, '[', ']', '…', 12) FROM turns_fts "
            "JOIN turns t ON t.id = turns_fts.rowid JOIN sessions s ON s.id = t.session_id "
            "WHERE turns_fts MATCH ? ORDER BY rank LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, (match, limit)).fetchall()
        return [SearchHit(r[0], r[1], r[2], _plain_snippet(r[3])) for r in rows]

    def export(self, session_id: int, dest: str | Path) -> Path:
        """Write the session out as a folder: :func:`assistant.storage.export.export_session`."""
        return export_session(self, session_id, dest)


class TurnWriter:
    """Streams one reply into the database. Made by :meth:`SessionStore.begin_turn`."""

    def __init__(self, store: SessionStore, session_id: int, turn_id: int, *, commit_every: float) -> None:
        self.store = store
        self.session_id = session_id
        self.turn_id = turn_id
        self.commit_every = commit_every
        self.text = ""
        self._committed = 0
        self._last_commit = time.monotonic()
        self.closed = False

    def append(self, chunk: str) -> None:
        """Add a chunk of the reply; committed when ``commit_every`` seconds have passed since the last."""
        self.text += chunk
        if time.monotonic() - self._last_commit >= self.commit_every:
            self.flush()

    def flush(self) -> None:
        if self._committed == len(self.text) or self.closed:
            return
        with self.store._tx():
            self.store._db.execute("UPDATE turns SET reply_text = ? WHERE id = ?", (self.text, self.turn_id))
        self._committed = len(self.text)
        self._last_commit = time.monotonic()

    def finish(self, reply: Any = None, *, partial: bool | None = None, stop_reason: str | None = None,
               save_audio: bool = True) -> StoredTurn:
        """Write the final reply (an assistant ``Reply``, a string, or None for the streamed text).

        ``partial`` defaults to ``reply.partial``; the spoken reply (``reply.audio``) is saved
        as a file when present and ``save_audio``.
        """
        if isinstance(reply, str):
            text, transcript, evidence, timings = reply, [], [], {}
        elif reply is None:
            text, transcript, evidence, timings = self.text, [], [], {}
        else:
            text = getattr(reply, "text", self.text) or self.text
            transcript = list(getattr(reply, "transcript", None) or [])
            evidence = list(getattr(reply, "evidence", None) or [])
            timings = {k: float(v) for k, v in (getattr(reply, "timings", None) or {}).items()}
            if partial is None:
                partial = bool(getattr(reply, "partial", False))
        if partial is None:
            partial = False
        if stop_reason is None and partial:
            stop_reason = "cancelled"
        self.text = text
        with self.store._tx():
            self.store._db.execute(
                "UPDATE turns SET reply_text = ?, transcript = ?, evidence = ?, timings = ?, partial = ?, "
                "finished = ?, stop_reason = ? WHERE id = ?",
                (text, json.dumps(transcript), json.dumps(evidence), json.dumps(timings), int(partial),
                 time.time(), stop_reason, self.turn_id),
            )
        self._committed = len(text)
        self.closed = True
        audio = getattr(reply, "audio", None)
        rate = getattr(reply, "sample_rate", None)
        if save_audio and audio is not None and rate:
            self.add_reply_audio(audio, rate)
        return self.store.get_turn(self.turn_id)

    def add_reply_audio(self, samples: Any, sample_rate: int) -> None:
        """Store the spoken reply (float samples) as a WAV file in the session's folder."""
        self.store._attach(self.session_id, self.turn_id, "assistant", "audio", (samples, sample_rate),
                           f"{self.turn_id}-reply")

    def abort(self, reason: str) -> None:
        """End the turn early: keep what was streamed, marked partial, with ``reason``."""
        self.flush()
        with self.store._tx():
            self.store._db.execute(
                "UPDATE turns SET reply_text = ?, partial = 1, finished = ?, stop_reason = ? WHERE id = ?",
                (self.text, time.time(), reason, self.turn_id),
            )
        self.closed = True


# ----------------------------------------------------------------------------- helpers


_SESSION_COLUMNS = "s.id, s.title, s.created, s.updated, s.turn_count"
"""The columns of a :class:`Session`, in its field order."""


def _session_filter(match: str) -> tuple[list[str], list[Any]]:
    """SQL conditions (on sessions ``s``) for :meth:`SessionStore.list_sessions`'s ``match``."""
    words = match.split()
    if not words:
        return [], []
    ident = re.fullmatch(r"#?(\d+)", match.strip())
    like = " AND ".join(r"s.title LIKE ? ESCAPE '\'" for _ in words)
    params: list[Any] = ["%" + re.sub(r"([\\%_])", r"\\\1", w) + "%" for w in words]
    if ident:
        return [f"(({like}) OR s.id = ?)"], params + [int(ident.group(1))]
    return [f"({like})"], params


def _turn_messages(user: str, reply: str, transcript: list[str]) -> list[dict[str, str]]:
    """A stored turn as chat messages: what the user said (typed, and heard in audio), then the reply."""
    if transcript:
        user = (user + "\n" if user else "") + " ".join(f"[audio: {x}]" for x in transcript)
    if not user and not reply:
        return []
    messages = [{"role": "user", "content": user}]
    if reply:
        messages.append({"role": "assistant", "content": reply})
    return messages


def _plain_snippet(snippet: str) -> str:
    """Transcripts are stored as JSON lists; show their snippets as text."""
    if snippet.startswith(("[\"", "…\"")) or snippet.endswith(("\"]", "\"…")):
        snippet = snippet.replace('", "', " · ")
        snippet = re.sub(r'^(…?)\["?|^(…)"', r"\1\2", snippet)
        snippet = re.sub(r'"?\](…?)$|"(…)$', r"\1\2", snippet)
    return snippet


def _title_from(text: str, limit: int = 48) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _safe_name(name: str) -> str:
    cleaned = re.sub(r"[^\w.\-]+", "_", name).strip("._") or "file"
    return cleaned[-80:]
