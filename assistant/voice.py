"""Voice in and out: microphone with toggle-to-talk and VAD end of speech, playback, streamed
spoken replies, barge-in. Works without any sound card (tests inject fake streams; the CLI
falls back to files).

Audio devices
-------------
All device access goes through a *stream factory* (:class:`SounddeviceStreams` by default)::

    factory.open_input(samplerate, blocksize, device, callback)   # callback((n,) float32 block)
    factory.open_output(samplerate, blocksize, device, callback)  # callback(n) -> (n,) float32

Each returns a stream with ``start()``, ``stop()`` and ``close()``. Pass any object with those
two methods as ``streams=`` to :class:`Listener`, :class:`Player` or :class:`SpeechOutput` to
run without hardware (see ``tests/voice/fakes.py``). Without PortAudio (``import
sounddevice`` raises OSError) or without a device, opening raises
:class:`~assistant.errors.DeviceError` with one line saying what to install or pass.

Listening (the TUI's microphone button)
---------------------------------------
::

    listener = Listener(settings, recognizer=bot.recognizer,
                        on_level=meter.update,          # 0..1, about 30 times a second
                        on_transcript=submit,            # str, after end of speech
                        on_state=status.set)             # "listening", "speech", "transcribing", "idle"
    listener.toggle()      # press once: start; press again: stop (transcribes what was said)

The utterance ends by itself after ``voice.end_silence_ms`` of silence (Silero VAD), keeping
``voice.preroll_ms`` of audio from before speech began. ``listener.listen()`` is the blocking
form: it starts, waits for the end of speech (or :meth:`Listener.stop`) and returns the
utterance as float32 16 kHz samples. Callbacks run on the listener's worker thread: the TUI
should hop back to its loop (``app.call_from_thread``).

Speaking (streamed replies)
---------------------------
::

    out = SpeechOutput(bot.synthesizer, on_notice=notify)   # opens the speaker lazily
    for chunk in bot.stream(question):
        show(chunk)
        out.feed(chunk)        # complete sentences are synthesized and played at once
    spoken = out.end()         # SpokenReply: audio, sample_rate, sentences, first_audio_s, path
    out.stop()                 # any time, any thread: silence now, drop queued sentences

With no output device the reply is written to a WAV file in the data dir and ``on_notice``
gets one line saying where (``spoken.path``).

Barge-in
--------
``Listener(..., player=out.player, on_barge_in=lambda: (out.stop(), bot.cancel()))`` keeps the
microphone open while the assistant speaks. Speech interrupts playback only when it is
clearly the user's: while audio plays, the VAD threshold rises to ``voice.barge_in_threshold``,
speech must last ``voice.barge_in_ms``, and the microphone level must exceed the level of what
is being played (the known playback samples, scaled by an echo gain learned while the
assistant talks) by ``voice.barge_in_margin_db``. So the assistant's own voice leaking from
the speaker into the microphone does not stop it. :func:`connect_barge_in` wires this up.
"""

from __future__ import annotations

import collections
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from assistant.errors import DeviceError, InputError
from models.speech import speak_text

__all__ = [
    "AudioDevice", "DeviceError", "Listener", "Player", "SpeechOutput", "SpokenReply",
    "SounddeviceStreams", "StreamFactory", "connect_barge_in", "list_devices", "resolve_device",
    "play", "stop_playback", "speak_text", "sounddevice",
]

SAMPLE_RATE = 16_000
FRAME = 512  # Silero VAD frame: 32 ms at 16 kHz

_PORTAUDIO_HINT = (
    "no audio devices: the PortAudio library is missing "
    "(install it: sudo apt-get install libportaudio2, or brew install portaudio); "
    "files still work: --audio FILE for input, -o/--speak FILE for output"
)


def sounddevice():
    """The sounddevice module, or DeviceError with what to install."""
    try:
        import sounddevice as sd
    except OSError as e:  # raised by the import itself when libportaudio is absent
        raise DeviceError(_PORTAUDIO_HINT) from e
    except ImportError as e:
        raise DeviceError("no audio devices: the sounddevice package is missing (pip install sounddevice)") from e
    return sd


# ----------------------------------------------------------------------------- devices


@dataclass
class AudioDevice:
    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool = False
    default_output: bool = False
    hostapi: str = ""


def list_devices(sd: Any = None) -> list[AudioDevice]:
    """Every PortAudio device (raises DeviceError without PortAudio)."""
    sd = sd or sounddevice()
    try:
        devices = sd.query_devices()
        default_in, default_out = (list(sd.default.device) + [-1, -1])[:2]
        apis = [a["name"] for a in sd.query_hostapis()]
    except Exception as e:  # PortAudioError
        raise DeviceError(f"cannot list audio devices: {e}") from e
    out = []
    for i, d in enumerate(devices):
        api = d.get("hostapi", 0)
        out.append(AudioDevice(
            index=i, name=str(d["name"]), inputs=int(d["max_input_channels"]), outputs=int(d["max_output_channels"]),
            default_rate=float(d["default_samplerate"]), default_input=(i == default_in), default_output=(i == default_out),
            hostapi=apis[api] if isinstance(api, int) and 0 <= api < len(apis) else "",
        ))
    return out


def resolve_device(spec: str | int | None, kind: str, devices: list[AudioDevice] | None = None) -> int | None:
    """A device chosen by index or (part of its) name -> its index; None stays the system default.

    ``kind`` is "input" or "output". Raises DeviceError naming the choices when nothing or more
    than one device matches.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    devices = list_devices() if devices is None else devices
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        for d in usable:
            if d.index == index:
                return index
        raise DeviceError(f"{kind} device {index}: no such {kind} device (see `assistant devices`)")
    matches = [d for d in usable if d.name.lower() == text.lower()] or [d for d in usable if text.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0].index
    names = ", ".join(f"{d.index}: {d.name}" for d in (matches or usable)) or "none"
    if not matches:
        raise DeviceError(f"{kind} device {text!r}: not found; {kind} devices are {names}")
    raise DeviceError(f"{kind} device {text!r} is ambiguous: {names}; give the index")


# ----------------------------------------------------------------------------- streams


class Stream(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class StreamFactory(Protocol):
    def open_input(self, samplerate: int, blocksize: int, device: int | str | None,
                   callback: Callable[[np.ndarray], None]) -> Stream: ...

    def open_output(self, samplerate: int, blocksize: int, device: int | str | None,
                    callback: Callable[[int], np.ndarray]) -> Stream: ...


class SounddeviceStreams:
    """Real devices through sounddevice/PortAudio (mono float32)."""

    def __init__(self) -> None:
        self.sd = sounddevice()

    def _device(self, device, kind: str):
        if device is None or isinstance(device, int):
            return device
        return resolve_device(device, kind, list_devices(self.sd))

    def open_input(self, samplerate, blocksize, device, callback):
        def cb(indata, frames, _time, _status):  # indata: (frames, 1) float32
            callback(indata[:, 0].copy())

        try:
            return self.sd.InputStream(samplerate=samplerate, blocksize=blocksize, channels=1, dtype="float32",
                                       device=self._device(device, "input"), callback=cb)
        except DeviceError:
            raise
        except Exception as e:  # sd.PortAudioError, ValueError for bad devices
            raise DeviceError(f"cannot open the microphone ({e}); pick one with --device (see `assistant devices`)") from e

    def open_output(self, samplerate, blocksize, device, callback):
        def cb(outdata, frames, _time, _status):  # outdata: (frames, 1) float32
            outdata[:, 0] = callback(frames)

        try:
            return self.sd.OutputStream(samplerate=samplerate, blocksize=blocksize, channels=1, dtype="float32",
                                        device=self._device(device, "output"), callback=cb)
        except DeviceError:
            raise
        except Exception as e:
            raise DeviceError(f"cannot open the speaker ({e}); pick one with --output-device (see `assistant devices`)") from e


def _close(stream: Stream | None) -> None:
    if stream is not None:
        try:
            stream.stop()
        finally:
            stream.close()


def _factory(streams: StreamFactory | None) -> StreamFactory:
    return streams if streams is not None else SounddeviceStreams()


def _level(block: np.ndarray) -> float:
    """(n,) -> loudness in 0..1 (-60 dBFS .. 0 dBFS), for a meter."""
    rms = float(np.sqrt(np.mean(np.square(block)))) if block.size else 0.0
    db = 20 * math.log10(max(rms, 1e-6))
    return min(1.0, max(0.0, (db + 60) / 60))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


# ----------------------------------------------------------------------------- playback


class Player:
    """Plays queued float32 clips in order on one output stream, stoppable at once.

    ``play(audio, rate)`` queues (resampling to the stream rate with soxr); ``stop()`` drops
    everything queued and silences the speaker within one block; ``wait()`` blocks until the
    queue has played. ``recent(n)`` returns the last ``n`` samples sent to the speaker (at
    16 kHz), which the barge-in detector compares with the microphone.
    """

    def __init__(self, *, streams: StreamFactory | None = None, device: int | str | None = None,
                 sample_rate: int = 22050, blocksize: int = 1024) -> None:
        self.sample_rate, self.blocksize, self.device = int(sample_rate), int(blocksize), device
        self._streams = streams
        self._stream: Stream | None = None
        self._clips: collections.deque[np.ndarray] = collections.deque()
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
            stream = _factory(self._streams).open_output(self.sample_rate, self.blocksize, self.device, self._fill)
            stream.start()
            self._stream = stream

    def play(self, audio: np.ndarray, sample_rate: int) -> None:
        """Queue (T,) float32 audio at ``sample_rate`` behind what is already playing."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if sample_rate != self.sample_rate and audio.size:
            import soxr

            audio = soxr.resample(audio, sample_rate, self.sample_rate).astype(np.float32)
        self.open()
        if audio.size == 0:
            return
        with self._lock:
            self._clips.append(audio)
            self._idle.clear()

    def _fill(self, n: int) -> np.ndarray:
        """The stream callback: the next (n,) samples, zeros when nothing is queued."""
        out = np.zeros(n, np.float32)
        filled = 0
        with self._lock:
            while filled < n and self._clips:
                clip = self._clips[0]
                take = min(n - filled, len(clip) - self._pos)
                out[filled:filled + take] = clip[self._pos:self._pos + take]
                filled += take
                self._pos += take
                if self._pos >= len(clip):
                    self._clips.popleft()
                    self._pos = 0
            if not self._clips:
                self._idle.set()
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
        _close(stream)


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


# ----------------------------------------------------------------------------- spoken replies


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


class SpeechOutput:
    """Streams a reply into speech: text chunks in, sentences synthesized and played in order.

    Synthesis runs on a worker thread so that ``feed`` (called from the generator's loop)
    never waits for audio. Without an output device the reply goes to a WAV file (``on_notice``
    gets one line with the path); ``play=False`` never opens a device (audio is only kept).
    """

    def __init__(self, synthesizer: Any, *, streams: StreamFactory | None = None, device: int | str | None = None,
                 play: bool = True, fallback_dir: str | Path | None = None,
                 on_notice: Callable[[str], None] | None = None,
                 on_sentence: Callable[[str], None] | None = None, gap_s: float = 0.12) -> None:
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
        self._jobs: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._synth_loop, name="synesthesia-tts", daemon=True)
        self._worker.start()
        self._begin_turn()

    def _begin_turn(self) -> None:
        self._splitter = self._SentenceStream()
        self._parts: list[np.ndarray] = []
        self._sentences: list[str] = []
        self._t0: float | None = None
        self._first: float | None = None
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
            sentence, stopped = job
            try:
                if stopped.is_set():
                    continue
                t = time.perf_counter()
                audio = self.synthesizer.synthesize(sentence)  # (T,) float32
                self._synth_s += time.perf_counter() - t
                if stopped.is_set() or audio.size == 0:
                    continue
                if self._first is None and self._t0 is not None:
                    self._first = time.perf_counter() - self._t0
                self._parts += [audio, self.gap]
                self._sentences.append(sentence)
                if self.on_sentence:
                    self.on_sentence(sentence)
                self._to_speaker(audio)
            except Exception as e:  # a failed sentence must not kill the worker
                self.on_notice(f"speech synthesis failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()

    def _to_speaker(self, audio: np.ndarray) -> None:
        if self.player is None or self._device_error:
            return
        try:
            self.player.play(audio, self.sample_rate)
        except DeviceError as e:
            self._device_error = str(e)

    # -- the caller's side

    def feed(self, chunk: str) -> None:
        """Add streamed reply text; finished sentences start speaking now."""
        if self._t0 is None:
            self._t0 = time.perf_counter()
        if self._stopped.is_set():
            return
        for sentence in self._splitter.feed(chunk):
            self._submit(sentence)

    def _submit(self, sentence: str) -> None:
        with self._done:
            self._pending += 1
        self._jobs.put((sentence, self._stopped))

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
        reply = SpokenReply(audio=audio, sample_rate=self.sample_rate, sentences=list(self._sentences),
                            first_audio_s=self._first, synth_s=self._synth_s, stopped=self._stopped.is_set())
        if self._device_error and audio.size:
            reply.path = self._write_fallback(audio)
            self.on_notice(f"{self._device_error.split(';')[0]}; spoken reply written to {reply.path}")
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


# ----------------------------------------------------------------------------- listening


class Listener:
    """Microphone -> utterances, with toggle-to-talk, VAD end of speech, pre-roll and barge-in.

    Arguments (all keyword except ``settings``; explicit values win over settings):

    * ``settings``: :class:`assistant.config.Settings` (uses the ``voice`` section), or None;
    * ``recognizer``: an object with ``transcribe((T,) float32) -> str``; without it,
      ``on_transcript`` is not called (use ``on_utterance`` or :meth:`listen`);
    * ``streams``/``device``: the stream factory and input device (name or index);
    * ``on_level(float)``, ``on_transcript(str)``, ``on_utterance((T,) float32)``,
      ``on_state(str)``, ``on_error(str)``, ``on_barge_in()``;
    * ``player``: a :class:`Player` whose playback gates barge-in (see the module docstring);
    * ``continuous``: keep listening after an utterance (for barge-in and hands-free use);
      default False: one utterance per toggle.
    * ``inline``: process audio on the stream's callback thread (tests, fakes); default False
      processes it on a worker thread so the audio callback never blocks.
    * ``stream_recognition``: when the recognizer has ``stream()`` (pocketsphinx), decode
      while the user is still speaking, so the transcript is ready soon after they stop.
    """

    def __init__(self, settings: Any = None, *, recognizer: Any = None, vad: Any = None,
                 streams: StreamFactory | None = None, device: int | str | None = None,
                 end_silence_ms: int | None = None, preroll_ms: int | None = None,
                 threshold: float | None = None, max_utterance_s: float = 60.0,
                 on_level: Callable[[float], None] | None = None,
                 on_transcript: Callable[[str], None] | None = None,
                 on_utterance: Callable[[np.ndarray], None] | None = None,
                 on_state: Callable[[str], None] | None = None,
                 on_error: Callable[[str], None] | None = None,
                 player: Player | None = None, on_barge_in: Callable[[], None] | None = None,
                 barge_in_threshold: float | None = None, barge_in_ms: int | None = None,
                 barge_in_margin_db: float | None = None,
                 continuous: bool = False, inline: bool = False, samplerate: int = SAMPLE_RATE,
                 stream_recognition: bool = True) -> None:
        from models.speech.vad import EndOfSpeech

        from assistant.config import VoiceSettings

        vs = getattr(settings, "voice", None) or VoiceSettings()  # defaults live in config only
        self.recognizer = recognizer
        self.device = device if device is not None else vs.input_device
        end_ms = end_silence_ms if end_silence_ms is not None else vs.end_silence_ms
        pre_ms = preroll_ms if preroll_ms is not None else vs.preroll_ms
        self.threshold = threshold if threshold is not None else vs.vad_threshold
        self.barge_threshold = barge_in_threshold if barge_in_threshold is not None else vs.barge_in_threshold
        barge_ms = barge_in_ms if barge_in_ms is not None else vs.barge_in_ms
        self.barge_margin_db = barge_in_margin_db if barge_in_margin_db is not None else vs.barge_in_margin_db
        if end_ms <= 0 or pre_ms < 0:
            raise InputError("voice: end_silence_ms must be positive and preroll_ms not negative")
        self._vad = vad
        self._end = EndOfSpeech(self.threshold, end_silence_ms=end_ms)
        self.end_silence_ms, self.preroll_ms = int(end_ms), int(pre_ms)
        self._preroll: collections.deque[np.ndarray] = collections.deque(maxlen=max(0, round(pre_ms * SAMPLE_RATE / 1000 / FRAME)))
        self._barge_frames_needed = max(1, round(barge_ms * SAMPLE_RATE / 1000 / FRAME))
        self.max_frames = int(max_utterance_s * SAMPLE_RATE / FRAME)
        self.streams, self.samplerate = streams, int(samplerate)
        self.on_level, self.on_transcript, self.on_utterance = on_level, on_transcript, on_utterance
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
        self._echo_history: collections.deque[float] = collections.deque(maxlen=round(2.0 * SAMPLE_RATE / FRAME))
        self._barge_count = 0.0
        self.barge_ins = 0
        self.state = "idle"

    # -- state

    def _reset_capture(self) -> None:
        self._buffer = np.zeros(0, np.float32)  # samples waiting to fill a VAD frame
        self._utterance: list[np.ndarray] = []
        self._in_speech = False
        self._end_reset = True

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
            self._queue = queue.Queue()  # one per session: a finished worker never eats the next one's blocks
            callback = self._process if self.inline else self._queue.put
            stream = _factory(self.streams).open_input(self.samplerate, FRAME if self.samplerate == SAMPLE_RATE else 1024, self.device, callback)
            self.listening = True
            if not self.inline:
                self._worker = threading.Thread(target=self._work, args=(self._queue,), name="synesthesia-listen", daemon=True)
                self._worker.start()
            self._stream = stream
            self._set_state("listening")
        stream.start()

    def stop(self, transcribe: bool = True) -> None:
        """Stop listening; with ``transcribe``, what was captured of an utterance is transcribed."""
        with self._lock:
            if not self.listening:
                return
            self.listening = False
            stream, self._stream = self._stream, None
        _close(stream)
        if not self.inline and self._worker is not None:
            self._queue.put(None)
            if threading.current_thread() is not self._worker:
                self._worker.join(timeout=5)
            self._worker = None
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)
        self._reset_capture()
        if transcribe and audio.size:
            self._deliver(audio)
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
                block = blocks.get(timeout=0.25)
            except queue.Empty:
                if blocks is not self._queue or not self.listening:
                    return  # the utterance ended (or a new session started)
                continue
            if block is None:
                return
            try:
                self._process(block)
            except Exception as e:  # never die silently on the worker
                if self.on_error:
                    self.on_error(f"listening failed: {e}")
                else:
                    raise

    def _process(self, block: np.ndarray) -> None:
        """One block from the microphone: (n,) float32 at ``samplerate``."""
        if not self.listening:
            return
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            block = self._resampler.resample_chunk(block)
        buf = np.concatenate([self._buffer, block]) if self._buffer.size else block
        n = len(buf) // FRAME
        for i in range(n):
            self._frame(buf[i * FRAME:(i + 1) * FRAME])  # (512,)
            if not self.listening:
                return
        self._buffer = buf[n * FRAME:].copy()

    def _frame(self, frame: np.ndarray) -> None:
        if self.on_level:
            self.on_level(_level(frame))
        p = self.vad.frame_probability(frame)
        if self.player is not None and self.player.is_playing:
            self._barge_check(frame, p)
            return  # while the assistant talks, only barge-in is listened for
        self._barge_count = 0
        event = self._end.update(p)
        if event == "start":
            self._in_speech = True
            self._utterance = list(self._preroll) + [frame]
            self._open_recognition(np.concatenate(self._utterance))
            self._set_state("speech")
        elif self._in_speech:
            self._utterance.append(frame)
            if self._rstream is not None:
                self._rstream.feed(frame)
            if event in ("end", "cancel") or len(self._utterance) >= self.max_frames:
                audio = np.concatenate(self._utterance)
                self._in_speech = False
                self._utterance = []
                if event == "cancel":  # a click or a cough: too short to be speech
                    self._drop_recognition()
                    self._set_state("listening")
                else:
                    self._utterance_done(audio)
        self._preroll.append(frame)

    def _open_recognition(self, audio: np.ndarray) -> None:
        """Recognize while the user speaks when the recognizer can stream (pocketsphinx can):
        at the end of speech only the last moments remain to decode."""
        self._drop_recognition()
        if self.stream_recognition and self.on_transcript and hasattr(self.recognizer, "stream"):
            self._rstream = self.recognizer.stream()
            self._rstream.feed(audio)

    def _drop_recognition(self) -> None:
        stream, self._rstream = self._rstream, None
        if stream is not None:
            stream.cancel()

    def _utterance_done(self, audio: np.ndarray) -> None:
        # Trim the trailing silence that ended the utterance, keeping 200 ms of it.
        keep = len(audio) - max(0, (self._end.end_frames * FRAME) - int(0.2 * SAMPLE_RATE))
        audio = audio[:max(keep, FRAME)]
        if self.continuous:
            self._deliver(audio)
            self._set_state("listening")
        else:
            self.listening = False  # stop() from the worker thread below
            stream, self._stream = self._stream, None
            if stream is not None:
                threading.Thread(target=_close, args=(stream,), daemon=True).start()
            self._reset_capture()
            self._deliver(audio)
            self._set_state("idle")

    def _deliver(self, audio: np.ndarray) -> None:
        self._finish(audio)
        if self.on_utterance:
            self.on_utterance(audio)
        if self.recognizer is not None and self.on_transcript:
            self._set_state("transcribing")
            stream, self._rstream = self._rstream, None
            try:
                text = stream.finish() if stream is not None else self.recognizer.transcribe(audio)
            except Exception as e:
                if self.on_error:
                    self.on_error(f"speech recognition failed: {e}")
                    return
                raise
            self.on_transcript(text.strip())

    def _finish(self, audio: np.ndarray) -> None:
        self._result = audio
        self._finished.set()

    # -- barge-in

    def _barge_check(self, frame: np.ndarray, p: float) -> None:
        """While playing: is the user talking over the assistant (not its own echo)?

        The reference is the loudest 32 ms of what was sent to the speaker over the last
        300 ms (covers the speaker-to-microphone delay and the room's echo). ``excess`` is
        how much louder the microphone is than that; the echo gain is the largest excess
        (90th percentile) in the last 2 s of playback without a barge-in candidate, so it
        adapts to the room and the volume. A frame counts toward barge-in when the VAD is
        confident (``barge_in_threshold``) and the excess beats the echo gain by
        ``barge_in_margin_db``; ``barge_in_ms`` of such frames (leaky count) trigger it.
        """
        self._end.reset()
        self._in_speech = False
        if self._rstream is not None:
            self._drop_recognition()
        played = self.player.recent(int(0.3 * SAMPLE_RATE))  # (4800,) last 300 ms at 16 kHz
        frames = played[: len(played) // FRAME * FRAME].reshape(-1, FRAME)  # (9, 512)
        play_rms = float(np.sqrt(np.mean(np.square(frames), axis=1)).max()) if frames.size else 0.0
        mic_db = 20 * math.log10(max(_rms(frame), 1e-6))
        play_db = 20 * math.log10(max(play_rms, 1e-6))
        excess = mic_db - play_db
        history = self._echo_history
        if len(history) < 10:  # the first 320 ms of audible playback only teach the echo level
            if play_db > -50:
                history.append(excess)
            return
        gain = float(np.percentile(history, 90))
        if p >= self.barge_threshold and excess > gain + self.barge_margin_db:
            self._barge_count += 1
        else:
            # Leaky: the gaps between syllables slow the count down without resetting it.
            self._barge_count = max(0.0, self._barge_count - 0.5)
            if self._barge_count == 0 and play_db > -50:  # learn how loud our echo comes back
                history.append(excess)
        if self._barge_count >= self._barge_frames_needed:
            self._barge_count = 0
            self.barge_ins += 1
            self.player.stop()
            self._preroll.clear()
            self._echo_history.clear()
            if self.on_barge_in:
                self.on_barge_in()
            # What the user says next is captured as a normal utterance.
            self._in_speech = True
            self._end.update(1.0)
            self._utterance = [frame]
            self._open_recognition(frame)
            self._set_state("speech")


def connect_barge_in(listener: Listener, output: SpeechOutput, cancel: Callable[[], None] | None = None) -> None:
    """Let ``listener`` interrupt ``output``: barge-in stops playback and calls ``cancel`` (e.g. bot.cancel)."""
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
