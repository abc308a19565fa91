"""Resuming a session gives the assistant only the latest turns that can fit in its prompt."""

from __future__ import annotations

import pytest

from assistant.tui.session_actions import SHOWN_TURNS
from assistant.tui.resume import MAX_CHARS_PER_TOKEN, prompt_budget, resume_conversation
from tests.tui.fake_assistant import FakeAssistant
from assistant.tui.widgets import SystemLine, UserMessage
from tests.tui.conftest import until, wait_idle

TURNS = 300


@pytest.fixture
def small_budget(settings):
    settings.generator.context_tokens = 256
    settings.generator.max_new_tokens = 56  # 200 tokens for the conversation
    return settings


@pytest.fixture
def long_session(store):
    session = store.create_session("long")
    for i in range(TURNS):
        store.record_turn(session.id, f"question {i}", f"answer {i}: " + "words " * 6)
    return session.id


def test_resume_gives_the_latest_turns_within_the_budget(small_budget, store, bot, long_session):
    given = resume_conversation(bot, store, long_session)
    assert 0 < given < 2 * TURNS and given == len(bot.history)
    assert bot.history == store.history(long_session)[-given:]  # the tail, whole turns, in order
    assert bot.history[-1]["content"].startswith(f"answer {TURNS - 1}:")
    assert sum(len(m["content"]) for m in bot.history) <= 200 * MAX_CHARS_PER_TOKEN


def test_resume_without_a_session_starts_afresh(small_budget, store, bot, long_session):
    resume_conversation(bot, store, long_session)
    assert resume_conversation(bot, store, None) == 0 and bot.history == []


def test_the_budget_is_the_assistants_never_below_zero(small_budget):
    assert prompt_budget(FakeAssistant(settings=small_budget, context_window=128)) == 128 - 56
    assert prompt_budget(FakeAssistant(settings=small_budget)) == 256 - 56
    assert prompt_budget(FakeAssistant(settings=small_budget, context_window=32)) == 0


@pytest.mark.asyncio
async def test_the_app_resumes_a_long_session_within_the_budget(make_app, small_budget, store, bot, long_session):
    app = make_app()
    async with app.run_test(size=(110, 36)) as pilot:
        await wait_idle(pilot, app)
        assert app.session.id == long_session
        assert 0 < len(bot.history) < 2 * TURNS and bot.history[-1]["content"].startswith(f"answer {TURNS - 1}:")
        shown = [m.text for m in app.query(UserMessage)]
        assert len(shown) == SHOWN_TURNS and shown[-1] == f"question {TURNS - 1}"
        earlier = [str(line.render()) for line in app.query(SystemLine)]
        assert any(f"{TURNS - SHOWN_TURNS} earlier turns" in line for line in earlier)


class WarmingAssistant(FakeAssistant):
    """Records the conversation it had each time it was asked to warm up."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.warmed: list[list[dict]] = []
        self.fail = fail

    def warm_up(self) -> None:
        self.warmed.append(list(self.history))
        if self.fail:
            raise RuntimeError("no warm-up today")


@pytest.mark.asyncio
async def test_the_app_warms_the_assistant_up_after_each_resume(make_app, store):
    session = store.create_session("short")
    store.record_turn(session.id, "hi", "hello")
    bot = WarmingAssistant()
    app = make_app(bot)
    async with app.run_test(size=(110, 36)) as pilot:
        await wait_idle(pilot, app)
        await until(pilot, lambda: bot.warmed, what="the warm-up")
        assert bot.warmed == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
        app.new_session()
        await until(pilot, lambda: len(bot.warmed) == 2, what="the second warm-up")
        assert bot.warmed[1] == []


@pytest.mark.asyncio
async def test_a_failed_warm_up_changes_nothing(make_app, store):
    store.record_turn(store.create_session().id, "hi", "hello")
    bot = WarmingAssistant(fail=True)
    app = make_app(bot)
    async with app.run_test(size=(110, 36)) as pilot:
        await wait_idle(pilot, app)
        await until(pilot, lambda: bot.warmed, what="the warm-up")
        app.query_one("#prompt").value = "still here?"
        await pilot.press("enter")
        await wait_idle(pilot, app)
        assert bot.calls[-1][0] == "still here?" and app.load_error is None
