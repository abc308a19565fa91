"""F6 shows the text read in the latest message's images under them, and copies it."""

from __future__ import annotations

import pytest
from textual.widgets import TextArea

from assistant.tui.attachments import image_texts
from tests.tui.fake_assistant import FakeAssistant
from assistant.tui.widgets import ImageText
from tests.tui.conftest import wait_idle
from tests.tui.test_app import notes, type_and_send

SIZE = (110, 36)
READ = "Traceback (most recent call last):\nKeyError: 'user_id'"


class ReadingAssistant(FakeAssistant):
    """The fake assistant, with the text an OCR pass would have read in each image."""

    def stream(self, text, images=(), audio=(), cancel=None):
        yield from super().stream(text, images, audio, cancel)
        names = list(self.last_reply.image_names)
        self.last_reply.evidence += [f"Image {i + 1} ({n}) contains text:\n{READ}" for i, n in enumerate(names)]
        self.last_reply.ocr = [{"image": n, "text": READ, "lines": []} for n in names]


@pytest.mark.asyncio
async def test_f6_shows_and_copies_the_text_in_the_image(make_app, picture, store):
    app = make_app(ReadingAssistant())
    async with app.run_test(size=SIZE) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f6")
        assert any("No text has been read" in message for message, _ in notes(app))
        await type_and_send(pilot, f"/image {picture}")
        await type_and_send(pilot, "what does it say?")
        await wait_idle(pilot, app)
        await pilot.press("f6")
        await pilot.pause()
        panel = app.query_one(ImageText)
        assert panel.display and app.query_one(".image-text-body", TextArea).text == READ
        assert app.clipboard == READ
        await pilot.press("f6")
        assert not panel.display
    # a resumed session shows the text the generator saw, from the stored evidence
    assert image_texts(None, store.turns(store.last_session().id)[0].evidence) == [("quadrants.png", READ)]


def test_image_texts_prefers_the_full_reading():
    class Reply:
        ocr = [{"image": "a.png", "text": "all of it"}, None, {"image": "c.png", "text": ""}]

    assert image_texts(Reply(), ["Image 1 (a.png) contains text:\nshort"]) == [("a.png", "all of it")]
    assert image_texts(None, ["Image 2 (b (1).png) contains text:\nx\ny", "Image 1 (a.png) shows: cat"]) == [("b (1).png", "x\ny")]
