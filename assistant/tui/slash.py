"""The terminal UI's slash commands: the built-in ones and those plugins register
(:class:`SlashCommands`, mixed into :class:`assistant.tui.app.SynesthesiaApp`)."""

from __future__ import annotations

from textual import work

from assistant.errors import first_line
from assistant.tui import messages as m
from assistant.tui.widgets import ChatInput


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


class SlashCommands:
    """``/command`` lines typed in the chat (part of the app)."""

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
            from assistant.tui.screens import SearchScreen  # the dialogs load when first opened, not at start

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

    def _plugin_command(self, line: str) -> None:
        """Hand an unknown ``/command`` to the plugins (``bot.command``), in a worker."""
        if self.bot is None:
            why = "no plugins" if self.load_error else "the models are still loading"
            self.notify(f"{line.split()[0]}: unknown command ({why}; F1 lists the commands)", severity="error")
            self.query_one(ChatInput).value = line
            return
        self._run_plugin_command(line)

    @work(thread=True, group="command", exit_on_error=False)
    def _run_plugin_command(self, line: str) -> None:
        name = line.split()[0]
        try:
            result = self.bot.command(line)
        except Exception as e:
            self.post_message(m.CommandOutput(name, first_line(e), True))
            return
        if result is None:
            self.post_message(m.CommandOutput(name, f"{name}: unknown command (F1 lists the commands)", True))
            return
        data = result.data
        image = data.get("image") if isinstance(data, dict) and isinstance(data.get("image"), str) else None
        self.post_message(m.CommandOutput(name, str(result.text) if result.text else f"{name}: done", image=image))
