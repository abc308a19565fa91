"""The plugin host: the application's side of the plugin contract (``plugins/``). It loads
plugins, keeps the broken ones out, and gives the application one object to use them.

One module a concept: :mod:`~assistant.plugin_host.discovery` (finding and importing
plugins), :mod:`~assistant.plugin_host.registry` (records, what was registered, name clashes),
:mod:`~assistant.plugin_host.host` (running it, each call isolated), :mod:`~assistant.plugin_host.isolation`
(time limits), :mod:`~assistant.plugin_host.routing` (requests to tools),
:mod:`~assistant.plugin_host.trust` (asking before declared capabilities) and
:mod:`~assistant.plugin_host.commands` (the slash-command rule).

Integration contract (what the pipeline, the CLI and the TUI call)::

    from assistant.plugin_host import load_plugins
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

Errors, discovery order and name clashes: see :mod:`~assistant.plugin_host.host`,
:mod:`~assistant.plugin_host.discovery` and :mod:`~assistant.plugin_host.registry`.

``ctx`` (for commands and tools) is any :class:`plugins.types.CommandContext`; build one with
:class:`plugins.types.BasicContext`.
"""

from assistant.plugin_host.commands import RESERVED_COMMANDS, is_command, unescape
from assistant.plugin_host.discovery import ENTRY_POINT_GROUP, default_folder, load_plugins, third_party_allowed
from assistant.plugin_host.host import Notify, PluginHost
from assistant.plugin_host.isolation import PluginTimeout, call_with_timeout
from assistant.plugin_host.registry import HOOKS
from assistant.plugin_host.trust import Confirm, tty_confirm

__all__ = [
    "ENTRY_POINT_GROUP",
    "HOOKS",
    "RESERVED_COMMANDS",
    "Confirm",
    "Notify",
    "PluginHost",
    "PluginTimeout",
    "call_with_timeout",
    "default_folder",
    "is_command",
    "load_plugins",
    "third_party_allowed",
    "tty_confirm",
    "unescape",
]
