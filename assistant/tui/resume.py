"""Resuming a stored session: give the assistant the latest turns that can fit in its prompt.

No Textual here: the app calls :func:`resume_conversation` when the models are ready or the
session changes, and ``benchmarks/bench_growth.py`` times the same call.

Only what can fit is read from the store. The prompt budget is counted in tokens, which the
store cannot count, so it is turned into two bounds that hold for any text: at most
:data:`MAX_CHARS_PER_TOKEN` characters a token (SmolLM2's tokenizer averages 3.4-3.7 on prose
and code; only long runs of one character, such as spaces, pack more) and at least
:data:`MIN_TOKENS_PER_MESSAGE` tokens a message (the chat template's framing alone takes
5). The generator's ``fit`` then drops whatever of this still does not fit, from the oldest.
"""

from __future__ import annotations

from typing import Any

from assistant.storage import SessionStore

MAX_CHARS_PER_TOKEN = 8
"""Characters read from the store per token of prompt budget (about twice what prose needs)."""

MIN_TOKENS_PER_MESSAGE = 5
"""Tokens the smallest chat message takes in the prompt: ``<|im_start|>user\\n`` ... ``<|im_end|>\\n``."""


def prompt_budget(settings: Any, bot: Any) -> int:
    """Tokens the conversation may take in the prompt: what the pipeline fits it into
    (the context, less the room kept for the reply)."""
    g = settings.generator
    tokens = g.context_tokens
    window = getattr(getattr(bot, "generator", None), "context_window", None)
    if isinstance(window, int) and window > 0:
        tokens = min(tokens, window)
    return max(0, tokens - g.max_new_tokens)


def resume_conversation(bot: Any, store: SessionStore, session_id: int | None, settings: Any) -> int:
    """Start ``bot``'s conversation afresh with session ``session_id``'s latest turns (none for
    ``None``: a new conversation). Returns how many messages it was given."""
    bot.reset()
    history = getattr(bot, "history", None)
    if session_id is None or not isinstance(history, list):
        return 0
    budget = prompt_budget(settings, bot)
    messages = store.history(session_id, max_chars=budget * MAX_CHARS_PER_TOKEN,
                             max_turns=budget // MIN_TOKENS_PER_MESSAGE)
    history.extend(messages)
    return len(messages)
