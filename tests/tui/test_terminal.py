"""The real app in a real terminal (tmux): type a question, read the streamed reply off the screen.

The app runs on the scripted assistant (``tests/tui/fake_app.py``, started as ``assistant``
starts the UI), so no model loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.storage import SessionStore

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def _tmux(sock: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", sock, *args], check=True, capture_output=True, text=True).stdout


def _wait_for(sock: str, needle: str, timeout: float = 20.0) -> str:
    end = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < end:
        screen = _tmux(sock, "capture-pane", "-p", "-t", "app")
        if needle in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never appeared on screen:\n{screen}")


def test_question_and_streamed_reply_in_tmux(tmp_path):
    sock = f"synesthesia-test-{os.getpid()}"
    data, config = tmp_path / "data", tmp_path / "config"
    env = {
        "SYNESTHESIA_DATA_DIR": str(data),
        "SYNESTHESIA_CONFIG_DIR": str(config),
        "SYNESTHESIA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
        "TERM": "xterm-256color",
    }
    env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
    _tmux(sock, "-f", "/dev/null", "new-session", "-d", "-s", "app", "-x", "120", "-y", "36", *env_args,
          f"cd {ROOT} && {sys.executable} -m tests.tui.fake_app --delay 0.15 --load-delay 0.3; echo EXITED $?; sleep 60")
    try:
        _wait_for(sock, "generator: fake-echo")  # the models "loaded" in the background
        _tmux(sock, "send-keys", "-t", "app", "-l", "What is the capital of France?")
        _tmux(sock, "send-keys", "-t", "app", "Enter")
        partial = _wait_for(sock, "You said:")  # the reply has started...
        assert "replying" in partial  # ...and is still streaming
        screen = _wait_for(sock, "last turn:", 20)  # done: the status bar shows the timings
        assert "You said: What is the capital of France?" in screen  # Markdown rendered (no **)
        assert "What is the capital of France?" in screen.split("You said:")[0]
        _tmux(sock, "send-keys", "-t", "app", "C-q")
        _wait_for(sock, "EXITED 0", 10)
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    with SessionStore.open(data / "sessions.db") as store:
        [session] = store.list_sessions()
        [turn] = store.turns(session.id)
        assert turn.user_text == "What is the capital of France?"
        assert turn.reply_text.strip() == "You said: **What is the capital of France?**" and not turn.partial
