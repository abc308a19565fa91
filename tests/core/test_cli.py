"""The `assistant` command: bad input is one line on stderr with exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from assistant.cli import build_parser, main
from tests.conftest import DATA


def run_cli(*args, stdin: bytes | None = None, env=None):
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], input=stdin, capture_output=True,
                          timeout=600, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args,needle", [
    (["ask", "hi", "--image", "/no/such.png"], "/no/such.png: no such file"),
    (["ask", "hi", "--audio", DATA], "is a directory"),
    (["ask", "hi", "--image", __file__], "not an image"),
    (["ask"], "give a question"),
])
def test_bad_input_is_one_line(args, needle):
    p = run_cli(*args)
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_non_utf8_stdin():
    p = run_cli("ask", "-", stdin=b"caf\xe9\n")
    assert p.returncode == 2 and b"not valid UTF-8" in p.stderr and b"Traceback" not in p.stderr


def test_bad_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[generator]\ntemperature = 'hot'\n")
    p = run_cli("--config", str(cfg), "models")
    assert p.returncode == 2 and b"generator.temperature" in p.stderr and b"Traceback" not in p.stderr


def test_missing_config_file(tmp_path):
    assert main(["--config", str(tmp_path / "nope.toml"), "models"]) == 2


def test_pull_refuses_offline(capsys):
    assert main(["--offline", "models", "pull", "whisper:base"]) == 2
    assert "--offline forbids downloads" in capsys.readouterr().err


def test_help_lists_commands():
    text = build_parser().format_help()
    for command in ("ask", "chat", "models"):
        assert command in text


@pytest.mark.integration
def test_ask_json_real_stack():
    p = run_cli("ask", "What is the capital of France?", "--json")
    assert p.returncode == 0, p.stderr.decode()
    data = json.loads(p.stdout)
    assert "Paris" in data["text"] and data["timings"]["total"] > 0


@pytest.mark.integration
def test_ask_with_mixed_activations_through_the_setting():
    """generator.activations = "mixed" from the environment, through `assistant ask`: both
    graphs load (the description names them) and the reply's first token is the fp32 pass's."""
    env = {"SYNESTHESIA_GENERATOR__ACTIVATIONS": "mixed"}
    p = run_cli("ask", "What is the capital of France?", "--json", env=env)
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["text"].startswith("The capital of France is Paris")
    models = {m["slot"]: m for m in json.loads(run_cli("models", "--json", env=env).stdout)}
    assert "fp32 activations for prompts and int8 for each further token" in models["generator"]["source"]


@pytest.mark.integration
def test_models_json_real_stack():
    p = run_cli("models", "--json")
    assert p.returncode == 0, p.stderr.decode()
    slots = {m["slot"]: m for m in json.loads(p.stdout)}
    assert slots["generator"]["name"] == "smollm2" and "SmolLM2-135M-Instruct.Q4_1.gguf" in slots["generator"]["source"]
    assert "as a sentence; descriptions as the soft tokens alone" in json.dumps(slots["fusion"])  # the shipped weights describe


def test_slash_command_without_models(capsys):
    assert main(["ask", "/calc 2 * (3 + 4)"]) == 0
    assert "14" in capsys.readouterr().out


def test_unknown_slash_command(capsys):
    assert main(["ask", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown command /nope" in err and "/calc" in err


def test_chat_repl_records_the_session(monkeypatch, capsys, image_encoder):
    """The REPL streams replies, runs commands, and every turn lands in the session store."""
    from assistant.config import Settings
    from assistant.pipeline import Assistant
    from assistant.storage import SessionStore
    from assistant.plugin_host import load_plugins
    from tests.core.fakes import FakeGenerator

    settings = Settings()
    bot = Assistant(settings, generator=FakeGenerator("Hello there."), image_encoder=image_encoder,
                    plugins=load_plugins(settings.plugins))
    lines = iter(["hi", "/calc 6*7", f"/image {DATA}/cat.jpg", "/image /no/such.png", "/save remember me", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    import threading

    import assistant.cli as cli

    warmed = threading.Event()  # the router and the system prompt get ready while the first line is typed
    monkeypatch.setattr(bot, "warm_up", warmed.set)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)  # someone at a terminal

    args = build_parser().parse_args(["chat"])
    args.load_bot = lambda progress=None: bot
    assert cli.cmd_chat(args) == 0
    assert warmed.wait(5)
    out = capsys.readouterr()
    assert "Hello there." in out.out and "42" in out.out and "attached cat.jpg" in out.out
    assert "no such file" in out.err
    with SessionStore.open() as store:
        session = store.last_session()
        turns = store.turns(session.id)
        assert [t.user_text for t in turns] == ["hi"] and turns[0].reply_text.strip() == "Hello there."
        assert [n for _, n in store.notes(session.id)] == ["remember me"]
