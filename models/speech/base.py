"""The recognizer interface and the VAD segmentation every engine shares.

A recognizer has ``name`` and ``transcribe(audio) -> str`` with ``audio`` float32 mono 16 kHz,
shape ``(T,)``. Engines built on :class:`Segmenting` first cut the audio into speech segments
with Silero VAD, so silence or noise alone gives ``""``, the decoder sees trimmed speech, and a
ten-minute recording is decoded segment by segment with bounded memory.

Engines that can recognize while the user is still speaking also have ``stream(context=None)``
returning a *recognition stream* (the microphone path, see ``assistant.voice.listener``):

* ``feed(audio, speech=True)``: the next (n,) float32 samples; ``speech=False`` marks audio
  the caller's VAD judged to be silence (the pause that may end the turn);
* ``partial() -> str | None``: without waiting, the transcript of all speech fed so far when
  a decode covering it has finished, else None;
* ``finish(timeout=None) -> str``: the utterance is over: its transcript;
* ``cancel()``.
"""

from __future__ import annotations

import threading

import numpy as np

from models.audio_format import SAMPLE_RATE  # engines take audio at this rate

__all__ = ["Recognizer", "Segmenting", "check_audio", "SAMPLE_RATE"]


class Recognizer:
    """The interface: ``name`` and ``transcribe((T,) float32 16 kHz) -> str``."""

    name: str = "recognizer"

    def transcribe(self, audio: np.ndarray, context: str | None = None) -> str:
        """(T,) float32 16 kHz -> text. ``context`` names what the speech is probably about
        (``"scene"``: a question about an attached Sort-of-CLEVR picture); engines that cannot
        use it ignore it."""
        raise NotImplementedError


def check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"recognizers take mono audio of shape (T,), got shape {audio.shape}")
    if audio.dtype.kind != "f":
        raise ValueError(f"recognizers take float audio in [-1, 1], got {audio.dtype}")
    return np.ascontiguousarray(audio, dtype=np.float32)


class Segmenting(Recognizer):
    """Shared VAD segmentation: ``transcribe`` decodes each speech segment with ``_decode``."""

    def __init__(self, vad=None) -> None:
        if vad is None:
            from models.speech.vad import SileroVAD

            vad = SileroVAD()
        self.vad = vad
        self.lock = threading.Lock()

    def segments(self, audio: np.ndarray) -> list[tuple[int, int]]:
        return self.vad.segments(audio)

    def transcribe(self, audio: np.ndarray, context: str | None = None) -> str:
        """(T,) float32 16 kHz -> text ("" for silence or noise); ``context`` is ignored here."""
        audio = check_audio(audio)
        texts = []
        with self.lock:
            for start, end in self.segments(audio):
                text = self._decode(audio[start:end])  # (t,) one speech segment
                if text:
                    texts.append(text)
        return " ".join(texts)

    def _decode(self, segment: np.ndarray) -> str:
        raise NotImplementedError
