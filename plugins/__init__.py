"""Synesthesia's plugin contract, and the built-in plugins written against it.

This package is what a third-party plugin codes against: the hooks (:mod:`plugins.hookspecs`,
with the contract's version :data:`PLUGIN_API`), the records it registers and gets back
(:mod:`plugins.types`) and the errors it raises (:mod:`plugins.errors`). It imports nothing
from the application; the host that loads and runs plugins is ``assistant.plugin_host``.
A plugin implements hooks with the ``hookimpl`` marker below and is found through the
``synesthesia`` entry-point group or the user plugin folder. See docs/PLUGINS.md. Importing
this package is cheap: models load only when first needed.
"""

from plugins.errors import AssistantError, InputError, ModelError
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
    "AssistantError",
    "InputError",
    "ModelError",
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
