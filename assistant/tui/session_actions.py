"""The terminal UI's sessions: showing one, switching, creating, renaming, deleting,
exporting and searching (:class:`SessionActions`, mixed into :class:`assistant.tui.app.SynesthesiaApp`)."""

from __future__ import annotations

from pathlib import Path


from assistant.errors import AssistantError, InputError, first_line
from assistant.storage import SearchHit, Session
from assistant.tui.attachments import Pending, image_texts
from assistant.tui.sidebar import SessionList, Sidebar
from assistant.tui.widgets import AssistantMessage, ChatInput, ChatLog, SystemLine, TurnView, UserMessage
from assistant.tui.helpers import reply_footer



SHOWN_TURNS = 60
"""A resumed session shows at most this many of its latest turns (all stay in the database)."""


class SessionActions:
    """What the sidebar and the session commands do (part of the app)."""

    # ------------------------------------------------------------------ sessions

    def _show_session(self) -> None:
        """Fill the chat log with the current session (its latest turns) and the sidebar."""
        self._show_turns()
        self._refresh_sessions()

    def _show_turns(self) -> None:
        """Fill the chat log with the current session's latest turns."""
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
                widgets.append(TurnView(next(self._keys), user, reply, turn_id=t.id))
            chat.mount_all(widgets)
        chat.anchor()

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

    def on_session_list_chosen(self, event: SessionList.Chosen) -> None:
        """(A handler by name: ``@on`` is only seen on Textual classes, and this is a mixin.)"""
        session = event.session
        if self.session is None or session.id != self.session.id:
            self.switch_session(session.id)
        self.query_one(ChatInput).focus()

    def on_session_list_act(self, event: SessionList.Act) -> None:
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
        from assistant.tui.screens import PromptScreen  # the dialogs load when first opened, not at start

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

        from assistant.tui.screens import ConfirmScreen  # the dialogs load when first opened, not at start

        self.push_screen(ConfirmScreen(f"Delete session #{target.id} “{target.title}” and its files?"), done)

    def action_export(self, target: Session | None = None) -> None:
        target = target or self.session
        if target is None:
            self.notify("Nothing to export yet.")
            return
        default = str(Path.cwd() / f"synesthesia-session-{target.id}")
        from assistant.tui.screens import PromptScreen  # the dialogs load when first opened, not at start

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
        from assistant.tui.screens import SearchScreen  # the dialogs load when first opened, not at start

        self.push_screen(SearchScreen(self.store.search), self._open_hit)

    def _open_hit(self, hit: SearchHit | None) -> None:
        if hit is None:
            return
        if (self.session is None or self.session.id != hit.session_id) and not self.switch_session(hit.session_id):
            return
        for turn in self.query(TurnView):
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
