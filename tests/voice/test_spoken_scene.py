"""Integration: a spoken question about a scene that the recognizer misheard is read back as the
fusion core understood it, and the reply follows the core's answer (real offline stack)."""

from __future__ import annotations

import pytest

from .conftest import pad

pytestmark = pytest.mark.integration

SAID = "Is the green object on the left or right of the image?"
HEARD = "Is the green object on the left or right updated?"
"""What Whisper tiny.en heard when a tuning voice said SAID at 260 words a minute in noise."""


@pytest.fixture
def scene():
    from models.clevr import answer, make_scene

    s = make_scene(2_100_028)  # a validation scene
    return s, answer(s, "horizontal", "green")


def test_a_misheard_question_is_answered_as_the_core_read_it(bot, say16, scene, monkeypatch):
    s, truth = scene
    monkeypatch.setattr(bot, "transcribe", lambda audio, context=None: HEARD)
    r = bot.ask(images=[s.render()], audio=[(pad(say16(SAID)), 16_000)])
    assert r.transcript == [HEARD]
    assert f"Understood as: {SAID}" in r.evidence  # shown to the user with the other evidence
    sent = bot.history[-2]["content"]
    assert sent.index(f"[Understood as: {SAID}]") < sent.index(HEARD) < sent.index("[Scene analysis:")
    other = {"left": "right", "right": "left"}[truth]
    assert truth in r.text.lower() and other not in r.text.lower(), r.text


def test_a_typed_question_is_taken_as_typed(bot, scene):
    s, truth = scene
    r = bot.ask(HEARD, images=[s.render()])
    assert not any(note.startswith("Understood as") for note in r.evidence)
    assert "Understood as" not in bot.history[-2]["content"]
    assert any(truth in note for note in r.evidence)  # the core still answers it
