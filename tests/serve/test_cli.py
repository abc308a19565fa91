"""`assistant serve`: refusals before anything starts, and a failed load ends the server with one line."""

from __future__ import annotations

import socket

from assistant.cli import main


def test_other_addresses_need_a_key(capsys):
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0.0.0.0 is not a loopback address" in err and "--api-key" in err


def test_a_busy_port_is_one_line(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        assert main(["serve", "--port", str(busy.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1:" in err and "Traceback" not in err


def test_bad_options(capsys):
    assert main(["serve", "--queue", "0"]) == 2
    assert "--queue must be >= 1" in capsys.readouterr().err


def test_models_that_cannot_load_stop_the_server(capsys, monkeypatch):
    monkeypatch.setenv("SYNESTHESIA_GENERATOR__MODEL", "no-such-org/no-such-model")
    assert main(["serve", "--port", "0", "--offline"]) == 1
    err = capsys.readouterr().err
    assert "listening on http://127.0.0.1:" in err
    assert "assistant: error: generator 'no-such-org/no-such-model'" in err and "Traceback" not in err
