"""Playback: :class:`Player` (queued clips on one output stream, stoppable at once) and the
blocking :func:`play` / :func:`stop_playback` pair."""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import numpy as np

from assistant.voice.devices import SAMPLE_RATE, Stream, StreamFactory, close_stream, stream_factory


class _Clip:
    """A queued clip: (T,) float32 at the stream rate, and who wants to know when it sounds."""

    __slots__ = ("samples", "on_sound")

    def __init__(self, samples: np.ndarray, on_sound: Callable[[float], None] | None) -> None:
        self.samples, self.on_sound = samples, on_sound


class Player:
    """Plays queued float32 clips in order on one output stream, stoppable at once.

    ``play(audio, rate)`` queues (resampling to the stream rate with soxr); ``stop()`` drops
    everything queued and silences the speaker within one block; ``wait()`` blocks until the
    queue has played; ``play(..., on_sound=)`` times when a clip really reaches the speaker.
    ``recent(n)`` returns the last ``n`` samples sent to the speaker (at 16 kHz), which the
    barge-in detector compares with the microphone.
    """

    def __init__(self, *, streams: StreamFactory | None = None, device: int | str | None = None,
                 sample_rate: int = 22050, blocksize: int = 1024) -> None:
        self.sample_rate, self.blocksize, self.device = int(sample_rate), int(blocksize), device
        self._streams = streams
        self._stream: Stream | None = None
        self._clips: collections.deque[_Clip] = collections.deque()
        self._pos = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._history = np.zeros(SAMPLE_RATE, np.float32)  # last second played, at 16 kHz
        self.played_samples = 0
        self.last_sound = 0.0  # time.monotonic() of the last non-silent block

    def open(self) -> None:
        """Open the output stream now (raises DeviceError); play() opens it on first use."""
        if self._stream is None:
            stream = stream_factory(self._streams).open_output(self.sample_rate, self.blocksize, self.device, self._fill)
            stream.start()
            self._stream = stream

    def play(self, audio: np.ndarray, sample_rate: int, *,
             on_sound: Callable[[float], None] | None = None) -> None:
        """Queue (T,) float32 audio at ``sample_rate`` behind what is already playing.

        ``on_sound(t)`` is called once, on the output stream's thread, with the
        ``time.perf_counter()`` at which the clip's first non-zero sample was handed to the
        speaker (never, when the clip is stopped before). Keep it short.
        """
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if sample_rate != self.sample_rate and audio.size:
            import soxr

            audio = soxr.resample(audio, sample_rate, self.sample_rate).astype(np.float32)
        self.open()
        if audio.size == 0:
            return
        with self._lock:
            self._clips.append(_Clip(audio, on_sound))
            self._idle.clear()

    def _fill(self, n: int) -> np.ndarray:
        """The stream callback: the next (n,) samples, zeros when nothing is queued."""
        out = np.zeros(n, np.float32)
        filled = 0
        sounded: list[Callable[[float], None]] = []
        with self._lock:
            while filled < n and self._clips:
                clip = self._clips[0]
                take = min(n - filled, len(clip.samples) - self._pos)
                part = clip.samples[self._pos:self._pos + take]  # (take,)
                out[filled:filled + take] = part
                if clip.on_sound is not None and np.any(part):
                    sounded.append(clip.on_sound)
                    clip.on_sound = None
                filled += take
                self._pos += take
                if self._pos >= len(clip.samples):
                    self._clips.popleft()
                    self._pos = 0
            if not self._clips:
                self._idle.set()
        if sounded:
            now = time.perf_counter()
            for callback in sounded:
                callback(now)
        self._remember(out)
        return out

    def _remember(self, out: np.ndarray) -> None:
        if self.sample_rate != SAMPLE_RATE:
            idx = np.arange(0, len(out), self.sample_rate / SAMPLE_RATE).astype(int)  # decimate for level tracking only
            small = out[idx[idx < len(out)]]
        else:
            small = out
        h = self._history
        k = min(len(small), len(h))
        h[:-k] = h[k:]
        h[-k:] = small[-k:]
        self.played_samples += len(out)
        if np.any(np.abs(out) > 1e-4):
            self.last_sound = time.monotonic()

    def recent(self, n: int) -> np.ndarray:
        """The last ``n`` samples sent to the speaker, at 16 kHz (for echo gating)."""
        return self._history[-n:].copy()

    @property
    def is_playing(self) -> bool:
        """Audio is queued or was audible within the last 300 ms (the room's echo tail)."""
        return not self._idle.is_set() or time.monotonic() - self.last_sound < 0.3

    def stop(self) -> None:
        """Silence now: drop the clip in progress and everything queued."""
        with self._lock:
            self._clips.clear()
            self._pos = 0
            self._idle.set()
            self.last_sound = 0.0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued clip has played (True) or the timeout passed (False)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self.stop()
        stream, self._stream = self._stream, None
        close_stream(stream)


_default_player: Player | None = None
_default_lock = threading.Lock()


def play(samples: np.ndarray, sample_rate: int, stop: threading.Event | None = None,
         device: int | str | None = None, streams: StreamFactory | None = None) -> None:
    """Play ``samples`` and block until done or ``stop`` is set (raises DeviceError without a speaker)."""
    global _default_player
    with _default_lock:
        if _default_player is None or _default_player.sample_rate != sample_rate or streams is not None:
            if _default_player is not None:
                _default_player.close()
            _default_player = Player(streams=streams, device=device, sample_rate=sample_rate)
        player = _default_player
    player.play(samples, sample_rate)
    while not player.wait(0.05):
        if stop is not None and stop.is_set():
            player.stop()
            return


def stop_playback() -> None:
    """Stop what :func:`play` is playing."""
    if _default_player is not None:
        _default_player.stop()

