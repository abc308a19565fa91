"""Finding attachments in what the user typed or pasted: ``/image PATH``, dropped file paths."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from assistant.storage import classify


@dataclass(frozen=True)
class Pending:
    """A file waiting to be sent with the next message."""

    kind: str  # 'image' or 'audio'
    path: Path

    @property
    def label(self) -> str:
        return f"{'🖼' if self.kind == 'image' else '🔊'} {self.path.name}"


def as_attachment(text: str, kind: str | None = None) -> Pending | None:
    """A :class:`Pending` for ``text`` when it names an existing image/audio file (or ``kind`` forces one)."""
    raw = text.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    if raw.startswith("file://"):
        raw = raw[len("file://"):]
    if not raw:
        return None
    path = Path(raw).expanduser()
    try:
        if not path.is_file():
            return None
    except OSError:
        return None
    found = kind or classify(path)
    return Pending(found, path.resolve()) if found else None


def image_texts(reply, evidence=()) -> list[tuple[str, str]]:
    """(image name, text read in it) for each image of a turn that holds text: from the reply's
    ``ocr`` (all of it), else from the stored evidence lines "Image N (name) contains text:"
    (what the generator saw, perhaps shortened)."""
    found = [(r["image"], r["text"]) for r in (reply.ocr if reply is not None else []) if r and r.get("text")]
    if found:
        return found
    for note in evidence or ():
        head, _, body = note.partition(" contains text:\n")
        if body and head.startswith("Image ") and head.endswith(")") and " (" in head:
            found.append((head[head.index(" (") + 2:-1], body))
    return found


def split_paths(text: str) -> tuple[str, list[Pending]]:
    """Take the image/audio file paths out of a message (as terminals paste dropped files).

    Paths may be quoted or backslash-escaped. Returns the remaining text and the attachments.
    Text that is not valid shell-like quoting is left alone.
    """
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError:
        return text, []
    found = [(tok, as_attachment(tok)) for tok in tokens]
    pending = [p for _, p in found if p is not None]
    if not pending:
        return text, []
    rest = " ".join(tok for tok, p in found if p is None)
    return rest, pending
