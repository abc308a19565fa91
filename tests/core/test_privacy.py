"""Conversations, attachments and recordings are private: directories 0700, files 0600, and
one warning line when an existing one is open to other users."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
from PIL import Image

from assistant import paths
from assistant.pipeline import save_transcript
from assistant.storage import SessionStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask():
    old = os.umask(0o022)  # the umask that makes 0755 folders and 0644 files
    yield
    os.umask(old)


@pytest.fixture
def warnings_seen(caplog):
    caplog.set_level(logging.WARNING, logger="synesthesia.paths")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "synesthesia.paths"]


@pytest.mark.parametrize("variable, where", [("SYNESTHESIA_DATA_DIR", paths.data_dir),
                                             ("SYNESTHESIA_CONFIG_DIR", paths.config_dir),
                                             ("SYNESTHESIA_CACHE_DIR", paths.cache_dir)])
def test_new_directories_are_private(tmp_path, monkeypatch, warnings_seen, variable, where):
    monkeypatch.setenv(variable, str(tmp_path / "a" / "app"))
    folder = where()
    assert folder == tmp_path / "a" / "app"
    assert mode(folder) == 0o700
    assert mode(tmp_path / "a") == 0o755  # a parent is not ours to close
    assert warnings_seen() == []


def test_sessions_database_and_stored_files_are_private(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNESTHESIA_DATA_DIR", str(tmp_path / "data"))
    picture = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), "red").save(picture)
    sound = tmp_path / "question.wav"
    soundfile.write(sound, np.zeros(1600, dtype="float32"), 16000)
    assert mode(picture) == mode(sound) == 0o644
    with SessionStore.open() as store:
        session = store.create_session("private")
        writer = store.begin_turn(session.id, "what is this?", images=[picture, Image.new("RGB", (4, 4))],
                                  audio=[sound, (np.zeros(800, dtype="float32"), 16000)])
        writer.finish("a red square")
        writer.add_reply_audio(np.zeros(800, dtype="float32"), 16000)
        turn = store.turns(session.id)[0]
        db_files = sorted(p.name for p in store.db_path.parent.glob("sessions.db*"))
        assert "sessions.db-wal" in db_files
        for name in db_files:
            assert mode(store.db_path.parent / name) == 0o600, name
        assert mode(paths.data_dir()) == 0o700
        assert mode(store.session_dir(session.id).parent) == mode(store.session_dir(session.id)) == 0o700
        stored = [a.path for a in turn.attachments]
        assert len(stored) == 5
        assert {mode(p) for p in stored} == {0o600}


def test_saved_transcripts_are_private(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNESTHESIA_DATA_DIR", str(tmp_path / "data"))
    path = save_transcript(SimpleNamespace(audio_names=["memo.wav"], transcript=["call the bank"]))
    assert path.read_text() == "call the bank\n"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_an_existing_shared_directory_is_kept_with_one_warning(tmp_path, monkeypatch, warnings_seen):
    shared = tmp_path / "old-data"
    shared.mkdir(mode=0o755)
    monkeypatch.setenv("SYNESTHESIA_DATA_DIR", str(shared))
    assert paths.data_dir() == shared
    paths.data_dir()
    with SessionStore.open():
        pass
    assert mode(shared) == 0o755  # not changed behind the user's back
    [line] = warnings_seen()
    assert str(shared) in line and "755" in line and f"chmod 700 {shared}" in line
    assert "\n" not in line


def test_an_existing_shared_database_is_warned_about(tmp_path, warnings_seen):
    db = tmp_path / "sessions.db"
    with SessionStore.open(db):
        pass
    assert warnings_seen() == []
    db.chmod(0o644)
    with SessionStore.open(db):
        pass
    [line] = warnings_seen()
    assert str(db) in line and "644" in line and "chmod 600" in line
    assert mode(db) == 0o644


def test_a_private_existing_directory_is_quiet(tmp_path, monkeypatch, warnings_seen):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    monkeypatch.setenv("SYNESTHESIA_CONFIG_DIR", str(mine))
    assert paths.config_dir() == mine
    assert warnings_seen() == []
