"""Where a turn meets the plugins: slash-command turns (answered by a plugin command, no model
involved), tool routing (a tool's answer becomes evidence for the generator), reply transforms,
and the context commands and tools see (:class:`plugins.types.CommandContext`).

:class:`PluginTurns` is mixed into :class:`assistant.pipeline.Assistant`, whose ``__init__`` sets
the state below; turn transforms run in :meth:`Assistant._turn`, before any encoder.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

from assistant import paths
from assistant.config import Settings
from assistant.plugin_host.commands import is_command
from assistant.turns import Reply, Turn


class PluginTurns:
    """The plugin side of a conversation (``plugins`` is the plugin host, or None when off)."""

    settings: Settings
    plugins: object
    notes: list[str]
    on_note: Callable[[str], None] | None
    last_reply: Reply | None
    _ctx: object
    _last_labels: list
    _pending_context: list[str]
    _notify: Callable[[str, str], None]
    encode: Callable[[Turn], Turn]

    def _is_command(self, turn: Turn) -> bool:
        """Whether the turn is a slash command for the plugins (see ``assistant.plugin_host.is_command``)."""
        return self.plugins is not None and is_command(turn.text)

    @property
    def context(self):
        """What plugin commands and tools may ask of the assistant (plugins.types.CommandContext)."""
        if self._ctx is None:
            from plugins.types import BasicContext

            self._ctx = BasicContext(
                settings=self.settings,
                labels=lambda: list(self._last_labels),
                on_note=self._save_note,
                on_notify=lambda message, severity="information": self._notify(message, severity),
                on_context=self._pending_context.append,
                folder=paths.data_dir,
            )
        return self._ctx

    def _save_note(self, text: str) -> None:
        self.notes.append(text)
        if self.on_note is not None:
            self.on_note(text)

    def command(self, line: str):
        """Run a slash command (``/calc 2+2``) -> plugins.types.CommandResult, or None when the
        line is not a command or plugins are off. Unknown commands raise InputError."""
        if self.plugins is None:
            return None
        result = self.plugins.run_command(line, self.context)
        if result is not None and result.text:
            result.text = self.plugins.transform_reply(result.text)  # a command's reply is a reply too
        return result

    def _reply_transforms(self) -> bool:
        """Whether a plugin transforms replies: then a reply is generated whole, transformed,
        and only then shown and spoken (see docs/PLUGINS.md, "Turn and reply transforms")."""
        return bool(self.plugins is not None and getattr(self.plugins, "reply_transforms", None))

    def _command_turn(self, turn: Turn) -> Iterator[str]:
        start = time.perf_counter()
        if turn.images:
            self.encode(turn)
            self._last_labels = turn.labels[-1]
        result = self.command(turn.text.strip())
        text_out = result.text if result is not None else ""
        if text_out:
            yield text_out
        turn.timings["command"] = time.perf_counter() - start
        self.last_reply = Reply(text=text_out, timings=turn.timings, image_names=turn.image_names,
                                audio_inputs=turn.audio_names, command=getattr(result, "command", None) or None)

    def _use_tool(self, turn: Turn) -> str | None:
        """Route the request to a plugin tool; its result becomes context for the generator."""
        question = turn.question
        if self.plugins is None or not question:
            return None
        t0 = time.perf_counter()
        match = self.plugins.route(question)
        result = self.plugins.run_tool(match, question, self.context) if match is not None else None
        turn.timings["tool"] = time.perf_counter() - t0
        if result is None:
            return None
        note = f"The {result.tool} tool answered: {result.text}" if result.ok else f"The {result.tool} tool could not help: {result.text}"
        turn.evidence.append(note)  # shown to the generator and returned in Reply.evidence
        return result.tool
