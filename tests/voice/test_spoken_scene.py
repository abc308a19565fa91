"""Integration: a spoken question about a scene that the recognizer misheard is read back as the
fusion core understood it, and the reply follows the core's answer (the real offline stack; the
recognizer's transcript is fixed to a mishearing Whisper made, so the test does not depend on
hearing it again)."""

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


@pytest.fixture
def avoided(bot, monkeypatch):
    """The words each generator call was told never to write (the choices the core ruled out)."""
    seen = []
    stream = bot.generator.stream

    def spy(messages, *, sampling=None, **kw):
        seen.append(tuple(sampling.avoid_words))
        return stream(messages, sampling=sampling, **kw)

    monkeypatch.setattr(bot.generator, "stream", spy)
    return seen


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


def test_a_typed_question_is_taken_as_typed_even_with_audio(bot, scene, say16, monkeypatch):
    s, truth = scene
    monkeypatch.setattr(bot, "transcribe", lambda audio, context=None: HEARD)
    for audio in ([], [(pad(say16(SAID)), 16_000)]):  # typed alone; typed beside a recording
        bot.reset()
        r = bot.ask(HEARD, images=[s.render()], audio=audio)
        assert not any(note.startswith("Understood as") for note in r.evidence)
        assert "Understood as" not in bot.history[-2]["content"]
        assert any(truth in note for note in r.evidence)  # the core still answers it


def test_silence_and_other_requests_are_not_read_as_scene_questions(bot, say16, monkeypatch):
    """On this scene the type reader is sure "Describe the image." is a top/bottom question; the
    description still gets no reading (the answer is not top or bottom), on the text route too
    (a generator that takes no soft tokens, e.g. a remote one). Silence is not read at all."""
    import models.fusion
    from models.clevr import make_scene

    s = make_scene(2_100_044)
    reads = []
    reading = models.fusion.question_reading
    monkeypatch.setattr(models.fusion, "question_reading", lambda *a, **k: reads.append(a) or reading(*a, **k))
    monkeypatch.setattr(bot.generator, "soft_tokens", False, raising=False)
    for heard in ("", "Describe the image.", "What is the capital of France?"):
        monkeypatch.setattr(bot, "transcribe", lambda audio, context=None: heard)
        bot.reset()
        reads.clear()
        r = bot.ask(images=[s.render()], audio=[(pad(say16("Hello there.")), 16_000)])
        assert not any(note.startswith("Understood as") for note in r.evidence), (heard, r.evidence)
        assert bool(reads) == bool(heard), heard  # silence is not even read


def test_the_side_a_misheard_question_lost_is_ruled_out_from_the_reading(bot, say16, scene, avoided, monkeypatch):
    s, truth = scene
    monkeypatch.setattr(bot, "transcribe", lambda audio, context=None: "Is the green object on the left or like a video?")
    r = bot.ask(images=[s.render()], audio=[(pad(say16(SAID)), 16_000)])
    assert f"Understood as: {SAID}" in r.evidence
    assert avoided[-1] == ({"left": "right", "right": "left"}[truth],)  # the words said name one side only


def test_a_spoken_shape_choice_keeps_the_shape_it_ruled_out(bot, say16, avoided, monkeypatch):
    """The reading of 'Is the red object a square or a circle?' names no shapes; the words said
    still rule out the shape the core rejected (the side a misheard question lost comes from the reading)."""
    from models.clevr import answer, make_scene

    said = "Is the red object a square or a circle?"
    monkeypatch.setattr(bot, "transcribe", lambda audio, context=None: said)
    s = make_scene(2_100_044)
    r = bot.ask(images=[s.render()], audio=[(pad(say16(said)), 16_000)])
    truth = answer(s, "shape", "red")
    assert any(note.startswith("Understood as: What is the shape of the red object") for note in r.evidence)
    assert avoided[-1] == ({"square": "circle", "circle": "square"}[truth],)
