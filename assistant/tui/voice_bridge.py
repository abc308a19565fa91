"""The app's link to :mod:`assistant.voice`: microphone (toggle, ends on silence), spoken
replies, and the hands-free loop (:class:`assistant.voice.TalkLoop`, F5).

Everything here may run without a sound card. Opening a missing device raises
``DeviceError`` inside the voice module; the bridge turns that into one line for a
notification (``on_error`` / :class:`VoiceUnavailable`) and the rest of the app keeps working.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable

from assistant.errors import first_line


class VoiceUnavailable(Exception):
    """Voice input or output cannot be used here; the message says why."""


class VoiceBridge:
    """Listening and speaking for the app; every method is safe to call from the UI thread.

    ``streams`` and ``vad`` are handed to the voice module (fake devices in tests).
    """

    def __init__(self, settings: Any, *, streams: Any = None, vad: Any = None) -> None:
        self.settings = settings
        self.streams = streams
        self.vad = vad
        self._listener: Any = None
        self._output: Any = None
        self._talk: Any = None  # the running TalkLoop
        self._talk_token: object | None = None  # set while a loop is starting or running
        self._play_stop = threading.Event()
        self._voice: Any = None  # assistant.voice, imported on first use (see _load)
        self._why: str | None = None

    def _load(self) -> Any:
        """``assistant.voice``, or None when it cannot be imported (:attr:`unavailable_reason` says why).

        Imported on first use, not at start: it brings numpy and the speech models' code
        (a fifth of a second), which the first screen does not need.
        """
        if self._voice is None and self._why is None:
            try:
                self._voice = importlib.import_module("assistant.voice")
            except ImportError as e:
                self._why = f"voice is not available: {e}"
        return self._voice

    @property
    def unavailable_reason(self) -> str | None:
        self._load()
        return self._why

    def _module(self) -> Any:
        voice = self._load()
        if voice is None:
            raise VoiceUnavailable(self._why or "voice is not available")
        return voice

    # -- microphone

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def start_listening(
        self,
        on_level: Callable[[float], None],
        on_utterance: Callable[[Any], None],
        on_error: Callable[[str], None],
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        """Open the microphone (in the background: the VAD model loads first).

        ``on_utterance(samples)``: 16 kHz float32, once speech ends (or listening is stopped
        with :meth:`stop_listening`); ``on_error(line)``: no microphone and the like;
        ``on_idle()``: listening ended without an utterance. Callbacks run on other threads.
        """
        voice = self._module()

        def state(s: str) -> None:
            if s == "idle" and self._listener is listener:
                self._listener = None
                if on_idle is not None:
                    on_idle()

        def error(line: str) -> None:
            self._listener = None
            on_error(line)

        try:
            listener = voice.Listener(
                self.settings, streams=self.streams, vad=self.vad,
                on_level=on_level, on_utterance=on_utterance, on_error=error, on_state=state,
            )
        except Exception as e:
            raise VoiceUnavailable(f"microphone unavailable: {first_line(e)}") from e
        self._listener = listener

        def start() -> None:
            try:
                listener.start()
            except Exception as e:  # DeviceError: no PortAudio, no microphone
                error(first_line(e))

        threading.Thread(target=start, name="synesthesia-mic-open", daemon=True).start()

    def stop_listening(self, *, keep: bool = True) -> None:
        """Stop the microphone; with ``keep``, what was said so far is delivered as an utterance."""
        listener, self._listener = self._listener, None
        if listener is not None:
            threading.Thread(target=listener.stop, kwargs={"transcribe": keep}, daemon=True).start()

    # -- hands-free

    @property
    def talking(self) -> bool:
        """The hands-free loop is starting or running."""
        return self._talk_token is not None

    def start_talk(
        self,
        bot: Any,
        respond: Callable[..., None],
        on_state: Callable[[str], None],
        on_level: Callable[[float], None],
        on_error: Callable[[str], None],
    ) -> None:
        """Start the hands-free loop in the background (its models and devices load there).

        ``respond(text, audio, output, cancel)`` answers each request (see
        :data:`assistant.voice.talk.Respond`); ``on_state`` gets "listening", "thinking",
        "speaking", and "stopped" when the loop ends (also when it could not start: then
        ``on_error`` says why first). Callbacks run on other threads.
        """
        voice = self._module()
        if self._talk_token is not None:
            return
        self.stop_listening(keep=False)
        token = self._talk_token = object()

        def failed(line: str) -> None:
            on_error(line)
            if self._talk_token is token:
                self._talk_token = None
                self._talk = None
                on_state("stopped")

        def state(name: str) -> None:
            if self._talk_token is not token:
                return  # a loop already turned off: the app knows
            if name == "stopped":  # it ended by itself (the microphone is gone)
                self._talk_token = None
                self._talk = None
            on_state(name)

        def start() -> None:
            try:
                loop = voice.TalkLoop(
                    bot, settings=self.settings, streams=self.streams, vad=self.vad, respond=respond,
                    on_state=state, on_level=on_level, on_error=on_error, on_notice=on_error,
                )
                loop.start()
            except Exception as e:  # DeviceError (no microphone), ModelError (no recognizer), ...
                failed(first_line(e))
                return
            if self._talk_token is not token:  # stopped while starting
                loop.stop()
                return
            self._talk = loop

        threading.Thread(target=start, name="synesthesia-talk-open", daemon=True).start()

    def stop_talk(self) -> None:
        """End the hands-free loop (in the background: it waits for its threads)."""
        loop, self._talk, self._talk_token = self._talk, None, None
        if loop is not None:
            threading.Thread(target=loop.stop, daemon=True).start()

    # -- speaker

    def begin_reply(self, bot: Any, on_notice: Callable[[str], None]) -> Any:
        """A sentence-by-sentence speaker for the reply about to stream, or None.

        None when the assistant has no ``synthesizer`` (the caller then uses ``bot.speak``
        and :meth:`play`). The object has ``feed(chunk)``, ``end() -> SpokenReply`` and ``stop()``.
        """
        synth = bot.synthesizer
        if synth is None or self._load() is None:
            return None
        if self._output is None or self._output.synthesizer is not synth:
            if self._output is not None:
                self._output.close()
            self._output = self._voice.SpeechOutput(
                synth, streams=self.streams, device=self.settings.voice.output_device, on_notice=on_notice,
            )
        self._output.on_notice = on_notice
        return self._output

    def play(self, samples: Any, sample_rate: int) -> None:
        """Play and block until done or :meth:`stop_speaking`; VoiceUnavailable without a speaker."""
        voice = self._module()
        self._play_stop.clear()
        try:
            voice.play(samples, sample_rate, stop=self._play_stop, device=self.settings.voice.output_device,
                       streams=self.streams)
        except Exception as e:
            raise VoiceUnavailable(first_line(e)) from e

    def stop_speaking(self) -> None:
        """Silence now: the streamed reply's speech, the hands-free reply (the loop goes on
        listening) and anything :meth:`play` is playing."""
        self._play_stop.set()
        if self._output is not None:
            self._output.stop()
        if self._talk is not None:
            self._talk.interrupt()
        if self._voice is not None:  # never imported: nothing is playing
            try:
                self._voice.stop_playback()
            except Exception:
                pass

    def close(self) -> None:
        self.stop_talk()
        self.stop_listening(keep=False)
        if self._output is not None:
            self._output.close()
            self._output = None

