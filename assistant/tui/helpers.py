"""Small pure helpers of the terminal UI app: model descriptions, reply footers, key names."""

from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger(__name__)


def describe_models(bot: Any) -> list[str]:
    try:
        infos = list(bot.models())
    except Exception as e:
        log.warning("bot.models() failed: %s", e)
        return []
    return [f"{i.slot}: {i.name}" for i in infos]


def reply_footer(turn: Any) -> str:
    parts = []
    if turn.partial:
        reason = turn.stop_reason or "interrupted"
        parts.append("⏹ stopped" if reason == "cancelled" else f"⏹ partial ({reason})")
    if turn.evidence:
        parts.append("notes: " + "; ".join(turn.evidence[:3]))
    if turn.reply_audio is not None:
        parts.append("🔊 spoken")
    return "  ·  ".join(parts)


def accepts(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (hooks whose signature varies by version)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def key_names(key: str) -> str:
    return " / ".join(k.strip() for k in key.split(","))
