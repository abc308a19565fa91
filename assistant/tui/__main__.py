"""``python -m assistant.tui``: the terminal UI (the same as ``assistant`` with no arguments)."""

from __future__ import annotations

import argparse
import sys

from assistant.config import Settings
from assistant.errors import AssistantError


def _load_bot(settings: Settings):
    from assistant.pipeline import Assistant  # the real stack; imported in the worker thread

    return Assistant.load(config=settings)


def main() -> int:
    from assistant.tui import run

    from assistant.cli import load_settings

    try:
        settings = load_settings(argparse.Namespace())  # the defaults `assistant` has without options
        return run(settings, lambda: _load_bot(settings))
    except AssistantError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
