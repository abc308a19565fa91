"""One error hierarchy for the whole assistant.

Every error a user can cause or fix derives from :class:`AssistantError`. The CLI prints
these in one line on stderr (exit status 2 for :class:`InputError`, 1 for the rest) and the
terminal UI shows them as notifications; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

# The three a plugin may raise are defined by the plugin contract (plugins/errors.py), so that
# the application and its plugins share one hierarchy; the rest are the application's own.
from plugins.errors import AssistantError, InputError, ModelError

__all__ = ["AssistantError", "Cancelled", "ConfigError", "DeviceError", "InputError", "InstallError",
           "ModelError", "PluginError", "first_line"]


class InstallError(ModelError):
    """A package that ships model weights is missing, damaged or not the pinned version; the
    message names it and how to reinstall it (exit status 2: the user can fix it)."""

    exit_code = 2


class ConfigError(AssistantError):
    """The settings file or an environment variable holds an invalid value."""

    exit_code = 2


class DeviceError(AssistantError):
    """An audio device is missing or cannot be opened (PortAudio absent, no microphone)."""


class PluginError(AssistantError):
    """A plugin failed to load or run, or a named plugin is not installed."""


class Cancelled(AssistantError):
    """The user stopped a reply (or speech) before it finished."""


def first_line(e: BaseException) -> str:
    """An error as the one line the user is shown: its message's first line, or its type's
    name when it has no message. Every place that shows an error asks here."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
