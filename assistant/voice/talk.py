"""Hands-free conversation: listen, answer aloud, listen again, until stopped.

One :class:`TalkLoop` is what ``assistant talk``, the terminal UI's hands-free mode (F5,
``/talk``) and ``benchmarks/bench_talk.py`` all run::

    loop = TalkLoop(bot, on_heard=show_question, on_chunk=show_reply_text, on_state=status)
    loop.run()      # blocking; Ctrl-C or loop.stop() (any thread) ends it
    # or: loop.start() ... loop.stop()

It joins a continuous :class:`~assistant.voice.listener.Listener` (VAD end of turn, recognition
while the user speaks) to a :class:`~assistant.voice.speech_output.SpeechOutput` (sentence by
sentence while the generator writes), with barge-in between them: talking over a reply stops
the speech and the generation at once, and what the user says becomes the next question.
A request that arrives while the previous answer is still being written (nothing said aloud
yet) supersedes it, and the two are asked together ("What is the capital" ... "of France?").
Empty transcripts (a cough, noise) are ignored.

A request that reads as complete is answered after a very short pause (``voice.early_answer_ms``,
64 ms), while the listener is still waiting to be sure the user has finished
(``voice.quick_end_ms``): the reply is written and its first sentence synthesized meanwhile, but
it is not heard before the pause is long enough (:attr:`Utterance.quiet`). If the user speaks on,
nothing was heard, and the reply gives way to the longer request as above. After any turn end,
speech that starts before the reply is heard holds it the same way.

``respond(text, audio, output, cancel)`` answers one request: it streams the reply's text
into ``output.feed``, ends with ``output.end()``, and stops early once ``cancel`` is set. The
default, :func:`stream_reply`, asks ``bot.stream``; the terminal UI passes its own, which runs
the request through its normal turn path (shown in the chat, saved in the session).

Each answered request leaves a :class:`TalkTurn` in ``loop.turns`` with its timings, from the
end of the user's speech to the first reply sample handed to the speaker. No Textual here.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from assistant.background import warm_up_in_background
from assistant.errors import AssistantError, Cancelled, DeviceError
from assistant.voice.barge_in import connect_barge_in
from assistant.voice.devices import SAMPLE_RATE, StreamFactory
from assistant.voice.listener import Listener, Utterance, UtteranceTimings
from assistant.voice.speech_output import ReplyTimeline, SpeechOutput, SpokenReply

Respond = Callable[[str, np.ndarray, SpeechOutput, threading.Event], None]
"""``respond(text, audio, output, cancel)``: answer ``text`` (``audio``: the (T,) float32
16 kHz recording it came from) into ``output``; return once the reply has been spoken."""

STATES = ("listening", "thinking", "speaking", "stopped")


def stream_reply(bot: Any, on_chunk: Callable[[str], None] | None = None) -> Respond:
    """The default :data:`Respond`: ``bot.stream(text)``, each chunk to ``on_chunk`` and the speaker."""

    def respond(text: str, audio: np.ndarray, output: SpeechOutput, cancel: threading.Event) -> None:
        try:
            for chunk in bot.stream(text, cancel=cancel):
                if cancel.is_set():
                    break
                output.feed(chunk)
                if on_chunk is not None:
                    on_chunk(chunk)
        except Cancelled:
            pass
        finally:
            if cancel.is_set():
                output.stop()
            output.end(wait=not cancel.is_set())

    return respond


@dataclass
class TalkTurn:
    """One request of the hands-free loop and how fast it was answered."""

    heard: str
    """The request as asked (the transcript, joined to a superseded one)."""
    utterance: UtteranceTimings
    spoken: SpokenReply | None = None
    """What was said aloud (sentences, audio, timeline); None when the reply failed early."""
    interrupted: bool = False
    """Barge-in, a newer request or stop() cut the reply short."""
    error: str | None = None

    @property
    def reply(self) -> str:
        return " ".join(self.spoken.sentences) if self.spoken is not None else ""

    @property
    def said_anything(self) -> bool:
        return self.spoken is not None and self.spoken.timeline.first_sound is not None

    def breakdown(self) -> dict[str, float | None]:
        """Seconds per stage, from the end of the user's speech to the first reply sample
        handed to the speaker (``total``); None for a stage that was not reached."""
        u = self.utterance
        t = self.spoken.timeline if self.spoken is not None else ReplyTimeline()
        ready = t.heard_from if t.heard_from is not None else t.first_audio
        return {
            "end_of_turn_wait": _span(u.speech_end, u.turn_end),
            "recognition_tail": _span(u.turn_end, u.transcript),
            "first_token": _span(u.transcript, t.first_text),
            "first_sentence": _span(t.first_text, t.first_sentence),
            "synthesis": _span(t.first_sentence, t.first_audio),
            "pause_check": _span(t.first_audio, ready) if t.first_audio is not None else None,
            "to_speaker": _span(ready, t.first_sound),
            "total": _span(u.speech_end, t.first_sound),
        }


def _span(a: float | None, b: float | None) -> float | None:
    return b - a if a is not None and b is not None else None


class TalkLoop:
    """Listen -> answer aloud -> listen again (see the module docstring).

    ``bot`` needs ``recognizer``, ``synthesizer``, ``cancel()`` and, for the default
    ``respond``, ``stream(text, cancel=)``; reading the first two may load models, so build the
    loop off any UI thread. ``settings`` defaults to ``bot.settings`` (its ``voice`` section).
    Callbacks run on the loop's threads: ``on_state(str)`` (one of :data:`STATES`),
    ``on_heard(text)`` (a request about to be answered), ``on_chunk(text)`` (reply text, default
    ``respond`` only), ``on_turn(TalkTurn)``, ``on_level(0..1)``, ``on_error(line)``,
    ``on_notice(line)``.
    """

    def __init__(self, bot: Any, *, settings: Any = None, streams: StreamFactory | None = None, vad: Any = None,
                 input_device: int | str | None = None, output_device: int | str | None = None,
                 barge_in: bool | None = None, respond: Respond | None = None,
                 on_state: Callable[[str], None] | None = None, on_heard: Callable[[str], None] | None = None,
                 on_chunk: Callable[[str], None] | None = None, on_turn: Callable[[TalkTurn], None] | None = None,
                 on_level: Callable[[float], None] | None = None, on_error: Callable[[str], None] | None = None,
                 on_notice: Callable[[str], None] | None = None, samplerate: int = SAMPLE_RATE) -> None:
        from assistant.config import VoiceSettings

        self.bot = bot
        settings = settings if settings is not None else getattr(bot, "settings", None)
        voice = getattr(settings, "voice", None) or VoiceSettings()
        synthesizer, recognizer = getattr(bot, "synthesizer", None), getattr(bot, "recognizer", None)
        if synthesizer is None or recognizer is None:
            raise ValueError("hands-free talk needs a speech recognizer and a speech synthesizer")
        self.on_state, self.on_heard, self.on_turn = on_state, on_heard, on_turn
        self.on_error, self.on_notice = on_error, on_notice
        self.respond = respond or stream_reply(bot, on_chunk)
        self.output = SpeechOutput(synthesizer, streams=streams, device=output_device or voice.output_device,
                                   on_notice=self._notice, on_sentence=self._sentence_out, first_sentence_first=True)
        self.listener = Listener(settings, recognizer=recognizer, vad=vad, streams=streams, device=input_device,
                                 barge_in=barge_in, continuous=True, samplerate=samplerate, on_heard=self._heard,
                                 on_level=on_level, on_error=self._listener_error, on_state=self._listener_state)
        connect_barge_in(self.listener, self.output, cancel=self.interrupt)
        self.turns: list[TalkTurn] = []
        self.error: str | None = None
        """Why the loop ended by itself (the microphone died), else None."""
        self.state = "stopped"
        self._inbox: queue.Queue[Utterance | None] = queue.Queue()
        self._cancel = threading.Event()  # the reply in progress
        self._replying = False
        self._mic_gone = False  # the listener ended by itself (after delivering what it kept)
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None

    # -- control

    def start(self) -> None:
        """Open the microphone (and the speaker) and start answering; raises DeviceError without a microphone."""
        try:
            self.listener.start()
        except BaseException:
            self.output.close()
            raise
        try:
            if self.output.player is not None:
                self.output.player.open()  # early: the first reply does not wait for the device
        except DeviceError as e:
            self._notice(f"{str(e).split(';')[0]}; spoken replies are written to files")
        warm_up_in_background(self.bot)  # the system prompt's keys and values, cached while the user speaks
        self._worker = threading.Thread(target=self._run, name="synesthesia-talk", daemon=True)
        self._worker.start()
        self._set_state("listening")

    def run(self) -> None:
        """Blocking: :meth:`start`, then answer until :meth:`stop` or Ctrl-C."""
        self.start()
        try:
            while not self._stopping.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """End the loop (any thread): the reply and speech stop, the microphone closes."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.interrupt()
        self.listener.stop(transcribe=False)
        self._inbox.put(None)
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=5)
        self.output.close()
        self._set_state("stopped")

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._stopping.is_set()

    def interrupt(self) -> None:
        """Stop the reply in progress and its speech now; the loop goes on listening."""
        self._cancel.set()
        self.output.stop()
        try:
            self.bot.cancel()
        except Exception:  # a bot without a reply in progress may complain; nothing to stop then
            pass

    # -- the loop

    def _run(self) -> None:
        carry = ""  # a superseded request that was not answered aloud
        while not self._stopping.is_set():
            try:
                utterance = self._inbox.get(timeout=0.1)
            except queue.Empty:
                if self._mic_gone and not self._stopping.is_set():
                    self.error = self.error or "the microphone is gone"
                    threading.Thread(target=self.stop, daemon=True).start()
                    return
                continue
            if utterance is None:
                return
            text = f"{carry} {utterance.text}" if carry else utterance.text
            turn = self._answer(text, utterance)
            superseded = turn.interrupted and not turn.said_anything and not self._inbox.empty()
            carry = text if superseded and not self._stopping.is_set() else ""

    def _answer(self, text: str, utterance: Utterance) -> TalkTurn:
        self._cancel = cancel = threading.Event()
        turn = TalkTurn(heard=text, utterance=utterance.timings)
        self._set_state("thinking")
        if self.on_heard:
            self.on_heard(text)
        before = self.output.last_spoken
        self.output.hold_until(utterance.quiet)  # an early turn end: not heard before the pause is long enough
        self._replying = True
        try:
            self.respond(text, utterance.audio, self.output, cancel)
        except Cancelled:
            cancel.set()
        except Exception as e:  # one failed reply must not end the conversation
            turn.error = str(e).splitlines()[0] if isinstance(e, AssistantError) and str(e) else f"{type(e).__name__}: {e}"
            if self.on_error:
                self.on_error(f"reply failed: {turn.error}")
        finally:
            self._replying = False
        if self.output.last_spoken is before:  # respond never finished the reply: close it here
            self.output.stop()
            self.output.end(wait=False)
        turn.spoken = self.output.last_spoken
        turn.interrupted = cancel.is_set()
        self.turns.append(turn)
        if self.on_turn:
            self.on_turn(turn)
        if not self._stopping.is_set():
            self._set_state("listening")
        return turn

    # -- callbacks from the listener and the speech output

    def _heard(self, utterance: Utterance) -> None:
        """The listener's worker: a request ended (empty ones are noise)."""
        if not utterance.text or self._stopping.is_set():
            return
        self._inbox.put(utterance)
        if self._replying:
            self.interrupt()  # a newer request supersedes the reply in progress

    def _sentence_out(self, sentence: str) -> None:
        if self.state == "thinking":
            self._set_state("speaking")

    def _listener_state(self, state: str) -> None:
        if state == "idle" and not self._stopping.is_set():
            self._mic_gone = True  # _run ends the loop once what the listener kept is answered

    def _listener_error(self, line: str) -> None:
        if not self.listener.listening:
            self.error = line
        if self.on_error:
            self.on_error(line)

    def _notice(self, line: str) -> None:
        if self.on_notice:
            self.on_notice(line)
        elif self.on_error:
            self.on_error(line)

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self.on_state:
            self.on_state(state)

