"""The session store: migrations, turns and attachments, streaming commits, search, export."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import soundfile

from assistant import storage
from assistant.errors import InputError
from assistant.storage import SessionStore
from assistant.pipeline import Reply


def test_default_location_follows_the_data_dir_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNESTHESIA_DATA_DIR", str(tmp_path / "elsewhere"))
    with SessionStore.open() as s:
        assert s.db_path == tmp_path / "elsewhere" / "sessions.db"
        assert s.db_path.exists()
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_are_recorded_and_run_once(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    with SessionStore.open(path) as s:
        names = [n for n, _ in storage.MIGRATIONS]
        assert s.applied_migrations() == names
        assert s.migrate() == []
        s.create_session("kept")
    ran = []

    def m999_extra(db):
        ran.append(1)
        db.execute("CREATE TABLE extra (x INTEGER)")

    monkeypatch.setattr(storage.migrations, "MIGRATIONS", storage.migrations.MIGRATIONS + [("m999_extra", m999_extra)])
    with SessionStore.open(path) as s:
        assert s.applied_migrations()[-1] == "m999_extra"
        assert [x.title for x in s.list_sessions()] == ["kept"]  # data survives
    with SessionStore.open(path) as s:
        pass
    assert ran == [1]


def test_failed_migration_rolls_back_and_is_not_recorded(tmp_path, monkeypatch):
    path = tmp_path / "s.db"
    SessionStore.open(path).close()

    def m998_broken(db):
        db.execute("CREATE TABLE half (x INTEGER)")
        raise sqlite3.OperationalError("boom")

    monkeypatch.setattr(storage.migrations, "MIGRATIONS", storage.migrations.MIGRATIONS + [("m998_broken", m998_broken)])
    with pytest.raises(InputError, match="boom"):
        SessionStore.open(path)
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert "m998_broken" not in {r[0] for r in db.execute("SELECT name FROM _migrations")}


def test_session_lifecycle(store):
    a = store.create_session()
    b = store.create_session("Second")
    assert a.title == "New session"
    store.begin_turn(a.id, "What is the capital of France?").finish("Paris.")
    assert store.last_session().id == a.id  # the most recently used
    assert store.get_session(a.id).title == "What is the capital of France?"  # titled by its first turn
    assert store.get_session(a.id).turns == 1
    store.rename_session(b.id, "  Renamed ")
    assert store.get_session(b.id).title == "Renamed"
    with pytest.raises(InputError):
        store.rename_session(b.id, "  ")
    store.delete_session(a.id)
    assert [s.id for s in store.list_sessions()] == [b.id]
    with pytest.raises(InputError, match=f"session {a.id}: no such session"):
        store.get_session(a.id)
    with pytest.raises(InputError, match="not a session id"):
        store.get_session("abc")


def test_turn_with_attachments_and_spoken_reply(store, picture, sound, tmp_path):
    s = store.create_session()
    mic = (np.zeros(1600, dtype=np.float32), 16000)
    writer = store.begin_turn(s.id, "what is this?", images=[picture], audio=[sound, mic])
    picture.unlink()  # the copy is the session's own
    reply = Reply("A square.", transcript=["beep", "hello"], evidence=["label: quadrants"],
                      timings={"total": 1.5}, audio=np.zeros(800, dtype=np.float32), sample_rate=22050)
    turn = writer.finish(reply)
    assert not turn.partial and turn.reply_text == "A square."
    assert turn.transcript == ["beep", "hello"] and turn.timings == {"total": 1.5}
    images, audio = turn.inputs("image"), turn.inputs("audio")
    assert [a.name for a in images] == ["quadrants.png"] and images[0].path.is_file()
    assert images[0].path.parent == store.session_dir(s.id)
    assert [a.name for a in audio] == ["beep.wav", "recording.wav"]
    assert soundfile.info(str(audio[1].path)).samplerate == 16000
    spoken = turn.reply_audio
    assert spoken is not None and soundfile.info(str(spoken.path)).samplerate == 22050
    store.delete_session(s.id)
    assert not store.session_dir(s.id).exists()


def test_missing_attachment_is_an_input_error_and_leaves_no_turn(store, tmp_path):
    s = store.create_session()
    with pytest.raises(InputError, match="no such file"):
        store.begin_turn(s.id, "look", images=[tmp_path / "nope.png"])
    assert store.turns(s.id) == []


def test_reply_is_committed_while_it_streams(store):
    s = store.create_session()
    writer = store.begin_turn(s.id, "count", commit_every=0)
    other = sqlite3.connect(store.db_path)  # another process's view
    writer.append("one ")
    writer.append("two ")
    row = other.execute("SELECT reply_text, partial FROM turns WHERE id = ?", (writer.turn_id,)).fetchone()
    assert row == ("one two ", 1)
    writer.finish(Reply("one two three", partial=True), stop_reason="cancelled")
    row = other.execute("SELECT reply_text, partial, stop_reason FROM turns").fetchone()
    assert row == ("one two three", 1, "cancelled")


def test_commits_are_batched_by_time(store):
    s = store.create_session()
    writer = store.begin_turn(s.id, "x", commit_every=3600)
    writer.append("not yet")
    assert store.get_turn(writer.turn_id).reply_text == ""
    writer.flush()
    assert store.get_turn(writer.turn_id).reply_text == "not yet"


def test_abort_keeps_the_partial_reply_with_its_reason(store):
    s = store.create_session()
    writer = store.begin_turn(s.id, "x", commit_every=3600)
    writer.append("half a")
    writer.abort("generator failed: boom")
    t = store.get_turn(writer.turn_id)
    assert (t.reply_text, t.partial, t.stop_reason) == ("half a", True, "generator failed: boom")


def test_full_text_search(store):
    a = store.create_session()
    b = store.create_session()
    store.record_turn(a.id, "Tell me about Paris", "Paris is the capital of France.")
    store.record_turn(b.id, "and cats?", Reply("Cats purr.", transcript=["meow meow"]))
    hits = store.search("pari")  # prefix match
    assert [h.session_id for h in hits] == [a.id]
    assert "[Paris]" in hits[0].snippet
    [hit] = store.search("meow")  # transcripts are searched
    assert hit.session_id == b.id and hit.snippet == "[meow] [meow]"
    assert store.search("capital france")[0].turn_id == store.turns(a.id)[0].id
    assert store.search('AND OR "( NEAR') == []  # operators are plain words, never a syntax error
    assert store.search("   ") == []
    store.delete_session(a.id)
    assert store.search("paris") == []  # the index follows deletes


def test_search_sees_updates_of_a_streamed_reply(store):
    s = store.create_session()
    w = store.begin_turn(s.id, "q", commit_every=0)
    w.append("zebra ")
    assert store.search("zebra")
    w.finish("giraffe")
    assert not store.search("zebra") and store.search("giraffe")


def test_history_for_resuming(store):
    s = store.create_session()
    store.record_turn(s.id, "hi", "hello!")
    store.record_turn(s.id, "", Reply("It beeps.", transcript=["beep"]))
    assert store.history(s.id) == [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": "[audio: beep]"}, {"role": "assistant", "content": "It beeps."},
    ]


def test_export_bundle(store, picture, sound, tmp_path):
    s = store.create_session("Trip")
    store.record_turn(s.id, "look", Reply("Colours.", audio=np.zeros(400, np.float32), sample_rate=16000),
                      images=[picture], audio=[sound])
    w = store.begin_turn(s.id, "more", commit_every=0)
    w.append("unfinished")
    store.add_note(s.id, "remember the colours")
    md = store.export(s.id, tmp_path / "out")
    text = md.read_text()
    assert text.startswith("# Trip")
    assert "![quadrants.png](media/" in text and "[audio: beep.wav](media/" in text
    assert "## Assistant (partial)" in text and "unfinished" in text
    assert "remember the colours" in text
    media = sorted(p.name for p in (tmp_path / "out" / "media").iterdir())
    assert len(media) == 3 and any(n.endswith("quadrants.png") for n in media)
    data = json.loads((tmp_path / "out" / "session.json").read_text())
    assert data["session"]["title"] == "Trip"
    assert [t["user_text"] for t in data["turns"]] == ["look", "more"]
    assert data["turns"][1]["partial"] is True
    files = [a["file"] for a in data["turns"][0]["attachments"]]
    assert all((tmp_path / "out" / f).is_file() for f in files)
    with pytest.raises(InputError):
        store.export(999, tmp_path / "x")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        store.export(s.id, tmp_path / "afile")


def test_store_is_usable_from_several_threads(store):
    import threading

    s = store.create_session()
    errors = []

    def work(n):
        try:
            for i in range(10):
                store.record_turn(s.id, f"q{n}-{i}", f"a{n}-{i}")
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(store.turns(s.id)) == 40
