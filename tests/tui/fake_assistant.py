"""A scripted stand-in for :class:`assistant.pipeline.Assistant`, for the terminal UI's tests.

It is what the UI needs of an assistant (:class:`assistant.tui.protocol.AssistantLike`):
``stream`` yields chunks and leaves ``last_reply``; ``cancel`` is thread-safe; ``models``,
``history``, ``reset``, ``transcribe``, ``speak`` and ``command`` behave like the real ones,
without any weights. ``tests/tui/fake_app.py`` starts the real app on it in a terminal.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from assistant.config import Settings
from assistant.errors import InputError
from assistant.pipeline import ModelInfo, Reply
from plugins.types import CommandResult


@dataclass
class FailAfter:
    """A scripted reply that streams ``text`` and then raises ``error`` (a failure mid-reply)."""

    text: str
    error: BaseException


class FakeAssistant:
    """Replies come from ``replies`` (strings, or exceptions to raise) in order, then echo the question.

    ``delay``: seconds between streamed words; ``load_delay``: how long :meth:`load` sleeps.
    Every call is recorded in :attr:`calls` as ``(text, images, audio)``.
    """

    def __init__(
        self,
        replies: Iterable[str | BaseException] = (),
        *,
        delay: float = 0.0,
        load_delay: float = 0.0,
        transcript: str = "hello from the microphone",
        timings: dict[str, float] | None = None,
        settings: Settings | None = None,
        context_window: int = 8192,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.context_window = context_window
        """The stand-in generator's context window (:meth:`budget` is the real rule on it)."""
        self.plugins = None
        self.synthesizer = None
        """None: no streaming synthesizer, so the app speaks a reply whole with :meth:`speak`."""
        self.recognizer = None
        self.replies: deque[str | BaseException] = deque(replies)
        self.delay = delay
        self.load_delay = load_delay
        self.transcript = transcript
        self.fixed_timings = timings
        """Report these timings instead of measured ones (for snapshot tests)."""
        self.calls: list[tuple[str, list[Any], list[Any]]] = []
        self.history: list[dict[str, str]] = []
        self.last_reply: Reply | None = None
        self.spoken: list[str] = []
        self.notify = None
        """``notify(message, severity)``, set by the app (as on the real Assistant)."""
        self.on_note = None
        """Called with each note a command saves, set by the app (as on the real Assistant)."""
        self._cancel = threading.Event()

    def load(self) -> "FakeAssistant":
        time.sleep(self.load_delay)
        return self

    def models(self) -> list[ModelInfo]:
        return [
            ModelInfo("generator", "fake-echo", "testing", "scripted replies"),
            ModelInfo("image", "fake-labels", "testing", "file names as labels"),
        ]

    def stream(self, text: str, images: Iterable[Any] = (), audio: Iterable[Any] = (),
               cancel: threading.Event | None = None) -> Iterator[str]:
        images, audio = list(images), list(audio)
        self.calls.append((text, images, audio))
        self._cancel.clear()
        start = time.perf_counter()
        item = self.replies.popleft() if self.replies else None
        if isinstance(item, BaseException):
            raise item
        error = None
        if isinstance(item, FailAfter):
            item, error = item.text, item.error
        names = [Path(str(i)).name for i in images]
        if item is None:
            item = f"You said: **{text or '(nothing)'}**"
            if names:
                item += "\n\nI see " + ", ".join(f"`{n}`" for n in names) + "."
        transcript = [self.transcript for _ in audio]
        out, partial = "", False
        first = None
        for piece in re.findall(r"\S+\s*|\s+", item):
            if self._cancel.is_set() or (cancel is not None and cancel.is_set()):
                partial = True
                break
            if self.delay:
                time.sleep(self.delay)
            if first is None:
                first = time.perf_counter() - start
            out += piece
            yield piece
        if error is not None:
            raise error
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": out}]
        self.last_reply = Reply(
            text=out, transcript=transcript, evidence=[f"label: {n}" for n in names],
            timings=dict(self.fixed_timings) if self.fixed_timings is not None else
            {"first_token": round(first or 0.0, 3), "total": round(time.perf_counter() - start, 3)},
            partial=partial, image_names=names,
        )

    def ask(self, text: str, **kw: Any) -> Reply:
        for _ in self.stream(text, kw.get("images", ()), kw.get("audio", ()), kw.get("cancel")):
            pass
        assert self.last_reply is not None
        return self.last_reply

    def cancel(self) -> None:
        self._cancel.set()

    def warm_up(self) -> None:
        pass

    def budget(self) -> int:
        g = self.settings.generator
        return min(g.context_tokens, self.context_window) - g.max_new_tokens

    def reset(self) -> None:
        self.history = []

    def transcribe(self, audio: Any) -> str:
        return self.transcript

    def speak(self, text: str):
        import numpy as np

        self.spoken.append(text)
        return np.zeros(1600, dtype=np.float32), 16000

    def command(self, line: str) -> CommandResult:
        """Plugin slash-command hook: ``/shout TEXT``, and ``/remember TEXT`` (saves a note)."""
        name, _, args = line.lstrip("/").partition(" ")
        if name == "shout":
            return CommandResult(args.upper(), command=name)
        if name == "remember":
            if self.on_note is not None:
                self.on_note(args)
            if self.notify is not None:
                self.notify(f"remembered: {args}", "information")
            return CommandResult("ok", command=name)
        raise InputError(f"/{name}: unknown command (try /help)")
