"""Fakes for the voice tests: audio devices, a recognizer, a VAD, a synthesizer and a bot.
Nothing touches a sound card or loads a model.

``FakeStreams`` is a stream factory whose microphone plays back given samples and whose
speaker records what it is sent. ``FakeStreams.run(seconds)`` drives both in lock step, block
by block, as a full-duplex device would: each step the speaker callback is asked for a block,
then the microphone callback receives a block made of the scripted microphone audio plus
``echo`` times what the speaker just played (the assistant's own voice leaking back into the
microphone). ``LiveStreams`` is the same driven by a clock thread (for threaded code);
``unplug()`` kills the microphone mid-stream.

``FakeRecognizer`` returns queued texts and follows the recognition stream protocol
(``feed(audio, speech)``, ``partial()``, ``finish()``, ``cancel()``); ``EnergyVAD`` calls loud
frames speech; ``ToneSynth`` speaks tones; ``FakeBot`` streams scripted replies.
"""

from __future__ import annotations

import threading

import numpy as np


class FakeStream:
    def __init__(self, kind, samplerate, blocksize, device, callback, on_error=None, on_start=None):
        self.kind, self.samplerate, self.blocksize, self.device, self.callback = kind, samplerate, blocksize, device, callback
        self.on_error = on_error
        self.on_start = on_start
        self.started = self.closed = False

    def start(self):
        self.started = True
        if self.on_start is not None:
            self.on_start()

    def stop(self):
        self.started = False

    def close(self):
        self.closed = True


class FakeStreams:
    """A stream factory for tests (see the module docstring)."""

    def __init__(self, mic: np.ndarray | None = None, *, rate: int = 16_000, echo: float = 0.0, echo_delay: int = 0,
                 fail_output: bool = False, fail_input: bool = False):
        self.mic = np.zeros(0, np.float32) if mic is None else np.asarray(mic, np.float32)
        self.rate, self.echo, self.echo_delay = rate, echo, echo_delay
        self.fail_output, self.fail_input = fail_output, fail_input
        self.input: FakeStream | None = None
        self.output: FakeStream | None = None
        self.played: list[np.ndarray] = []
        self._mic_pos = 0
        self._echo_line = np.zeros(echo_delay, np.float32)
        self.input_started = threading.Event()
        """Set when a microphone stream starts (wait on it instead of polling ``input.started``)."""

    def open_input(self, samplerate, blocksize, device, callback, on_error=None):
        if self.fail_input:
            from assistant.errors import DeviceError

            raise DeviceError("no microphone (fake)")
        self.input = FakeStream("input", samplerate, blocksize, device, callback, on_error,
                                on_start=self.input_started.set)
        return self.input

    def unplug(self, reason: str = "the microphone stopped delivering audio (fake unplug)") -> None:
        """The microphone dies: no more blocks, and the stream reports it as PortAudio would."""
        stream = self.input
        if stream is not None and stream.started:
            stream.started = False
            if stream.on_error is not None:
                stream.on_error(reason)

    def open_output(self, samplerate, blocksize, device, callback):
        if self.fail_output:
            from assistant.errors import DeviceError

            raise DeviceError("no audio devices: the PortAudio library is missing (fake)")
        self.output = FakeStream("output", samplerate, blocksize, device, callback)
        return self.output

    def speaker_audio(self) -> np.ndarray:
        return np.concatenate(self.played) if self.played else np.zeros(0, np.float32)

    def step(self, n: int = 512) -> None:
        """One block of ``n`` microphone samples at 16 kHz (and the matching speaker block)."""
        echo_block = np.zeros(n, np.float32)
        if self.output is not None and self.output.started:
            m = round(n * self.output.samplerate / self.rate)
            out = np.asarray(self.output.callback(m), np.float32)
            self.played.append(out)
            if self.echo:
                import soxr

                back = soxr.resample(out, self.output.samplerate, self.rate)[:n] if self.output.samplerate != self.rate else out
                back = np.pad(back, (0, n - len(back)))
                line = np.concatenate([self._echo_line, back])
                echo_block = self.echo * line[:n]
                self._echo_line = line[n:]
        if self.input is not None and self.input.started:
            block = self.mic[self._mic_pos:self._mic_pos + n]
            self._mic_pos += n
            block = np.pad(block, (0, n - len(block))) + echo_block
            self.input.callback(block.astype(np.float32))

    def run(self, seconds: float, n: int = 512) -> None:
        for _ in range(int(seconds * self.rate / n)):
            self.step(n)

    def feed_all(self, n: int = 512, tail_s: float = 1.5) -> None:
        """Push the whole scripted microphone audio plus ``tail_s`` of silence."""
        self.run((len(self.mic) - self._mic_pos) / self.rate + tail_s, n)


class LiveStreams(FakeStreams):
    """:class:`FakeStreams` driven by a thread, ``speed`` times faster than real time, for code
    that runs the devices on threads of its own (the threaded Listener, the talk loop).

    The microphone hears silence (plus the echo) until :meth:`say` queues audio for it.
    ``start()``/``stop()`` run the clock; use it as a context manager.
    """

    def __init__(self, *, speed: float = 4.0, **kw):
        import threading

        super().__init__(**kw)
        self.speed = speed
        self.lock = threading.Lock()
        self._running = threading.Event()
        self._thread = None
        self.steps = 0

    def say(self, audio: np.ndarray) -> None:
        """The microphone hears ``audio`` next, (T,) float32 at 16 kHz."""
        with self.lock:
            self.mic = np.concatenate([self.mic[self._mic_pos:], np.asarray(audio, np.float32)])
            self._mic_pos = 0

    @property
    def saying(self) -> bool:
        """Audio queued by :meth:`say` has not all been heard yet."""
        return self._mic_pos < len(self.mic)

    def start(self) -> "LiveStreams":
        import threading

        self._running.set()
        self._thread = threading.Thread(target=self._clock, daemon=True)
        self._thread.start()
        return self

    def _clock(self) -> None:
        import time

        period = 512 / self.rate / self.speed
        while self._running.is_set():
            with self.lock:
                self.step()
                self.steps += 1
            time.sleep(period)

    def stop(self) -> None:
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "LiveStreams":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FakeRecognitionStream:
    """The recognition stream protocol (see models/speech/base.py) over scripted text."""

    def __init__(self, rec: "FakeRecognizer"):
        self.rec = rec
        self.audio: list[np.ndarray] = []
        self.flags: list[bool] = []
        self.silence = 0  # samples of non-speech fed since the last speech
        self.finished = self.cancelled = False

    def feed(self, audio, speech: bool = True) -> None:
        audio = np.asarray(audio, np.float32).reshape(-1)
        self.audio.append(audio)
        self.flags.append(bool(speech))
        self.silence = 0 if speech else self.silence + len(audio)

    def partial(self):
        """Ready once ``rec.partial_after_s`` of silence was fed (audio time, not wall time)."""
        if not any(self.flags) or self.flags[-1] or self.silence < self.rec.partial_after_s * 16_000:
            return None
        return self.rec.upcoming()

    def finish(self, timeout=None) -> str:
        self.finished = True
        return self.rec._take(np.concatenate(self.audio) if self.audio else np.zeros(0, np.float32))

    def cancel(self) -> None:
        self.cancelled = True


class FakeRecognizer:
    """Returns ``texts`` in order, one per utterance (then ``default``); records what it heard.

    ``stream()`` follows the recognition stream protocol; its ``partial()`` is ready after
    ``partial_after_s`` seconds of silence were fed (None: never).
    """

    name = "fake-asr"

    def __init__(self, *texts: str, default: str = "hello there", partial_after_s: float | None = 0.1,
                 streaming: bool = True):
        from collections import deque

        self.texts = deque(texts)
        self.default = default
        self.partial_after_s = float("inf") if partial_after_s is None else partial_after_s
        self.heard: list[np.ndarray] = []
        self.streams: list[FakeRecognitionStream] = []
        if not streaming:
            self.stream = None  # type: ignore[assignment]

    def upcoming(self) -> str:
        return self.texts[0] if self.texts else self.default

    def _take(self, audio: np.ndarray) -> str:
        self.heard.append(audio)
        return self.texts.popleft() if self.texts else self.default

    def transcribe(self, audio, context=None) -> str:
        return self._take(np.asarray(audio, np.float32))

    def stream(self, context=None) -> FakeRecognitionStream:
        s = FakeRecognitionStream(self)
        self.streams.append(s)
        return s


class EnergyVAD:
    """Speech = loud frames (stands in for Silero where the test audio is noise, not speech)."""

    def reset(self):
        pass

    def frame_probability(self, frame):
        return 1.0 if float(np.sqrt(np.mean(frame ** 2))) > 0.05 else 0.0


class ToneSynth:
    """A synthesizer that says every sentence as ``seconds`` of a steady tone."""

    name = "tone"

    def __init__(self, seconds: float = 0.2, sample_rate: int = 16_000, level: float = 0.25):
        self.seconds, self.sample_rate, self.level = seconds, sample_rate, level
        self.said: list[str] = []

    def synthesize(self, text: str) -> np.ndarray:
        self.said.append(text)
        t = np.arange(int(self.seconds * self.sample_rate)) / self.sample_rate
        return (self.level * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


class FakeBot:
    """The slice of the Assistant the voice loop uses: ``stream``, ``cancel``, ``recognizer``,
    ``synthesizer``, ``settings``. Replies come from ``replies`` in order (then "ok.").

    ``delay``: seconds between words; a reply ``HOLD`` yields nothing until cancelled.
    """

    HOLD = object()

    def __init__(self, *replies, recognizer=None, synthesizer=None, settings=None, delay: float = 0.0):
        import threading
        from collections import deque

        from assistant.config import Settings

        self.replies = deque(replies)
        self.recognizer = recognizer or FakeRecognizer()
        self.synthesizer = synthesizer or ToneSynth()
        self.settings = settings or Settings()
        self.delay = delay
        self.calls: list[str] = []
        self.cancels = 0
        self._cancel = threading.Event()

    def stream(self, text, images=(), audio=(), *, cancel=None):
        import threading
        import time

        self.calls.append(text)
        self._cancel = cancel or threading.Event()
        reply = self.replies.popleft() if self.replies else "ok."
        if reply is FakeBot.HOLD:
            self._cancel.wait(10)
            return
        for word in str(reply).split(" "):
            if self._cancel.is_set():
                return
            if self.delay:
                time.sleep(self.delay)
            yield word + " "

    def cancel(self):
        self.cancels += 1
        self._cancel.set()
