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

from typing import TYPE_CHECKING

from assistant.storage import SessionStore

if TYPE_CHECKING:
    from assistant.tui.protocol import AssistantLike

MAX_CHARS_PER_TOKEN = 8
"""Characters read from the store per token of prompt budget (about twice what prose needs)."""

MIN_TOKENS_PER_MESSAGE = 5
"""Tokens the smallest chat message takes in the prompt: ``<|im_start|>user\\n`` ... ``<|im_end|>\\n``."""


def prompt_budget(bot: AssistantLike) -> int:
    """Tokens the conversation may take in the prompt: what the pipeline fits it into
    (``bot.budget()``: the context, less the room kept for the reply)."""
    return max(0, bot.budget())


def resume_conversation(bot: AssistantLike, store: SessionStore, session_id: int | None) -> int:
    """Start ``bot``'s conversation afresh with session ``session_id``'s latest turns (none for
    ``None``: a new conversation). Returns how many messages it was given."""
    bot.reset()
    if session_id is None:
        return 0
    budget = prompt_budget(bot)
    messages = store.history(session_id, max_chars=budget * MAX_CHARS_PER_TOKEN,
                             max_turns=budget // MIN_TOKENS_PER_MESSAGE)
    bot.history.extend(messages)
    return len(messages)
