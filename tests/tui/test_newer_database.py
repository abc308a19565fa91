"""A sessions database written by a newer version (migrations this one does not know) is read,
never written: opened read-only with one warning line, or refused in one line where the caller
must save."""

from __future__ import annotations

import hashlib
import logging
import sqlite3

import pytest

from assistant.errors import InputError
from assistant.storage import DB_NAME, SessionStore
from tests.tui.conftest import add_session


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def newer(tmp_path, monkeypatch):
    """The default sessions database, with one session, as a later version would leave it: a
    migration recorded that this version does not have, and the table it made."""
    monkeypatch.setenv("SYNESTHESIA_DATA_DIR", str(tmp_path / "data"))
    with SessionStore.open() as store:
        add_session(store, "Paris trip", ("capital of France?", "Paris."))
    path = tmp_path / "data" / DB_NAME
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE bookmarks (id INTEGER PRIMARY KEY, turn_id INTEGER)")
    db.execute("INSERT INTO _migrations(name, applied) VALUES ('m042_bookmarks', 0)")
    db.close()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def warnings_seen(caplog):
    caplog.set_level(logging.WARNING, logger="synesthesia.storage")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "synesthesia.storage"]


def test_it_opens_read_only_with_one_warning_and_reads(newer, warnings_seen):
    before = digest(newer)
    with SessionStore.open() as store:
        assert store.read_only and store.newer_migrations == ["m042_bookmarks"]
        [session] = store.list_sessions()
        assert session.title == "Paris trip"
        assert [t.reply_text for t in store.turns(session.id)] == ["Paris."]
        assert [h.session_id for h in store.search("France")] == [session.id]
    [line] = warnings_seen()
    assert str(newer) in line and "newer version" in line and "m042_bookmarks" in line and "read-only" in line
    assert "\n" not in line
    assert digest(newer) == before


def test_every_write_is_refused_in_one_line_and_nothing_changes(newer, tmp_path):
    before = digest(newer)
    picture = tmp_path / "photo.png"
    picture.write_bytes(b"not really a png")
    with SessionStore.open() as store:
        [session] = store.list_sessions()
        writes = [lambda: store.create_session("new"),
                  lambda: store.rename_session(session.id, "renamed"),
                  lambda: store.delete_session(session.id),
                  lambda: store.add_note(session.id, "a note"),
                  lambda: store.touch(session.id),
                  lambda: store.record_turn(session.id, "hi", "hello"),
                  lambda: store.delete_turn(store.turns(session.id)[0].id),
                  lambda: store._attach(session.id, 1, "user", "image", picture, "1-0"),
                  store.migrate]
        for write in writes:
            with pytest.raises(InputError) as err:
                write()
            message = str(err.value)
            assert "newer version" in message and "\n" not in message
        assert not store.session_dir(session.id).exists()  # no attachment copied before the refusal
        assert store.list_sessions()[0].title == "Paris trip"
    assert digest(newer) == before


def test_a_caller_that_must_save_is_refused_at_open(newer, warnings_seen):
    before = digest(newer)
    with pytest.raises(InputError) as err:
        SessionStore.open(write=True)
    message = str(err.value)
    assert str(newer) in message and "m042_bookmarks" in message and "\n" not in message
    assert digest(newer) == before


def test_the_sessions_command_reads_it_and_refuses_to_delete(newer, capsys):
    from assistant.cli import main

    before = digest(newer)
    assert main(["sessions", "list"]) == 0
    assert "Paris trip" in capsys.readouterr().out
    assert main(["sessions", "delete", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "newer version" in err
    assert digest(newer) == before


def test_a_database_of_this_version_stays_writable(tmp_path, warnings_seen):
    with SessionStore.open(tmp_path / "s.db", write=True) as store:
        assert not store.read_only
        store.create_session("fine")
    assert warnings_seen() == []
