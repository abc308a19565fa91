"""What the terminal UI needs of an assistant: :class:`AssistantLike`, a typed Protocol.

The app calls exactly these members and nothing else, so it can run on any object that has
them: :class:`assistant.pipeline.Assistant` (``tests/tui/test_protocol.py`` checks that it does),
or the scripted stand-in of the UI tests. The hands-free loop the UI starts
(:class:`assistant.voice.TalkLoop`) is handed the same object; it uses ``recognizer``,
``synthesizer``, ``settings``, ``stream``, ``cancel`` and ``warm_up``.

No Textual import here: the pipeline's layer may read this module.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

if TYPE_CHECKING:
    import numpy as np

    from assistant.config import Settings
    from assistant.plugin_host import PluginHost
    from assistant.loading import ModelInfo
    from assistant.turns import Reply
    from plugins.types import CommandResult


class AssistantLike(Protocol):
    """The loaded models and one conversation, as the terminal UI uses them."""

    settings: Settings
    """The settings it was loaded with (the UI reads the generator budget and voice sections)."""
    plugins: PluginHost | None
    """The plugin host (the UI lists its ``commands`` and answers its ``confirm`` questions), or None."""
    history: list[dict]
    """The conversation as the generator sees it; the UI fills it when a session is resumed."""
    last_reply: Reply | None
    """The reply of the latest finished ``stream``."""
    notify: Callable[[str, str], None] | None
    """Set by the UI: how plugins report problems and timers, from any thread."""
    on_note: Callable[[str], None] | None
    """Set by the UI: called with each note a command saves."""

    @property
    def synthesizer(self) -> Any:
        """The speech synthesizer for sentence-by-sentence replies, or None (then ``speak``)."""

    @property
    def recognizer(self) -> Any:
        """The speech recognizer (the hands-free loop listens with it)."""

    def models(self) -> list[ModelInfo]:
        """What runs in each slot, for the status bar."""

    def stream(self, text: str, images: Sequence = (), audio: Sequence = (), *,
               cancel: threading.Event | None = None) -> Iterator[str]:
        """One turn, the reply in chunks; afterwards ``last_reply`` holds it."""

    def cancel(self) -> None:
        """Stop the reply in progress (any thread)."""

    def reset(self) -> None:
        """Forget the conversation."""

    def warm_up(self) -> None:
        """Get ready for the next question (run in a worker while the user types)."""

    def budget(self) -> int:
        """Tokens the prompt may take (the UI resumes as many past turns as fit)."""

    def command(self, line: str) -> CommandResult | None:
        """Run a plugin's slash command; None when plugins are off."""

    def transcribe(self, audio: Any) -> str:
        """A recording -> its text."""

    def speak(self, text: str) -> tuple[np.ndarray, int]:
        """Text -> (samples, sample rate), when there is no streaming ``synthesizer``."""

