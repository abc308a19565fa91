"""The slash-command rule: which lines are commands for the plugins, and what the model gets
for the others. Every entry point (CLI, terminal UI, server, pipeline) asks here."""

from __future__ import annotations

RESERVED_COMMANDS = {"help", "why"}
"""Commands the host answers itself; a plugin cannot take these names."""


def is_command(text: str) -> bool:
    """Whether a line is a slash command (``/calc 2+2``): the one rule every entry point uses.

    ``//`` at the start escapes it: ``//etc/hosts is a file`` is text for the model, given to it
    with one ``/`` removed (:func:`unescape`). A lone ``/`` is text too."""
    line = text.strip()
    return line.startswith("/") and not line.startswith("//") and len(line) > 1


def unescape(text: str) -> str:
    """The text the model gets for a line that is not a command: ``//x`` becomes ``/x``."""
    line = text.lstrip()
    return line[1:] if line.startswith("//") else text
