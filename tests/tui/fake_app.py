"""The terminal UI on the scripted assistant, for the real-terminal test (tests/tui/test_terminal.py).

    python -m tests.tui.fake_app [--delay SECONDS] [--load-delay SECONDS]

It starts the app the way ``assistant`` with no arguments does (settings from the user's
config, :func:`assistant.tui.run`), handing it a loader that returns a
:class:`~tests.tui.fake_assistant.FakeAssistant` instead of loading the models: ``run``
takes the loader as an argument, so the shipped package needs no switch for tests.
"""

from __future__ import annotations

import argparse
import sys

from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.tui import run
from tests.tui.fake_assistant import FakeAssistant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tui.fake_app")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds between streamed words")
    parser.add_argument("--load-delay", type=float, default=0.5, help="how long 'loading the models' takes")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load()
        return run(settings, lambda: FakeAssistant(delay=args.delay, load_delay=args.load_delay).load())
    except AssistantError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
