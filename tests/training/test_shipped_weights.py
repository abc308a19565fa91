"""The shipped fusion weights on the real frozen encoders (integration: real EfficientNet + SmolLM2 embeddings)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest
import torch
from PIL import Image

from models import clevr
from models.fusion import answer_evidence, load_fusion

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
    feats = image_encoder.encode(images)
    text, mask = generator.embed_text(questions, max_tokens=core.cfg.max_text_tokens)
    with torch.inference_mode():
        return core({"image": (feats.tokens, None)}, text, mask)


def test_shipped_weights_are_small_and_say_how_they_were_trained(core):
    assert (WEIGHTS / "model.safetensors").stat().st_size <= 16 * 2**20
    assert core.cfg.strategy == "attention"
    assert core.cfg.alignment in ("regression", "lm")
    assert core.cfg.aligned_to_generator is (core.cfg.alignment == "lm")
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


def test_scene_survives_resizing_and_jpeg(core, image_encoder, generator):
    """A scene saved at another size or as a JPEG is still recognised as a scene."""
    import io

    scene = clevr.make_scene(2_000_456)
    big = scene.render().resize((300, 300), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    scene.render().save(buf, "JPEG", quality=75)
    jpeg = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    q = clevr.make_question(scene, "shape", "green")
    out = _run(core, image_encoder, generator, [big, jpeg], [q.text] * 2)
    for i in range(2):
        note = answer_evidence(core.cfg, out, i, q.text)
        assert note and clevr.score_reply(note, "shape", q.answer), note
