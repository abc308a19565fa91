"""/draw in the terminal UI: the picture is saved and shown inline under the command's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.tui.widgets import HalfBlockImage, SystemLine
from tests.tui.conftest import until, wait_idle
from tests.tui.test_app import SIZE, BotWithPlugins, notes, type_and_send

pytestmark = pytest.mark.asyncio


async def test_draw_shows_the_picture_inline(make_app):
    app = make_app(BotWithPlugins())
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_idle(pilot, app)
        await type_and_send(pilot, "/draw a red circle at the top left and a blue square at the bottom right")
        await until(pilot, lambda: list(app.query(SystemLine)), timeout=30, what="the drawing")
        text = str(app.query_one(SystemLine).render())
        assert text.startswith("Drew a red circle at the top left and a blue square at the bottom right")
        await until(pilot, lambda: list(app.query(HalfBlockImage)), what="the preview")
        assert Path(app.query_one(HalfBlockImage).path).is_file()
        await type_and_send(pilot, "/draw a pink elephant")
        await until(pilot, lambda: any("I cannot draw pink" in m for m, _ in notes(app)), what="the refusal")
