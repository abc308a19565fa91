"""What the sessions database holds, as plain records: sessions, turns, their attachments, search hits;
and which files count as images or audio."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".aiff", ".aif"})



@dataclass
class Attachment:
    id: int
    role: str
    kind: str
    name: str
    path: Path
    """Absolute path of the stored copy."""


@dataclass
class StoredTurn:
    """One turn as the sessions database holds it (the pipeline's turn is :class:`assistant.turns.Turn`)."""

    id: int
    session_id: int
    created: float
    user_text: str
    reply_text: str
    transcript: list[str]
    evidence: list[str]
    timings: dict[str, float]
    partial: bool
    finished: float | None
    stop_reason: str | None
    attachments: list[Attachment] = field(default_factory=list)

    def inputs(self, kind: str) -> list[Attachment]:
        return [a for a in self.attachments if a.role == "user" and a.kind == kind]

    @property
    def reply_audio(self) -> Attachment | None:
        return next((a for a in self.attachments if a.role == "assistant"), None)


@dataclass
class Session:
    id: int
    title: str
    created: float
    updated: float
    turns: int = 0


@dataclass
class SearchHit:
    session_id: int
    session_title: str
    turn_id: int
    snippet: str
    """The matching text with the hits wrapped in ``[`` ``]``."""


def classify(path: str | Path) -> str | None:
    """'image' or 'audio' by file extension, else None."""
    ext = Path(path).suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in AUDIO_EXTENSIONS:
        return "audio"
    return None
