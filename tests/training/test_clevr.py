"""The Sort-of-CLEVR generator: scenes, answers checked against the rendered pixels, determinism."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models import clevr

SEEDS = range(0, 300, 3)


def _pixels_by_colour(image) -> dict[str, np.ndarray]:
    """colour name -> (n, 2) array of (x, y) pixel coordinates drawn in that colour."""
    arr = np.asarray(image).astype(int)  # (75, 75, 3)
    out = {}
    for name, rgb in clevr.RGB.items():
        ys, xs = np.nonzero((arr == np.array(rgb)).all(axis=-1))
        out[name] = np.stack([xs, ys], axis=1)
    return out


def _objects_from_pixels(image) -> dict[str, tuple[str, float, float]]:
    """Read the scene back from the image alone: colour -> (shape, centre x, centre y)."""
    found = {}
    for colour, pts in _pixels_by_colour(image).items():
        assert len(pts), f"no {colour} pixels"
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        box = (x1 - x0 + 1) * (y1 - y0 + 1)
        # a filled square fills its bounding box; a filled circle about pi/4 of it
        shape = "square" if len(pts) == box else "circle"
        found[colour] = (shape, (x0 + x1) / 2, (y0 + y1) / 2)
    return found


@pytest.mark.parametrize("seed", SEEDS)
def test_scene_has_six_objects_one_per_colour_without_overlap(seed):
    scene = clevr.make_scene(seed)
    assert sorted(o.colour for o in scene.objects) == sorted(clevr.COLOURS)
    assert {o.shape for o in scene.objects} <= set(clevr.SHAPES)
    image = scene.render()
    assert image.size == (75, 75) and image.mode == "RGB"
    for a in scene.objects:
        assert clevr.HALF <= a.x < 75 - clevr.HALF and clevr.HALF <= a.y < 75 - clevr.HALF
        for b in scene.objects:
            if a is not b:  # bounding boxes apart
                assert max(abs(a.x - b.x), abs(a.y - b.y)) > 2 * clevr.HALF
    # no overlap in pixels either: every object keeps its full size (121 px for an 11x11 square)
    pixels = _pixels_by_colour(image)
    for o in scene.objects:
        n = len(pixels[o.colour])
        if o.shape == "square":
            assert n == (2 * clevr.HALF + 1) ** 2
        else:
            assert 0.6 * (2 * clevr.HALF + 1) ** 2 < n < (2 * clevr.HALF + 1) ** 2


@pytest.mark.parametrize("seed", SEEDS)
def test_answers_match_the_geometry_read_back_from_the_pixels(seed):
    scene = clevr.make_scene(seed)
    seen = _objects_from_pixels(scene.render())
    for colour in clevr.COLOURS:
        shape, x, y = seen[colour]
        others = {c: v for c, v in seen.items() if c != colour}
        dist = {c: (v[1] - x) ** 2 + (v[2] - y) ** 2 for c, v in others.items()}
        expected = {
            "shape": shape,
            "horizontal": "left" if x < 37.5 else "right",
            "vertical": "top" if y < 37.5 else "bottom",
            "closest": others[min(dist, key=dist.get)][0],
            "furthest": others[max(dist, key=dist.get)][0],
            "count": clevr.NUMBERS[sum(v[0] == shape for v in seen.values()) - 1],
        }
        for kind, want in expected.items():
            assert clevr.answer(scene, kind, colour) == want, (seed, kind, colour)


def test_relational_answers_are_unique():
    for seed in SEEDS:
        scene = clevr.make_scene(seed)
        for o in scene.objects:
            d = sorted((o.x - p.x) ** 2 + (o.y - p.y) ** 2 for p in scene.objects if p is not o)
            assert d[0] < d[1] and d[-1] > d[-2]


def test_same_seed_same_scene_and_questions_different_seed_different_scene():
    a, b = clevr.make_scene(42), clevr.make_scene(42)
    assert a == b
    assert a.render().tobytes() == b.render().tobytes()
    assert clevr.questions_for(a) == clevr.questions_for(b)
    assert clevr.make_scene(43) != a
    assert len({clevr.make_scene(s).render().tobytes() for s in range(50)}) == 50
    # independent of global random state
    random.seed(1)
    c = clevr.make_scene(42)
    random.seed(2)
    assert clevr.make_scene(42) == c


def test_questions_cover_every_type_and_colour_in_words():
    scene = clevr.make_scene(7)
    qs = clevr.questions_for(scene, paraphrase=False)
    assert len(qs) == 37
    assert {(q.kind, q.colour) for q in qs if q.kind != clevr.DESCRIBE} == {
        (k, c) for k in clevr.QUESTION_TYPES for c in clevr.COLOURS
    }
    for q in qs:
        if q.kind == clevr.DESCRIBE:
            assert q.text == "Describe the image."
            continue
        assert q.text == clevr.TEMPLATES[q.kind][0].format(c=q.colour)
        assert q.colour in q.text
        assert q.answer in clevr.CANDIDATES[q.kind]
    assert qs[0].text == "What is the shape of the red object?"
    # paraphrases keep the meaning: same answers, other wording somewhere
    para = clevr.questions_for(scene, seed=3)
    assert [q.answer for q in para] == [q.answer for q in qs]
    assert any(p.text != q.text for p, q in zip(para, qs))


def test_caption_names_every_object_and_its_quadrant_and_round_trips():
    scene = clevr.make_scene(11)
    text = clevr.caption(scene)
    for o in scene.objects:
        assert f"{o.colour} {o.shape} at the {o.vertical} {o.horizontal}" in text
    assert "an orange" in text and "a orange" not in text
    assert clevr.caption_from_facts(clevr.caption_targets(scene)) == text
    assert len(clevr.caption_targets(scene)) == len(clevr.caption_attributes()) == 18


def test_other_images_are_not_scenes_and_are_seeded():
    a, b = clevr.other_image(5), clevr.other_image(5)
    assert a.tobytes() == b.tobytes()
    assert {clevr.other_image(s).size for s in range(5)} != {(75, 75)}
    assert all(clevr.other_image(s).mode == "RGB" for s in range(10))


@pytest.mark.parametrize(
    "reply, kind, correct, right",
    [
        ("It is a square.", "shape", "square", True),
        ("The red object is a circle.", "shape", "square", False),
        ("It could be a square or a circle.", "shape", "square", False),  # two candidates
        ("I cannot tell.", "shape", "square", False),  # none
        ("Squares.", "shape", "square", True),  # plural, capitals
        ("It is on the left side.", "horizontal", "left", True),
        ("That is bright.", "horizontal", "right", False),  # no substring matches
        ("Stop.", "vertical", "top", False),
        ("At the top.", "vertical", "top", True),
        ("There are 3 of them.", "count", "three", True),  # digits count
        ("Three objects.", "count", "three", True),
        ("One of three squares.", "count", "three", False),  # 'one' and 'three'
        ("Six.", "count", "five", False),
    ],
)
def test_score_reply_rule(reply, kind, correct, right):
    assert clevr.score_reply(reply, kind, correct) is right


def test_rejected_choices_are_the_other_options_the_question_offers():
    assert clevr.rejected_choices("Is the red object on the left or right of the image?", "right") == ("left",)
    assert clevr.rejected_choices("Is the red object on the top or bottom?", "top") == ("bottom",)
    assert clevr.rejected_choices("Is the red object a square or a circle?", "circle") == ("square",)
    assert clevr.rejected_choices("What is the shape of the red object?", "circle") == ()  # no choice offered
    assert clevr.rejected_choices("Is the red object on the left?", "right") == ()  # only one side named
    assert clevr.rejected_choices("Is the red object on the left or right?", "three") == ()


def test_description_score_reads_each_object_from_its_colour_to_the_next():
    scene = clevr.make_scene(1_000_000)  # red square bottom left, blue circle top left, green circle top right, ...
    full = clevr.score_description(clevr.caption(scene), scene)
    assert (full.named, full.shape, full.position, full.whole, full.extra) == (6, 6, 6, 6, 0) and full.scene_right
    reply = ("I see a red circle at the bottom left and a blue circle at the top right. "
             "The grey one is a square on the right, near the top. A red square too.")
    s = clevr.score_description(reply, scene)
    # red: circle wrong, position right; blue: shape right, left/right wrong; gray: shape and both
    # position words right ('grey' counts); green, orange, yellow: never named
    assert (s.named, s.shape, s.horizontal, s.vertical, s.position, s.whole, s.extra) == (3, 2, 2, 3, 2, 1, 1)
    assert not s.scene_right
    assert clevr.score_description("A picture of shapes.", scene).named == 0
