"""Load plugins, keep the broken ones out, and give the application one object to use them.

Integration contract (what the pipeline, the CLI and the TUI call)::

    from plugins.manager import load_plugins
    from plugins.types import BasicContext

    host = load_plugins(settings.plugins, enabled=not args.no_plugins,
                        confirm=ask_user, notify=show_message)

    host.commands                      # {name: Command(name, help, fn, ...)}
    host.run_command(line, ctx)        # -> CommandResult | None (None: the line is not a /command)
    host.route(text)                   # -> ToolMatch(tool, score, why) | None
    host.run_tool(match, text, ctx)    # -> ToolResult(text, data, ok) | None (None: the tool failed)
    host.transform_turn(turn)          # -> turn, after every plugin's turn transform
    host.transform_reply(text)         # -> str, after every plugin's reply transform
    host.encoders, host.speech_engines # {name: EncoderSpec} / {name: SpeechEngineSpec}
    host.report()                      # -> [PluginStatus(name, version, source, hooks, status, error, ...)]
    host.plugin(name)                  # -> PluginStatus; PluginError listing installed plugins if absent
    host.explain(text)                 # -> str: how the router scored each tool for this text
    host.example_phrases()             # -> [str]: command names and tool examples (ASR hints)
    host.tool_schemas()                # -> [dict]: tools for generators with native tool calling
    host.warm_up()                     # load the router's sentence encoder now (call off the UI thread)
    host.close()                       # cancel pending timers
    host.confirm = fn; host.notify = fn  # a UI may swap the callbacks after loading

``load_plugins(section=None, *, enabled=True, confirm=None, notify=None, entry_points=None)``

- ``section``: ``settings.plugins`` (a ``PluginSettings``); None means the defaults.
- ``enabled=False`` (``--no-plugins``), ``SYNESTHESIA_NO_PLUGINS=1`` or ``section.enabled = false``
  turn third-party plugins off: entry points and the user folder are listed as "off", never
  imported. The built-ins stay. Under ``SYNESTHESIA_TESTING=1`` entry points are not loaded
  unless ``entry_points=True`` is passed (tests do this for the example package).
- ``confirm(plugin: str, message: str) -> bool``: asked once per session before the first use
  of a command or tool that declared capabilities (reads files, runs commands...), unless the
  plugin is in ``section.trusted``. Default: a y/N prompt when stdin is a terminal, else "no".
  The TUI passes a function that shows a modal and waits (it is called from the thread that
  runs the command, so it may block).
- ``notify(message: str, severity: str)``: how problems are reported ("warning"/"error"). Also
  logged to the ``synesthesia.plugins`` logger (which has no handler of its own, so a report is
  shown once). Default: one line on stderr.

``ctx`` (for commands and tools) is any :class:`plugins.types.CommandContext`; build one with
:class:`plugins.types.BasicContext`.

Errors: ``run_command`` raises ``InputError`` for an unknown command (listing the commands) or a
user's mistake the command reports, and ``PluginError`` when the plugin crashes, hangs past
``timeout_s``, or the user declined its capabilities; it does not also ``notify``, so the caller
shows the error once. ``route``/``run_tool``/``transform_*`` never raise for a plugin's fault:
the failure is reported through ``notify`` and the assistant goes on without it. A plugin whose
code runs past its time limit is turned off for the rest of the session (:meth:`PluginHost.turn_off`).

Discovery order: built-ins, then entry points of the group ``synesthesia`` (by name), then
``*.py`` files in ``section.folder`` (default ``<config dir>/plugins``; files starting with
``_`` are skipped). A plugin that fails to import, raises in a hook or hangs is skipped as a
whole: nothing it registered is kept. A name registered twice keeps the first (built-ins win);
a command that lost its name stays reachable as ``/plugin:name``. A plugin declaring a
``SYNESTHESIA_PLUGIN_API`` this host does not support is refused (``hookspecs.PLUGIN_API``).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pluggy

from assistant.errors import AssistantError, InputError, PluginError
from plugins import hookspecs
from plugins.isolation import PluginTimeout, call_with_timeout
from plugins.types import (
    CAPABILITIES,
    Command,
    CommandResult,
    EncoderSpec,
    PluginStatus,
    SpeechEngineSpec,
    Tool,
    ToolMatch,
    ToolResult,
    as_command_result,
    as_tool_result,
    print_notice,
)

log = logging.getLogger("synesthesia.plugins")
log.addHandler(logging.NullHandler())  # reports reach the user through ``notify``; the log is for the app to route

ENTRY_POINT_GROUP = "synesthesia"
HOOKS = (
    "register_commands",
    "register_tools",
    "register_encoders",
    "register_speech_engines",
    "register_turn_transforms",
    "register_reply_transforms",
)
_TRUE = {"1", "true", "yes", "on"}
RESERVED_COMMANDS = {"help", "why"}  # answered by the host itself

Notify = Callable[[str, str], None]
Confirm = Callable[[str, str], bool]


def is_command(text: str) -> bool:
    """Whether a line is a slash command (``/calc 2+2``): the one rule every entry point uses.

    ``//`` at the start escapes it: ``//etc/hosts is a file`` is text for the model, given to it
    with one ``/`` removed (:func:`unescape`). A lone ``/`` is text too."""
    line = text.strip()
    return line.startswith("/") and not line.startswith("//") and len(line) > 1


def unescape(text: str) -> str:
    """The text the model gets for a line that is not a command: ``//x`` becomes ``/x``."""
    line = text.lstrip()
    return line[1:] if line.startswith("//") else text


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0].strip() if (doc or "").strip() else ""


def _app_version() -> str:
    try:
        return importlib.metadata.version("synesthesia")
    except importlib.metadata.PackageNotFoundError:
        return "dev"


def tty_confirm(plugin: str, message: str) -> bool:
    """The default confirmation: a y/N question on the terminal; "no" when there is none."""
    if not (sys.stdin and sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    try:
        print(f"{message} [y/N] ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in {"y", "yes"}
    except (OSError, ValueError):
        return False


@dataclass
class _Record:
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


class _Staging:
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


class PluginHost:
    """The loaded plugins and everything they registered. Build with :func:`load_plugins`."""

    def __init__(self, *, timeout_s: float | None = None, trusted: Iterable[str] = (),
                 confirm: Confirm | None = None, notify: Notify | None = None):
        if timeout_s is None:
            from assistant.config import PluginSettings

            timeout_s = PluginSettings().timeout_s  # the default lives in the settings only
        self.timeout_s = float(timeout_s)
        self.trusted = set(trusted)
        self.confirm: Confirm = confirm or tty_confirm
        """Asked before a plugin's first use of its capabilities; the UI may replace it."""
        self.notify: Notify | None = notify
        """Where problems are reported (besides the log); the UI may replace it."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.commands: dict[str, Command] = {}
        self.tools: dict[str, Tool] = {}
        self.encoders: dict[str, EncoderSpec] = {}
        self.speech_engines: dict[str, SpeechEngineSpec] = {}
        self.turn_transforms: list[tuple[str, Callable[[Any], Any]]] = []
        self.reply_transforms: list[tuple[str, Callable[[str], Any]]] = []
        self._aliases: dict[str, str] = {}
        self._qualified: dict[str, Command] = {}
        """Every command also as ``plugin:name``, the way to reach one that lost a name clash."""
        self._records: dict[str, _Record] = {}
        self._decisions: dict[str, bool] = {}
        self._reported: set[tuple[str, str]] = set()
        self._turned_off: dict[str, str] = {}
        """Commands of plugins turned off during the session (a time-out): name -> why."""
        self._router = None
        self._router_lock = threading.Lock()
        self.last_route: tuple[str, str] | None = None
        """(request, explanation) of the last :meth:`route` call, shown by ``/why``."""

    # ---------------------------------------------------------------- reporting

    def _report(self, message: str, severity: str = "warning", *, once: str | None = None) -> None:
        if once is not None:
            if (once, message) in self._reported:
                return
            self._reported.add((once, message))
        getattr(log, "error" if severity == "error" else "warning")(message)
        try:
            (self.notify or print_notice)(message, severity)
        except Exception:  # noqa: BLE001 - a broken notifier must not break the caller
            log.exception("notify callback failed")

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

    # ---------------------------------------------------------------- loading

    def _add_record(self, record: _Record) -> _Record:
        if record.name in self._records:
            original = self._records[record.name]
            record.status, record.error = "error", (
                f"name {record.name!r} is already used by the {original.source} plugin; skipped"
            )
            record.name = f"{record.name} ({record.source})"
        record.trusted = record.trusted or record.name in self.trusted
        self._records[record.name] = record
        return record

    def add_off(self, name: str, source: str, version: str | None, status: str, why: str) -> None:
        """List a plugin that is not loaded (disabled by name or third-party plugins off)."""
        self._add_record(_Record(name=name, source=source, version=version, status=status, error=why))

    def add_failed(self, name: str, source: str, version: str | None, error: BaseException) -> None:
        status = "timeout" if isinstance(error, PluginTimeout) else "error"
        record = self._add_record(_Record(name=name, source=source, version=version, status=status,
                                          error=f"failed to import: {_describe(error)}"))
        self._report(f"plugin {record.name}: {record.error}; skipped", "error")

    def add_plugin(self, obj: Any, name: str, *, source: str, version: str | None,
                   trusted: bool = False) -> PluginStatus:
        """Register a plugin object (a module or an instance with ``@hookimpl`` functions).

        Runs its hooks into a staging area with a time limit each; a failure drops the plugin.
        """
        record = self._add_record(_Record(name=name, source=source, version=version, obj=obj,
                                          trusted=trusted))
        if record.status != "ok":
            self._report(f"plugin {record.name}: {record.error}", "error")
            return record.status_line()
        mismatch = _api_mismatch(obj)
        if mismatch:
            record.status, record.error = "error", mismatch
            self._report(f"plugin {record.name}: {mismatch}; skipped", "error")
            return record.status_line()
        try:
            self.pm.register(obj, name=record.name)
        except Exception as e:  # noqa: BLE001 - pluggy validation or a duplicate object
            record.status, record.error = "error", f"not a valid plugin: {_describe(e)}"
            self._report(f"plugin {record.name}: {record.error}; skipped", "error")
            return record.status_line()
        callers = self.pm.get_hookcallers(obj) or []
        record.hooks = sorted(c.name for c in callers)
        unknown = [c.name for c in callers if not c.has_spec()]
        if unknown:
            self._drop(record, f"implements unknown hooks {unknown}; known hooks: {list(HOOKS)}")
            return record.status_line()

        staging = _Staging(record.name)
        for hook in HOOKS:
            for impl in getattr(self.pm.hook, hook).get_hookimpls():
                if impl.plugin is not obj:
                    continue
                label = f"{record.name}.{hook}"
                try:
                    call_with_timeout(impl.function, (staging.callback(hook),), self.timeout_s, label)
                except PluginTimeout:
                    self._drop(record, f"hook {hook} did not finish within {self.timeout_s:g} s", "timeout")
                    return record.status_line()
                except Exception as e:  # noqa: BLE001 - any plugin fault
                    self._drop(record, f"hook {hook} raised {_describe(e)}")
                    return record.status_line()
        self._commit(record, staging)
        return record.status_line()

    def _drop(self, record: _Record, why: str, status: str = "error") -> None:
        record.status, record.error = status, why
        if self.pm.is_registered(record.obj):
            self.pm.unregister(record.obj)
        self._report(f"plugin {record.name}: {why}; skipped", "error")

    def _commit(self, record: _Record, staging: _Staging) -> None:
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
            self._report(f"plugin {record.name}: {record.error}", "warning")
        if staging.tools:
            self._router = None  # rebuilt with the new tools on the next route()

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

    # ---------------------------------------------------------------- safety

    def _permit(self, plugin: str, capabilities: frozenset[str], what: str) -> None:
        """Ask once per session before a plugin with capabilities first runs; raise if declined."""
        if not capabilities:
            return
        record = self._records.get(plugin)
        if record is not None and record.trusted:
            return
        if plugin not in self._decisions:
            doing = ", ".join(CAPABILITIES[c] for c in sorted(capabilities))
            message = f"Plugin {plugin!r} wants to {doing} (for {what}). Allow it for this session?"
            try:
                self._decisions[plugin] = bool(self.confirm(plugin, message))
            except Exception as e:  # noqa: BLE001 - a failing prompt counts as "no"
                log.warning("confirmation prompt failed: %s", _describe(e))
                self._decisions[plugin] = False
        if not self._decisions[plugin]:
            raise PluginError(
                f"plugin {plugin!r} was not allowed to run {what} in this session; to allow it "
                f'always, add it to [plugins] trusted = ["{plugin}"] in config.toml'
            )

    # ---------------------------------------------------------------- commands

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

    def run_command(self, line: str, ctx: Any) -> CommandResult | None:
        """Run a ``/command args`` line; None when the line is not a command."""
        line = line.strip()
        if not is_command(line):
            return None
        head, *rest = line[1:].split(maxsplit=1)
        name, args = head.lower(), (rest[0].strip() if rest else "")
        if name == "help":
            return self._help(args)
        if name == "why":
            return CommandResult(text=self._why(args), command="why")
        cmd = self.resolve(name)
        if cmd is None and name in self._turned_off:
            raise PluginError(f"/{name}: {self._turned_off[name]}")
        if cmd is None:
            known = sorted([*self.commands, *RESERVED_COMMANDS])
            hint = difflib.get_close_matches(name, known, n=1)
            maybe = f" Did you mean /{hint[0]}?" if hint else ""
            raise InputError(f"unknown command /{name}.{maybe} Commands: " + ", ".join(f"/{k}" for k in known))
        self._permit(cmd.plugin, cmd.capabilities, f"/{cmd.name}")
        timeout = cmd.timeout_s if cmd.timeout_s is not None else self.timeout_s
        try:
            value = call_with_timeout(cmd.fn, (args, ctx), timeout, f"/{cmd.name}")
            result = as_command_result(value)
        except AssistantError:
            raise
        except PluginTimeout as e:
            why = self.turn_off(cmd.plugin, f"/{cmd.name} did not finish within {timeout:g} s")
            raise PluginError(f"/{cmd.name} (plugin {cmd.plugin}) did not finish within {timeout:g} s; {why}") from e
        except Exception as e:  # noqa: BLE001 - a plugin's bug: raised, and shown once by the caller
            message = f"/{cmd.name} failed in plugin {cmd.plugin}: {_describe(e)}"
            log.debug(message, exc_info=True)
            raise PluginError(message) from e
        result.command = cmd.name
        return result

    def _help(self, args: str) -> CommandResult:
        if args:
            cmd = self.resolve(args)
            if cmd is None:
                raise InputError(f"no command /{args.lstrip('/')}; /help lists them")
            also = f" (also /{', /'.join(cmd.aliases)})" if cmd.aliases else ""
            return CommandResult(text=f"{cmd.usage}{also}\n{cmd.help}\n(plugin: {cmd.plugin})", command="help")
        return CommandResult(text=self.help_text(), command="help",
                             data=[{"name": c.name, "help": c.help, "plugin": c.plugin}
                                   for c in self.commands.values()])

    # ---------------------------------------------------------------- tools

    @property
    def router(self):
        """The intent router over the current tools (built on first use; the encoder loads lazily)."""
        with self._router_lock:
            if self._router is None:
                from plugins.router import Router

                self._router = Router(list(self.tools.values()), on_guard_error=self._guard_failed,
                                      guard_timeout_s=self.timeout_s)
            return self._router

    def router_ready(self) -> bool:
        """Whether the router's sentence encoder is loaded (on the first request a tool's check
        accepts, or by :meth:`warm_up`); text turns that no check accepts never load it."""
        return self._router is not None and self._router.ready

    def _guard_failed(self, tool: Tool, error: BaseException) -> None:
        what = "did not finish in time" if isinstance(error, PluginTimeout) else f"raised {_describe(error)}"
        self._report(f"tool {tool.name} (plugin {tool.plugin}): its guard {what}; tool skipped",
                     "warning", once=tool.name)

    def warm_up(self) -> None:
        """Load the sentence encoder and embed the tools' examples now (slow: call off the UI thread)."""
        if self.tools:
            try:
                self.router.prepare()
            except Exception as e:  # noqa: BLE001 - routing is optional; commands still work
                self._report(f"intent matching is off: {_describe(e)}", "warning", once="router")

    def route(self, text: str) -> ToolMatch | None:
        """The tool this request asks for, if any. Slash commands are never routed."""
        if not self.tools or not text or not text.strip() or text.lstrip().startswith("/"):
            return None
        try:
            match, explanation = self.router.match_explained(text)
        except Exception as e:  # noqa: BLE001 - routing is optional; the generator still answers
            self._report(f"intent matching is off: {_describe(e)}", "warning", once="router")
            return None
        self.last_route = (text, explanation)
        return match

    def explain(self, text: str) -> str:
        """How each tool scored for ``text`` and which (if any) would fire."""
        if not self.tools:
            return "No tools are installed."
        try:
            return self.router.match_explained(text)[1]
        except Exception as e:  # noqa: BLE001
            return f"intent matching is off: {_describe(e)}"

    def _why(self, args: str) -> str:
        if args:
            return self.explain(args)
        if self.last_route is None:
            return "No request has been routed yet. Try /why TEXT."
        request, explanation = self.last_route
        return f"Last request: {request!r}\n{explanation}"

    def example_phrases(self) -> list[str]:
        """Words the assistant expects to hear (command names, tools' example requests), e.g. to
        bias a speech recognizer towards them."""
        phrases = [name for name in self.commands] + [ex for t in self.tools.values() for ex in t.examples]
        return list(dict.fromkeys(phrases))

    def tool_schemas(self) -> list[dict[str, Any]]:
        """Every tool as a JSON-schema style description, for generators with native tool calls."""
        return [t.schema() for t in self.tools.values()]

    def run_tool(self, match: ToolMatch | Tool | str, text: str, ctx: Any) -> ToolResult | None:
        """Run the matched tool on the request. None (after a report) when the plugin failed."""
        tool = match.tool if isinstance(match, ToolMatch) else match
        if isinstance(tool, str):
            if tool not in self.tools:
                raise InputError(f"no tool named {tool!r}; tools: {', '.join(sorted(self.tools)) or 'none'}")
            tool = self.tools[tool]
        try:
            self._permit(tool.plugin, tool.capabilities, f"the {tool.name} tool")
        except PluginError as e:
            self._report(str(e), "warning")
            return None
        timeout = tool.timeout_s if tool.timeout_s is not None else self.timeout_s
        try:
            result = as_tool_result(call_with_timeout(tool.fn, (text, ctx), timeout, f"tool {tool.name}"))
        except InputError as e:
            result = ToolResult(text=str(e), ok=False)
        except PluginTimeout:
            why = self.turn_off(tool.plugin, f"tool {tool.name} did not finish within {timeout:g} s")
            self._report(f"tool {tool.name} (plugin {tool.plugin}) did not finish within {timeout:g} s; "
                         f"answering without it; {why}", "error")
            return None
        except Exception as e:  # noqa: BLE001 - a plugin's bug, reported
            self._report(f"tool {tool.name} failed in plugin {tool.plugin}: {_describe(e)}; "
                         "answering without it", "error")
            return None
        result.tool = tool.name
        return result

    # ---------------------------------------------------------------- turn hooks

    def _transform(self, kind: str, transforms: list[tuple[str, Callable[[Any], Any]]], value: Any) -> Any:
        for plugin, fn in transforms:
            if self._records.get(plugin) is not None and self._records[plugin].status != "ok":
                continue  # turned off earlier in this call (a time-out)
            label = f"{kind} transform of plugin {plugin}"
            try:
                out = call_with_timeout(fn, (value,), self.timeout_s, label)
            except PluginTimeout:
                why = self.turn_off(plugin, f"its {kind} transform did not finish within {self.timeout_s:g} s")
                self._report(f"{label} did not finish within {self.timeout_s:g} s; skipped; {why}", "error")
                continue
            except Exception as e:  # noqa: BLE001 - a plugin's bug, reported once
                self._report(f"{label} raised {_describe(e)}; skipped", "error", once=label)
                continue
            if out is not None:
                value = out
        return value

    def transform_turn(self, turn: Any) -> Any:
        """The turn after every plugin's turn transform (failed ones are skipped). A transform
        must return None or an object of the turn's own type."""
        checked = [(p, _must_return(fn, type(turn))) for p, fn in self.turn_transforms]
        return self._transform("turn", checked, turn)

    def transform_reply(self, text: str) -> str:
        """The reply text after every plugin's reply transform (failed ones are skipped)."""
        checked = [(p, _must_return(fn, str)) for p, fn in self.reply_transforms]
        return self._transform("reply", checked, text)

    # ---------------------------------------------------------------- time-outs

    def turn_off(self, plugin: str, why: str) -> str:
        """Turn ``plugin`` off for the rest of the session: its code overran its time limit and
        may still be running in its thread. Its commands, tools and transforms are removed (a
        later ``/command`` of it says why). -> the phrase that says so, for the caller's message."""
        phrase = f"plugin {plugin} is off for the rest of this session"
        record = self._records.get(plugin)
        if record is None or record.status != "ok":
            return phrase
        record.status, record.error = "timeout", f"{why}; off for the rest of this session"
        off = f"plugin {plugin} is off for the rest of this session ({why})"
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
        if tools:
            with self._router_lock:
                self._router = None
        self.turn_transforms = [(p, fn) for p, fn in self.turn_transforms if p != plugin]
        self.reply_transforms = [(p, fn) for p, fn in self.reply_transforms if p != plugin]
        return phrase

    # ---------------------------------------------------------------- shutdown

    def close(self) -> None:
        """Release what plugins hold (the built-in timers are cancelled)."""
        for record in self._records.values():
            closer = getattr(record.obj, "close", None)
            if record.source == "builtin" and callable(closer):
                closer()


def _api_mismatch(obj: Any) -> str | None:
    """Why a plugin cannot load under this contract version (its ``SYNESTHESIA_PLUGIN_API``), or None."""
    declared = getattr(obj, "SYNESTHESIA_PLUGIN_API", None)
    if declared is None:
        return None
    if not isinstance(declared, int) or isinstance(declared, bool):
        return f"SYNESTHESIA_PLUGIN_API must be a whole number, not {declared!r}"
    if declared > hookspecs.PLUGIN_API:
        return (f"written for plugin API {declared}, but this Synesthesia ({_app_version()}) provides "
                f"plugin API {hookspecs.PLUGIN_API}: upgrade Synesthesia, or install an older version of the plugin")
    if declared < hookspecs.OLDEST_PLUGIN_API:
        return (f"written for plugin API {declared}, which this Synesthesia no longer loads (it loads "
                f"{hookspecs.OLDEST_PLUGIN_API} to {hookspecs.PLUGIN_API}): upgrade the plugin")
    return None


def _must_return(fn: Callable[[Any], Any], kind: type) -> Callable[[Any], Any]:
    def checked(value: Any) -> Any:
        out = fn(value)
        if out is not None and not isinstance(out, kind):
            raise TypeError(f"returned {type(out).__name__}, not {kind.__name__}")
        return out

    return checked


# -------------------------------------------------------------------- discovery


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        seen.setdefault(ep.name, ep)  # the first on sys.path wins, like imports
    return [seen[k] for k in sorted(seen)]


def _ep_version(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "version", None) if dist is not None else None


def _folder_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def _import_file(path: Path) -> Any:
    module_name = f"synesthesia_user_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def default_folder() -> Path:
    from assistant import paths

    return paths.config_dir() / "plugins"


def third_party_allowed(section: Any = None, enabled: bool = True) -> tuple[bool, str]:
    """Whether third-party plugins load, and if not, why (for the report)."""
    if not enabled:
        return False, "third-party plugins are off (--no-plugins)"
    if _env_true("SYNESTHESIA_NO_PLUGINS"):
        return False, "third-party plugins are off (SYNESTHESIA_NO_PLUGINS=1)"
    if section is not None and not section.enabled:
        return False, "third-party plugins are off (plugins.enabled = false)"
    return True, ""


def load_plugins(section: Any = None, *, enabled: bool = True, confirm: Confirm | None = None,
                 notify: Notify | None = None, entry_points: bool | None = None,
                 builtins: bool = True) -> PluginHost:
    """Discover, import and register plugins; see the module docstring for the contract."""
    if section is None:
        from assistant.config import PluginSettings

        section = PluginSettings()
    host = PluginHost(timeout_s=section.timeout_s, trusted=section.trusted, confirm=confirm, notify=notify)
    disabled = set(section.disabled)
    version = _app_version()

    if builtins:
        from plugins.builtin import builtin_plugins

        for name, obj in builtin_plugins():
            if name in disabled:
                host.add_off(name, "builtin", version, "disabled", "disabled in settings (plugins.disabled)")
            else:
                host.add_plugin(obj, name, source="builtin", version=version, trusted=True)

    allowed, why_off = third_party_allowed(section, enabled)
    want_eps = not _env_true("SYNESTHESIA_TESTING") if entry_points is None else entry_points
    use_eps = allowed and want_eps
    list_eps = want_eps  # when third-party plugins are off they are still listed, as "off"
    for ep in _entry_points() if list_eps else []:
        ep_version = _ep_version(ep)
        if not allowed:
            host.add_off(ep.name, "entry point", ep_version, "off", why_off)
        elif ep.name in disabled:
            host.add_off(ep.name, "entry point", ep_version, "disabled", "disabled in settings (plugins.disabled)")
        else:
            try:
                obj = call_with_timeout(ep.load, (), host.timeout_s, f"import of {ep.value}")
            except Exception as e:  # noqa: BLE001 - ImportError, SyntaxError, anything at import
                host.add_failed(ep.name, "entry point", ep_version, e)
                continue
            host.add_plugin(obj, ep.name, source="entry point", version=ep_version)

    folder = Path(section.folder or default_folder()).expanduser()
    for path in _folder_files(folder):
        name = path.stem
        file_version = None
        if not allowed:
            host.add_off(name, "folder", file_version, "off", why_off)
        elif name in disabled:
            host.add_off(name, "folder", file_version, "disabled", "disabled in settings (plugins.disabled)")
        else:
            try:
                module = call_with_timeout(_import_file, (path,), host.timeout_s, f"import of {path.name}")
            except Exception as e:  # noqa: BLE001
                host.add_failed(name, "folder", file_version, e)
                continue
            host.add_plugin(module, name, source="folder", version=getattr(module, "__version__", None))

    installed = set(host._records)
    for kind, names in (("trusted", host.trusted), ("disabled", disabled)):
        for name in sorted(set(names) - installed):
            host._report(f"settings plugins.{kind} names {name!r}, which is not installed "
                         f"(installed: {', '.join(sorted(installed))})", "warning")
    return host

