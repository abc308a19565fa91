"""The sessions sidebar: the most recent sessions a page at a time, a filter that reaches the rest.

Its cost does not grow with the number of sessions: the list is one ``OptionList`` (lines,
not a widget per session) holding the pages read so far, :data:`PAGE` sessions each; its
last line reads the next page when it is highlighted or chosen, and the filter above it asks
the store for the titles (or the id) typed, among every session. The full-text search
(ctrl+f) finds sessions by what was said in them.
"""

from __future__ import annotations

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from assistant.storage import Session, SessionStore

PAGE = 50
"""Sessions read from the store at a time."""

MORE = "more"
"""The option id of the list's last line, which reads the next page."""


def session_prompt(session: Session) -> Content:
    """Two lines: the title, then ``#id · N turns``."""
    n = session.turns
    return Content.assemble(
        session.title, "\n", (f"#{session.id} · {n} turn{'' if n == 1 else 's'}", "dim"),
    )


class SessionList(OptionList):
    """Sessions, most recent first. Enter opens; r renames; d deletes; e exports; n starts a new
    one; / goes to the filter."""

    BINDINGS = [
        Binding("r", "rename", "Rename"),
        Binding("d,delete", "delete", "Delete"),
        Binding("e", "export", "Export"),
        Binding("n", "new", "New"),
        Binding("slash", "filter", "Filter by title or #id"),
    ]

    class Act(Message):
        """A key asked for ``action`` ('rename', 'delete', 'export', 'new', 'filter') on ``session``."""

        def __init__(self, action: str, session: Session | None) -> None:
            super().__init__()
            self.action = action
            self.session = session

    class Chosen(Message):
        """The user chose ``session`` (enter or a click)."""

        def __init__(self, session: Session) -> None:
            super().__init__()
            self.session = session

    def __init__(self, store: SessionStore, **kw) -> None:
        super().__init__(**kw)
        self.store = store
        self.match = ""
        """The filter: only sessions whose title holds these words (or with this id)."""
        self.sessions: list[Session] = []
        """The sessions read so far, in list order."""
        self.total = 0
        """How many sessions pass the filter, read or not."""

    def show(self, current: int | None = None, match: str | None = None) -> None:
        """Read the list again (as many sessions as were read, at least a page), highlighting
        session ``current`` when it is among them; ``match`` changes the filter."""
        if match is not None:
            self.match = match
        size = max(PAGE, len(self.sessions))
        self.total = self.store.count_sessions(self.match)
        self.sessions = self.store.list_sessions(size, match=self.match)
        self.set_options([Option(session_prompt(s), id=str(s.id)) for s in self.sessions])
        self._add_more_line()
        ids = [s.id for s in self.sessions]
        self.highlighted = ids.index(current) if current in ids else (0 if ids else None)

    def more(self) -> None:
        """Read the next page onto the end of the list."""
        if len(self.sessions) >= self.total or not self.sessions:
            return
        page = self.store.list_sessions(PAGE, after=self.sessions[-1], match=self.match)
        if len(page) < PAGE:  # the last page (sessions were deleted since the count)
            self.total = len(self.sessions) + len(page)
        seen = {s.id for s in self.sessions}
        page = [s for s in page if s.id not in seen]
        first_new = len(self.sessions)
        self.remove_option(MORE)
        self.sessions += page
        self.add_options([Option(session_prompt(s), id=str(s.id)) for s in page])
        self._add_more_line()
        self.highlighted = first_new if page else len(self.sessions) - 1

    def _add_more_line(self) -> None:
        left = self.total - len(self.sessions)
        if left > 0:
            self.add_option(Option(Content.styled(f"▾ {left:,} older: enter for more", "italic dim"), id=MORE))

    def _more_if_highlighted(self) -> None:
        """Read the next page if the "more" line is (still) the highlighted one."""
        option = self.highlighted_option
        if option is not None and option.id == MORE:
            self.more()

    @on(OptionList.OptionHighlighted)
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_id == MORE:
            event.stop()
            self.call_after_refresh(self._more_if_highlighted)

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_id == MORE:
            self._more_if_highlighted()
        elif event.option_index < len(self.sessions):
            self.post_message(self.Chosen(self.sessions[event.option_index]))

    def selected(self) -> Session | None:
        i = self.highlighted
        return self.sessions[i] if i is not None and i < len(self.sessions) else None

    def action_rename(self) -> None:
        self.post_message(self.Act("rename", self.selected()))

    def action_delete(self) -> None:
        self.post_message(self.Act("delete", self.selected()))

    def action_export(self) -> None:
        self.post_message(self.Act("export", self.selected()))

    def action_new(self) -> None:
        self.post_message(self.Act("new", None))

    def action_filter(self) -> None:
        self.post_message(self.Act("filter", None))


class Sidebar(Vertical):
    """The title with the number of sessions, the filter, and the :class:`SessionList`."""

    def __init__(self, store: SessionStore, **kw) -> None:
        super().__init__(**kw)
        self.store = store

    def compose(self):
        yield Label("Sessions", id="sidebar-title")
        yield Input(placeholder="filter: title or #id", id="session-filter", compact=True)
        yield SessionList(self.store, id="sessions", compact=True)

    @property
    def sessions(self) -> SessionList:
        return self.query_one(SessionList)

    def show(self, current: int | None) -> None:
        """Read the list again, highlighting session ``current``."""
        self.sessions.show(current)
        self._count()

    @on(Input.Changed, "#session-filter")
    def _filter(self, event: Input.Changed) -> None:
        event.stop()
        listed = self.sessions
        current = listed.selected()
        listed.sessions = []  # a new filter starts again from one page
        listed.show(current.id if current else None, match=event.value.strip())
        self._count()

    @on(SessionList.Act)
    def _to_filter(self, event: SessionList.Act) -> None:
        if event.action == "filter":
            event.stop()
            self.query_one("#session-filter", Input).focus()

    @on(Input.Submitted, "#session-filter")
    def _to_list(self, event: Input.Submitted) -> None:
        event.stop()
        self.sessions.focus()

    def _count(self) -> None:
        listed = self.sessions
        title = f"Sessions · {listed.total:,}" + (" found" if listed.match else "")
        self.query_one("#sidebar-title", Label).update(title)
