"""The sessions sidebar with many sessions: a page of the most recent, more on demand, a filter
that reaches any session."""

from __future__ import annotations

import shutil

import pytest

from assistant.storage import SessionStore
from assistant.tui.app import SynesthesiaApp
from assistant.tui.sidebar import MORE, PAGE, SessionList
from tests.tui.conftest import NoVoice, wait_idle

pytestmark = pytest.mark.asyncio
SIZE = (110, 36)
MANY = 10_000


@pytest.fixture(scope="module")
def many_sessions_db(tmp_path_factory):
    """A database of 10,000 sessions titled "Session 00001" (the oldest) to "Session 10000"."""
    path = tmp_path_factory.mktemp("many") / "sessions.db"
    with SessionStore.open(path) as store:
        for i in range(1, MANY + 1):
            store.create_session(f"Session {i:05d}")
    return path


@pytest.fixture
def many(many_sessions_db, tmp_path):
    path = tmp_path / "sessions.db"
    shutil.copyfile(many_sessions_db, path)
    with SessionStore.open(path) as store:
        yield store


def make(settings, store, bot) -> SynesthesiaApp:
    return SynesthesiaApp(settings, lambda: bot, store, voice=NoVoice(), cursor_blink=False)


def titles(listed: SessionList) -> list[str]:
    return [s.title for s in listed.sessions]


async def test_ten_thousand_sessions_show_one_page_and_the_count(settings, many, bot):
    app = make(settings, many, bot)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        listed = app.query_one(SessionList)
        assert titles(listed)[:2] == ["Session 10000", "Session 09999"]  # the most recent first
        assert listed.option_count == PAGE + 1  # a page and the line that reads more
        assert listed.get_option_at_index(PAGE).id == MORE
        assert listed.highlighted == 0 and app.session.title == "Session 10000"  # the resumed one
        assert "10,000" in str(app.query_one("#sidebar-title").render())


async def test_paging_reads_the_next_page_when_the_end_is_reached(settings, many, bot):
    app = make(settings, many, bot)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        listed = app.query_one(SessionList)
        listed.focus()
        await pilot.press("end")  # onto the "more" line
        await pilot.pause()
        assert len(listed.sessions) == 2 * PAGE and titles(listed)[PAGE] == f"Session {MANY - PAGE:05d}"
        assert listed.highlighted == PAGE  # on the first session of the new page
        await pilot.press("enter")
        await pilot.pause()
        assert app.session.title == f"Session {MANY - PAGE:05d}"


async def test_the_filter_reaches_the_oldest_session(settings, many, bot):
    app = make(settings, many, bot)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        app.query_one(SessionList).focus()
        await pilot.press("slash", *"session 00001")  # / goes to the filter
        await pilot.pause()
        listed = app.query_one(SessionList)
        assert titles(listed) == ["Session 00001"] and listed.option_count == 1
        assert "1 found" in str(app.query_one("#sidebar-title").render())
        await pilot.press("enter", "enter")  # into the list, then open
        await pilot.pause()
        assert app.session.title == "Session 00001"
        app.query_one("#session-filter").value = "#2"  # by id
        await pilot.pause()
        assert titles(listed) == ["Session 00002"]


async def test_paging_to_the_end_reaches_every_session(settings, store, bot):
    for i in range(2 * PAGE + 3):
        store.create_session(f"Chat {i:03d}")
    app = make(settings, store, bot)
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        listed = app.query_one(SessionList)
        listed.focus()
        for _ in range(3):
            await pilot.press("end")
            await pilot.pause()
        assert len(listed.sessions) == 2 * PAGE + 3 and listed.option_count == 2 * PAGE + 3  # no "more" left
        assert titles(listed)[-1] == "Chat 000"
        await pilot.press("end", "enter")
        await pilot.pause()
        assert app.session.title == "Chat 000"
