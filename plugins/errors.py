"""The errors a plugin raises to tell the user something, as part of the plugin contract.

Raise :class:`InputError` when the user's request cannot be done as asked (a bad argument, a
missing file): the application shows the message as one line and carries on (a command-line
run exits with status 2). Raise :class:`ModelError` when a model the plugin needs cannot be
loaded or run. Any other exception is a bug in the plugin: the host reports it and goes on
without the plugin's answer. Messages are one line that names the problem and, where it
helps, how to fix it.

The application's own errors derive from the same :class:`AssistantError`, so a plugin's
error is shown exactly as the application's are.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base class of the errors the user is shown as one line."""

    exit_code = 1


class InputError(AssistantError):
    """The user's input is unusable: the message names the file (or argument) and the problem."""

    exit_code = 2


class ModelError(AssistantError):
    """A model cannot be loaded or run: missing weights, no network for a download, bad config."""
