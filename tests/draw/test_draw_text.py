"""Reading descriptions: colours, shapes, quadrants, halves, relations, and one-line refusals."""

from __future__ import annotations

import random

import pytest

from models.draw_text import DescriptionError, parse


def _layout(text: str, seed: int = 0) -> dict[str, tuple[str, str]]:
    return {o.colour: (o.shape, o.quadrant) for o in parse(text).layout(random.Random(seed)).objects}


def test_quadrants():
    assert _layout("a red circle at the top left and a blue square at the bottom right") == {
        "red": ("circle", "top left"), "blue": ("square", "bottom right")}


@pytest.mark.parametrize("text", [
    "draw me a yellow circle in the bottom right corner",
    "a yellow circle at the lower-right",
    "Yellow circle, bottom right.",
    "a yellow dot in the bottom right hand corner of the picture",
])
def test_ways_to_say_a_quadrant(text):
    assert _layout(text) == {"yellow": ("circle", "bottom right")}


def test_relations_hold_in_every_layout():
    d = parse("a green square left of a grey circle")
    assert d.relations == [("green", "left of", "gray")]
    for seed in range(10):
        lay = _layout("a green square left of a grey circle", seed)
        assert lay["green"][1].endswith("left") and lay["gray"][1].endswith("right")
        assert lay["green"][0] == "square" and lay["gray"][0] == "circle"
    lay = _layout("an orange square above the red circle")
    assert lay["orange"][1].startswith("top") and lay["red"][1].startswith("bottom")


def test_a_subject_keeps_its_relations():
    d = parse("the blue square is under a green circle and left of a red circle")
    assert d.relations == [("blue", "below", "green"), ("blue", "left of", "red")]


def test_halves_and_open_choices():
    lay = _layout("a red object at the top and a blue circle on the left")
    assert lay["red"][1].startswith("top") and lay["red"][0] in ("square", "circle")
    assert lay["blue"] [1].endswith("left")
    assert parse("a red object at the top").understood() == "a red object at the top"


def test_what_was_understood():
    d = parse("a red circle at the top left and a blue square left of a gray circle")
    assert d.understood() == ("a red circle at the top left; a blue square left of the gray circle; a gray circle")


@pytest.mark.parametrize("text, needle", [
    ("a purple triangle", "I cannot draw purple"),
    ("a red triangle", "I cannot draw a triangle"),
    ("hello there", "I found no object to draw in 'hello there'"),
    ("a red circle and a red square", "red is named twice"),
    ("a red circle above", "'above' needs another coloured object"),
    ("two red circles", "one object per colour"),
    ("a red circle at the top and at the bottom", "cannot be at both the top and the bottom"),
    ("a red circle left of a blue square and the blue square left of a green circle", "cannot all hold at once"),
    ("a red circle " + "x" * 500, "at most 400 characters"),
])
def test_refusals_are_one_line_and_say_what_was_understood(text, needle):
    with pytest.raises(DescriptionError) as e:
        parse(text)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg


def test_refusal_reports_what_it_understood():
    with pytest.raises(DescriptionError, match="Understood so far: a red circle at the top left"):
        parse("a red circle at the top left and a pink square")
