"""Listening: :class:`Listener` turns the microphone into utterances (toggle-to-talk or
continuous), with VAD end of turn, pre-roll, recognition while the user speaks, barge-in
while the assistant talks, and per-utterance timings.

End of turn
-----------
Speech ends the turn after ``voice.end_silence_ms`` of silence, or sooner: after
``voice.quick_end_ms`` of silence when the recognizer's transcript of what was said so far
(``stream.partial()``, decoded speculatively as soon as the user paused) already reads as a
finished request (:func:`models.speech.endpoint.looks_complete`). :class:`UtteranceTimings`
records which rule ended it and when.
"""

from __future__ import annotations

import collections
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from assistant.errors import DeviceError, InputError
from assistant.voice.barge_in import BargeIn
from assistant.voice.devices import FRAME, SAMPLE_RATE, Stream, StreamFactory, close_stream, stream_factory
from assistant.voice.playback import Player
from models.speech.endpoint import looks_complete


def _level(block: np.ndarray) -> float:
    """(n,) -> loudness in 0..1 (-60 dBFS .. 0 dBFS), for a meter."""
    rms = float(np.sqrt(np.mean(np.square(block)))) if block.size else 0.0
    db = 20 * math.log10(max(rms, 1e-6))
    return min(1.0, max(0.0, (db + 60) / 60))


@dataclass
class UtteranceTimings:
    """When one utterance passed each step: ``time.perf_counter()`` values (None: not reached).

    Frame times are the arrival of the audio block that carried the frame, so they do not
    include the listener's own processing lag.
    """

    speech_start: float | None = None
    speech_end: float | None = None
    """Arrival of the last frame the VAD judged to be speech."""
    turn_end: float | None = None
    """The listener declared the turn over."""
    transcript: float | None = None
    """The transcript was ready."""
    quiet: float | None = None
    """The reply may be heard from now: the turn end, or for an "early" one the moment its
    pause reached ``quick_end_ms``."""
    rule: str = ""
    """What ended it: "early" (a complete-looking request after ``early_answer_ms`` of silence,
    confirmed later), "quick" (a short pause after a complete-looking request), "silence"
    (``end_silence_ms``), "stop" (listening was stopped), "max" (``max_utterance_s``),
    "device" (the microphone died mid-utterance)."""

    @property
    def end_of_turn_wait(self) -> float | None:
        return _span(self.speech_end, self.turn_end)

    @property
    def recognition_tail(self) -> float | None:
        return _span(self.turn_end, self.transcript)


def _span(a: float | None, b: float | None) -> float | None:
    return b - a if a is not None and b is not None else None


def _already_set() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class Utterance:
    """What ``on_heard`` receives: the audio, its transcript and its timings."""

    audio: np.ndarray
    """(T,) float32 16 kHz."""
    text: str
    timings: UtteranceTimings = field(default_factory=UtteranceTimings)
    quiet: threading.Event = field(default_factory=_already_set)
    """Set once the reply may be heard. An "early" utterance was delivered after a short pause
    and is answered at once, but its reply waits for this: the pause reaching ``quick_end_ms``.
    If the user speaks on instead, it is set only after their next utterance was delivered
    (which supersedes the reply), or once they fall silent again without one."""


class Listener:
    """Microphone -> utterances, with toggle-to-talk, VAD end of turn, pre-roll and barge-in.

    Arguments (all keyword except ``settings``; explicit values win over settings):

    * ``settings``: :class:`assistant.config.Settings` (uses the ``voice`` section), or None;
    * ``recognizer``: an object with ``transcribe((T,) float32) -> str``; without it,
      ``on_transcript`` is not called (use ``on_utterance`` or :meth:`listen`);
    * ``streams``/``device``: the stream factory and input device (name or index);
    * ``on_level(float)``, ``on_transcript(str)``, ``on_heard(Utterance)``,
      ``on_utterance((T,) float32)``, ``on_state(str)``, ``on_error(str)``, ``on_barge_in()``;
    * ``player``: a :class:`Player`; while it plays the microphone only listens for barge-in
      (see :mod:`assistant.voice.barge_in`), or not at all with ``barge_in=False``;
    * ``continuous``: keep listening after an utterance (for barge-in and hands-free use);
      default False: one utterance per toggle.
    * ``early_answer_ms`` (continuous only): deliver a complete-looking request after this
      much silence, before ``quick_end_ms``; :attr:`Utterance.quiet` says when its reply may
      be heard (the caller holds the reply until then; see the talk loop).
    * ``inline``: process audio on the stream's callback thread (tests, fakes); default False
      processes it on a worker thread so the audio callback never blocks.
    * ``stream_recognition``: when the recognizer has ``stream()``, decode while the user is
      still speaking, so the transcript is ready soon after they stop.
    * ``stall_s``: on the worker thread, a microphone that delivers nothing for this long is
      treated as unplugged (None: never).

    A microphone that dies mid-utterance (the stream factory's ``on_error``, or a stall) never
    raises: what was said so far is delivered as the utterance, or dropped when too short,
    and ``on_error`` gets one line saying which.
    """

    def __init__(self, settings: Any = None, *, recognizer: Any = None, vad: Any = None,
                 streams: StreamFactory | None = None, device: int | str | None = None,
                 end_silence_ms: int | None = None, quick_end_ms: int | None = None, preroll_ms: int | None = None,
                 early_answer_ms: int | None = None,
                 threshold: float | None = None, max_utterance_s: float = 60.0,
                 on_level: Callable[[float], None] | None = None,
                 on_transcript: Callable[[str], None] | None = None,
                 on_heard: Callable[[Utterance], None] | None = None,
                 on_utterance: Callable[[np.ndarray], None] | None = None,
                 on_state: Callable[[str], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 player: Player | None = None, on_barge_in: Callable[[], None] | None = None,
                 barge_in: bool | None = None,
                 barge_in_threshold: float | None = None, barge_in_ms: int | None = None,
                 barge_in_margin_db: float | None = None,
                 continuous: bool = False, inline: bool = False, samplerate: int = SAMPLE_RATE,
                 stream_recognition: bool = True, stall_s: float | None = 2.0) -> None:
        from models.speech.vad import EndOfSpeech

        from assistant.config import VoiceSettings

        vs = getattr(settings, "voice", None) or VoiceSettings()  # defaults live in config only
        self.recognizer = recognizer
        self.device = device if device is not None else vs.input_device
        end_ms = end_silence_ms if end_silence_ms is not None else vs.end_silence_ms
        quick_ms = quick_end_ms if quick_end_ms is not None else vs.quick_end_ms
        pre_ms = preroll_ms if preroll_ms is not None else vs.preroll_ms
        self.threshold = threshold if threshold is not None else vs.vad_threshold
        if end_ms <= 0 or pre_ms < 0 or quick_ms < 0:
            raise InputError("voice: end_silence_ms must be positive, quick_end_ms and preroll_ms not negative")
        self._vad = vad
        self._end = EndOfSpeech(self.threshold, end_silence_ms=end_ms)
        self.end_silence_ms, self.quick_end_ms, self.preroll_ms = int(end_ms), int(quick_ms), int(pre_ms)
        self._quick_frames = max(1, round(quick_ms * SAMPLE_RATE / 1000 / FRAME)) if quick_ms else None
        early_ms = early_answer_ms if early_answer_ms is not None else vs.early_answer_ms
        self.early_answer_ms = int(early_ms) if continuous and quick_ms and 0 < early_ms < quick_ms else 0
        self._early_frames = max(1, round(self.early_answer_ms * SAMPLE_RATE / 1000 / FRAME)) if self.early_answer_ms else None
        self._unconfirmed: tuple[threading.Event, UtteranceTimings] | None = None  # an early turn's pause, watched
        self._quiet_run = 0  # silent frames since that turn's speech ended
        self._spoke_on = False  # the user started speaking again during that pause
        self._last_quiet: tuple[threading.Event, UtteranceTimings] | None = None  # the last utterance delivered
        self._preroll: collections.deque[np.ndarray] = collections.deque(maxlen=max(0, round(pre_ms * SAMPLE_RATE / 1000 / FRAME)))
        self.max_frames = int(max_utterance_s * SAMPLE_RATE / FRAME)
        self.barge_in = vs.barge_in if barge_in is None else bool(barge_in)
        self._barge_options = dict(
            threshold=barge_in_threshold if barge_in_threshold is not None else vs.barge_in_threshold,
            min_ms=barge_in_ms if barge_in_ms is not None else vs.barge_in_ms,
            margin_db=barge_in_margin_db if barge_in_margin_db is not None else vs.barge_in_margin_db,
            preroll_ms=pre_ms,
        )
        self._barge: BargeIn | None = None
        self.streams, self.samplerate, self.stall_s = streams, int(samplerate), stall_s
        self.on_level, self.on_transcript, self.on_heard, self.on_utterance = on_level, on_transcript, on_heard, on_utterance
        self.on_state, self.on_error, self.on_barge_in = on_state, on_error, on_barge_in
        self.player, self.continuous, self.inline = player, continuous, inline
        self.stream_recognition = stream_recognition
        self._rstream = None  # the recognizer's stream for the utterance in progress
        self._stream: Stream | None = None
        self._queue: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self._resampler = None
        self._reset_capture()
        self.listening = False
        self._result: np.ndarray | None = None
        self._finished = threading.Event()
        self._last_block = 0.0
        self.barge_ins = 0
        self.last: Utterance | None = None
        """The last utterance delivered with its transcript (and timings)."""
        self.state = "idle"

    # -- state

    def _reset_capture(self) -> None:
        self._buffer = np.zeros(0, np.float32)  # samples waiting to fill a VAD frame
        self._utterance: list[np.ndarray] = []
        self._in_speech = False
        self._silent_run = 0  # trailing frames of the utterance the VAD judged silent
        self._timings = UtteranceTimings()

    def _set_state(self, state: str) -> None:
        self.state = state
        if self.on_state:
            self.on_state(state)

    @property
    def vad(self):
        if self._vad is None:
            from models.speech.vad import SileroVAD

            self._vad = SileroVAD(threshold=min(self.threshold, 0.95))
        return self._vad

    # -- control

    def toggle(self) -> bool:
        """Start listening if idle, else stop (transcribing what was said). Returns the new state."""
        if self.listening:
            self.stop()
        else:
            self.start()
        return self.listening

    def start(self) -> None:
        """Open the microphone and listen (raises DeviceError without one)."""
        with self._lock:
            if self.listening:
                return
            _ = self.vad  # load the model before audio flows
            self.vad.reset()
            self._end.reset()
            self._drop_recognition()
            self._reset_capture()
            self._preroll.clear()
            self._finished.clear()
            self._result = None
            if self.samplerate != SAMPLE_RATE:
                import soxr

                self._resampler = soxr.ResampleStream(self.samplerate, SAMPLE_RATE, 1, dtype="float32")
            blocks: queue.Queue = queue.Queue()  # one per session: a finished worker never eats the next one's blocks
            self._queue = blocks

            def on_block(block: np.ndarray) -> None:
                self._last_block = t = time.perf_counter()
                if self.inline:
                    self._process(block, t)
                else:
                    blocks.put(("audio", block, t))

            def on_error(line: str) -> None:
                if self.inline:
                    self._device_lost(line)
                else:
                    blocks.put(("lost", line, time.perf_counter()))

            blocksize = FRAME if self.samplerate == SAMPLE_RATE else 1024
            stream = stream_factory(self.streams).open_input(self.samplerate, blocksize, self.device, on_block, on_error)
            self.listening = True
            self._last_block = time.perf_counter()
            if not self.inline:
                self._worker = threading.Thread(target=self._work, args=(blocks,), name="synesthesia-listen", daemon=True)
                self._worker.start()
            self._stream = stream
            self._set_state("listening")
        try:
            stream.start()
        except Exception as e:  # PortAudio can refuse a device it just opened
            self.stop(transcribe=False)
            if isinstance(e, DeviceError):
                raise
            raise DeviceError(f"cannot start the microphone ({e}); pick one with --device (see `assistant devices`)") from e

    def stop(self, transcribe: bool = True) -> None:
        """Stop listening; with ``transcribe``, what was captured of an utterance is transcribed."""
        with self._lock:
            if not self.listening:
                return
            self.listening = False
            stream, self._stream = self._stream, None
        close_stream(stream)
        if not self.inline and self._worker is not None:
            self._queue.put(None)
            if threading.current_thread() is not self._worker:
                self._worker.join(timeout=5)
            self._worker = None
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)
        timings = self._timings
        self._reset_capture()
        self._release_pause()
        if transcribe and audio.size:
            timings.turn_end, timings.rule = time.perf_counter(), "stop"
            self._deliver(audio, timings)
        else:
            self._drop_recognition()
            self._finish(audio)
        self._set_state("idle")

    def listen(self, timeout: float | None = None) -> np.ndarray:
        """Blocking: listen until end of speech (or :meth:`stop`); the utterance, 16 kHz float32."""
        self.start()
        if not self._finished.wait(timeout):
            self.stop(transcribe=False)
        return self._result if self._result is not None else np.zeros(0, np.float32)

    # -- audio path

    def _work(self, blocks: queue.Queue) -> None:
        """The worker: VAD and decoding off the audio callback; ends with its session."""
        while True:
            try:
                item = blocks.get(timeout=0.25)
            except queue.Empty:
                if blocks is not self._queue or not self.listening:
                    return  # the utterance ended (or a new session started)
                if self.stall_s is not None and time.perf_counter() - self._last_block > self.stall_s:
                    self._device_lost(f"the microphone delivered no audio for {self.stall_s:g} s (unplugged?)")
                    return
                continue
            if item is None:
                return
            kind, payload, t = item
            try:
                if kind == "lost":
                    self._device_lost(payload)
                    return
                self._process(payload, t)
            except Exception as e:  # never die silently on the worker
                if self.on_error:
                    self.on_error(f"listening failed: {e}")
                else:
                    raise

    def _process(self, block: np.ndarray, t: float | None = None) -> None:
        """One block from the microphone: (n,) float32 at ``samplerate``, arrived at ``t``."""
        if not self.listening:
            return
        t = time.perf_counter() if t is None else t
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        buf = np.concatenate([self._buffer, block]) if self._buffer.size else block
        n = len(buf) // FRAME
        for i in range(n):
            self._frame(buf[i * FRAME:(i + 1) * FRAME], t)  # (512,)
            if not self.listening:
                return
        self._buffer = buf[n * FRAME:].copy()

    def _frame(self, frame: np.ndarray, t: float) -> None:
        if self.on_level:
            self.on_level(_level(frame))
        p = self.vad.frame_probability(frame)
        if self.player is not None and self.player.is_playing:
            self._while_playing(frame, p, t)
            return
        if self._barge is not None:
            self._barge.reset()
        speech = p >= self._end.low  # the end detector's hysteresis: below ``low`` counts as silence
        event = self._end.update(p)
        if self._unconfirmed is None and event == "start" and self.continuous and self._last_quiet is not None:
            # The user speaks again before the last reply was heard: hold it until this speech is
            # delivered (it supersedes that reply) or dropped as too short (then it is heard).
            self._last_quiet[0].clear()
            self._unconfirmed, self._quiet_run = self._last_quiet, 0
        if self._unconfirmed is not None:
            self._watch_pause(speech, event, t)
        if event == "start":
            self._begin_utterance(list(self._preroll) + [frame], t)
        elif self._in_speech:
            self._utterance.append(frame)
            self._silent_run = 0 if speech else self._silent_run + 1
            if speech:
                self._timings.speech_end = t
            if self._rstream is not None:
                self._rstream.feed(frame, speech=speech)
            if event == "cancel":  # a click or a cough: too short to be speech
                self._in_speech = False
                self._utterance = []
                self._drop_recognition()
                self._set_state("listening")
            elif event == "end":
                self._end_turn("silence")
            elif len(self._utterance) >= self.max_frames:
                self._end_turn("max")
            elif self._complete_after_pause(self._quick_frames):
                self._end_turn("quick")
            elif self._complete_after_pause(self._early_frames):
                self._end_turn("early")
        self._preroll.append(frame)

    def _complete_after_pause(self, frames: int | None) -> bool:
        """``frames`` of silence, and the transcript so far reads as a finished request."""
        e = self._end
        if frames is None or self._rstream is None:
            return False
        if self._silent_run < frames or e.speech_frames < e.min_frames:
            return False
        partial = getattr(self._rstream, "partial", None)
        text = partial() if partial is not None else None
        return bool(text) and looks_complete(text)

    def _watch_pause(self, speech: bool, event: str | None, t: float) -> None:
        """After an early turn end: is the pause long enough for its reply to be heard?"""
        if event == "start":
            self._spoke_on = True  # decided when that speech is delivered, or dropped as too short
        elif event == "cancel":
            self._spoke_on, self._quiet_run = False, 0
        if self._spoke_on:
            return
        self._quiet_run = 0 if speech else self._quiet_run + 1
        if self._quick_frames is not None and self._quiet_run >= self._quick_frames:
            if self._unconfirmed[1].quiet is None:
                self._unconfirmed[1].quiet = t
            self._release_pause()

    def _release_pause(self) -> None:
        pending, self._unconfirmed, self._spoke_on = self._unconfirmed, None, False
        if pending is not None:
            pending[0].set()

    def _while_playing(self, frame: np.ndarray, p: float, t: float) -> None:
        """The assistant is talking: only barge-in is listened for (nothing, with barge_in off)."""
        self._end.reset()
        if self._in_speech:  # an utterance that began before the reply did is dropped
            self._in_speech = False
            self._utterance = []
            self._drop_recognition()
        if not self.barge_in:
            return
        if self._barge is None or self._barge.player is not self.player:
            self._barge = BargeIn(self.player, **self._barge_options)
        captured = self._barge.update(frame, p)  # None, or (T,) the user's speech with its pre-roll
        if captured is None:
            return
        self.barge_ins += 1
        self.player.stop()
        self._preroll.clear()
        if self.on_barge_in:
            self.on_barge_in()
        # What the user is saying is captured as the next utterance, from its first word.
        self._begin_utterance([captured], t)
        self._end.update(1.0)
        self._end.speech_frames = max(self._end.speech_frames, len(captured) // FRAME)

    def _begin_utterance(self, chunks: list[np.ndarray], t: float) -> None:
        self._in_speech = True
        self._utterance = list(chunks)
        self._silent_run = 0
        self._timings = UtteranceTimings(speech_start=t, speech_end=t)
        self._open_recognition(np.concatenate(self._utterance))
        self._set_state("speech")

    def _open_recognition(self, audio: np.ndarray) -> None:
        """Recognize while the user speaks when the recognizer can stream: at the end of
        speech only the last moments remain to decode."""
        self._drop_recognition()
        wants_text = self.on_transcript is not None or self.on_heard is not None
        if self.stream_recognition and wants_text and callable(getattr(self.recognizer, "stream", None)):
            self._rstream = self.recognizer.stream()
            self._rstream.feed(audio, speech=True)

    def _drop_recognition(self) -> None:
        stream, self._rstream = self._rstream, None
        if stream is not None:
            stream.cancel()

    def _end_turn(self, rule: str) -> None:
        self._timings.turn_end, self._timings.rule = time.perf_counter(), rule
        timings = self._timings
        audio = np.concatenate(self._utterance)
        # Trim the trailing silence that ended the utterance, keeping 200 ms of it.
        keep = len(audio) - max(0, self._silent_run * FRAME - int(0.2 * SAMPLE_RATE))
        audio = audio[:max(keep, FRAME)]
        self._end.reset()
        self._in_speech = False
        self._utterance = []
        quiet = threading.Event()
        if rule == "early":  # watched from the next frame on: _watch_pause
            previous, self._unconfirmed = self._unconfirmed, (quiet, timings)
            self._last_quiet = self._unconfirmed
            self._quiet_run, self._spoke_on = self._silent_run, False
        else:
            previous, self._unconfirmed = self._unconfirmed, None
            self._last_quiet = (quiet, timings)
            timings.quiet = timings.turn_end
            quiet.set()
        if self.continuous:
            self._deliver(audio, timings, quiet)
            self._set_state("listening")
        else:
            self.listening = False  # stop() from the worker thread below
            stream, self._stream = self._stream, None
            if stream is not None:
                threading.Thread(target=close_stream, args=(stream,), daemon=True).start()
            self._reset_capture()
            self._deliver(audio, timings, quiet)
            self._set_state("idle")
        if previous is not None:  # the user spoke on after an early turn: this utterance (delivered) supersedes it
            previous[0].set()

    def _device_lost(self, reason: str) -> None:
        """The microphone died: keep what was said (long enough to be speech) or drop it, with a notice."""
        with self._lock:
            if not self.listening:
                return
            self.listening = False
            stream, self._stream = self._stream, None
        threading.Thread(target=_close_quietly, args=(stream,), daemon=True).start()
        speaking = self._in_speech
        kept = speaking and self._end.speech_frames >= self._end.min_frames
        audio = np.concatenate(self._utterance) if kept else np.zeros(0, np.float32)
        timings = self._timings
        self._end.reset()
        self._reset_capture()
        self._release_pause()
        if self.on_error:
            what = ("kept what was said so far" if kept else
                    "what was said was too short to keep" if speaking else "listening stopped")
            self.on_error(f"{reason}; {what}")
        if kept:
            timings.turn_end, timings.rule = time.perf_counter(), "device"
            self._deliver(audio, timings)
        else:
            self._drop_recognition()
            self._finish(audio)
        self._set_state("idle")

    def _deliver(self, audio: np.ndarray, timings: UtteranceTimings, quiet: threading.Event | None = None) -> None:
        self._finish(audio)
        if self.on_utterance:
            self.on_utterance(audio)
        if self.recognizer is None or (self.on_transcript is None and self.on_heard is None):
            self._drop_recognition()
            return
        self._set_state("transcribing")
        stream, self._rstream = self._rstream, None
        try:
            text = stream.finish() if stream is not None else self.recognizer.transcribe(audio)
        except Exception as e:
            if self.on_error:
                self.on_error(f"speech recognition failed: {e}")
                return
            raise
        timings.transcript = time.perf_counter()
        self.last = Utterance(audio, text.strip(), timings, quiet=quiet if quiet is not None else _already_set())
        if self.on_transcript:
            self.on_transcript(self.last.text)
        if self.on_heard:
            self.on_heard(self.last)

    def _finish(self, audio: np.ndarray) -> None:
        self._result = audio
        self._finished.set()


def _close_quietly(stream: Stream | None) -> None:
    try:
        close_stream(stream)
    except Exception:  # a device that is gone may fail to close as well
        pass
