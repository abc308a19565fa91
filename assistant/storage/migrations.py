"""The sessions database's schema: named, append-only migrations (:data:`MIGRATIONS`), applied
in order and recorded in the ``_migrations`` table. Never edit a released migration: add a new one."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

Migration = Callable[[sqlite3.Connection], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration, under its function name."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def _script(db: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the caller's transaction (``executescript`` would commit it)."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement!r}")


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    _script(
        db,
        """
        CREATE TABLE sessions (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            title    TEXT NOT NULL,
            created  REAL NOT NULL,
            updated  REAL NOT NULL
        );
        CREATE TABLE turns (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            created     REAL NOT NULL,
            user_text   TEXT NOT NULL DEFAULT '',
            reply_text  TEXT NOT NULL DEFAULT '',
            transcript  TEXT NOT NULL DEFAULT '[]',
            evidence    TEXT NOT NULL DEFAULT '[]',
            timings     TEXT NOT NULL DEFAULT '{}',
            partial     INTEGER NOT NULL DEFAULT 1,
            finished    REAL
        );
        CREATE INDEX turns_session ON turns(session_id, id);
        CREATE TABLE attachments (
            id       INTEGER PRIMARY KEY AUTOINCREMENT,
            turn_id  INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
            role     TEXT NOT NULL,      -- 'user' (an input) or 'assistant' (the spoken reply)
            kind     TEXT NOT NULL,      -- 'image' or 'audio'
            name     TEXT NOT NULL,      -- the original file name, for display
            path     TEXT NOT NULL       -- relative to the data dir
        );
        CREATE INDEX attachments_turn ON attachments(turn_id);
        CREATE TABLE notes (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id  INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            created     REAL NOT NULL,
            text        TEXT NOT NULL
        );
        """
    )


@migration
def m002_fts(db: sqlite3.Connection) -> None:
    # External-content FTS5 index over turns, kept in step by triggers.
    _script(
        db,
        """
        CREATE VIRTUAL TABLE turns_fts USING fts5(
            user_text, reply_text, transcript, content='turns', content_rowid='id'
        );
        CREATE TRIGGER turns_fts_ai AFTER INSERT ON turns BEGIN
            INSERT INTO turns_fts(rowid, user_text, reply_text, transcript)
            VALUES (new.id, new.user_text, new.reply_text, new.transcript);
        END;
        CREATE TRIGGER turns_fts_ad AFTER DELETE ON turns BEGIN
            INSERT INTO turns_fts(turns_fts, rowid, user_text, reply_text, transcript)
            VALUES ('delete', old.id, old.user_text, old.reply_text, old.transcript);
        END;
        CREATE TRIGGER turns_fts_au AFTER UPDATE OF user_text, reply_text, transcript ON turns BEGIN
            INSERT INTO turns_fts(turns_fts, rowid, user_text, reply_text, transcript)
            VALUES ('delete', old.id, old.user_text, old.reply_text, old.transcript);
            INSERT INTO turns_fts(rowid, user_text, reply_text, transcript)
            VALUES (new.id, new.user_text, new.reply_text, new.transcript);
        END;
        INSERT INTO turns_fts(turns_fts) VALUES ('rebuild');
        """
    )


@migration
def m003_turn_error(db: sqlite3.Connection) -> None:
    # Why a turn ended early ('cancelled', or an error message); NULL when it finished normally.
    db.execute("ALTER TABLE turns ADD COLUMN stop_reason TEXT")


@migration
def m004_session_list(db: sqlite3.Connection) -> None:
    # The session list reads a page of the most recent sessions with their turn counts: an index
    # in that order, and a count kept by triggers, so neither grows with sessions or turns.
    _script(
        db,
        """
        ALTER TABLE sessions ADD COLUMN turn_count INTEGER NOT NULL DEFAULT 0;
        UPDATE sessions SET turn_count = (SELECT COUNT(*) FROM turns WHERE turns.session_id = sessions.id);
        CREATE TRIGGER turns_count_ai AFTER INSERT ON turns BEGIN
            UPDATE sessions SET turn_count = turn_count + 1 WHERE id = new.session_id;
        END;
        CREATE TRIGGER turns_count_ad AFTER DELETE ON turns BEGIN
            UPDATE sessions SET turn_count = turn_count - 1 WHERE id = old.session_id;
        END;
        CREATE INDEX sessions_recent ON sessions(updated DESC, id DESC);
        """
    )


def unknown_migrations(db_path: Path) -> list[str]:
    """The migrations recorded in the database at ``db_path`` that this version does not have
    (a newer version wrote it); read without writing anything. None for a new database."""
    if not db_path.is_file() or db_path.stat().st_size == 0:
        return []
    db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone() is None:
            return []
        known = {name for name, _ in MIGRATIONS}
        return [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid") if r[0] not in known]
    finally:
        db.close()
