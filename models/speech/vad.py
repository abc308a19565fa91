"""Voice-activity detection with Silero VAD (the model ships inside the ``silero-vad`` wheel).

* :class:`SileroVAD` wraps the model. ``segments(audio)`` finds speech in a whole recording
  and returns ``(start, end)`` sample indices, splitting long speech so that no segment is
  longer than ``max_segment_s`` (recognizers then work segment by segment with bounded
  memory). It reads long audio in windows of ``block_s`` seconds, so a ten-minute file never
  becomes one big tensor of probabilities.
* ``frame_probability(frame)`` scores one 512-sample frame (32 ms at 16 kHz) for streaming use
  (the microphone); the model keeps state between calls, ``reset()`` clears it.
* :class:`EndOfSpeech` turns streaming frame probabilities into events: speech started,
  speech ended after ``end_silence_ms`` of silence (hysteresis: start above ``threshold``,
  count silence below ``threshold - 0.15``).

Audio is always float32 mono at 16 kHz, shape ``(T,)``.
"""

from __future__ import annotations

import threading

import numpy as np

from models.audio_format import FRAME, SAMPLE_RATE  # a frame: what Silero VAD v5+ takes

__all__ = ["SileroVAD", "EndOfSpeech", "FRAME", "SAMPLE_RATE", "load_vad"]


class SileroVAD:
    """Silero VAD (torch JIT model from the wheel; one instance per thread of use)."""

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"VAD threshold {threshold} must be between 0 and 1")
        try:
            import torch
            from silero_vad import load_silero_vad
        except ImportError as e:
            raise RuntimeError("Silero VAD is missing: pip install silero-vad") from e
        self._torch = torch
        self.model = load_silero_vad()
        self.threshold = threshold
        self.lock = threading.Lock()  # the model carries recurrent state

    def reset(self) -> None:
        self.model.reset_states()

    def frame_probability(self, frame: np.ndarray) -> float:
        """(512,) float32 at 16 kHz -> probability of speech in this frame (stateful)."""
        if frame.shape != (FRAME,):
            raise ValueError(f"VAD frames are {FRAME} samples at 16 kHz, got shape {frame.shape}")
        with self.lock, self._torch.inference_mode():
            return float(self.model(self._torch.from_numpy(np.ascontiguousarray(frame, np.float32)), SAMPLE_RATE))

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """(T,) -> (ceil(T / 512),) speech probability per frame; state is reset first."""
        torch = self._torch
        n = (len(audio) + FRAME - 1) // FRAME
        padded = np.zeros(n * FRAME, np.float32)
        padded[: len(audio)] = audio
        out = np.empty(n, np.float32)
        with self.lock, torch.inference_mode():
            self.model.reset_states()
            frames = torch.from_numpy(padded).view(n, FRAME)  # (N, 512)
            for i in range(n):
                out[i] = float(self.model(frames[i], SAMPLE_RATE))
            self.model.reset_states()
        return out

    def segments(
        self,
        audio: np.ndarray,
        *,
        min_speech_ms: int = 200,
        min_silence_ms: int = 300,
        pad_ms: int = 150,
        max_segment_s: float = 20.0,
        block_s: float = 60.0,
    ) -> list[tuple[int, int]]:
        """(T,) float32 16 kHz -> [(start, end)] sample ranges holding speech, in order.

        Silence and steady noise give []. Segments are padded by ``pad_ms`` on each side (the
        first and last phonemes are quiet) and cut at the quietest frame when longer than
        ``max_segment_s``.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size < FRAME:
            return []
        block = int(block_s * SAMPLE_RATE) // FRAME * FRAME
        probs = np.concatenate([self.probabilities(audio[i:i + block]) for i in range(0, len(audio), block)])
        return _speech_ranges(probs, len(audio), self.threshold, min_speech_ms, min_silence_ms, pad_ms, max_segment_s)


def _speech_ranges(
    probs: np.ndarray, total: int, threshold: float, min_speech_ms: int, min_silence_ms: int,
    pad_ms: int, max_segment_s: float,
) -> list[tuple[int, int]]:
    """Frame probabilities (N,) -> padded sample ranges; hysteresis between threshold and threshold - 0.15."""
    ms_per_frame = FRAME * 1000 / SAMPLE_RATE
    low = max(threshold - 0.15, 0.01)
    min_sil = max(1, round(min_silence_ms / ms_per_frame))
    min_sp = max(1, round(min_speech_ms / ms_per_frame))
    ranges: list[list[int]] = []
    start = None
    silent = 0
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, silent = i, 0
        else:
            silent = silent + 1 if p < low else 0
            if silent >= min_sil:
                ranges.append([start, i - silent + 1])
                start = None
    if start is not None:
        ranges.append([start, len(probs)])
    ranges = [r for r in ranges if r[1] - r[0] >= min_sp]
    # Split over-long ranges at their least speech-like frame.
    max_frames = int(max_segment_s * 1000 / ms_per_frame)
    out: list[list[int]] = []
    for a, b in ranges:
        while b - a > max_frames:
            lo = a + max_frames // 2
            cut = lo + int(np.argmin(probs[lo:a + max_frames]))
            out.append([a, cut])
            a = cut
        out.append([a, b])
    pad = int(pad_ms * SAMPLE_RATE / 1000)
    result: list[tuple[int, int]] = []
    for a, b in out:
        s, e = max(0, a * FRAME - pad), min(total, b * FRAME + pad)
        if result and s < result[-1][1]:
            s = result[-1][1]  # padding must not make segments overlap
        if e > s:
            result.append((s, e))
    return result


class EndOfSpeech:
    """Streaming end-of-utterance detection over frame probabilities.

    ``update(p)`` returns "start" on the first frame of speech, "end" once ``end_silence_ms``
    of silence follows at least ``min_speech_ms`` of speech, "cancel" when the silence
    follows a shorter blip (a click, a cough), else None.
    """

    def __init__(self, threshold: float = 0.5, end_silence_ms: int = 700, min_speech_ms: int = 150) -> None:
        self.threshold = threshold
        self.low = max(threshold - 0.15, 0.01)
        self.end_frames = max(1, round(end_silence_ms * SAMPLE_RATE / 1000 / FRAME))
        self.min_frames = max(1, round(min_speech_ms * SAMPLE_RATE / 1000 / FRAME))
        self.reset()

    def reset(self) -> None:
        self.in_speech = False
        self.speech_frames = 0
        self.silent_frames = 0

    def update(self, p: float) -> str | None:
        if not self.in_speech:
            if p >= self.threshold:
                self.in_speech, self.speech_frames, self.silent_frames = True, 1, 0
                return "start"
            return None
        if p < self.low:
            self.silent_frames += 1
        else:
            self.silent_frames = 0
            self.speech_frames += 1
        if self.silent_frames >= self.end_frames:
            enough = self.speech_frames >= self.min_frames
            self.reset()
            return "end" if enough else "cancel"
        return None


def load_vad(threshold: float = 0.5) -> SileroVAD:
    """A new :class:`SileroVAD` (cheap: the JIT model loads in well under a second)."""
    return SileroVAD(threshold)
