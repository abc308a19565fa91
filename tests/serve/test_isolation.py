"""The server starts each request's conversation without Assistant.reset() (which would drop
the generator's cached prefix); this keeps that in step with what reset() clears."""

from __future__ import annotations

import threading

from assistant.pipeline import Reply
from assistant.serve.turns import fresh_conversation
from tests.conftest import DATA
from tests.serve.conftest import fake_bot

PLAIN = (list, dict, set, tuple, str, int, float, bool, type(None), Reply)


def conversation_state(bot) -> dict:
    """The assistant's plain-valued attributes (models, locks and callbacks left out)."""
    return {k: (v.text if isinstance(v, Reply) else v) for k, v in vars(bot).items() if isinstance(v, PLAIN)}


def used(image_encoder):
    bot = fake_bot(image_encoder, "A cat.", "Noted.")
    bot.ask("What is this?", images=[f"{DATA}/cat.jpg"])  # leaves history, labels, a reply
    bot.context.add_context("[Contents of the file secret.txt]")  # as /read or a tool would
    bot.ask("And now?")
    bot.context.add_context("[queued for the next turn]")
    return bot


def test_fresh_conversation_clears_what_reset_clears(image_encoder):
    reset, fresh = used(image_encoder), used(image_encoder)
    assert conversation_state(reset) == conversation_state(fresh)  # the same state to start from
    reset.reset()
    fresh_conversation(fresh, [])
    assert conversation_state(fresh) == conversation_state(reset)
    assert fresh.generator.forgotten == 0 and reset.generator.forgotten == 1  # only reset drops the cache


def test_the_next_request_sees_only_its_own_messages(image_encoder):
    from assistant.serve.conversation import build_chat_turn
    from assistant.serve.schemas import Message
    from assistant.serve.turns import run_chat

    bot = used(image_encoder)
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    chat = build_chat_turn([Message(**m) for m in history] + [Message(role="user", content="next")], bot.settings)
    run_chat(bot, chat, sampling={}, stops=[], cancel=threading.Event(), emit=lambda chunk: None)
    prompt = bot.generator.prompts[-1]
    assert prompt[1:] == history + [{"role": "user", "content": "next"}]
    assert "secret" not in str(prompt) and "queued" not in str(prompt)
