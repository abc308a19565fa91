"""How the main screens look (pytest-textual-snapshot). Update with ``pytest tests/tui --snapshot-update``.

Nondeterminism is removed: fixed timings from the fake model, no cursor blink, no clock in
the header, half-block image previews (no terminal query), fresh database per test.
"""

from __future__ import annotations

import pytest

from tests.tui.fake_assistant import FakeAssistant
from tests.tui.conftest import add_session, wait_idle

SIZE = (110, 34)
TIMINGS = {"first_token": 0.12, "generate": 1.3, "total": 1.45}


@pytest.fixture
def fixed_bot():
    return FakeAssistant(["The image shows **four coloured squares**:\n\n- red\n- green\n- blue\n- yellow"],
                         timings=TIMINGS)


@pytest.fixture
def with_history(store):
    return add_session(store, "Capital cities", ("What is the capital of France?", "Paris."))


def test_chat_after_an_image_turn(snap_compare, make_app, fixed_bot, picture, with_history):
    app = make_app(fixed_bot)

    async def run_before(pilot):
        await wait_idle(pilot, app)
        await pilot.press("ctrl+n")
        app.query_one("#prompt").value = f"/image {picture}"
        await pilot.press("enter")
        app.query_one("#prompt").value = "What is in this picture?"
        await pilot.press("enter")
        await wait_idle(pilot, app)
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("key", ["f1", "f2"], ids=["help", "settings"])
def test_modal_screen(snap_compare, make_app, fixed_bot, key):
    app = make_app(fixed_bot)

    async def run_before(pilot):
        await wait_idle(pilot, app)
        await pilot.press(key)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_search_screen(snap_compare, make_app, fixed_bot, with_history):
    app = make_app(fixed_bot)

    async def run_before(pilot):
        await wait_idle(pilot, app)
        await pilot.press("ctrl+f", *"paris")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
