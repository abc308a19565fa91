"""Integration: the fusion core's soft tokens as the only evidence (``fusion.route = "tokens"``),
through the real offline stack, for each mix of modalities a turn can have."""

from __future__ import annotations

import pytest

from .conftest import pad

pytestmark = pytest.mark.integration


@pytest.fixture
def sent(bot, monkeypatch):
    """What the generator was given at its last call: the last user message and the soft tokens."""
    seen: dict = {}
    stream = bot.generator.stream

    def spy(messages, *, inserts=None, **kw):
        seen.update(message=messages[-1]["content"], inserts=list(inserts or []))
        return stream(messages, inserts=inserts, **kw)

    monkeypatch.setattr(bot.generator, "stream", spy)
    return seen


@pytest.fixture
def tokens_bot(bot, sent, monkeypatch):
    if not bot.fusion.cfg.aligned_to_generator:
        pytest.fail("the shipped fusion weights were not trained through the generator")
    monkeypatch.setattr(bot.settings.fusion, "route", "tokens")
    return bot


def has_tokens(sent: dict) -> bool:
    return "[Image features:" in sent["message"] and len(sent["inserts"]) == 1


def scene(seed: int):
    from models.clevr import make_scene, render

    s = make_scene(seed)
    return s, render(s)


def test_image_and_typed_question_answered_from_the_tokens_alone(tokens_bot, sent):
    from models.clevr import answer

    right = 0
    for seed in range(1_000_400, 1_000_410):
        s, picture = scene(seed)
        r = tokens_bot.ask("What is the shape of the red object?", images=[picture])
        assert has_tokens(sent) and "Scene analysis" not in sent["message"]  # no sentence from the core
        assert not any("Scene analysis" in n or "ImageNet" in n for n in r.evidence)
        right += answer(s, "shape", "red") in r.text.lower()
    assert right >= 8, right


def test_image_and_spoken_question_go_through_the_tokens(tokens_bot, sent, say16):
    from models.clevr import answer

    s, picture = scene(1_000_420)
    r = tokens_bot.ask(images=[picture], audio=[(pad(say16("What is the shape of the blue object?")), 16_000)])
    assert "blue" in r.transcript[0].lower()
    assert has_tokens(sent) and "Scene analysis" not in sent["message"] and "Understood as" not in sent["message"]
    assert answer(s, "shape", "blue") in r.text.lower()


def test_text_only_and_audio_only_need_no_tokens(tokens_bot, sent, say16):
    r = tokens_bot.ask("What is the capital of France?")
    assert "Paris" in r.text and not sent["inserts"] and "[Image features:" not in sent["message"]
    tokens_bot.reset()
    r = tokens_bot.ask(audio=[(pad(say16("What is the capital of France?")), 16_000)])
    assert "france" in r.transcript[0].lower() and "Paris" in r.text
    assert not sent["inserts"] and "[Image features:" not in sent["message"]


def test_image_only_gets_its_tokens_and_a_description(tokens_bot, sent):
    from models.clevr import score_description

    s, picture = scene(1_000_430)
    r = tokens_bot.ask(images=[picture])
    assert has_tokens(sent)
    said = score_description(r.text, s)
    assert said.named >= 5 and said.shape >= 4, r.text


def test_a_description_takes_the_tokens_on_the_text_route(bot, sent, monkeypatch):
    """Weights trained to describe (``describes``): "Describe the image." goes by the soft
    tokens even on the text route, where the generator would get the caption as a sentence
    (and not repeat it); any other question keeps the sentence."""
    from models.clevr import score_description

    if not bot.fusion.cfg.describes:
        pytest.fail("the shipped fusion weights were not trained to describe")
    monkeypatch.setattr(bot.settings.fusion, "route", "text")
    s, picture = scene(1_000_460)
    r = bot.ask("Describe the image.", images=[picture])
    assert has_tokens(sent) and "Scene analysis" not in sent["message"]
    said = score_description(r.text, s)
    assert said.named >= 5 and said.shape >= 4, r.text
    bot.reset()
    bot.ask("What is the shape of the red object?", images=[picture])
    assert "[Scene analysis:" in sent["message"] and not sent["inserts"]


def test_text_route_sends_no_tokens_even_with_weights_trained_for_them(bot, sent, monkeypatch):
    monkeypatch.setattr(bot.settings.fusion, "route", "text")
    _, picture = scene(1_000_440)
    bot.ask("What is the shape of the red object?", images=[picture])
    assert "[Scene analysis:" in sent["message"] and "[Image features:" not in sent["message"] and not sent["inserts"]


def test_both_route_sends_the_tokens_and_the_sentence(bot, sent, monkeypatch):
    monkeypatch.setattr(bot.settings.fusion, "route", "both")
    _, picture = scene(1_000_450)
    bot.ask("What is the shape of the red object?", images=[picture])
    assert has_tokens(sent) and "[Scene analysis:" in sent["message"]
