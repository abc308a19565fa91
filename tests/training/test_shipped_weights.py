"""The shipped fusion weights on the real frozen encoders (integration: real EfficientNet + SmolLM2 embeddings)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest
import torch
from PIL import Image

from models import clevr
from models.fusion import answer_evidence, load_fusion, question_reading
from models.image import encode_grid

WEIGHTS = Path(str(resources.files("models").joinpath("weights/fusion")))
DATA = Path(__file__).resolve().parents[1] / "data"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (WEIGHTS / "model.safetensors").is_file(), reason="no shipped fusion weights"),
]


@pytest.fixture(scope="module")
def core():
    return load_fusion(WEIGHTS)


def _run(core, image_encoder, generator, images, questions):
    feats = encode_grid(image_encoder, images, core.cfg.image_grid)
    text, mask = generator.embed_text(questions, max_tokens=core.cfg.max_text_tokens)
    with torch.inference_mode():
        return core({"image": (feats.tokens, None)}, text, mask)


def test_shipped_weights_are_small_and_say_how_they_were_trained(core):
    assert (WEIGHTS / "model.safetensors").stat().st_size <= 16 * 2**20
    assert core.cfg.strategy == "attention"
    assert core.cfg.alignment in ("regression", "lm", "teacher")
    assert core.cfg.aligned_to_generator is (core.cfg.alignment in ("lm", "teacher"))
    assert "none" in core.cfg.answers and "describe" in core.cfg.answers
    assert core.cfg.domain_threshold > 0  # calibrated on its training images


def test_scene_questions_get_correct_answers_as_evidence(core, image_encoder, generator):
    scenes = [clevr.make_scene(2_000_000 + i) for i in range(8)]  # never trained on
    questions = [clevr.make_question(s, "shape", "red") for s in scenes]
    questions += [clevr.make_question(s, "horizontal", "blue") for s in scenes]
    images = [s.render() for s in scenes] * 2
    out = _run(core, image_encoder, generator, images, [q.text for q in questions])
    right = 0
    for i, q in enumerate(questions):
        note = answer_evidence(core.cfg, out, i, q.text)
        assert note, q.text
        right += clevr.score_reply(note, q.kind, q.answer)
    assert right >= 14  # of 16


def test_relational_questions_are_answered_from_the_object_slots(core, image_encoder, generator):
    """closest / furthest / count about scenes never trained on: the slot reasoner reads every
    object's centre and shape, and its geometry gives the notes (the head alone: about 91%)."""
    assert core.cfg.object_slots == 6 and set(clevr.RELATIONAL) <= set(core.cfg.slot_kinds)
    scenes = [clevr.make_scene(2_000_200 + i) for i in range(12)]
    questions = [clevr.make_question(s, kind, colour) for s in scenes for kind in clevr.RELATIONAL for colour in ("red", "gray")]
    images = [s.render() for s in scenes for _ in range(6)]
    out = _run(core, image_encoder, generator, images, [q.text for q in questions])
    right = sum(bool(note) and clevr.score_reply(note, q.kind, q.answer)
                for i, q in enumerate(questions) for note in [answer_evidence(core.cfg, out, i, q.text)])
    assert right >= RELATIONAL_RIGHT, right
    from models.train_data import crop_pixels, object_slots

    xy, _ = object_slots(scenes)  # (12, 6, 2) true centres in the crop's frame
    error = (out.slots.positions[::6] - xy).abs().mean() * crop_pixels()  # pixels
    assert error < 0.5, error


RELATIONAL_RIGHT = 68
"""Of 72 (the shipped weights: 72, and 0.1 px mean centre error; the stage-8 head alone got
about 91% of relational questions, which would be 65)."""


def test_description_request_gets_the_caption_head(core, image_encoder, generator):
    scene = clevr.make_scene(2_000_123)
    out = _run(core, image_encoder, generator, [scene.render()], ["Describe the image."])
    note = answer_evidence(core.cfg, out, 0, "Describe the image.")
    assert note and note.startswith("There are six objects")
    facts = sum(f"{o.colour} {o.shape}" in note for o in scene.objects)
    assert facts >= 5


@pytest.mark.parametrize("photo", ["cat.jpg", "coffee.jpg"])
def test_real_photos_get_no_scene_evidence(core, image_encoder, generator, photo):
    """Photos unlike the training scenes: the core says nothing (so only the labels reach the generator)."""
    image = Image.open(DATA / photo).convert("RGB")
    questions = ["What is in this image?", "Describe the image.", "What animal is this?",
                 "What is the shape of the red object?", "Is the gray object on the left or right of the image?"]
    out = _run(core, image_encoder, generator, [image] * len(questions), questions)
    notes = [answer_evidence(core.cfg, out, i, q) for i, q in enumerate(questions)]
    assert notes == [None] * len(questions), notes
    assert float(out.domain_distance.min()) > core.cfg.domain_threshold


def test_scene_survives_jpeg_and_mostly_survives_resizing(core, image_encoder, generator):
    """A scene saved as a JPEG is still a scene and gets right notes; one enlarged 4x with
    nearest-neighbour sampling (sharper edges than the training renders) is declined (no note:
    the labels speak) or answered, and rarely answered wrong. 10 scenes x 6 shape questions.
    Measured on 40 scenes: the shipped (stage 9) weights JPEG 238/240 right, enlarged 134 right,
    4 wrong, 102 declined; stage 8's 236/240 and 123 / 15 / 102; an earlier core's 233/240 and
    127 / 11 / 102 (on these 10: JPEG 60/60; enlarged 32 right, 4 wrong, 24 declined)."""
    import io

    tally = {"jpeg": [0, 0, 0], "big": [0, 0, 0]}  # right, wrong, declined
    for seed in range(2_000_400, 2_000_410):
        scene = clevr.make_scene(seed)
        big = scene.render().resize((300, 300), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        scene.render().save(buf, "JPEG", quality=75)
        jpeg = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        questions = [clevr.make_question(scene, "shape", c) for c in clevr.COLOURS]
        out = _run(core, image_encoder, generator, [jpeg] * 6 + [big] * 6, [q.text for q in questions] * 2)
        for i in range(12):
            q = questions[i % 6]
            note = answer_evidence(core.cfg, out, i, q.text)
            verdict = 2 if note is None else 0 if clevr.score_reply(note, "shape", q.answer) else 1
            tally["jpeg" if i < 6 else "big"][verdict] += 1
    assert tally["jpeg"][0] >= 56, tally
    assert tally["big"][0] >= 24 and tally["big"][1] <= 9, tally


def test_a_misheard_question_reads_as_the_question_the_core_answers(core, image_encoder, generator):
    """Whisper transcripts of questions spoken fast in noise by the tuning voices, each with its
    validation scene: the slot reasoner reads each as its canonical question, and the typed
    canonical question reads as itself."""
    heard = [  # (scene, transcript, type, colour)
        (2_100_028, "Is the green object on the left or right updated?", "horizontal", "green"),
        (2_100_010, "What is the shape of the object's turn is from the gray object?", "furthest", "gray"),
        (2_100_041, "What is the shape of the object? Close it to the blue object.", "closest", "blue"),
        (2_100_026, "How many objects have the same shape and the yellow object?", "count", "yellow"),
        (2_100_038, "The red object on the top or bottom included.", "vertical", "red"),
        (2_100_044, "Is the shape of the yellow object?", "shape", "yellow"),
    ]
    scenes = [clevr.make_scene(seed) for seed, *_ in heard]
    typed = [clevr.make_question(s, kind, colour).text for s, (_, _, kind, colour) in zip(scenes, heard)]
    questions = [q for _, q, _, _ in heard] + typed
    out = _run(core, image_encoder, generator, [s.render() for s in scenes] * 2, questions)
    for i, q in enumerate(questions):
        assert question_reading(core.cfg, out, i) == typed[i % len(typed)], q
    others = ["Describe the image.", "What is the capital of France?", "Tell me a joke."]  # not one of the six types
    out = _run(core, image_encoder, generator, [s.render() for s in scenes[:3]] * len(others),
               [q for q in others for _ in range(3)])
    assert [question_reading(core.cfg, out, i) for i in range(9)] == [None] * 9
