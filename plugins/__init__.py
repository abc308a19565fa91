"""Synesthesia's plugin system: the hook contract, the loader and the built-in plugins.

A plugin implements hooks from :mod:`plugins.hookspecs` with the ``hookimpl`` marker below and
is found through the ``synesthesia`` entry-point group or the user plugin folder. See
docs/PLUGINS.md. Importing this package is cheap: models load only when first needed.
"""

from plugins.hookspecs import PLUGIN_API, hookimpl
from plugins.types import (
    BasicContext,
    Command,
    CommandContext,
    CommandResult,
    EncoderSpec,
    PluginStatus,
    SpeechEngineSpec,
    Tool,
    ToolMatch,
    ToolResult,
)

__all__ = [
    "PLUGIN_API",
    "BasicContext",
    "Command",
    "CommandContext",
    "CommandResult",
    "EncoderSpec",
    "PluginStatus",
    "SpeechEngineSpec",
    "Tool",
    "ToolMatch",
    "ToolResult",
    "hookimpl",
]
