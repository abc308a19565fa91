"""What a turn is made of: :class:`Turn` (the inputs and everything found in them), :class:`Reply`
(what comes back, with ``to_dict`` for ``--json``), :func:`prepare_turn` (inputs checked and
loaded), and the errors and helpers that go with them. The stages are in :mod:`assistant.pipeline`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from assistant import paths
from assistant.config import Settings
from assistant.errors import InputError
from assistant.inputs import check_text, load_audio, load_image


@dataclass
class Turn:
    """A user's turn after loading and checking its inputs."""

    text: str
    images: list = field(default_factory=list)  # PIL RGB images
    image_names: list[str] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)  # float32 mono 16 kHz
    audio_names: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    image_tokens: Any = None  # (B, N, D) from the image encoder: 49 x 320, or 196 x 432 for a core on the fine grid
    labels: list = field(default_factory=list)  # per image [(label, p)]
    ocr: list = field(default_factory=list)  # per image: models.ocr.OcrResult, or None when not read
    fusion_tokens: list = field(default_factory=list)  # one (K, hidden) tensor per image
    attention: list = field(default_factory=list)  # per image: models.attention.AttentionMap, or None
    context: list[str] = field(default_factory=list)  # extra text for the generator (plugins, tools)
    scene_notes: list[str] = field(default_factory=list)  # the fusion core's answers (placed after the question)
    ruled_out: list[str] = field(default_factory=list)  # choices the core rejected: the reply may not name them
    question_read: str = ""  # a spoken question as the fusion core read it (shown to the generator and the user)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """What the user asked: the typed text, else the transcript."""
        return self.text.strip() or " ".join(t for t in self.transcript if t).strip()


@dataclass
class Reply:
    text: str
    transcript: list[str] = field(default_factory=list)
    """One string per audio input."""
    evidence: list[str] = field(default_factory=list)
    """What the encoders contributed, as text (labels, fusion answers)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage."""
    audio: np.ndarray | None = None
    """The spoken reply (float32 mono) when asked with speak=True."""
    sample_rate: int | None = None
    partial: bool = False
    """True when the reply was cancelled or cut at the token limit."""
    image_names: list[str] = field(default_factory=list)
    """The attached images' names (the pictures themselves are in :attr:`Turn.images`)."""
    audio_inputs: list[str] = field(default_factory=list)
    tool: str | None = None
    """The plugin tool that answered (its result was phrased by the generator), if any."""
    command: str | None = None
    """The slash command that produced this reply (no generator involved), if any."""
    ocr: list = field(default_factory=list)
    """Per image, the text read in it (``OcrResult.to_dict()`` plus ``image``), or None when not read."""
    attention: list = field(default_factory=list)
    """Per image, where the fusion core's queries looked (``AttentionMap.to_dict()`` plus ``image``:
    ``grid`` rows x cols summing to 1), or None; [] when the core did not run."""

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "transcript": self.transcript,
            "evidence": self.evidence,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "partial": self.partial,
            "images": self.image_names,  # the --json key stays "images"
            "audio_inputs": self.audio_inputs,
            "sample_rate": self.sample_rate,
            "tool": self.tool,
            "command": self.command,
            "ocr": self.ocr,
            "attention": self.attention,
        }


class MessageTooLong(InputError):
    """The turn does not fit the generator's context budget. Work already done is kept:
    ``transcript`` (one string per audio input) and, when there was one, ``saved_to`` (a text
    file holding it); ``reply`` is a partial :class:`Reply` carrying them (for the session store)."""

    def __init__(self, message: str, *, tokens: int | None = None, budget: int | None = None,
                 transcript: list[str] | None = None, saved_to: Path | None = None, reply: "Reply | None" = None):
        super().__init__(message)
        self.tokens = tokens
        self.budget = budget
        self.transcript = list(transcript or [])
        self.saved_to = saved_to
        self.reply = reply


def prepare_turn(settings: Settings, text: str | bytes = "", images: Sequence = (), audio: Sequence = ()) -> Turn:
    """Check and load a turn's inputs without any model (so bad input fails before a slow load)."""
    t0 = time.perf_counter()
    turn = Turn(text=check_text(text or ""))
    for item in images:
        turn.images.append(load_image(item, max_pixels=settings.image.max_pixels))
        turn.image_names.append(_name(item, "image", len(turn.image_names)))
    for item in audio:
        turn.audio.append(load_audio(item, max_seconds=settings.speech.max_audio_seconds))
        turn.audio_names.append(_name(item, "audio", len(turn.audio_names)))
    if not turn.text.strip() and not turn.images and not turn.audio:
        raise InputError("message: empty (type something, or attach an image or audio)")
    turn.timings["inputs"] = time.perf_counter() - t0
    return turn


def ocr_dicts(turn: Turn) -> list:
    """Per image, what was read in it (for --json and the UI); [] when nothing was read."""
    return [None if r is None else {"image": turn.image_names[i], **r.to_dict()} for i, r in enumerate(turn.ocr)]


def attention_dicts(turn: Turn) -> list:
    """Per image, the core's attention map (for --json, --attention and the UI); [] when it did not run."""
    return [None if a is None else {"image": turn.image_names[i], **a.to_dict()} for i, a in enumerate(turn.attention)]


def attention_caveat(entry: dict) -> str | None:
    """One line on how far to trust an attention map (an entry of ``Reply.attention``), or None."""
    if entry.get("known_image") is False:
        return (f"{entry['image']}: the fusion core was trained on Sort-of-CLEVR scenes and does not know images "
                "like this one; its map shows where it looked, not what it understood")
    if entry.get("answered") is False:
        return (f"{entry['image']}: the fusion core did not answer this question (not one it was trained for); "
                "its map shows where it looked")
    return None


def _name(item, kind: str, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return Path(item).name
    return getattr(item, "filename", None) and Path(item.filename).name or f"{kind} {index + 1}"


def save_transcript(turn: Turn) -> Path:
    """Write a turn's transcript to ``transcripts/`` in the data dir -> the file."""
    folder = paths.private_dir(paths.data_dir() / "transcripts", warn=False)
    stem = Path(turn.audio_names[0]).stem if turn.audio_names else "audio"
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40] or "audio"
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}.txt"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-{n}.txt"
    parts = [said if len(turn.transcript) == 1 else f"[{name}]\n{said}"
             for name, said in zip(turn.audio_names, turn.transcript)]
    path.write_text("\n\n".join(parts).strip() + "\n", encoding="utf-8")
    return paths.private_file(path)
