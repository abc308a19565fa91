"""Messages that workers post back to the app (inference never runs on the UI loop)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class BotReady(Message):
    bot: Any
    models: list[str]
    seconds: float


@dataclass
class LoadProgress(Message):
    text: str
    """What is loading now (from the loader's progress callback)."""


@dataclass
class BotFailed(Message):
    error: str


@dataclass
class ReplyChunk(Message):
    key: int
    text: str


@dataclass
class ReplyDone(Message):
    key: int
    reply: Any
    turn: Any
    """The stored :class:`assistant.storage.StoredTurn`."""


@dataclass
class TurnUpdated(Message):
    key: int
    turn: Any
    """The stored turn after a later change (its spoken reply was saved)."""


@dataclass
class ReplyFailed(Message):
    key: int
    error: str
    restore: bool
    """True when nothing was produced: the input and attachments go back to the input bar."""


@dataclass
class TurnStored(Message):
    key: int
    turn_id: int


@dataclass
class SpeakingChanged(Message):
    speaking: bool


@dataclass
class ListeningChanged(Message):
    listening: bool
    error: str | None = None


@dataclass
class TalkState(Message):
    """The hands-free loop's state: "listening", "thinking", "speaking", or "stopped" (off)."""

    state: str


@dataclass
class VoiceLevel(Message):
    level: float
    """0..1 (RMS of the last block, scaled)."""


@dataclass
class Heard(Message):
    text: str
    audio: Any = None
    extra: dict = field(default_factory=dict)


@dataclass
class CommandOutput(Message):
    command: str
    text: str
    error: bool = False
    image: str | None = None
    """A picture the command made (its result's ``data["image"]``), shown inline under the text."""


@dataclass
class Notice(Message):
    """Something the assistant or a plugin reports (a timer went off, a plugin failed)."""

    text: str
    severity: str = "information"


@dataclass
class NoteSaved(Message):
    """A plugin command saved a note: it goes into the current session."""

    text: str
