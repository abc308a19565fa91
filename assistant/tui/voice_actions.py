"""The terminal UI's voice: stopping a reply, spoken replies, one-shot listening and the
hands-free loop (:class:`VoiceActions`, mixed into :class:`assistant.tui.app.SynesthesiaApp`)."""

from __future__ import annotations

import logging
import threading
from typing import Any, TYPE_CHECKING

from textual import work

from assistant.errors import first_line
from assistant.tui import messages as m
from assistant.tui.voice_bridge import VoiceUnavailable
from assistant.tui.widgets import ChatInput, ChatLog, LevelMeter, StatusBar
from models.audio_format import SAMPLE_RATE

if TYPE_CHECKING:
    from assistant.tui.turns import TurnJob

log = logging.getLogger(__name__)


class VoiceActions:
    """Stop, listen, speak and hands-free talk (part of the app)."""

    # ------------------------------------------------------------------ stop, voice

    def action_stop(self) -> None:
        """Stop the reply and the speech (and listening) at once; with nothing to stop, end hands-free talk."""
        idle = self.job is None and not self.query_one(StatusBar).speaking
        if idle and getattr(self.voice, "talking", False):
            self.action_talk()
            return
        if self.job is not None:
            self.job.cancel.set()
            if self.bot is not None:
                try:
                    self.bot.cancel()
                except Exception:
                    log.exception("bot.cancel failed")
        self.voice.stop_speaking()
        if self.voice.listening:
            self.voice.stop_listening(keep=False)
            self._set_listening(False)

    def action_image_text(self) -> None:
        """Show the text read in the latest message's images under them, and copy it."""
        for key in sorted(self.turns, reverse=True):
            user = self.turns[key].user
            if user.image_texts:
                if user.toggle_image_text():
                    self.copy_to_clipboard("\n\n".join(text for _, text in user.image_texts))
                    names = ", ".join(name for name, _ in user.image_texts)
                    self.notify(f"Text in {names}: shown under the image and copied to the clipboard (F6 hides it)")
                    self.query_one(ChatLog).scroll_to_widget(user, animate=False)
                return
        self.notify("No text has been read in an image yet (attach a screenshot and ask about it).", severity="warning")

    def action_attention(self) -> None:
        """Show where the fusion core looked in the latest message's images, under them (again: hide)."""
        for key in sorted(self.turns, reverse=True):
            user = self.turns[key].user
            if any(user.attention):
                if user.toggle_attention():
                    self.notify("Where the fusion core looked: shown under the image (F7 hides it)")
                    self.query_one(ChatLog).scroll_to_widget(user, animate=False)
                return
        self.notify("No attention map yet: ask about an image (the fusion core draws one when it runs; "
                    "maps are not kept in saved sessions).", severity="warning")

    def action_toggle_speak(self) -> None:
        self.speak_replies = not self.speak_replies
        self.query_one(StatusBar).speak = self.speak_replies
        self.notify(f"spoken replies {'on' if self.speak_replies else 'off'}")

    def action_listen(self) -> None:
        if getattr(self.voice, "talking", False):
            self.notify("Hands-free talk is on: just speak (F5 ends it).", title="Voice")
            return
        if self.voice.listening:
            self.voice.stop_listening()
            self._set_listening(False)
            return
        try:
            self.voice.start_listening(
                on_level=lambda level: self.post_message(m.VoiceLevel(level)),
                on_utterance=lambda audio: self.post_message(m.Heard("", audio)),
                on_error=lambda err: self.post_message(m.ListeningChanged(False, err)),
                on_idle=lambda: self.post_message(m.ListeningChanged(False)),
            )
        except VoiceUnavailable as e:
            self.notify(str(e), title="Voice", severity="warning")
            return
        self.voice.stop_speaking()
        self._set_listening(True)

    def _set_listening(self, on_: bool) -> None:
        meter = self.query_one(LevelMeter)
        meter.level = 0.0
        meter.display = on_
        meter.label, meter.hint = "listening", "ctrl+r stops"

    # ------------------------------------------------------------------ hands-free talk

    def action_talk(self) -> None:
        """F5 or /talk: hands-free conversation on or off (see assistant.voice.talk)."""
        voice = self.voice
        if getattr(voice, "talking", False):
            voice.stop_talk()
            self._show_talk("")
            return
        if not hasattr(voice, "start_talk"):
            self.notify("hands-free talk is not available here", title="Voice", severity="warning")
            return
        if self.bot is None:
            why = f"models failed to load: {self.load_error}" if self.load_error else "the models are still loading"
            self.notify(f"Hands-free talk needs the models: {why}.", title="Voice", severity="warning")
            return
        if voice.listening:
            voice.stop_listening(keep=False)
        try:
            voice.start_talk(
                self.bot, respond=self._talk_respond,
                on_state=lambda state: self.post_message(m.TalkState(state)),
                on_level=lambda level: self.post_message(m.VoiceLevel(level)),
                on_error=lambda line: self.post_message(m.CommandOutput("talk", line, True)),
            )
        except VoiceUnavailable as e:
            self.notify(str(e), title="Voice", severity="warning")
            return
        self._show_talk("starting")

    def _talk_respond(self, text: str, audio: Any, speech: Any, cancel: threading.Event) -> None:
        """The loop's thread: answer a spoken request through the normal turn path and wait
        until it has been spoken (barge-in and esc set ``cancel``)."""
        try:
            job = self.call_from_thread(self._talk_turn, text, audio, speech, cancel)
        except RuntimeError:  # the app is closing
            return
        if job is not None:
            job.done.wait()

    def _talk_turn(self, text: str, audio: Any, speech: Any, cancel: threading.Event) -> TurnJob | None:
        if self.job is not None:
            self.query_one(ChatInput).value = text
            self.notify("A reply is on its way; your words are in the input bar.", severity="warning")
            return None
        return self.send(text, [], recording=(audio, SAMPLE_RATE), heard=True, speech=speech, cancel=cancel)

    def _show_talk(self, state: str) -> None:
        self.query_one(StatusBar).talk = state
        meter = self.query_one(LevelMeter)
        meter.display = bool(state)
        meter.level = 0.0
        meter.label, meter.hint = f"hands-free: {state}", "F5 ends · esc stops the reply"

    def on_talk_state(self, msg: m.TalkState) -> None:
        if self.query(StatusBar):  # not while the app closes
            self._show_talk("" if msg.state == "stopped" else msg.state)

    def on_listening_changed(self, msg: m.ListeningChanged) -> None:
        self._set_listening(msg.listening)
        if msg.error:
            self.notify(msg.error, title="Voice", severity="error")

    def on_voice_level(self, msg: m.VoiceLevel) -> None:
        for meter in self.query(LevelMeter):  # none while the app closes (the microphone may still report)
            meter.level = msg.level

    def on_heard(self, msg: m.Heard) -> None:
        """The microphone caught an utterance: transcribe it (worker), then send it as a turn."""
        self._set_listening(False)
        if msg.text:
            if self.job is not None:
                self.query_one(ChatInput).value = msg.text
                self.notify("A reply is on its way; your words are in the input bar.", severity="warning")
                return
            self.send(msg.text, [], recording=msg.extra.get("recording"), heard=True)
        elif msg.audio is not None:
            self._transcribe(msg.audio)

    @work(thread=True, group="transcribe", exit_on_error=False)
    def _transcribe(self, audio: Any) -> None:
        self._models_ready.wait()
        if self.bot is None:
            self.post_message(m.CommandOutput("listen", f"models failed to load: {self.load_error}", True))
            return
        try:
            text = self.bot.transcribe(audio).strip()
        except Exception as e:
            self.post_message(m.CommandOutput("listen", f"could not transcribe: {first_line(e)}", True))
            return
        if not text:
            self.post_message(m.CommandOutput("listen", "heard nothing I could transcribe", True))
            return
        self.post_message(m.Heard(text, None, {"recording": (audio, SAMPLE_RATE)}))
