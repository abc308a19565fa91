"""The records plugins register and the host hands back: commands, tools, engines, results.

Everything here is a plain dataclass (or a Protocol) with no dependency on the terminal UI,
so the pipeline, the CLI and the TUI can all build and read them.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Protocol, runtime_checkable

from plugins.errors import InputError

Severity = Literal["information", "warning", "error"]

#: What a command or tool may declare it does. Declared capabilities make the host ask the user
#: once per session before the plugin's first use (unless the plugin is trusted in settings).
READ_FILES = "read_files"
RUN_COMMANDS = "run_commands"
WRITE_FILES = "write_files"
NETWORK = "network"
CAPABILITIES = {
    READ_FILES: "read files on this computer",
    WRITE_FILES: "write files on this computer",
    RUN_COMMANDS: "run programs on this computer",
    NETWORK: "use the network",
}


@runtime_checkable
class CommandContext(Protocol):
    """What a command or tool may ask of the application while it runs.

    The pipeline, the CLI and the TUI each provide one (see :class:`BasicContext` for a ready
    implementation built from callables).
    """

    settings: Any
    """The application's ``Settings`` (may be None in tests)."""

    def image_labels(self) -> list[tuple[str, float]]:
        """The image encoder's labels (name, probability) for the attached image; [] when none."""

    def save_note(self, text: str) -> None:
        """Store a note in the current session."""

    def notify(self, message: str, severity: Severity = "information") -> None:
        """Show a message now (a TUI notification, a line on stderr in the CLI)."""

    def add_context(self, text: str) -> None:
        """Put text into the conversation, so the next replies can use it."""

    def data_dir(self) -> Path:
        """The application's folder for files it keeps (``SYNESTHESIA_DATA_DIR``), private to
        the user; a plugin writes its own files in a subfolder named after it."""


def print_notice(message: str, severity: str = "information") -> None:
    prefix = {"warning": "warning: ", "error": "error: "}.get(severity, "")
    print(f"{prefix}{message}", file=sys.stderr, flush=True)


@dataclass
class BasicContext:
    """A :class:`CommandContext` made of optional callables, with sensible stand-ins.

    - ``labels``: returns the attached image's labels; missing means "no image attached".
    - ``on_note`` / ``on_context``: receive saved notes / added context; they are also kept in
      :attr:`notes` and :attr:`added` so a CLI or a test can read them back.
    - ``on_notify``: shows a message; missing means a line on stderr.
    - ``folder``: returns the application's data folder; missing means a private temporary
      folder, made on first use.
    """

    settings: Any = None
    labels: Callable[[], list[tuple[str, float]]] | None = None
    on_note: Callable[[str], None] | None = None
    on_notify: Callable[[str, str], None] | None = None
    on_context: Callable[[str], None] | None = None
    folder: Callable[[], Path] | None = None
    notes: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)

    def image_labels(self) -> list[tuple[str, float]]:
        return list(self.labels()) if self.labels else []

    def save_note(self, text: str) -> None:
        self.notes.append(text)
        if self.on_note:
            self.on_note(text)

    def notify(self, message: str, severity: Severity = "information") -> None:
        (self.on_notify or print_notice)(message, severity)

    def add_context(self, text: str) -> None:
        self.added.append(text)
        if self.on_context:
            self.on_context(text)

    def data_dir(self) -> Path:
        if self.folder is None:
            self.folder = _temporary_folder
        return Path(self.folder())


_TEMPORARY: list[Path] = []


def _temporary_folder() -> Path:
    """One private (0700) temporary folder per process, for contexts given no data folder."""
    if not _TEMPORARY:
        _TEMPORARY.append(Path(tempfile.mkdtemp(prefix="synesthesia-plugins-")))
    return _TEMPORARY[0]


@dataclass
class CommandResult:
    """What a slash command returns: text to show the user, plus optional data for ``--json``."""

    text: str
    data: Any = None
    command: str = ""
    """Filled in by the host: the command's name."""


@dataclass
class ToolResult:
    """What a tool returns: facts for the generator to phrase (``text``) and structured ``data``."""

    text: str
    data: Any = None
    tool: str = ""
    """Filled in by the host: the tool's name."""
    ok: bool = True
    """False when the tool could not do what was asked; ``text`` then says why."""


@dataclass
class Command:
    """A slash command: ``/name ARGS``. ``fn(args: str, ctx) -> CommandResult | str | None``."""

    name: str
    help: str
    fn: Callable[..., Any]
    plugin: str = ""
    usage: str = ""
    aliases: tuple[str, ...] = ()
    capabilities: frozenset[str] = frozenset()
    timeout_s: float | None = None
    """Overrides ``settings.plugins.timeout_s`` for this command (None: use the setting)."""


@dataclass
class Tool:
    """Something the assistant does for a request phrased in words.

    ``fn(text: str, ctx) -> ToolResult | str | dict``. The router picks a tool when the request
    is close (cosine similarity of sentence embeddings) to one of its ``examples`` and
    ``guard(text)`` (when given) accepts it. The generator then phrases the result.
    """

    name: str
    description: str
    fn: Callable[..., Any]
    examples: tuple[str, ...]
    plugin: str = ""
    threshold: float | None = None
    """Least similarity to an example for the tool to fire (None: the router's default)."""
    guard: Callable[[str], bool] | None = None
    """A cheap check that the request is really for this tool (e.g. it holds a number)."""
    capabilities: frozenset[str] = frozenset()
    timeout_s: float | None = None

    def schema(self) -> dict[str, Any]:
        """A JSON-schema style description, for generators with native tool calling."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": {
                "type": "object",
                "properties": {"request": {"type": "string", "description": "The user's request."}},
                "required": ["request"],
            },
        }


@dataclass
class ToolMatch:
    """The router's choice: which tool, how close the request was, and why it fired."""

    tool: Tool
    score: float
    why: str
    example: str = ""
    """The example phrase that matched best ('' for an explicit call)."""


@dataclass
class EncoderSpec:
    """A modality encoder a plugin offers. ``factory(**options)`` builds it."""

    name: str
    modality: str
    factory: Callable[..., Any]
    description: str = ""
    plugin: str = ""


@dataclass
class SpeechEngineSpec:
    """A speech engine a plugin offers: ``kind`` is 'recognizer' or 'synthesizer'.

    ``factory(**options)`` returns an object with the interface of ``models.speech``:
    a recognizer has ``.name`` and ``.transcribe(np.ndarray) -> str``; a synthesizer has
    ``.name``, ``.sample_rate`` and ``.synthesize(text) -> np.ndarray``.
    """

    name: str
    kind: Literal["recognizer", "synthesizer"]
    factory: Callable[..., Any]
    description: str = ""
    plugin: str = ""


@dataclass
class PluginStatus:
    """One line of ``assistant plugins``."""

    name: str
    version: str | None
    source: str
    """'builtin', 'entry point', 'folder'."""
    hooks: list[str] = field(default_factory=list)
    status: str = "ok"
    """'ok', 'error' (failed to import or raised in a hook), 'timeout', 'disabled', 'off'."""
    error: str | None = None
    provides: list[str] = field(default_factory=list)
    """What it registered: '/calc', 'tool:calculator', 'encoder:...', ..."""
    capabilities: list[str] = field(default_factory=list)
    trusted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "hooks": list(self.hooks),
            "status": self.status,
            "error": self.error,
            "provides": list(self.provides),
            "capabilities": list(self.capabilities),
            "trusted": self.trusted,
        }


def as_command_result(value: Any) -> CommandResult:
    if isinstance(value, CommandResult):
        return value
    if value is None:
        return CommandResult(text="")
    if isinstance(value, str):
        return CommandResult(text=value)
    raise TypeError(f"a command must return CommandResult, str or None, not {type(value).__name__}")


def as_tool_result(value: Any) -> ToolResult:
    if isinstance(value, ToolResult):
        return value
    if isinstance(value, str):
        return ToolResult(text=value)
    if isinstance(value, dict) and "text" in value:
        return ToolResult(text=str(value["text"]), data=value.get("data"))
    raise TypeError(f"a tool must return ToolResult, str or a dict with 'text', not {type(value).__name__}")


def usage_error(usage: str) -> InputError:
    return InputError(f"usage: {usage}")
