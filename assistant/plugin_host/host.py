"""The plugin host: runs what plugins registered, each call isolated (a time limit, its
failures reported, never raised into the app), asks for trust before declared capabilities,
and routes requests to tools. Built by :func:`assistant.plugin_host.load_plugins`.

Errors: ``run_command`` raises ``InputError`` for an unknown command (listing the commands) or a
user's mistake the command reports, and ``PluginError`` when the plugin crashes, hangs past
``timeout_s``, or the user declined its capabilities; it does not also ``notify``, so the caller
shows the error once. ``route``/``run_tool``/``transform_*`` never raise for a plugin's fault:
the failure is reported through ``notify`` and the assistant goes on without it. A plugin whose
code runs past its time limit is turned off for the rest of the session (:meth:`PluginHost.turn_off`).
A plugin that fails to import, raises in a hook or hangs is skipped as a whole: nothing it
registered is kept. A plugin declaring a ``SYNESTHESIA_PLUGIN_API`` this host does not support
is refused (``plugins.hookspecs.PLUGIN_API``).
"""

from __future__ import annotations

import difflib
import logging
import threading
from typing import Any, Callable, Iterable

import pluggy

from assistant.errors import AssistantError, InputError, PluginError
from assistant.plugin_host.commands import RESERVED_COMMANDS, is_command
from assistant.plugin_host.isolation import PluginTimeout, call_with_timeout, describe
from assistant.plugin_host.registry import HOOKS, Record, Registry, Staging, api_mismatch
from assistant.plugin_host.trust import Confirm, Permissions, tty_confirm
from plugins import hookspecs
from plugins.types import (
    CommandResult,
    PluginStatus,
    Tool,
    ToolMatch,
    ToolResult,
    as_command_result,
    as_tool_result,
    print_notice,
)

log = logging.getLogger("synesthesia.plugins")
log.addHandler(logging.NullHandler())  # reports reach the user through ``notify``; the log is for the app to route

Notify = Callable[[str, str], None]
"""``notify(message, severity)``: how problems are reported ("warning"/"error")."""


class PluginHost(Registry):
    """The loaded plugins and everything they registered. Build with :func:`load_plugins`."""

    def __init__(self, *, timeout_s: float | None = None, trusted: Iterable[str] = (),
                 confirm: Confirm | None = None, notify: Notify | None = None):
        super().__init__(trusted)
        if timeout_s is None:
            from assistant.config import PluginSettings

            timeout_s = PluginSettings().timeout_s  # the default lives in the settings only
        self.timeout_s = float(timeout_s)
        self.confirm: Confirm = confirm or tty_confirm
        """Asked before a plugin's first use of its capabilities; the UI may replace it."""
        self.notify: Notify | None = notify
        """Where problems are reported (besides the log); the UI may replace it."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._permissions = Permissions()
        self._reported: set[tuple[str, str]] = set()
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

    # ---------------------------------------------------------------- loading

    def add_off(self, name: str, source: str, version: str | None, status: str, why: str) -> None:
        """List a plugin that is not loaded (disabled by name or third-party plugins off)."""
        self._add_record(Record(name=name, source=source, version=version, status=status, error=why))

    def add_failed(self, name: str, source: str, version: str | None, error: BaseException) -> None:
        status = "timeout" if isinstance(error, PluginTimeout) else "error"
        record = self._add_record(Record(name=name, source=source, version=version, status=status,
                                          error=f"failed to import: {describe(error)}"))
        self._report(f"plugin {record.name}: {record.error}; skipped", "error")

    def add_plugin(self, obj: Any, name: str, *, source: str, version: str | None,
                   trusted: bool = False) -> PluginStatus:
        """Register a plugin object (a module or an instance with ``@hookimpl`` functions).

        Runs its hooks into a staging area with a time limit each; a failure drops the plugin.
        """
        record = self._add_record(Record(name=name, source=source, version=version, obj=obj,
                                          trusted=trusted))
        if record.status != "ok":
            self._report(f"plugin {record.name}: {record.error}", "error")
            return record.status_line()
        mismatch = api_mismatch(obj)
        if mismatch:
            record.status, record.error = "error", mismatch
            self._report(f"plugin {record.name}: {mismatch}; skipped", "error")
            return record.status_line()
        try:
            self.pm.register(obj, name=record.name)
        except Exception as e:  # noqa: BLE001 - pluggy validation or a duplicate object
            record.status, record.error = "error", f"not a valid plugin: {describe(e)}"
            self._report(f"plugin {record.name}: {record.error}; skipped", "error")
            return record.status_line()
        callers = self.pm.get_hookcallers(obj) or []
        record.hooks = sorted(c.name for c in callers)
        unknown = [c.name for c in callers if not c.has_spec()]
        if unknown:
            self._drop(record, f"implements unknown hooks {unknown}; known hooks: {list(HOOKS)}")
            return record.status_line()

        staging = Staging(record.name)
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
                    self._drop(record, f"hook {hook} raised {describe(e)}")
                    return record.status_line()
        self._commit(record, staging)
        return record.status_line()

    def _drop(self, record: Record, why: str, status: str = "error") -> None:
        record.status, record.error = status, why
        if self.pm.is_registered(record.obj):
            self.pm.unregister(record.obj)
        self._report(f"plugin {record.name}: {why}; skipped", "error")

    def _commit(self, record: Record, staging: Staging) -> None:
        skipped = super()._commit(record, staging)
        if skipped:
            self._report(f"plugin {record.name}: {skipped}", "warning")
        if staging.tools:
            self._router = None  # rebuilt with the new tools on the next route()

    # ---------------------------------------------------------------- safety

    def _permit(self, plugin: str, capabilities: frozenset[str], what: str) -> None:
        """Ask once per session before a plugin with capabilities first runs; raise if declined."""
        record = self._records.get(plugin)
        self._permissions.permit(plugin, capabilities, what, trusted=record is not None and record.trusted,
                                 confirm=self.confirm)

    # ---------------------------------------------------------------- commands

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
            message = f"/{cmd.name} failed in plugin {cmd.plugin}: {describe(e)}"
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
                from assistant.plugin_host.routing import Router

                self._router = Router(list(self.tools.values()), on_guard_error=self._guard_failed,
                                      guard_timeout_s=self.timeout_s)
            return self._router

    def router_ready(self) -> bool:
        """Whether the router's sentence encoder is loaded (on the first request a tool's check
        accepts, or by :meth:`warm_up`); text turns that no check accepts never load it."""
        return self._router is not None and self._router.ready

    def _guard_failed(self, tool: Tool, error: BaseException) -> None:
        what = "did not finish in time" if isinstance(error, PluginTimeout) else f"raised {describe(error)}"
        self._report(f"tool {tool.name} (plugin {tool.plugin}): its guard {what}; tool skipped",
                     "warning", once=tool.name)

    def warm_up(self) -> None:
        """Load the sentence encoder and embed the tools' examples now (slow: call off the UI thread)."""
        if self.tools:
            try:
                self.router.prepare()
            except Exception as e:  # noqa: BLE001 - routing is optional; commands still work
                self._report(f"intent matching is off: {describe(e)}", "warning", once="router")

    def route(self, text: str) -> ToolMatch | None:
        """The tool this request asks for, if any. Slash commands are never routed."""
        if not self.tools or not text or not text.strip() or text.lstrip().startswith("/"):
            return None
        try:
            match, explanation = self.router.match_explained(text)
        except Exception as e:  # noqa: BLE001 - routing is optional; the generator still answers
            self._report(f"intent matching is off: {describe(e)}", "warning", once="router")
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
            return f"intent matching is off: {describe(e)}"

    def _why(self, args: str) -> str:
        if args:
            return self.explain(args)
        if self.last_route is None:
            return "No request has been routed yet. Try /why TEXT."
        request, explanation = self.last_route
        return f"Last request: {request!r}\n{explanation}"

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
            self._report(f"tool {tool.name} failed in plugin {tool.plugin}: {describe(e)}; "
                         "answering without it", "error")
            return None
        result.tool = tool.name
        return result

    # ---------------------------------------------------------------- turn hooks

    def _transform(self, kind: str, transforms: list[tuple[str, Callable[[Any], Any]]], value: Any) -> Any:
        for plugin, fn in transforms:
            if not self._active(plugin):
                continue  # turned off earlier in this call (a time-out)
            label = f"{kind} transform of plugin {plugin}"
            try:
                out = call_with_timeout(fn, (value,), self.timeout_s, label)
            except PluginTimeout:
                why = self.turn_off(plugin, f"its {kind} transform did not finish within {self.timeout_s:g} s")
                self._report(f"{label} did not finish within {self.timeout_s:g} s; skipped; {why}", "error")
                continue
            except Exception as e:  # noqa: BLE001 - a plugin's bug, reported once
                self._report(f"{label} raised {describe(e)}; skipped", "error", once=label)
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
        if self._withdraw(plugin, f"plugin {plugin} is off for the rest of this session ({why})"):
            with self._router_lock:
                self._router = None
        return phrase

    # ---------------------------------------------------------------- shutdown

    def close(self) -> None:
        """Release what plugins hold (the built-in timers are cancelled)."""
        for record in self._records.values():
            closer = getattr(record.obj, "close", None)
            if record.source == "builtin" and callable(closer):
                closer()


def _must_return(fn: Callable[[Any], Any], kind: type) -> Callable[[Any], Any]:
    def checked(value: Any) -> Any:
        out = fn(value)
        if out is not None and not isinstance(out, kind):
            raise TypeError(f"returned {type(out).__name__}, not {kind.__name__}")
        return out

    return checked
