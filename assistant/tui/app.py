"""The Synesthesia terminal app: chat with streamed Markdown replies, attachments, voice, sessions.

Threading: the models load and every turn runs in Textual thread workers; workers talk back
only through messages (:mod:`assistant.tui.messages`), never by touching widgets. The
session store is thread-safe, and the reply is streamed into it from the worker (so a crash
keeps what was said so far, marked partial).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.text import Text
from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from assistant import paths
from assistant.errors import AssistantError, Cancelled, InputError, first_line
from assistant.storage import SearchHit, Session, SessionStore
from assistant.tui import messages as m
from assistant.tui.attachments import Pending, as_attachment, image_texts, split_paths
from assistant.tui.resume import resume_conversation
from assistant.tui.screens import (
    ConfirmScreen,
    FilePickerScreen,
    HelpScreen,
    PromptScreen,
    SearchScreen,
    SettingsScreen,
)
from assistant.tui.sidebar import SessionList, Sidebar
from assistant.tui.voice_bridge import VoiceBridge, VoiceUnavailable
from assistant.tui.widgets import (
    AssistantMessage,
    AttachmentBar,
    ChatInput,
    ChatLog,
    LevelMeter,
    StatusBar,
    SystemLine,
    Turn,
    UserMessage,
    format_timings,
    image_preview,
)
from assistant.plugin_host import is_command

log = logging.getLogger(__name__)

SHOWN_TURNS = 60
"""A resumed session shows at most this many of its latest turns (all stay in the database)."""

UI_FRAME = 0.05
"""Seconds between reply updates sent to the UI while a reply streams."""

SLASH_COMMANDS: list[tuple[str, str]] = [
    ("/image PATH", "attach an image to the next message"),
    ("/audio PATH", "attach an audio file to the next message"),
    ("/clear", "drop the attachments waiting to be sent"),
    ("/new [TITLE]", "start a new session"),
    ("/rename TITLE", "rename this session"),
    ("/delete", "delete this session"),
    ("/export [DIR]", "export this session (Markdown + media + JSON)"),
    ("/search WORDS", "search every session"),
    ("/note TEXT", "keep a note in this session"),
    ("/speak on|off", "spoken replies on or off"),
    ("/listen", "start or stop listening to the microphone"),
    ("/talk", "hands-free conversation on or off: listen, answer aloud, listen again (F5)"),
    ("/settings", "open the settings"),
    ("/help", "this help"),
    ("/quit", "leave"),
    ("/NAME ARGS", "any other command goes to the plugins"),
]


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


class SynesthesiaApp(App[int]):
    """``SynesthesiaApp(settings, load_bot)``; ``load_bot()`` returns an object with the
    ``Assistant`` interface (see docs/CONTRACTS.md) and runs in a worker thread."""

    CSS_PATH = "app.tcss"
    TITLE = "Synesthesia"

    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+r", "listen", "Listen"),
        Binding("f5", "talk", "Talk"),
        Binding("f6", "image_text", "Image text"),
        Binding("f7", "attention", "Attention view", show=False),
        Binding("ctrl+t", "toggle_speak", "Speak replies"),
        Binding("ctrl+o", "attach", "Attach"),
        Binding("ctrl+n", "new_session", "New"),
        Binding("ctrl+b", "toggle_sidebar", "Sessions"),
        Binding("ctrl+f,f3", "search", "Search"),
        Binding("f2", "settings", "Settings"),
        Binding("f4", "export", "Export"),
        Binding("ctrl+l", "focus_input", "Focus input", show=False),
    ]

    def __init__(
        self,
        settings: Any,
        load_bot: Callable[[], Any],
        store: SessionStore | None = None,
        *,
        voice: VoiceBridge | None = None,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.settings = settings
        self._load_bot = load_bot
        self.store = store if store is not None else SessionStore.open(write=True)
        self.voice = voice if voice is not None else VoiceBridge(settings)
        self.cursor_blink = cursor_blink
        self.bot: Any = None
        self.load_error: str | None = None
        self._models_ready = threading.Event()
        self.session: Session | None = None
        self.pending: list[Pending] = []
        self.job: TurnJob | None = None
        self.turns: dict[int, Turn] = {}
        self._keys = itertools.count(1)
        self.speak_replies = bool(settings.voice.speak_replies)
        self._spinner = None
        self._load_started = time.monotonic()

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """As App.notify, but messages are plain text by default (they hold file names and errors)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    # ------------------------------------------------------------------ layout

    def compose(self):
        yield Header(show_clock=False, icon="◆")
        with Horizontal(id="body"):
            yield Sidebar(self.store, id="sidebar")
            with Vertical(id="main"):
                yield ChatLog(id="chat")
                yield AttachmentBar(id="attachments")
                yield LevelMeter(id="meter")
                yield ChatInput(
                    placeholder="Ask anything · /image PATH · ctrl+o attach · F1 help",
                    id="prompt",
                )
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        theme = self.settings.ui.theme
        if theme in self.available_themes:
            self.theme = theme
        else:
            self.notify(f"ui.theme: no theme named {theme!r}; using the default", severity="warning")
        self.query_one(ChatInput).cursor_blink = self.cursor_blink
        self.query_one("#attachments").display = False
        self.query_one("#meter").display = False
        self.query_one("#sidebar").display = bool(self.settings.ui.sidebar)
        status = self.query_one(StatusBar)
        status.speak = self.speak_replies
        self._spinner = self.set_interval(0.1, self._tick)
        if self.settings.ui.resume_last:
            self.session = self.store.last_session()
        self._show_session()
        self.query_one(ChatInput).focus()
        self._load_started = time.monotonic()
        self._load_models()

    def on_unmount(self) -> None:
        if self.job is not None:  # leaving mid-reply: stop it; what was streamed is kept, marked partial
            self.job.cancel.set()
            if self.bot is not None:
                self.bot.cancel()
        self.voice.stop_speaking()
        close = getattr(self.voice, "close", None)
        if close is not None:
            close()

    def _tick(self) -> None:
        status = self.query_one(StatusBar)
        status.frame += 1
        status.load_elapsed = int(time.monotonic() - self._load_started)

    # ------------------------------------------------------------------ models

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load_models(self) -> None:
        start = time.perf_counter()
        try:
            if _accepts(self._load_bot, "progress"):
                bot = self._load_bot(progress=lambda text: self.post_message(m.LoadProgress(str(text))))
            else:
                bot = self._load_bot()
        except AssistantError as e:
            self.post_message(m.BotFailed(first_line(e)))
            return
        except Exception as e:  # a bug: keep the traceback in the log, the app running
            log.exception("loading the models failed")
            self.post_message(m.BotFailed(f"{type(e).__name__}: {first_line(e)}"))
            return
        self.post_message(m.BotReady(bot, describe_models(bot), time.perf_counter() - start))

    def on_load_progress(self, msg: m.LoadProgress) -> None:
        self.query_one(StatusBar).stage = msg.text

    def on_bot_ready(self, msg: m.BotReady) -> None:
        self.bot = msg.bot
        # Plugins report (timers, problems) and save notes through these hooks, from any thread.
        if hasattr(self.bot, "notify"):
            self.bot.notify = lambda message, severity="information": self.post_message(
                m.Notice(str(message), severity))
        if hasattr(self.bot, "on_note"):
            self.bot.on_note = lambda text: self.post_message(m.NoteSaved(str(text)))
        host = getattr(self.bot, "plugins", None)
        if host is not None and hasattr(host, "confirm"):  # capability questions become dialogs, not tty prompts
            host.confirm = self.confirm_from_thread
        self._resume_conversation()
        self._models_ready.set()
        if self._spinner is not None:
            self._spinner.stop()
        status = self.query_one(StatusBar)
        status.models_loading = False
        status.models = " · ".join(msg.models)

    def on_bot_failed(self, msg: m.BotFailed) -> None:
        self.load_error = msg.error
        self._models_ready.set()
        if self._spinner is not None:
            self._spinner.stop()
        status = self.query_one(StatusBar)
        status.models_loading = False
        status.error = msg.error
        self.notify(msg.error, title="Models failed to load", severity="error", timeout=30)

    def _resume_conversation(self) -> None:
        """Give the assistant this session's latest turns (those that can fit) as its conversation,
        then let it get ready for the next question in the background (:meth:`_warm_up`)."""
        if self.bot is None:
            return
        resume_conversation(self.bot, self.store, self.session.id if self.session else None,
                            getattr(self.bot, "settings", self.settings))
        if callable(getattr(self.bot, "warm_up", None)):
            self._warm_up(self.bot)

    @work(thread=True, exclusive=True, group="warm-up", exit_on_error=False)
    def _warm_up(self, bot: Any) -> None:
        """``bot.warm_up()`` while the user types: what the assistant can compute before the
        question (its prompt so far). A speed-up only: a failure is logged, nothing else."""
        try:
            bot.warm_up()
        except Exception:
            log.warning("warm-up failed", exc_info=True)

    # ------------------------------------------------------------------ input

    @on(ChatInput.Submitted, "#prompt")
    def _submitted(self, event: ChatInput.Submitted) -> None:
        line = event.value.strip()
        if not line and not self.pending:
            return
        if (line == "/" or is_command(line)) and not as_attachment(line.split(" ", 1)[0]):  # "//x": text for the model
            event.input.value = ""
            self.run_slash(line)
            return
        text, found = split_paths(line)
        if self.job is not None:
            self.notify("A reply is on its way; press esc to stop it first.", severity="warning")
            return
        event.input.value = ""
        attachments = self.pending + found
        self.pending = []
        self._show_pending()
        self.send(text if found else line, attachments)

    @on(ChatInput.Attach)
    def _pasted(self, event: ChatInput.Attach) -> None:
        for item in event.items:
            self.attach(item)

    def attach(self, item: Pending) -> None:
        self.pending.append(item)
        self._show_pending()
        self.notify(f"attached {item.path.name} ({item.kind}); it goes with your next message")

    def _show_pending(self) -> None:
        self.query_one(AttachmentBar).show(self.pending)

    def attach_path(self, raw: str, kind: str | None = None) -> None:
        raw = raw.strip()
        if not raw:
            self.notify(f"usage: /{kind or 'image'} PATH", severity="warning")
            return
        item = as_attachment(raw, kind)
        if item is None:
            path = Path(raw.strip("'\"")).expanduser()
            problem = "no such file" if not path.exists() else (
                "is a folder" if path.is_dir() else "not an image or audio file (by its extension)")
            self.notify(f"{path}: {problem}", severity="error")
            return
        self.attach(item)

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
        turn = Turn(job.key, user, AssistantMessage(waiting=waiting))
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
            reply = getattr(bot, "last_reply", None)
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
        partial = cancelled or bool(getattr(reply, "partial", False)) or reply is None
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
            turn.user.attention = list(getattr(msg.reply, "attention", None) or [])
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
        return self.send(text, [], recording=(audio, 16000), heard=True, speech=speech, cancel=cancel)

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
        self.post_message(m.Heard(text, None, {"recording": (audio, 16000)}))

    # ------------------------------------------------------------------ slash commands

    def run_slash(self, line: str) -> None:
        name, _, args = line[1:].partition(" ")
        name, args = name.lower(), args.strip()
        simple = {
            "help": self.action_help, "settings": self.action_settings, "listen": self.action_listen,
            "talk": self.action_talk,
            "quit": self.exit, "exit": self.exit, "delete": self.action_delete_session,
            "sessions": self.action_toggle_sidebar,
        }
        if name in ("image", "img"):
            self.attach_path(args, "image")
        elif name == "audio":
            self.attach_path(args, "audio")
        elif name == "attach":
            self.attach_path(args)
        elif name == "clear":
            self.pending = []
            self._show_pending()
        elif name == "new":
            self.new_session(args or None)
        elif name == "rename":
            self.rename_current(args) if args else self.action_rename_session()
        elif name == "export":
            self.export_current(args) if args else self.action_export()
        elif name == "search":
            self.push_screen(SearchScreen(self.store.search, args), self._open_hit)
        elif name == "note":
            self.save_note(args)
        elif name == "speak":
            want = {"on": True, "off": False}.get(args.lower(), not self.speak_replies)
            if want != self.speak_replies:
                self.action_toggle_speak()
        elif name in simple:
            simple[name]()
        else:
            self._plugin_command(line)

    def save_note(self, text: str) -> None:
        if not text:
            self.notify("usage: /note TEXT", severity="warning")
            return
        if self.session is None:
            self.session = self.store.create_session()
            self._refresh_sessions()
        self.store.add_note(self.session.id, text)
        self.notify("note saved in this session")

    def _command_runner(self) -> Callable[[str, Any], Any] | None:
        """Where unknown ``/commands`` go: ``bot.command(line[, ctx=])``, else the plugin host's
        ``bot.plugins.run_command(line, ctx)``; None when neither exists."""
        if self.bot is None:
            return None
        command = getattr(self.bot, "command", None)
        if callable(command):
            return lambda line, ctx: command(line, ctx=ctx) if _accepts(command, "ctx") else command(line)
        run = getattr(getattr(self.bot, "plugins", None), "run_command", None)
        return run if callable(run) else None

    def _plugin_command(self, line: str) -> None:
        """Hand an unknown ``/command`` to the plugins (see :meth:`_command_runner`), in a worker."""
        if self._command_runner() is None:
            why = "the models are still loading" if self.bot is None and not self.load_error else "no plugins"
            self.notify(f"{line.split()[0]}: unknown command ({why}; F1 lists the commands)", severity="error")
            self.query_one(ChatInput).value = line
            return
        self._run_plugin_command(line)

    @work(thread=True, group="command", exit_on_error=False)
    def _run_plugin_command(self, line: str) -> None:
        name = line.split()[0]
        try:
            result = self._command_runner()(line, self._command_context())
        except Exception as e:
            self.post_message(m.CommandOutput(name, first_line(e), True))
            return
        if result is None:
            self.post_message(m.CommandOutput(name, f"{name}: unknown command (F1 lists the commands)", True))
            return
        text = getattr(result, "text", result)
        data = getattr(result, "data", None)
        image = data.get("image") if isinstance(data, dict) and isinstance(data.get("image"), str) else None
        self.post_message(m.CommandOutput(name, str(text) if text else f"{name}: done", image=image))

    def _command_context(self) -> Any:
        """What a plugin command may ask of the app (see plugins.types.CommandContext)."""
        app = self

        class _Context:
            settings = app.settings

            def image_labels(self) -> list[tuple[str, float]]:
                return []

            def save_note(self, text: str) -> None:
                app.call_from_thread(app.save_note, text)

            def notify(self, message: str, severity: str = "information") -> None:
                app.call_from_thread(app.notify, message, severity=severity)

            def add_context(self, text: str) -> None:
                history = getattr(app.bot, "history", None)
                if isinstance(history, list):
                    history.append({"role": "user", "content": text})

            def data_dir(self) -> Path:
                return paths.data_dir()

        return _Context()

    # ------------------------------------------------------------------ sessions

    def _show_session(self) -> None:
        """Fill the chat log with the current session (its latest turns) and the sidebar."""
        chat = self.query_one(ChatLog)
        chat.remove_children()
        self.turns.clear()
        self.sub_title = self.session.title if self.session else "new session"
        if self.session is not None:
            earlier = self.session.turns - SHOWN_TURNS
            if earlier > 0:
                chat.mount(SystemLine(f"… {earlier} earlier turns (in the export)", classes="system"))
            widgets = []
            for t in self.store.turns(self.session.id, last=SHOWN_TURNS):
                atts = [Pending(a.kind, a.path) for a in t.attachments if a.role == "user" and a.path.exists()]
                user = UserMessage(t.user_text, atts, preview=self.settings.ui.image_preview,
                                   transcript=t.transcript, image_texts=image_texts(None, t.evidence))
                reply = AssistantMessage(t.reply_text or "_(no reply)_", footer=reply_footer(t))
                widgets.append(Turn(next(self._keys), user, reply, turn_id=t.id))
            chat.mount_all(widgets)
        chat.anchor()
        self._refresh_sessions()

    def _refresh_sessions(self) -> None:
        if self.session is not None:
            try:
                self.session = self.store.get_session(self.session.id)
            except InputError:
                self.session = None
        self.sub_title = self.session.title if self.session else "new session"
        self.query_one(Sidebar).show(self.session.id if self.session else None)

    def switch_session(self, session_id: int | None) -> bool:
        if self.job is not None:
            self.notify("A reply is on its way; press esc to stop it first.", severity="warning")
            return False
        self.session = self.store.get_session(session_id) if session_id is not None else None
        self._show_session()
        self._resume_conversation()
        return True

    def new_session(self, title: str | None = None) -> None:
        if self.job is not None:
            self.notify("A reply is on its way; press esc to stop it first.", severity="warning")
            return
        self.session = self.store.create_session(title) if title else None
        self._show_session()
        self._resume_conversation()

    @on(SessionList.Chosen)
    def _session_chosen(self, event: SessionList.Chosen) -> None:
        session = event.session
        if self.session is None or session.id != self.session.id:
            self.switch_session(session.id)
        self.query_one(ChatInput).focus()

    @on(SessionList.Act)
    def _session_action(self, event: SessionList.Act) -> None:
        target = event.session
        if event.action == "new":
            self.new_session()
        elif target is None:
            return
        elif event.action == "rename":
            self.action_rename_session(target)
        elif event.action == "delete":
            self.action_delete_session(target)
        elif event.action == "export":
            self.action_export(target)

    def action_new_session(self) -> None:
        self.new_session()

    def action_rename_session(self, target: Session | None = None) -> None:
        target = target or self.session
        if target is None:
            self.notify("Nothing to rename yet: this session starts with your first message.")
            return
        self.push_screen(PromptScreen(f"Rename session #{target.id}", target.title),
                         lambda title: self.rename_current(title, target) if title else None)

    def rename_current(self, title: str, target: Session | None = None) -> None:
        target = target or self.session
        if target is None:
            self.session = target = self.store.create_session(title)
        try:
            self.store.rename_session(target.id, title)
        except InputError as e:
            self.notify(str(e), severity="error")
        self._refresh_sessions()

    def action_delete_session(self, target: Session | None = None) -> None:
        target = target or self.session
        if target is None:
            return

        def done(yes: bool | None) -> None:
            if not yes:
                return
            if self.job is not None and target.id == self.job.session_id:
                self.notify("A reply is on its way in that session; press esc first.", severity="warning")
                return
            self.store.delete_session(target.id)
            self.notify(f"deleted session #{target.id}")
            if self.session is not None and self.session.id == target.id:
                self.switch_session(None)
            else:
                self._refresh_sessions()

        self.push_screen(ConfirmScreen(f"Delete session #{target.id} “{target.title}” and its files?"), done)

    def action_export(self, target: Session | None = None) -> None:
        target = target or self.session
        if target is None:
            self.notify("Nothing to export yet.")
            return
        default = str(Path.cwd() / f"synesthesia-session-{target.id}")
        self.push_screen(PromptScreen(f"Export session #{target.id} into folder", default),
                         lambda d: self.export_current(d, target) if d else None)

    def export_current(self, folder: str, target: Session | None = None) -> None:
        target = target or self.session
        if target is None:
            self.notify("Nothing to export yet.")
            return
        try:
            md = self.store.export(target.id, folder)
        except (AssistantError, OSError) as e:
            self.notify(first_line(e), title="Export failed", severity="error")
            return
        self.notify(f"exported to {md.parent}", title="Export")

    def action_search(self) -> None:
        self.push_screen(SearchScreen(self.store.search), self._open_hit)

    def _open_hit(self, hit: SearchHit | None) -> None:
        if hit is None:
            return
        if (self.session is None or self.session.id != hit.session_id) and not self.switch_session(hit.session_id):
            return
        for turn in self.query(Turn):
            if turn.turn_id == hit.turn_id:
                self.query_one(ChatLog).anchor(False)
                turn.scroll_visible(top=True, animate=False)
                turn.add_class("found")
                self.set_timer(3, lambda t=turn: t.remove_class("found"))
                break

    def action_toggle_sidebar(self) -> None:
        sidebar = self.query_one("#sidebar")
        sidebar.display = not sidebar.display
        if sidebar.display:
            self.query_one(SessionList).focus()
        else:
            self.query_one(ChatInput).focus()

    def action_focus_input(self) -> None:
        self.query_one(ChatInput).focus()

    # ------------------------------------------------------------------ screens

    def action_attach(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self.attach_path(str(path))

        self.push_screen(FilePickerScreen(Path.cwd()), chosen)

    def action_settings(self) -> None:
        def saved(new: Any) -> None:
            if new is None:
                return
            try:
                where = new.save()
            except OSError as e:
                self.notify(f"could not save settings: {e}", severity="error")
                return
            self.settings = new
            if new.ui.theme in self.available_themes:
                self.theme = new.ui.theme
            self.notify(f"saved to {where}", title="Settings")

        self.push_screen(SettingsScreen(self.settings), saved)

    def help_rows(self) -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = []
        for where, bindings in (("anywhere", self.BINDINGS), ("session list", SessionList.BINDINGS)):
            for b in bindings:
                rows.append((_keys(b.key), where, b.description or b.action))
        rows += [
            ("ctrl+p", "anywhere", "Command palette (themes, every action)"),
            ("ctrl+q", "anywhere", "Quit"),
            ("enter", "input bar", "Send (a pasted file path attaches the file)"),
            ("tab / shift+tab", "anywhere", "Move focus"),
            ("enter", "session list", "Open the session"),
        ]
        return rows

    def slash_commands(self) -> list[tuple[str, str]]:
        """The app's own commands, then those the plugins registered."""
        rows = list(SLASH_COMMANDS)
        commands = getattr(getattr(self.bot, "plugins", None), "commands", None)
        if isinstance(commands, dict):
            for cmd in sorted(commands.values(), key=lambda c: getattr(c, "name", "")):
                usage = getattr(cmd, "usage", "") or f"/{getattr(cmd, 'name', '?')}"
                rows.append((usage, f"{getattr(cmd, 'help', '')} (plugin {getattr(cmd, 'plugin', '?')})"))
        return rows

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_rows(), self.slash_commands()))

    def confirm_from_thread(self, plugin: str, message: str) -> bool:
        """Ask the user yes/no in a dialog from a worker thread (plugin capability prompts)."""
        if threading.get_ident() == self._thread_id:
            return False  # never block the UI loop on a question
        answer: dict[str, bool] = {}
        done = threading.Event()

        def ask() -> None:
            def answered(yes: bool | None) -> None:
                answer["yes"] = bool(yes)
                done.set()

            self.push_screen(ConfirmScreen(message), answered)

        self.call_from_thread(ask)
        done.wait()
        return answer.get("yes", False)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("New session", "Start a new conversation", self.action_new_session)
        yield SystemCommand("Rename session", "Give this session a title", self.action_rename_session)
        yield SystemCommand("Delete session", "Delete this session and its files", self.action_delete_session)
        yield SystemCommand("Export session", "Markdown + images + audio + JSON", self.action_export)
        yield SystemCommand("Search history", "Full-text search over every session", self.action_search)
        yield SystemCommand("Attach file", "An image or audio file for the next message", self.action_attach)
        yield SystemCommand("Toggle listening", "Talk instead of typing (ends on silence)", self.action_listen)
        yield SystemCommand("Toggle hands-free talk", "Listen, answer aloud, listen again (F5)", self.action_talk)
        yield SystemCommand("Toggle spoken replies", "Read replies aloud", self.action_toggle_speak)
        yield SystemCommand("Stop", "Stop the reply and the speech", self.action_stop)
        yield SystemCommand("Toggle sidebar", "Show or hide the session list", self.action_toggle_sidebar)
        yield SystemCommand("Settings", "View and edit settings", self.action_settings)
        yield SystemCommand("Key bindings", "Every key and command (F1)", self.action_help)


# ----------------------------------------------------------------------------- helpers


def describe_models(bot: Any) -> list[str]:
    try:
        infos = list(bot.models())
    except Exception as e:
        log.warning("bot.models() failed: %s", e)
        return []
    return [f"{getattr(i, 'slot', '?')}: {getattr(i, 'name', '?')}" for i in infos]


def reply_footer(turn: Any) -> str:
    parts = []
    if turn.partial:
        reason = turn.stop_reason or "interrupted"
        parts.append("⏹ stopped" if reason == "cancelled" else f"⏹ partial ({reason})")
    if turn.evidence:
        parts.append("notes: " + "; ".join(turn.evidence[:3]))
    if turn.reply_audio is not None:
        parts.append("🔊 spoken")
    return "  ·  ".join(parts)


def _accepts(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (hooks whose signature varies by version)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _keys(key: str) -> str:
    return " / ".join(k.strip() for k in key.split(","))

