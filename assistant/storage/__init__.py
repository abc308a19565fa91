"""Sessions on disk: one SQLite database plus a folder of attachments per session.

Layout under :func:`assistant.paths.data_dir` (``SYNESTHESIA_DATA_DIR`` moves it)::

    sessions.db               sessions, turns, attachments, notes, FTS5 index (WAL mode)
    sessions/<id>/            files of session <id>: copied images and audio, spoken replies

Schema changes are named, append-only migrations (:data:`MIGRATIONS`); the names applied
are recorded in the ``_migrations`` table, so an old database is brought up to date on open
and a migration never runs twice. Never edit a released migration: add a new one.
A database that records a migration this version does not have was written by a newer
version: it is opened read-only with a one-line warning (``write=True`` refuses it in one
line instead) and never written to.

Crash safety: a turn is inserted (``partial = 1``) before the reply starts; the reply is
streamed into the row and committed every ``commit_every`` seconds
(:meth:`TurnWriter.append`); :meth:`TurnWriter.finish` writes the final reply and clears the
flag. A process killed in between leaves the committed prefix of the reply in the database,
still marked partial, and WAL keeps the file consistent.

Typical use (what ``assistant chat`` does)::

    store = SessionStore.open()
    session = store.last_session() or store.create_session()
    writer = store.begin_turn(session.id, text, images=[...], audio=[...])
    for chunk in bot.stream(text, ...):
        writer.append(chunk)
    writer.finish(bot.last_reply)

or in one call, after the fact: ``store.record_turn(session.id, text, reply, images=[...])``.

Modules: :mod:`~assistant.storage.store` (the store and the turn writer),
:mod:`~assistant.storage.migrations` (the schema), :mod:`~assistant.storage.records` (what is
stored), :mod:`~assistant.storage.export` (a session written out as a folder).
"""

from assistant.storage.migrations import MIGRATIONS
from assistant.storage.records import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, Attachment, SearchHit, Session, StoredTurn, classify
from assistant.storage.store import DB_NAME, SessionStore, TurnWriter

__all__ = ["AUDIO_EXTENSIONS", "DB_NAME", "IMAGE_EXTENSIONS", "MIGRATIONS", "Attachment", "SearchHit", "Session",
           "SessionStore", "StoredTurn", "TurnWriter", "classify"]
