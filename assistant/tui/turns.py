"""The terminal UI's turns: a message sent, run on a worker thread, streamed into the chat
and stored (:class:`TurnRunner`, mixed into :class:`assistant.tui.app.SynesthesiaApp`)."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work

from assistant.errors import AssistantError, Cancelled, first_line
from assistant.tui import messages as m
from assistant.tui.attachments import Pending, image_texts
from assistant.tui.voice_bridge import VoiceUnavailable
from assistant.tui.widgets import (
    AssistantMessage,
    ChatInput,
    ChatLog,
    StatusBar,
    SystemLine,
    TurnView,
    UserMessage,
    format_timings,
    image_preview,
)
from assistant.tui.helpers import reply_footer

log = logging.getLogger(__name__)


UI_FRAME = 0.05
"""Seconds between reply updates sent to the UI while a reply streams."""


@dataclass
class TurnJob:
    key: int
    session_id: int
    text: str
    attachments: list[Pending]
    recording: tuple[Any, int] | None = None
    """Microphone audio behind a spoken question: stored with the turn, not sent again."""
    cancel: threading.Event = field(default_factory=threading.Event)
    speech: Any = None
    """The hands-free loop's speech output: the reply is spoken there, whatever ``speak_replies`` says."""
    done: threading.Event = field(default_factory=threading.Event)
    """Set when the turn's worker has finished (reply stored, speech over)."""


class TurnRunner:
    """Sending a turn, running it, showing and storing its reply (part of the app)."""

    # ------------------------------------------------------------------ turns

    def send(self, text: str, attachments: list[Pending], *, recording: tuple[Any, int] | None = None,
             heard: bool = False, speech: Any = None, cancel: threading.Event | None = None) -> TurnJob:
        """Show the user's turn and start the worker that produces (and stores) the reply.

        ``speech`` and ``cancel``: the hands-free loop's speech output and stop signal."""
        if self.session is None:
            self.session = self.store.create_session()
        job = TurnJob(next(self._keys), self.session.id, text, list(attachments), recording,
                      cancel=cancel or threading.Event(), speech=speech)
        waiting = "…" if self.bot is not None else "waiting for the models to load…"
        user = UserMessage(("🎤 " if heard else "") + text, job.attachments, preview=self.settings.ui.image_preview)
        turn = TurnView(job.key, user, AssistantMessage(waiting=waiting))
        self.turns[job.key] = turn
        chat = self.query_one(ChatLog)
        chat.mount(turn)
        chat.anchor()
        self.job = job
        self.query_one(StatusBar).busy = True
        if speech is None:
            self.voice.stop_speaking()
        self._run_turn(job)
        return job

    @work(thread=True, group="turn", exit_on_error=False)
    def _run_turn(self, job: TurnJob) -> None:
        try:
            self._turn_worker(job)
        finally:
            job.done.set()

    def _turn_worker(self, job: TurnJob) -> None:
        while not self._models_ready.wait(0.1):
            if job.cancel.is_set():
                self.post_message(m.ReplyFailed(job.key, "stopped before the models were loaded", True))
                return
        bot = self.bot
        if bot is None:
            self.post_message(m.ReplyFailed(job.key, f"models failed to load: {self.load_error}", True))
            return
        images = [p.path for p in job.attachments if p.kind == "image"]
        audio = [p.path for p in job.attachments if p.kind == "audio"]
        try:
            writer = self.store.begin_turn(
                job.session_id, job.text, images=images,
                audio=audio + ([job.recording] if job.recording is not None else []),
            )
        except (AssistantError, OSError) as e:
            self.post_message(m.ReplyFailed(job.key, first_line(e), True))
            return
        self.post_message(m.TurnStored(job.key, writer.turn_id))
        reply = None
        # Chunks go to the UI at most every UI_FRAME seconds, so a fast model cannot flood the
        # message queue (keys such as esc stay responsive).
        buffered: list[str] = []
        last_post = 0.0
        speech = job.speech
        if speech is None and self.speak_replies:
            speech = self.voice.begin_reply(
                bot, on_notice=lambda line: self.post_message(m.CommandOutput("speak", line, True)))
        try:
            for chunk in bot.stream(job.text, images=images, audio=audio, cancel=job.cancel):
                writer.append(chunk)
                if speech is not None and not job.cancel.is_set():
                    speech.feed(chunk)
                buffered.append(chunk)
                now = time.monotonic()
                if now - last_post >= UI_FRAME:
                    self.post_message(m.ReplyChunk(job.key, "".join(buffered)))
                    buffered.clear()
                    last_post = now
            reply = bot.last_reply
        except Cancelled:
            reply = None
        except Exception as e:
            if buffered:
                self.post_message(m.ReplyChunk(job.key, "".join(buffered)))
            if not isinstance(e, AssistantError):
                log.error("turn failed:\n%s", traceback.format_exc())
            message = first_line(e) if isinstance(e, AssistantError) else f"{type(e).__name__}: {first_line(e)}"
            if speech is not None:
                speech.stop()
                speech.end(wait=False)
            kept = getattr(e, "reply", None)  # a transcript too long to answer about: kept in the session
            if kept is not None:
                writer.finish(kept, partial=True, stop_reason=message)
                self.post_message(m.ReplyFailed(job.key, message, False))
            elif writer.text:
                writer.abort(message)
                self.post_message(m.ReplyFailed(job.key, message, False))
            else:
                self.store.delete_turn(writer.turn_id)
                self.post_message(m.ReplyFailed(job.key, message, True))
            return
        if buffered:
            self.post_message(m.ReplyChunk(job.key, "".join(buffered)))
        cancelled = job.cancel.is_set()
        partial = cancelled or reply is None or reply.partial
        reason = "cancelled" if cancelled or reply is None else ("cut at the token limit" if partial else None)
        turn = writer.finish(reply if reply is not None else writer.text, partial=partial, stop_reason=reason)
        self.post_message(m.ReplyDone(job.key, reply, turn))
        if speech is not None:
            if cancelled:
                speech.stop()
            self.post_message(m.SpeakingChanged(True))
            try:
                spoken = speech.end(wait=not cancelled)  # blocks while the rest is spoken; esc stops it
                if spoken.audio.size and not cancelled:
                    writer.add_reply_audio(spoken.audio, spoken.sample_rate)
                    self.post_message(m.TurnUpdated(job.key, self.store.get_turn(writer.turn_id)))
            finally:
                self.post_message(m.SpeakingChanged(False))
        elif self.speak_replies and not cancelled and turn.reply_text.strip():
            self._speak(bot, writer, job.key, turn.reply_text)

    def _speak(self, bot: Any, writer: Any, key: int, text: str) -> None:
        """Synthesize the whole reply with ``bot.speak`` (saved with the turn), then play it; esc stops it.

        Used when the assistant offers no streaming synthesizer. Runs in the turn worker.
        """
        self.post_message(m.SpeakingChanged(True))
        try:
            samples, rate = bot.speak(text)
            writer.add_reply_audio(samples, rate)
            self.post_message(m.TurnUpdated(key, self.store.get_turn(writer.turn_id)))
            self.voice.play(samples, rate)
        except VoiceUnavailable as e:
            self.post_message(m.CommandOutput("speak", f"spoken reply saved, not played: {e}", True))
        except Exception as e:
            self.post_message(m.CommandOutput("speak", f"speaking failed: {first_line(e)}", True))
        finally:
            self.post_message(m.SpeakingChanged(False))

    def on_turn_stored(self, msg: m.TurnStored) -> None:
        turn = self.turns.get(msg.key)
        if turn is not None:
            turn.turn_id = msg.turn_id

    async def on_reply_chunk(self, msg: m.ReplyChunk) -> None:
        turn = self.turns.get(msg.key)
        if turn is not None:
            await turn.reply.write(msg.text)

    async def on_reply_done(self, msg: m.ReplyDone) -> None:
        self._end_job(msg.key)
        stored = msg.turn
        turn = self.turns.get(msg.key)
        if turn is not None:
            if stored.transcript:
                turn.user.add_transcript(stored.transcript)
            turn.user.image_texts = image_texts(msg.reply, stored.evidence)
            turn.user.attention = list(msg.reply.attention) if msg.reply is not None else []
            await turn.reply.finish(stored.reply_text, reply_footer(stored))
        if stored.timings:
            self.query_one(StatusBar).timings = format_timings(stored.timings) if self.settings.ui.show_timings else ""
        self._refresh_sessions()

    def on_turn_updated(self, msg: m.TurnUpdated) -> None:
        """A finished turn changed in the store (its spoken reply was saved)."""
        turn = self.turns.get(msg.key)
        if turn is not None:
            turn.reply.set_footer(reply_footer(msg.turn))

    def on_reply_failed(self, msg: m.ReplyFailed) -> None:
        job = self._end_job(msg.key)
        turn = self.turns.pop(msg.key, None)
        if msg.restore and job is not None:
            if turn is not None:
                turn.remove()
            prompt = self.query_one(ChatInput)
            if not prompt.value:
                prompt.value = job.text
                prompt.cursor_position = len(job.text)
            self.pending = job.attachments + self.pending
            self._show_pending()
        elif turn is not None:
            turn.reply.set_footer(f"✗ stopped by an error: {msg.error}")
        self.notify(msg.error, title="Error", severity="error", timeout=10)
        self._refresh_sessions()

    def _end_job(self, key: int) -> TurnJob | None:
        job = self.job
        if job is not None and job.key == key:
            self.job = None
            self.query_one(StatusBar).busy = False
            return job
        return None

    def on_speaking_changed(self, msg: m.SpeakingChanged) -> None:
        self.query_one(StatusBar).speaking = msg.speaking

    def on_notice(self, msg: m.Notice) -> None:
        severity = msg.severity if msg.severity in ("information", "warning", "error") else "information"
        self.notify(msg.text, severity=severity)

    def on_note_saved(self, msg: m.NoteSaved) -> None:
        self.save_note(msg.text)

    def on_command_output(self, msg: m.CommandOutput) -> None:
        if msg.error:
            self.notify(msg.text, severity="warning" if msg.command == "speak" else "error")
        else:
            chat = self.query_one(ChatLog)
            chat.mount(SystemLine(Text(msg.text), classes="system"))
            preview = image_preview(Path(msg.image), self.settings.ui.image_preview) if msg.image else None
            if preview is not None:
                chat.mount(preview)
            chat.anchor()
