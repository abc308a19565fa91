"""Spoken replies: :class:`SpeechOutput` turns streamed reply text into speech, sentence by
sentence, while the generator is still writing; :class:`SpokenReply` is what it returns."""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from assistant.errors import DeviceError, first_line
from assistant.voice.devices import StreamFactory
from assistant.voice.playback import Player


@dataclass
class ReplyTimeline:
    """When one spoken reply reached each milestone: ``time.perf_counter()`` values, None when
    not (yet) reached. The talk loop and the latency benchmark read these."""

    first_text: float | None = None
    """The first chunk of reply text was fed (the generator's first token)."""
    first_sentence: float | None = None
    """The first complete sentence went to synthesis."""
    first_audio: float | None = None
    """The first sentence was synthesized."""
    heard_from: float | None = None
    """The reply was allowed to be heard (see :meth:`SpeechOutput.hold_until`); None: from the start."""
    first_sound: float | None = None
    """The first non-zero sample of the reply was handed to the speaker (see ``Player.play``)."""


@dataclass
class SpokenReply:
    """What :meth:`SpeechOutput.end` returns."""

    audio: np.ndarray
    sample_rate: int
    sentences: list[str] = field(default_factory=list)
    first_audio_s: float | None = None
    """Seconds from the first ``feed`` to the first sentence's audio being ready to play."""
    synth_s: float = 0.0
    """Seconds spent synthesizing."""
    path: Path | None = None
    """The WAV file written when there was no output device."""
    stopped: bool = False
    timeline: ReplyTimeline = field(default_factory=ReplyTimeline)


class SpeechOutput:
    """Streams a reply into speech: text chunks in, sentences synthesized and played in order.

    Synthesis runs on a worker thread so that ``feed`` (called from the generator's loop)
    never waits for audio. Without an output device the reply goes to a WAV file (``on_notice``
    gets one line with the path); ``play=False`` never opens a device (audio is only kept).
    ``on_sentence(text)`` is called (on the synthesis thread) as each sentence goes to the
    speaker. ``timeline`` is the reply in progress's :class:`ReplyTimeline`; ``last_spoken`` is
    the :class:`SpokenReply` that :meth:`end` returned last.

    ``first_sentence_first``: the ``feed`` that completes the reply's first sentence returns
    only once that sentence is synthesized (at most ``max_hold_s``). A generator that yields
    chunks pauses meanwhile, so on a small CPU it does not slow down the synthesis the
    listener is waiting for; the rest of the reply has the first sentence's playing time to
    catch up.

    :meth:`hold_until` (before the first ``feed``) lets a reply be prepared before it may be
    heard: sentences are synthesized as usual, and the first goes to the speaker once the
    event is set (or the reply is stopped).
    """

    def __init__(self, synthesizer: Any, *, streams: StreamFactory | None = None, device: int | str | None = None,
                 play: bool = True, fallback_dir: str | Path | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 on_sentence: Callable[[str], None] | None = None, gap_s: float = 0.12,
                 first_sentence_first: bool = False, max_hold_s: float = 2.0) -> None:
        from models.speech.text import SentenceStream

        self.synthesizer = synthesizer
        self.sample_rate = int(synthesizer.sample_rate)
        self._SentenceStream = SentenceStream
        self.player: Player | None = Player(streams=streams, device=device, sample_rate=self.sample_rate) if play else None
        self._device_error: str | None = None
        self.fallback_dir = Path(fallback_dir) if fallback_dir else None
        self.on_notice = on_notice or (lambda msg: print(msg, file=sys.stderr))
        self.on_sentence = on_sentence
        self.gap = np.zeros(int(gap_s * self.sample_rate), np.float32)
        self.first_sentence_first, self.max_hold_s = first_sentence_first, max_hold_s
        self._jobs: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._synth_loop, name="synesthesia-tts", daemon=True)
        self._worker.start()
        self.last_spoken: SpokenReply | None = None
        self._gate: threading.Event | None = None
        self._begin_turn()

    def _begin_turn(self) -> None:
        self._splitter = self._SentenceStream()
        self._parts: list[np.ndarray] = []
        self._sentences: list[str] = []
        self.timeline = ReplyTimeline()
        self._synth_s = 0.0
        self._stopped = threading.Event()
        self._pending = 0
        self._done = threading.Condition()

    # -- the worker

    def _synth_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            sentence, stopped, timeline, gate = job
            try:
                if stopped.is_set():
                    continue
                t = time.perf_counter()
                audio = self.synthesizer.synthesize(sentence)  # (T,) float32
                self._synth_s += time.perf_counter() - t
                if stopped.is_set() or audio.size == 0:
                    continue
                if timeline.first_audio is None:
                    timeline.first_audio = time.perf_counter()
                self._parts += [audio, self.gap]
                self._sentences.append(sentence)
                if self.on_sentence:
                    self.on_sentence(sentence)
                if gate is not None and not gate.is_set():
                    while not gate.wait(0.005) and not stopped.is_set():
                        pass
                    if stopped.is_set():
                        continue
                    timeline.heard_from = time.perf_counter()
                self._to_speaker(audio, timeline)
            except Exception as e:  # a failed sentence must not kill the worker
                self.on_notice(f"speech synthesis failed: {first_line(e)}")
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def _to_speaker(self, audio: np.ndarray, timeline: ReplyTimeline) -> None:
        if self.player is None or self._device_error:
            return

        def sounded(t: float) -> None:
            if timeline.first_sound is None:
                timeline.first_sound = t

        try:
            self.player.play(audio, self.sample_rate, on_sound=sounded)
        except DeviceError as e:
            self._device_error = str(e)

    # -- the caller's side

    def hold_until(self, event: threading.Event | None) -> None:
        """The next reply is not heard before ``event`` is set (None: no hold); call before its first ``feed``."""
        self._gate = event

    def feed(self, chunk: str) -> None:
        """Add streamed reply text; finished sentences start speaking now."""
        if self.timeline.first_text is None:
            if self._stopped.is_set() and self._pending <= 0:
                self._begin_turn()  # stopped before this reply began: the stop was for an earlier one
            self.timeline.first_text = time.perf_counter()
        if self._stopped.is_set():
            return
        first = self.timeline.first_sentence is None
        for sentence in self._splitter.feed(chunk):
            self._submit(sentence)
        if first and self.first_sentence_first and self.timeline.first_sentence is not None:
            self._hold_for_first_audio()

    def _hold_for_first_audio(self) -> None:
        timeline, stopped = self.timeline, self._stopped
        deadline = time.monotonic() + self.max_hold_s
        with self._done:
            self._done.wait_for(lambda: timeline.first_audio is not None or stopped.is_set()
                                or self._pending <= 0 or time.monotonic() > deadline, self.max_hold_s)

    def _submit(self, sentence: str) -> None:
        if self.timeline.first_sentence is None:
            self.timeline.first_sentence = time.perf_counter()
        with self._done:
            self._pending += 1
        self._jobs.put((sentence, self._stopped, self.timeline, self._gate))

    def speak(self, text: str, *, wait: bool = True) -> SpokenReply:
        """Speak a whole text (markdown allowed); returns like :meth:`end`."""
        self.feed(text)
        return self.end(wait=wait)

    def end(self, *, wait: bool = True, timeout: float | None = None) -> SpokenReply:
        """The reply is complete: speak the rest; with ``wait``, block until it has played.

        Returns the whole spoken audio. Without an output device it is written to a WAV file
        and ``on_notice`` says where. The next ``feed`` starts a new reply.
        """
        if not self._stopped.is_set():
            for sentence in self._splitter.flush():
                self._submit(sentence)
        with self._done:
            self._done.wait_for(lambda: self._pending <= 0, timeout)
        if wait and self.player is not None and not self._device_error:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._stopped.is_set():
                if self.player.wait(0.05):
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
        parts = self._parts[:-1] if self._parts else []
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        t = self.timeline
        first = t.first_audio - t.first_text if t.first_audio is not None and t.first_text is not None else None
        reply = SpokenReply(audio=audio, sample_rate=self.sample_rate, sentences=list(self._sentences),
                            first_audio_s=first, synth_s=self._synth_s, stopped=self._stopped.is_set(), timeline=t)
        if self._device_error and audio.size:
            reply.path = self._write_fallback(audio)
            self.on_notice(f"{self._device_error.split(';')[0]}; spoken reply written to {reply.path}")
        self.last_spoken = reply
        self._gate = None
        self._begin_turn()
        return reply

    def _write_fallback(self, audio: np.ndarray) -> Path:
        import soundfile as sf

        folder = self.fallback_dir
        if folder is None:
            from assistant.paths import data_dir

            folder = data_dir() / "spoken"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("reply-%Y%m%d-%H%M%S.wav")
        n = 1
        while path.exists():
            path = folder / time.strftime(f"reply-%Y%m%d-%H%M%S-{n}.wav")
            n += 1
        sf.write(str(path), audio, self.sample_rate, subtype="PCM_16")
        return path

    def stop(self) -> None:
        """Silence now (any thread): queued sentences are dropped, the rest of the reply too."""
        self._stopped.set()
        if self.player is not None:
            self.player.stop()

    @property
    def speaking(self) -> bool:
        return self._pending > 0 or (self.player is not None and self.player.is_playing)

    def close(self) -> None:
        self.stop()
        self._jobs.put(None)
        if self.player is not None:
            self.player.close()
