"""Barge-in: the user talking over a spoken reply interrupts it; the assistant's own voice does not.

:class:`BargeIn` looks at each microphone frame while the assistant is speaking and decides
whether it is the user (interrupt) or the speaker's sound coming back into the microphone
(ignore). When it fires it hands back the user's speech so far, with the pre-roll before it,
so the listener captures the interruption as the next utterance without losing its first word.
:func:`connect_barge_in` wires a :class:`~assistant.voice.listener.Listener` to a
:class:`~assistant.voice.speech_output.SpeechOutput`.
"""

from __future__ import annotations

import collections
import math
from typing import TYPE_CHECKING, Callable

import numpy as np

from assistant.voice.devices import FRAME, SAMPLE_RATE
from assistant.voice.playback import Player

if TYPE_CHECKING:
    from assistant.voice.listener import Listener
    from assistant.voice.speech_output import SpeechOutput

ECHO_WINDOW_S = 0.3
"""The playback compared with each microphone frame: covers the speaker-to-microphone delay and the room's echo."""
MAX_CAPTURE_S = 3.0
"""At most this much of the interrupting speech (before barge-in fired) is kept."""
WORD_GAP_S = 0.5
"""A candidate whose count runs out keeps its start this long: the pause after a short first
word ("Stop, what is ...") must not cut that word off the speech handed back."""


def _db(x: float) -> float:
    return 20 * math.log10(max(x, 1e-6))


class BargeIn:
    """Is the user talking over the assistant (not its own echo)?

    Call :meth:`update` with every (512,) microphone frame heard while ``player`` is playing,
    and :meth:`reset` when it stops. The reference is the loudest 32 ms of what was sent to the
    speaker over the last 300 ms. ``excess`` is how much louder the microphone is than that;
    the echo gain is the largest excess (90th percentile) in the last 2 s of playback without
    a barge-in candidate, so it adapts to the room and the volume. A frame counts toward
    barge-in when the VAD is confident (``threshold``) and the excess beats the echo gain by
    ``margin_db``; ``min_ms`` of such frames (a leaky count: the gaps between syllables slow
    it down without resetting it) trigger it.
    """

    def __init__(self, player: Player, *, threshold: float = 0.85, min_ms: int = 250, margin_db: float = 4.0,
                 preroll_ms: int = 300) -> None:
        self.player = player
        self.threshold, self.margin_db = float(threshold), float(margin_db)
        self.frames_needed = max(1, round(min_ms * SAMPLE_RATE / 1000 / FRAME))
        self.preroll_frames = max(0, round(preroll_ms * SAMPLE_RATE / 1000 / FRAME))
        max_run = round(MAX_CAPTURE_S * SAMPLE_RATE / FRAME)
        self._echo: collections.deque[float] = collections.deque(maxlen=round(2.0 * SAMPLE_RATE / FRAME))
        self._heard: collections.deque[np.ndarray] = collections.deque(maxlen=self.preroll_frames + max_run)
        self._count = 0.0  # leaky count of user-like frames
        self._run = 0  # frames since the current candidate began (0: no candidate)
        self._gap = 0  # frames since its count ran out
        self.gap_frames = round(WORD_GAP_S * SAMPLE_RATE / FRAME)

    def reset(self) -> None:
        """Playback ended: forget the candidate and the frames heard (the echo level is kept)."""
        self._count = 0.0
        self._run = 0
        self._gap = 0
        self._heard.clear()

    def update(self, frame: np.ndarray, p: float) -> np.ndarray | None:
        """One (512,) microphone frame and its VAD probability -> None, or, when the user
        interrupts, their speech so far with the pre-roll before it: (T,) float32 16 kHz."""
        self._heard.append(frame)
        played = self.player.recent(int(ECHO_WINDOW_S * SAMPLE_RATE))  # (4800,) at 16 kHz
        blocks = played[: len(played) // FRAME * FRAME].reshape(-1, FRAME)  # (9, 512)
        play_rms = float(np.sqrt(np.mean(np.square(blocks), axis=1)).max()) if blocks.size else 0.0
        mic_rms = float(np.sqrt(np.mean(np.square(frame)))) if frame.size else 0.0
        play_db = _db(play_rms)
        excess = _db(mic_rms) - play_db
        if len(self._echo) < 10:  # the first 320 ms of audible playback only teach the echo level
            if play_db > -50:
                self._echo.append(excess)
            return None
        gain = float(np.percentile(self._echo, 90))
        if p >= self.threshold and excess > gain + self.margin_db:
            self._count += 1
        else:
            self._count = max(0.0, self._count - 0.5)
            if self._count == 0 and play_db > -50:  # learn how loud our echo comes back
                self._echo.append(excess)
        self._gap = 0 if self._count > 0 else self._gap + 1
        self._run = self._run + 1 if self._run or self._count > 0 else 0
        if self._gap > self.gap_frames:  # no longer a pause between words: the candidate is over
            self._run = self._gap = 0
        if self._count < self.frames_needed:
            return None
        frames = list(self._heard)[-(self._run + self.preroll_frames):]
        self.reset()
        self._echo.clear()  # the next reply relearns the echo
        return np.concatenate(frames)


def connect_barge_in(listener: Listener, output: SpeechOutput, cancel: Callable[[], None] | None = None) -> None:
    """Let ``listener`` interrupt ``output``: barge-in stops playback and calls ``cancel`` (e.g. bot.cancel).

    The listener keeps listening after each utterance (``continuous``). With
    ``voice.barge_in = false`` (``Listener(barge_in=False)``) the microphone is simply not
    listened to while ``output`` plays, so the assistant never hears itself.
    """
    if output.player is None:
        raise ValueError("barge-in needs a SpeechOutput that plays (play=True)")
    listener.player = output.player
    listener.continuous = True
    previous = listener.on_barge_in

    def interrupt() -> None:
        output.stop()
        if cancel is not None:
            cancel()
        if previous is not None:
            previous()

    listener.on_barge_in = interrupt
