"""The slot reasoner (models/slots.py): its programs give the geometric answer when the slots
read a scene exactly, its answers replace the head's only where they should, and a core
with slots saves, reloads and refuses configs it cannot serve."""

from __future__ import annotations

import pytest
import torch

from models import clevr
from models.fusion import FusionConfig, build_fusion, load_fusion
from models.slots import KINDS
from models.train_data import answer_vocabulary, object_slots


def slot_config(**kw) -> FusionConfig:
    base = dict(answers=answer_vocabulary(), caption_attributes=clevr.caption_attributes(), d_model=16, n_heads=2,
                n_layers=1, n_queries=2, generator_dim=20, text_dim=12, max_text_tokens=6,
                modality_dims={"image": 24}, max_tokens={"image": 49}, object_slots=6, slot_kinds=list(KINDS))
    base.update(kw)
    return FusionConfig(**base)


def exact_reading(reasoner, scenes):
    """Make the reasoner read ``scenes`` exactly: true centres and (sure) shapes."""
    xy, shape = object_slots(scenes)  # (B, 6, 2), (B, 6)
    logits = torch.nn.functional.one_hot(shape, len(clevr.SHAPES)).float() * 30.0  # (B, 6, 2)
    reasoner.read = lambda image, pad: (xy, logits)


def test_the_programs_answer_every_question_by_the_scenes_geometry():
    """With exact centres and shapes, a sure pointer and a sure type, every (type, colour)
    question about 20 scenes gets the answer clevr.answer computes, closest / furthest / count too."""
    cfg = slot_config()
    reasoner = build_fusion(cfg).reasoner
    with torch.no_grad():
        reasoner.log_sharpness.fill_(-8.0)  # sharp distances and middle line
    scenes = [clevr.make_scene(s) for s in range(1_000_000, 1_000_020)]
    exact_reading(reasoner, scenes)
    words = list(cfg.answers)
    for k, kind in enumerate(KINDS):
        for c, colour in enumerate(clevr.COLOURS):
            pooled = torch.zeros(len(scenes), cfg.d_model)
            with torch.no_grad():  # a pointer sure of colour c, a type classifier sure of kind k
                reasoner.pointer.weight.zero_(), reasoner.pointer.bias.zero_(), reasoner.kind.weight.zero_(), reasoner.kind.bias.zero_()
                reasoner.pointer.bias[c], reasoner.kind.bias[k] = 40.0, 40.0
                out = reasoner(torch.zeros(len(scenes), 49, 24), None, pooled)
            got = [words[i] for i in out.answer_probs.argmax(dim=-1).tolist()]
            assert got == [clevr.answer(s, kind, colour) for s in scenes], (kind, colour)
            assert torch.allclose(out.answer_probs.sum(dim=-1), torch.ones(len(scenes)), atol=1e-4)


def test_the_head_keeps_none_describe_and_the_types_left_to_it():
    """The slots' answer replaces the head's for the types they cover, even against a sure
    head; for a type left to the head, and for ``none``, the head's word stands."""
    cfg = slot_config(slot_kinds=["closest", "furthest", "count"])
    reasoner = build_fusion(cfg).reasoner
    words = list(cfg.answers)
    scenes = [clevr.make_scene(1_000_000 + i) for i in range(3)]
    truth_side, truth_far = clevr.answer(scenes[1], "horizontal", "red"), clevr.answer(scenes[2], "furthest", "red")
    other = {"left": "right", "right": "left", "square": "circle", "circle": "square"}
    head = torch.full((3, len(words)), -10.0)
    head[0, words.index("none")] = 10.0  # not a scene question
    head[1, words.index(other[truth_side])] = 10.0  # a left/right question, left to the head (and wrong)
    head[2, words.index(other[truth_far])] = 10.0  # a furthest question the head gets wrong
    exact_reading(reasoner, scenes)
    with torch.no_grad():
        reasoner.kind.weight.zero_(), reasoner.kind.bias.zero_(), reasoner.pointer.weight.zero_(), reasoner.pointer.bias.zero_()
        pooled = torch.zeros(3, cfg.d_model)
        pooled[1, 0], pooled[2, 1] = 1.0, 1.0
        reasoner.kind.weight[KINDS.index("horizontal"), 0] = 50.0
        reasoner.kind.weight[KINDS.index("furthest"), 1] = 50.0
        reasoner.pointer.bias[0] = 50.0  # red
        reasoner.log_sharpness.fill_(-8.0)
        out = reasoner(torch.zeros(3, 49, 24), None, pooled)
    combined = reasoner.combine(head, out).exp()
    assert torch.allclose(combined.sum(dim=-1), torch.ones(3), atol=1e-4)
    assert words[int(combined[0].argmax())] == "none"
    assert words[int(combined[1].argmax())] == other[truth_side]  # not the slots' type: the head's word stands
    assert words[int(combined[2].argmax())] == truth_far  # the slots' geometry wins over a sure head


def test_a_core_with_slots_answers_saves_and_reloads(tmp_path):
    core = build_fusion(slot_config()).eval()
    image, text = torch.randn(2, 49, 24), torch.randn(2, 4, 12)
    out = core({"image": (image, None)}, text)
    assert out.slots.positions.shape == (2, 6, 2) and out.slots.shape_logits.shape == (2, 6, 2)
    assert torch.allclose(out.answer_logits.exp().sum(dim=-1), torch.ones(2), atol=1e-4)
    assert core({}, text).slots is None  # no image: the head alone
    core.save(tmp_path / "w")
    again = load_fusion(tmp_path / "w")
    assert again.cfg.object_slots == 6 and again.cfg.slot_kinds == list(KINDS)
    assert torch.allclose(again({"image": (image, None)}, text).answer_logits, out.answer_logits, atol=1e-5)


def test_slot_configs_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match="one per colour"):
        slot_config(object_slots=4)
    with pytest.raises(ValueError, match="slot_kinds"):
        slot_config(slot_kinds=["colour"])
    with pytest.raises(ValueError, match="answer words"):
        slot_config(answers=["yes", "no"])


def test_a_core_fed_the_fine_grid_reads_the_final_grid_out_of_it():
    """core_grid: fed EfficientNet's 14x14 grid, the core's own layers see exactly the 7x7 one
    inside it (so a 7x7 core's weights carry over unchanged) while the slots read the 14x14."""
    from models.image import final_from_fine

    final = FusionConfig(answers=answer_vocabulary(), d_model=16, n_heads=2, n_layers=1, n_queries=2, generator_dim=20,
                         text_dim=12, max_text_tokens=6, grid_coordinates=True)
    old = build_fusion(final).eval()
    old.set_domain(torch.randn(320), torch.rand(320) + 0.5, 3.0)
    fed = FusionConfig(**{**final.__dict__, "image_grid": "fine", "modality_dims": {"image": 432}, "max_tokens": {"image": 196},
                          "core_grid": "final", "object_slots": 6, "slot_kinds": list(clevr.RELATIONAL)})
    new = build_fusion(fed).eval()
    new.set_domain(old.domain_mean, old.domain_std, 3.0)
    missing = new.load_state_dict(old.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("reasoner.") for k in missing)
    fine, text = torch.randn(2, 196, 432), torch.randn(2, 4, 12)
    with torch.no_grad():
        a, b = old({"image": (final_from_fine(fine), None)}, text), new({"image": (fine, None)}, text)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.domain_distance, b.domain_distance)
    assert b.attention["image"].shape == (2, 49) and b.slots.positions.shape == (2, 6, 2)
    with pytest.raises(ValueError, match="core_grid"):
        FusionConfig(core_grid="final")


def test_the_final_grid_lies_inside_the_fine_one():
    from models.image import final_from_fine

    final = torch.randn(1, 320, 7, 7)
    fine = torch.cat([torch.randn(1, 112, 14, 14), torch.nn.functional.interpolate(final, size=(14, 14), mode="nearest")], dim=1)
    tokens = fine.flatten(2).transpose(1, 2)  # (1, 196, 432), as ImageEncoder.features lays them out
    assert torch.equal(final_from_fine(tokens), final.flatten(2).transpose(1, 2))


def test_the_question_reads_back_as_the_type_and_colour_the_slots_took():
    """question_reading: the canonical wording of the type the reasoner is sure of, naming the
    colour it points at; None without slots, when either reading is unsure, or when the core's
    answer does not answer that type (a description request, a question it does not know)."""
    from models.fusion import FusionOutput, question_reading
    from models.slots import SlotOutput

    cfg = slot_config()

    def output(kind_probs, pointer_logits, slots=True, answer="circle"):
        b = kind_probs.shape[0]
        s = SlotOutput(torch.zeros(b, 6, 2), torch.zeros(b, 6, 2), pointer_logits, kind_probs.log(),
                       torch.zeros(b, 12), kind_probs) if slots else None
        answers = torch.full((b, len(cfg.answers)), -9.0)  # (B, A) log-probabilities
        answers[:, list(cfg.answers).index(answer)] = 0.0
        return FusionOutput(torch.zeros(b, 2, 20), torch.zeros(b, 16), answer_logits=answers, slots=s)

    sure_kind = torch.tensor([[0.02, 0.02, 0.02, 0.02, 0.9, 0.02]])  # furthest
    sure_colour = torch.tensor([[0.0, 0.0, 9.0, 0.0, 0.0, 0.0]])  # the third colour
    read = question_reading(cfg, output(sure_kind, sure_colour), 0)
    assert read == clevr.TEMPLATES["furthest"][0].format(c=clevr.COLOURS[2])
    assert question_reading(cfg, output(torch.full((1, 6), 1 / 6), sure_colour), 0) is None  # unsure type
    assert question_reading(cfg, output(sure_kind, torch.zeros(1, 6)), 0) is None  # unsure colour
    assert question_reading(cfg, output(sure_kind, sure_colour, slots=False), 0) is None
    assert question_reading(cfg, output(sure_kind, sure_colour, answer="describe"), 0) is None
    assert question_reading(cfg, output(sure_kind, sure_colour, answer="left"), 0) is None  # not a shape
