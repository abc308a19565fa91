"""The Synesthesia terminal app: chat with streamed Markdown replies, attachments, voice, sessions.

Threading: the models load and every turn runs in Textual thread workers; workers talk back
only through messages (:mod:`assistant.tui.messages`), never by touching widgets. The
session store is thread-safe, and the reply is streamed into it from the worker (so a crash
keeps what was said so far, marked partial).

The app is assembled from one module per concern: :mod:`~assistant.tui.turns` (running a turn),
:mod:`~assistant.tui.voice_actions` (stop, listen, hands-free talk), :mod:`~assistant.tui.slash`
(slash commands), :mod:`~assistant.tui.session_actions` (the sidebar's sessions); this file holds
the layout, model loading, input and the screens.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from assistant.errors import AssistantError, first_line
from assistant.plugin_host import is_command
from assistant.storage import Session, SessionStore
from assistant.tui import messages as m
from assistant.tui.attachments import Pending, as_attachment, split_paths
from assistant.tui.helpers import accepts, describe_models, key_names
from assistant.tui.protocol import AssistantLike
from assistant.tui.resume import resume_conversation
from assistant.tui.session_actions import SessionActions
from assistant.tui.sidebar import SessionList, Sidebar
from assistant.tui.slash import SLASH_COMMANDS, SlashCommands
from assistant.tui.turns import TurnJob, TurnRunner
from assistant.tui.voice_actions import VoiceActions
from assistant.tui.voice_bridge import VoiceBridge
from assistant.tui.widgets import AttachmentBar, ChatInput, ChatLog, LevelMeter, StatusBar, TurnView

log = logging.getLogger(__name__)


class SynesthesiaApp(TurnRunner, VoiceActions, SlashCommands, SessionActions, App[int]):
    """``SynesthesiaApp(settings, load_bot)``; ``load_bot()`` returns what the UI needs of an
    assistant (:class:`assistant.tui.protocol.AssistantLike`) and runs in a worker thread."""

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
        load_bot: Callable[..., AssistantLike],
        store: SessionStore | None = None,
        *,
        voice: VoiceBridge | None = None,
        cursor_blink: bool = True,
        config_file: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.config_file = config_file  # where the settings screen saves (None: config.toml)
        self._load_bot = load_bot
        self.store = store if store is not None else SessionStore.open(write=True)
        self.voice = voice if voice is not None else VoiceBridge(settings)
        self.cursor_blink = cursor_blink
        self.bot: AssistantLike | None = None
        self.load_error: str | None = None
        self._models_ready = threading.Event()
        self.session: Session | None = None
        self.pending: list[Pending] = []
        self.job: TurnJob | None = None
        self.turns: dict[int, TurnView] = {}
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
        self._refresh_sessions()
        self.query_one(ChatInput).focus()
        self._load_started = time.monotonic()
        self.call_after_refresh(self._after_first_frame)

    def _after_first_frame(self) -> None:
        """The rest of the start, once the input and the session list are drawn: the resumed
        session's turns (their replies are Markdown, whose parser is imported here), then,
        once those are drawn, loading the models (:meth:`_load_models` imports the model stack
        in a thread, which would hold the interpreter lock while the window is being drawn)."""
        if self.job is None and not self.turns:  # nothing sent in the meantime
            self._show_turns()
        self.call_after_refresh(self._load_models)

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
            if accepts(self._load_bot, "progress"):
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
        self.bot.notify = lambda message, severity="information": self.post_message(m.Notice(str(message), severity))
        self.bot.on_note = lambda text: self.post_message(m.NoteSaved(str(text)))
        if self.bot.plugins is not None:  # capability questions become dialogs, not tty prompts
            self.bot.plugins.confirm = self.confirm_from_thread
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
        resume_conversation(self.bot, self.store, self.session.id if self.session else None)
        self._warm_up(self.bot)

    @work(thread=True, exclusive=True, group="warm-up", exit_on_error=False)
    def _warm_up(self, bot: AssistantLike) -> None:
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

    # ------------------------------------------------------------------ screens

    def action_attach(self) -> None:
        from assistant.tui.screens import FilePickerScreen  # the dialogs load when first opened, not at start

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.attach_path(str(path))

        self.push_screen(FilePickerScreen(Path.cwd()), chosen)

    def action_settings(self) -> None:
        from assistant.tui.screens import SettingsScreen  # the dialogs load when first opened, not at start

        def saved(new: Any) -> None:
            if new is None:
                return
            try:
                where = new.save(self.config_file)
            except (OSError, AssistantError) as e:
                self.notify(f"could not save settings: {first_line(e)}", severity="error", markup=False)
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
                rows.append((key_names(b.key), where, b.description or b.action))
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
        if self.bot is not None and self.bot.plugins is not None:
            for cmd in sorted(self.bot.plugins.commands.values(), key=lambda c: c.name):
                rows.append((cmd.usage or f"/{cmd.name}", f"{cmd.help} (plugin {cmd.plugin or '?'})"))
        return rows

    def action_help(self) -> None:
        from assistant.tui.screens import HelpScreen  # the dialogs load when first opened, not at start

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
            from assistant.tui.screens import ConfirmScreen  # the dialogs load when first opened, not at start

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
