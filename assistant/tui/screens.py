"""Modal screens: help, settings, file picker, prompts, confirmation, history search."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError
from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    DataTable,
    DirectoryTree,
    Input,
    Label,
    ListItem,
    ListView,
    Select,
    Static,
    Switch,
)

from assistant.storage import SearchHit, classify

# ----------------------------------------------------------------------------- help


class HelpScreen(ModalScreen[None]):
    """Every key binding of the app (F1), plus the slash commands."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, bindings: list[tuple[str, str, str]], commands: list[tuple[str, str]]) -> None:
        super().__init__()
        self.bindings_rows = bindings
        self.commands = commands

    def compose(self):
        with Vertical(id="help", classes="dialog tall"):
            yield Label("Keys and commands", classes="dialog-title")
            table = DataTable(id="help-keys", cursor_type="row", zebra_stripes=True)
            table.add_columns("Key", "Where", "Does")
            for key, where, what in self.bindings_rows:
                table.add_row(Text(key), Text(where), Text(what))
            for usage, what in self.commands:
                table.add_row(Text(usage), Text("input bar"), Text(what))
            yield table
            yield Static("↑↓ scroll · esc closes", classes="dialog-hint")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


# ----------------------------------------------------------------------------- prompts


class PromptScreen(ModalScreen[str | None]):
    """One line of input (rename a session, choose an export folder). Returns the text or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", *, placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.placeholder = placeholder

    def compose(self):
        with Vertical(classes="dialog small"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static("enter accepts · esc cancels", classes="dialog-hint")

    @on(Input.Submitted, "#prompt-input")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "no", "No"), Binding("y", "yes", "Yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self):
        with Vertical(classes="dialog small"):
            yield Label(Text(self.question), classes="dialog-title")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


# ----------------------------------------------------------------------------- file picker


class AttachableTree(DirectoryTree):
    """Folders plus image and audio files; hidden files left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and (p.is_dir() or classify(p))]


class FilePickerScreen(ModalScreen[Path | None]):
    """Choose an image or audio file to attach."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, start: Path) -> None:
        super().__init__()
        self.start = start

    def compose(self):
        with Vertical(classes="dialog tall"):
            yield Label(Text(f"Attach an image or audio file — {self.start}"), classes="dialog-title")
            yield AttachableTree(self.start, id="picker-tree")
            yield Input(placeholder="…or type a path and press enter", id="picker-path")
            yield Static("enter on a file attaches it · esc cancels", classes="dialog-hint")

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(Path(event.path))

    @on(Input.Submitted, "#picker-path")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.dismiss(Path(event.value.strip()).expanduser())

    def action_cancel(self) -> None:
        self.dismiss(None)


# ----------------------------------------------------------------------------- search


class SearchScreen(ModalScreen[SearchHit | None]):
    """Full-text search over every session; enter opens the session of the chosen match."""

    BINDINGS = [Binding("escape", "cancel", "Close"), Binding("down", "focus_results", show=False)]

    def __init__(self, search, query: str = "") -> None:
        super().__init__()
        self.search = search  # callable(query) -> list[SearchHit]
        self.query_text = query
        self.hits: list[SearchHit] = []

    def compose(self):
        with Vertical(classes="dialog tall"):
            yield Label("Search history", classes="dialog-title")
            yield Input(self.query_text, placeholder="words to find (prefixes match)", id="search-input")
            yield ListView(id="search-results")
            yield Static("type to search · ↓ and enter open a session · esc closes", classes="dialog-hint")

    def on_mount(self) -> None:
        if self.query_text:
            self._run(self.query_text)

    @on(Input.Changed, "#search-input")
    def _changed(self, event: Input.Changed) -> None:
        self._run(event.value)

    @on(Input.Submitted, "#search-input")
    def _submitted(self, event: Input.Submitted) -> None:
        if self.hits:
            self.dismiss(self.hits[0])

    def _run(self, query: str) -> None:
        self.hits = self.search(query) if query.strip() else []
        results = self.query_one("#search-results", ListView)
        results.clear()
        if not self.hits and query.strip():
            results.append(ListItem(Label("no matches"), disabled=True))
        for hit in self.hits:
            results.append(ListItem(Label(Text(f"#{hit.session_id} {hit.session_title}: {hit.snippet}"))))

    @on(ListView.Selected, "#search-results")
    def _selected(self, event: ListView.Selected) -> None:
        idx = event.list_view.index
        if idx is not None and idx < len(self.hits):
            self.dismiss(self.hits[idx])

    def action_focus_results(self) -> None:
        self.query_one("#search-results").focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


# ----------------------------------------------------------------------------- settings


def field_doc(model: type[BaseModel], name: str) -> str:
    """The docstring written under a settings field (pydantic keeps it as the field's description)."""
    return " ".join((model.model_fields[name].description or "").split())


def _choices(annotation: Any) -> list[Any] | None:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return list(args)
    return None


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _allows_none(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list


class SettingsScreen(ModalScreen[Any]):
    """Every setting with its description; saving validates and writes the TOML file.

    Returns the new ``Settings`` when saved, else None.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, settings: Any) -> None:
        super().__init__()
        self.settings = settings
        self.themes: list[str] = []

    def _rows(self) -> Iterable[tuple[str, str | None, BaseModel, str, Any]]:
        """(widget id, section name or None, owner model, field name, annotation)."""
        top = self.settings
        for name, info in type(top).model_fields.items():
            value = getattr(top, name)
            if isinstance(value, BaseModel):
                for fname, finfo in type(value).model_fields.items():
                    yield f"set-{name}-{fname}", name, value, fname, finfo.annotation
            else:
                yield f"set--{name}", None, top, name, info.annotation

    def compose(self):
        self.themes = sorted(self.app.available_themes)
        with Vertical(id="settings", classes="dialog tall"):
            yield Label("Settings", classes="dialog-title")
            with VerticalScroll(id="settings-form"):
                current = object()
                for wid, section, owner, fname, ann in self._rows():
                    if section != current:
                        current = section
                        yield Label(Text(f"[{section}]" if section else "general"), classes="settings-section")
                    doc = field_doc(type(owner), fname)
                    value = getattr(owner, fname)
                    with Horizontal(classes="setting"):
                        with Vertical(classes="setting-label"):
                            yield Label(fname, classes="setting-name")
                            if doc:
                                yield Static(Text(doc), classes="setting-doc")
                        yield self._editor(wid, section, fname, ann, value)
            with Horizontal(classes="buttons"):
                yield Button("Save (ctrl+s)", id="settings-save", variant="primary")
                yield Button("Cancel (esc)", id="settings-cancel")
            yield Static("Model settings take effect the next time the assistant starts.", classes="dialog-hint")

    def _editor(self, wid: str, section: str | None, fname: str, ann: Any, value: Any):
        if _is_bool(ann):
            return Switch(bool(value), id=wid)
        choices = _choices(ann)
        if section == "ui" and fname == "theme":
            choices = self.themes if value in self.themes else [value, *self.themes]
        if choices:
            return Select([(str(c), c) for c in choices], value=value, allow_blank=False, id=wid)
        if value is None:
            text = ""
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        return Input(text, id=wid, placeholder="(default)" if _allows_none(ann) else "")

    def _collect(self) -> tuple[Any, list[str]]:
        new = self.settings.model_copy(deep=True)
        errors: list[str] = []
        for wid, section, _owner, fname, ann in self._rows():
            target = getattr(new, section) if section else new
            widget = self.query_one(f"#{wid}")
            if isinstance(widget, Switch):
                value: Any = widget.value
            elif isinstance(widget, Select):
                value = widget.value
            else:
                raw = widget.value.strip()
                if raw == "" and _allows_none(ann):
                    value = None
                elif _is_list(ann):
                    value = [x.strip() for x in raw.split(",") if x.strip()]
                else:
                    value = raw
            if value == getattr(target, fname):
                continue
            try:
                setattr(target, fname, value)
                widget.remove_class("invalid")
            except ValidationError as e:
                widget.add_class("invalid")
                msg = e.errors()[0]["msg"] if e.errors() else str(e)
                errors.append(f"{section + '.' if section else ''}{fname}: {msg}")
        return new, errors

    def action_save(self) -> None:
        new, errors = self._collect()
        if errors:
            self.notify("; ".join(errors), title="Not saved", severity="error", markup=False)
            return
        self.dismiss(new)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#settings-save")
    def _save(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#settings-cancel")
    def _cancel(self) -> None:
        self.action_cancel()
