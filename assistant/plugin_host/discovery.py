"""Discovery: find plugins (built-ins, entry points, the user's plugin folder), import each
with a time limit, and hand them to a new :class:`~assistant.plugin_host.host.PluginHost`.

Discovery order: built-ins, then entry points of the group ``synesthesia`` (by name), then
``*.py`` files in ``section.folder`` (default ``<config dir>/plugins``; files starting with
``_`` are skipped). Third-party plugins are off with ``--no-plugins``,
``SYNESTHESIA_NO_PLUGINS=1`` or ``plugins.enabled = false``: they are listed as "off", never
imported. Under ``SYNESTHESIA_TESTING=1`` entry points are not loaded unless
``entry_points=True`` is passed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from assistant import paths
from assistant.config import PluginSettings
from assistant.plugin_host.host import Notify, PluginHost
from assistant.plugin_host.isolation import call_with_timeout
from assistant.plugin_host.registry import app_version
from assistant.plugin_host.trust import Confirm

ENTRY_POINT_GROUP = "synesthesia"
_TRUE = {"1", "true", "yes", "on"}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE

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
    """The user's plugin folder: ``plugins/`` in the config directory."""
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
    """Discover, import and register plugins; see :mod:`assistant.plugin_host` for the contract."""
    if section is None:
        section = PluginSettings()
    host = PluginHost(timeout_s=section.timeout_s, trusted=section.trusted, confirm=confirm, notify=notify)
    disabled = set(section.disabled)
    version = app_version()

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

