"""The built-in plugins. They register through the same hooks as third-party plugins."""

from __future__ import annotations

from typing import Any


def builtin_plugins() -> list[tuple[str, Any]]:
    """(name, plugin object) for each built-in, fresh for each plugin host (timers are per host)."""
    from plugins.builtin import calc, draw, files, images, notes
    from plugins.builtin.clock import ClockPlugin

    return [
        ("calc", calc),
        ("clock", ClockPlugin()),
        ("draw", draw),
        ("files", files),
        ("images", images),
        ("notes", notes),
    ]
