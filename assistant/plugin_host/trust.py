"""Trust: before a plugin first uses the capabilities it declared (reading files, running
programs...), the user is asked once per session, unless the settings trust the plugin."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from assistant.errors import PluginError
from assistant.plugin_host.isolation import describe
from plugins.types import CAPABILITIES

log = logging.getLogger("synesthesia.plugins")

Confirm = Callable[[str, str], bool]
"""``confirm(plugin, message) -> allowed``; may block (the TUI shows a modal and waits)."""


def tty_confirm(plugin: str, message: str) -> bool:
    """The default confirmation: a y/N question on the terminal; "no" when there is none."""
    if not (sys.stdin and sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    try:
        print(f"{message} [y/N] ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in {"y", "yes"}
    except (OSError, ValueError):
        return False


class Permissions:
    """The user's answers of this session, one per plugin."""

    def __init__(self) -> None:
        self.decisions: dict[str, bool] = {}

    def permit(self, plugin: str, capabilities: frozenset[str], what: str, *, trusted: bool,
               confirm: Confirm) -> None:
        """Ask once per session before ``plugin`` first runs ``what`` with ``capabilities``;
        :class:`PluginError` (one line, saying how to trust it) if the user declines."""
        if not capabilities or trusted:
            return
        if plugin not in self.decisions:
            doing = ", ".join(CAPABILITIES[c] for c in sorted(capabilities))
            message = f"Plugin {plugin!r} wants to {doing} (for {what}). Allow it for this session?"
            try:
                self.decisions[plugin] = bool(confirm(plugin, message))
            except Exception as e:  # noqa: BLE001 - a failing prompt counts as "no"
                log.warning("confirmation prompt failed: %s", describe(e))
                self.decisions[plugin] = False
        if not self.decisions[plugin]:
            raise PluginError(
                f"plugin {plugin!r} was not allowed to run {what} in this session; to allow it "
                f'always, add it to [plugins] trusted = ["{plugin}"] in config.toml'
            )
