"""F7 shows where the fusion core looked in the latest message's images, under them."""

from __future__ import annotations

import pytest

from tests.tui.fake_assistant import FakeAssistant
from assistant.tui.widgets import AttentionView, HalfBlockImage, attention_picture
from tests.tui.conftest import wait_idle
from tests.tui.test_app import notes, type_and_send

SIZE = (110, 36)


def entry(name: str, known: bool | None = True) -> dict:
    grid = [[0.0] * 7 for _ in range(7)]
    grid[1][5] = 1.0
    return {"image": name, "rows": 7, "cols": 7, "grid": grid, "image_share": 0.9, "crop_box": [2.0, 1.0, 30.0, 23.0],
            "known_image": known, "answered": known}


class LookingAssistant(FakeAssistant):
    """The fake assistant, with an attention map for each image (as the fusion core gives)."""

    def stream(self, text, images=(), audio=(), cancel=None):
        yield from super().stream(text, images, audio, cancel)
        self.last_reply.attention = [entry(n, known=False) for n in self.last_reply.image_names]


@pytest.mark.asyncio
async def test_f7_toggles_the_attention_view_under_the_image(make_app, picture):
    app = make_app(LookingAssistant())
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f7")
        assert any("No attention map yet" in message for message, _ in notes(app))
        await type_and_send(pilot, f"/image {picture}")
        await type_and_send(pilot, "what shape is the red object?")
        await wait_idle(pilot, app)
        await pilot.press("f7")
        await pilot.pause()
        view = app.query_one(AttentionView)
        assert view.display
        assert view.query_one(HalfBlockImage)._image is not None
        shown = " ".join(str(s.render()) for s in view.query(".attention-caveat"))
        assert "does not know images like this one" in shown
        await pilot.press("f7")
        assert not view.display


def test_attention_picture_keeps_the_image_shape(picture):
    im = attention_picture(picture, entry("quadrants.png"))
    assert im is not None and im.size == (32, 24)
    assert attention_picture(picture, {"image": "x"}) is None  # malformed: nothing drawn, no crash
