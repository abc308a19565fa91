"""The registry: what each plugin is (its record) and what it registered (commands, tools,
encoders, speech engines, transforms), with the rules for names two plugins both want.

Name clashes (also in docs/PLUGINS.md): the first plugin to register a name keeps it, in
discovery order (built-ins, entry points by name, then folder files), so built-ins always
win. A command that lost its name stays reachable as ``/plugin:name``; a tool, encoder or
speech engine that lost its name is skipped. ``/help`` and ``/why`` belong to the host. Each
skip is reported once, as a warning, and shown in ``assistant plugins``.
"""

from __future__ import annotations

import difflib
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from assistant.errors import PluginError
from assistant.plugin_host.commands import RESERVED_COMMANDS
from plugins import hookspecs
from plugins.types import CAPABILITIES, Command, EncoderSpec, PluginStatus, SpeechEngineSpec, Tool

HOOKS = (
    "register_commands",
    "register_tools",
    "register_encoders",
    "register_speech_engines",
    "register_turn_transforms",
    "register_reply_transforms",
)


def app_version() -> str:
    try:
        return importlib.metadata.version("synesthesia")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


@dataclass
class Record:
    """What the host knows about one plugin."""

    name: str
    source: str
    version: str | None = None
    obj: Any = None
    status: str = "ok"
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    capabilities: set[str] = field(default_factory=set)
    trusted: bool = False

    def status_line(self) -> PluginStatus:
        return PluginStatus(
            name=self.name,
            version=self.version,
            source=self.source,
            hooks=list(self.hooks),
            status=self.status,
            error=self.error,
            provides=list(self.provides),
            capabilities=sorted(self.capabilities),
            trusted=self.trusted,
        )


def api_mismatch(obj: Any) -> str | None:
    """Why a plugin cannot load under this contract version (its ``SYNESTHESIA_PLUGIN_API``), or None."""
    declared = getattr(obj, "SYNESTHESIA_PLUGIN_API", None)
    if declared is None:
        return None
    if not isinstance(declared, int) or isinstance(declared, bool):
        return f"SYNESTHESIA_PLUGIN_API must be a whole number, not {declared!r}"
    if declared > hookspecs.PLUGIN_API:
        return (f"written for plugin API {declared}, but this Synesthesia ({app_version()}) provides "
                f"plugin API {hookspecs.PLUGIN_API}: upgrade Synesthesia, or install an older version of the plugin")
    if declared < hookspecs.OLDEST_PLUGIN_API:
        return (f"written for plugin API {declared}, which this Synesthesia no longer loads (it loads "
                f"{hookspecs.OLDEST_PLUGIN_API} to {hookspecs.PLUGIN_API}): upgrade the plugin")
    return None


class Staging:
    """The ``register`` callbacks handed to one plugin's hooks; kept only if every hook succeeds."""

    def __init__(self, plugin: str):
        self.plugin = plugin
        self.commands: list[Command] = []
        self.tools: list[Tool] = []
        self.encoders: list[EncoderSpec] = []
        self.speech: list[SpeechEngineSpec] = []
        self.turn: list[Callable[[Any], Any]] = []
        self.reply: list[Callable[[str], Any]] = []

    @staticmethod
    def _caps(capabilities: Iterable[str]) -> frozenset[str]:
        caps = frozenset(capabilities)
        unknown = caps - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
        return caps

    def command(self, fn, name=None, help=None, *, usage="", aliases=(), capabilities=(), timeout_s=None):
        if not callable(fn):
            raise TypeError("register(fn, ...): fn must be callable")
        name = (name or fn.__name__).lstrip("/").strip().lower()
        if not name or any(c.isspace() for c in name) or ":" in name:
            raise ValueError(f"bad command name {name!r} (no spaces or ':')")
        self.commands.append(
            Command(
                name=name,
                help=help or _first_line(fn.__doc__) or name,
                fn=fn,
                plugin=self.plugin,
                usage=usage or f"/{name}",
                aliases=tuple(a.lstrip("/").lower() for a in aliases),
                capabilities=self._caps(capabilities),
                timeout_s=timeout_s,
            )
        )

    def tool(self, fn, name=None, *, description=None, examples=(), threshold=None, guard=None,
             capabilities=(), timeout_s=None):
        if not callable(fn):
            raise TypeError("register(fn, ...): fn must be callable")
        examples = tuple(str(e) for e in examples if str(e).strip())
        if not examples:
            raise ValueError(f"tool {name or fn.__name__!r}: give at least one example request")
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ValueError(f"tool {name or fn.__name__!r}: threshold must be in (0, 1]")
        self.tools.append(
            Tool(
                name=name or fn.__name__,
                description=description or _first_line(fn.__doc__) or fn.__name__,
                fn=fn,
                examples=examples,
                plugin=self.plugin,
                threshold=threshold,
                guard=guard,
                capabilities=self._caps(capabilities),
                timeout_s=timeout_s,
            )
        )

    def encoder(self, name, factory, *, modality, description=""):
        if not callable(factory):
            raise TypeError("register(name, factory, ...): factory must be callable")
        self.encoders.append(EncoderSpec(name, modality, factory, description, self.plugin))

    def speech_engine(self, name, factory, *, kind, description=""):
        if kind not in ("recognizer", "synthesizer"):
            raise ValueError(f"speech engine {name!r}: kind must be 'recognizer' or 'synthesizer'")
        if not callable(factory):
            raise TypeError("register(name, factory, ...): factory must be callable")
        self.speech.append(SpeechEngineSpec(name, kind, factory, description, self.plugin))

    def turn_transform(self, fn):
        if not callable(fn):
            raise TypeError("register(fn): fn must be callable")
        self.turn.append(fn)

    def reply_transform(self, fn):
        if not callable(fn):
            raise TypeError("register(fn): fn must be callable")
        self.reply.append(fn)

    def callback(self, hook: str) -> Callable[..., None]:
        return {
            "register_commands": self.command,
            "register_tools": self.tool,
            "register_encoders": self.encoder,
            "register_speech_engines": self.speech_engine,
            "register_turn_transforms": self.turn_transform,
            "register_reply_transforms": self.reply_transform,
        }[hook]



class Registry:
    """Every plugin's record and everything the loaded ones registered, by name."""

    def __init__(self, trusted: Iterable[str] = ()):
        self.trusted = set(trusted)
        self.commands: dict[str, Command] = {}
        self.tools: dict[str, Tool] = {}
        self.encoders: dict[str, EncoderSpec] = {}
        self.speech_engines: dict[str, SpeechEngineSpec] = {}
        self.turn_transforms: list[tuple[str, Callable[[Any], Any]]] = []
        self.reply_transforms: list[tuple[str, Callable[[str], Any]]] = []
        self._aliases: dict[str, str] = {}
        self._qualified: dict[str, Command] = {}
        """Every command also as ``plugin:name``, the way to reach one that lost a name clash."""
        self._records: dict[str, Record] = {}
        self._turned_off: dict[str, str] = {}
        """Commands of plugins turned off during the session (a time-out): name -> why."""

    # ---------------------------------------------------------------- records

    def report(self) -> list[PluginStatus]:
        """Every plugin the host knows about, in discovery order, with its status."""
        return [r.status_line() for r in self._records.values()]

    def plugin(self, name: str) -> PluginStatus:
        """One plugin's status; :class:`PluginError` listing the installed plugins if unknown."""
        record = self._records.get(name)
        if record is None:
            installed = ", ".join(self._records) or "none"
            hint = difflib.get_close_matches(name, list(self._records), n=1)
            maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise PluginError(f"no plugin named {name!r}{maybe}; installed: {installed}")
        return record.status_line()

    def _add_record(self, record: Record) -> Record:
        if record.name in self._records:
            original = self._records[record.name]
            record.status, record.error = "error", (
                f"name {record.name!r} is already used by the {original.source} plugin; skipped"
            )
            record.name = f"{record.name} ({record.source})"
        record.trusted = record.trusted or record.name in self.trusted
        self._records[record.name] = record
        return record

    def _active(self, plugin: str) -> bool:
        record = self._records.get(plugin)
        return record is None or record.status == "ok"

    # ---------------------------------------------------------------- what plugins registered

    def _commit(self, record: Record, staging: Staging) -> str | None:
        """Keep what a plugin registered, by the name-clash rules -> what was skipped, or None."""
        skipped: list[str] = []
        for cmd in staging.commands:
            if cmd.name in RESERVED_COMMANDS:
                skipped.append(f"/{cmd.name} (reserved by the assistant)")
                continue
            self._qualified[f"{record.name}:{cmd.name}"] = cmd
            if cmd.name in self.commands or cmd.name in self._aliases:
                owner = self._owner_of_command(cmd.name)
                skipped.append(f"/{cmd.name} (already provided by {owner}; use /{record.name}:{cmd.name})")
                record.provides.append(f"/{record.name}:{cmd.name}")
                record.capabilities |= cmd.capabilities
                continue
            self.commands[cmd.name] = cmd
            for alias in cmd.aliases:
                if alias in self.commands or alias in self._aliases or alias in RESERVED_COMMANDS:
                    skipped.append(f"alias /{alias} of /{cmd.name} (already taken)")
                else:
                    self._aliases[alias] = cmd.name
            record.provides.append(f"/{cmd.name}")
            record.capabilities |= cmd.capabilities
        for tool in staging.tools:
            if self._claim(self.tools, tool, f"tool {tool.name}", skipped):
                record.provides.append(f"tool:{tool.name}")
                record.capabilities |= tool.capabilities
        for enc in staging.encoders:
            if self._claim(self.encoders, enc, f"encoder {enc.name}", skipped):
                record.provides.append(f"encoder:{enc.name}")
        for eng in staging.speech:
            if self._claim(self.speech_engines, eng, f"speech engine {eng.name}", skipped):
                record.provides.append(f"{eng.kind}:{eng.name}")
        self.turn_transforms += [(record.name, fn) for fn in staging.turn]
        self.reply_transforms += [(record.name, fn) for fn in staging.reply]
        if staging.turn:
            record.provides.append("turn transform")
        if staging.reply:
            record.provides.append("reply transform")
        if skipped:
            record.error = "skipped " + "; ".join(skipped)
            return record.error
        return None

    @staticmethod
    def _claim(table: dict[str, Any], item: Any, label: str, skipped: list[str]) -> bool:
        """Add ``item`` under its name unless the name is taken (the first plugin keeps it)."""
        if item.name in table:
            skipped.append(f"{label} (already provided by {table[item.name].plugin})")
            return False
        table[item.name] = item
        return True

    def _owner_of_command(self, name: str) -> str:
        cmd = self.commands.get(name) or self.commands.get(self._aliases.get(name, ""))
        return cmd.plugin if cmd else "another plugin"

    def _withdraw(self, plugin: str, off: str) -> list[str]:
        """Remove everything ``plugin`` registered (a later ``/command`` of it says ``off``)
        -> the names of the tools removed."""
        for name in [n for n, c in self.commands.items() if c.plugin == plugin]:
            del self.commands[name]
            self._turned_off[name] = off
        for name in [n for n, c in self._qualified.items() if c.plugin == plugin]:
            del self._qualified[name]
            self._turned_off[name] = off
        self._aliases = {a: n for a, n in self._aliases.items() if n in self.commands}
        tools = [n for n, t in self.tools.items() if t.plugin == plugin]
        for name in tools:
            del self.tools[name]
        self.turn_transforms = [(p, fn) for p, fn in self.turn_transforms if p != plugin]
        self.reply_transforms = [(p, fn) for p, fn in self.reply_transforms if p != plugin]
        return tools

    # ---------------------------------------------------------------- looking things up

    def resolve(self, name: str) -> Command | None:
        """A command by name, alias or ``plugin:name`` (see "Name clashes" in docs/PLUGINS.md)."""
        name = name.lstrip("/").lower()
        if ":" in name:
            return self._qualified.get(name)
        return self.commands.get(name) or self.commands.get(self._aliases.get(name, ""))

    def help_text(self) -> str:
        lines = [f"{c.usage:<28} {c.help}" for c in sorted(self.commands.values(), key=lambda c: c.name)]
        lines += [f"/{q:<27} {c.help} (lost the name /{c.name} to plugin {self.commands[c.name].plugin})"
                  for q, c in sorted(self._qualified.items())
                  if c.name in self.commands and self.commands[c.name] is not c]
        lines += ["/help [COMMAND]".ljust(28) + " List commands or show one command's help",
                  "/why [TEXT]".ljust(28) + " Why a tool fired for the last request (or for TEXT)"]
        return "\n".join(lines)

    def example_phrases(self) -> list[str]:
        """Words the assistant expects to hear (command names, tools' example requests), e.g. to
        bias a speech recognizer towards them."""
        phrases = [name for name in self.commands] + [ex for t in self.tools.values() for ex in t.examples]
        return list(dict.fromkeys(phrases))

    def tool_schemas(self) -> list[dict[str, Any]]:
        """Every tool as a JSON-schema style description, for generators with native tool calls."""
        return [t.schema() for t in self.tools.values()]
