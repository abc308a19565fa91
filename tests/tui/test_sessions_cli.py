"""``assistant sessions ...`` through the real command line (assistant.cli.main)."""

from __future__ import annotations

import json

import pytest

from assistant.storage import SessionStore
from tests.tui.conftest import add_session


@pytest.fixture
def filled(monkeypatch):
    with SessionStore.open() as store:  # the default store: SYNESTHESIA_DATA_DIR of this test
        a = add_session(store, "Paris trip", ("capital of France?", "Paris."))
        b = add_session(store, "Cats", ("do cats purr?", "Yes."))
    return a.id, b.id


def main(*argv):
    from assistant.cli import main as cli_main

    return cli_main(list(argv))


def test_list_json(filled, capsys):
    assert main("sessions", "list", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["title"] for d in data] == ["Cats", "Paris trip"]
    assert data[0]["turns"] == 1


def test_list_plain_and_bare(filled, capsys):
    assert main("sessions") == 0
    out = capsys.readouterr().out
    assert "Paris trip" in out and "Cats" in out


def test_list_the_most_recent_or_by_title(filled, capsys):
    assert main("sessions", "list", "--limit", "1", "--json") == 0
    assert [d["title"] for d in json.loads(capsys.readouterr().out)] == ["Cats"]
    assert main("sessions", "list", "--match", "paris", "--json") == 0
    assert [d["title"] for d in json.loads(capsys.readouterr().out)] == ["Paris trip"]


def test_export_search_rename_delete(filled, tmp_path, capsys):
    a, b = filled
    assert main("sessions", "export", str(a), str(tmp_path / "bundle")) == 0
    assert (tmp_path / "bundle" / "session.md").read_text().startswith("# Paris trip")
    assert json.loads((tmp_path / "bundle" / "session.json").read_text())["turns"][0]["reply_text"] == "Paris."
    capsys.readouterr()
    assert main("sessions", "search", "purr", "--json") == 0
    assert [h["session_id"] for h in json.loads(capsys.readouterr().out)] == [b]
    assert main("sessions", "search", "nothing-like-this") == 1
    assert main("sessions", "rename", str(a), "Lyon", "trip") == 0
    assert main("sessions", "delete", str(b)) == 0
    with SessionStore.open() as store:
        assert [s.title for s in store.list_sessions()] == ["Lyon trip"]


def test_unknown_id_is_one_line_exit_2(filled, capsys):
    assert main("sessions", "export", "42", "out") == 2
    err = capsys.readouterr().err
    assert "session 42: no such session" in err and "Traceback" not in err
