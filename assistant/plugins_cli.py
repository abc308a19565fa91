"""``assistant plugins [NAME] [--json]``: each plugin with its version, hooks and status.

Added to the CLI by ``cli.FEATURE_MODULES``; see ``add_commands``. Loading plugins never loads
a model, so this command is fast.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from plugins.types import PluginStatus


def add_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the ``plugins`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "plugins",
        parents=parents,
        help="list plugins with their version, hooks and status",
        description="List the built-in and installed plugins: version, where each came from, the "
        "hooks it implements, what it provides, and whether it loaded. Broken plugins are listed "
        "with the reason they were skipped.",
    )
    p.add_argument("name", nargs="?", help="show only this plugin (an error lists the installed ones)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=run_plugins)


def _settings(args: argparse.Namespace) -> Any:
    loader = getattr(args, "load_settings", None)  # tests hand in their own
    if callable(loader):
        return loader()
    from assistant.cli import load_settings  # honours --config, --offline, --no-plugins

    return load_settings(args)


def run_plugins(args: argparse.Namespace) -> int:
    from assistant.plugin_host import load_plugins

    settings = _settings(args)
    # Problems show up in the table, so they are not printed twice while loading.
    host = load_plugins(settings.plugins, enabled=not getattr(args, "no_plugins", False),
                        notify=lambda message, severity: None)
    try:
        rows = [host.plugin(args.name)] if args.name else host.report()
    finally:
        host.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        print(format_table(rows))
    return 0


def format_table(rows: list[PluginStatus]) -> str:
    """A plain-text table, one plugin a line, with its problem (if any) on the next line."""
    if not rows:
        return "No plugins."
    header = ("NAME", "VERSION", "SOURCE", "STATUS", "HOOKS", "PROVIDES")
    table = [
        (
            r.name,
            r.version or "-",
            r.source,
            r.status,
            ", ".join(h.removeprefix("register_") for h in r.hooks) or "-",
            ", ".join(r.provides) or "-",
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header) - 1)]
    lines = []
    for i, row in enumerate([header, *table]):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
        if i > 0:
            r = rows[i - 1]
            notes = []
            if r.error:
                notes.append(r.error)
            if r.capabilities:
                caps = ", ".join(c.replace("_", " ") for c in r.capabilities)
                notes.append(f"may {caps}" + (" (trusted)" if r.trusted else " (asks once per session)"))
            lines.extend(f"    {n}" for n in notes)
    return "\n".join(lines)
