"""Built-in plugin: ``/save TEXT`` keeps a note in the current session; "remember that ..." too.

Notes go through ``ctx.save_note(text)``: the session store decides where they live. ``/save``
without text saves the last reply when the context offers ``ctx.last_reply()``.
"""

from __future__ import annotations

import re
from typing import Any

from plugins.errors import InputError
from plugins.hookspecs import hookimpl
from plugins.types import CommandResult, ToolResult, usage_error

MAX_NOTE = 10_000

# Strict on purpose: "remember that X" / "note: X" save X; "remember when ..." does not.
_NOTE_REQUEST = re.compile(
    r"^\s*(?:please\s+)?(?:(?:can|could|would)\s+you\s+)?(?:please\s+)?"
    r"(?:remember\s+(?:that\b|this\s*:|:)|note\s+(?:that\b|down\b)|note\s*:|"
    r"(?:make|take|save|add)\s+a\s+note\b(?:\s+that\b)?|jot\s+(?:this\s+)?down\b(?:\s+that\b)?|"
    r"write\s+(?:this\s+)?down\b(?:\s+that\b)?)"
    r"\s*[:,-]?\s*(?P<note>\S.*)$",
    re.IGNORECASE | re.DOTALL,
)


def note_from_request(text: str) -> str | None:
    m = _NOTE_REQUEST.match(text)
    if not m:
        return None
    note = m.group("note").strip()
    note = re.sub(r"\s*(?:please)?[.!]?\s*$", "", note, flags=re.IGNORECASE)
    return note or None


def _save(ctx: Any, text: str) -> None:
    if len(text) > MAX_NOTE:
        raise InputError(f"a note can hold at most {MAX_NOTE:,} characters (this one has {len(text):,})")
    ctx.save_note(text)


def save_command(args: str, ctx: Any) -> CommandResult:
    """Save a note into this session: /save TEXT (no text: the last reply)."""
    text = args.strip()
    if not text:
        last = getattr(ctx, "last_reply", None)
        text = (last() if callable(last) else last) or ""
        if not text.strip():
            raise usage_error("/save TEXT   (with no text, saves the last reply once there is one)")
    _save(ctx, text)
    preview = text if len(text) <= 60 else text[:57] + "..."
    return CommandResult(text=f"Saved a note: {preview}", data={"note": text})


def note_tool(text: str, ctx: Any) -> ToolResult:
    note = note_from_request(text)
    if note is None:
        raise InputError("say what to note, e.g. 'remember that the code is 4521'")
    _save(ctx, note)
    return ToolResult(text=f"Saved a note in this session: {note}", data={"note": note})


@hookimpl
def register_commands(register):
    register(save_command, name="save", usage="/save [TEXT]", aliases=("note",))


@hookimpl
def register_tools(register):
    register(
        note_tool,
        name="note",
        description="Save something the user wants remembered as a note in this session.",
        examples=(
            "remember that my locker code is 4521",
            "make a note: buy milk and eggs",
            "note that the meeting moved to Thursday",
            "take a note, the wifi password is on the fridge",
            "jot down that Anna's birthday is on May 3rd",
        ),
        guard=lambda text: note_from_request(text) is not None,
        # The request's content dominates sentence similarity ("remember that my bike is on
        # level 3" is far from every example), so the strict guard does most of the work.
        threshold=0.15,
    )
