"""Built-in plugin: ``/labels`` shows the image encoder's labels for the attached image.

The labels come from the application through ``ctx.image_labels()`` (the pipeline keeps the
last attached image's ImageNet labels and probabilities); this plugin formats them.
"""

from __future__ import annotations

from typing import Any

from plugins.errors import InputError
from plugins.hookspecs import hookimpl
from plugins.types import CommandResult


def labels_command(args: str, ctx: Any) -> CommandResult:
    """Show the image encoder's labels and scores for the attached image."""
    labels = list(ctx.image_labels() or [])
    if not labels:
        raise InputError("no image is attached: add one with --image PATH (or /image PATH in the app)")
    try:
        rows = [(str(name), float(p)) for name, p in labels]
    except (TypeError, ValueError) as e:
        raise TypeError(f"ctx.image_labels() must give (label, probability) pairs, got {labels[:1]!r}") from e
    width = max(len(name) for name, _ in rows)
    text = "\n".join(f"{name:<{width}}  {p * 100:5.1f}%" for name, p in rows)
    return CommandResult(text=text, data=[{"label": name, "probability": p} for name, p in rows])


@hookimpl
def register_commands(register):
    register(labels_command, name="labels", usage="/labels")
