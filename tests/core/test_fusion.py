"""The fusion core on tiny random configs: shapes, missing modalities, masking, persistence."""

from __future__ import annotations

import json

import pytest
import torch

from models.fusion import STRATEGIES, FusionConfig, answer_evidence, build_fusion, effective_route, load_fusion


VARIANTS = (*STRATEGIES, "attention+relation")
"""The four strategies, and the attention core with its relation layers over the image tokens."""


def tiny(strategy: str, **kw) -> FusionConfig:
    if strategy == "attention+relation":
        strategy, kw = "attention", {"relation_layers": 1, "grid_coordinates": True, **kw}
    base = dict(strategy=strategy, modality_dims={"image": 12, "speech": 8}, max_tokens={"image": 9, "speech": 16},
                text_dim=10, max_text_tokens=6, d_model=16, n_heads=2, n_layers=1, n_queries=3,
                generator_dim=20, answers=["yes", "no", "maybe"])
    base.update(kw)
    return FusionConfig(**base)


def core_for(strategy: str, **kw):
    """A tiny core; the relation variant with its gate opened (it starts closed, as the identity)."""
    core = build_fusion(tiny(strategy, **kw))
    if strategy == "attention+relation":
        with torch.no_grad():
            core.relation_gate.fill_(0.8)
            core.embed.coord.weight.normal_()
    return core


def inputs(b=2):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(b, 9, 12, generator=g)
    speech = torch.randn(b, 16, 8, generator=g)
    speech_mask = torch.ones(b, 16, dtype=torch.bool)
    speech_mask[1, 10:] = False
    text = torch.randn(b, 5, 10, generator=g)
    text_mask = torch.ones(b, 5, dtype=torch.bool)
    text_mask[0, 3:] = False
    return image, speech, speech_mask, text, text_mask


@pytest.mark.parametrize("strategy", VARIANTS)
@pytest.mark.parametrize("present", [("image", "speech"), ("image",), ("speech",), ()])
def test_any_subset_of_modalities(strategy, present):
    torch.manual_seed(0)
    core = core_for(strategy).eval()
    image, speech, speech_mask, text, text_mask = inputs()
    mods = {"image": (image, None), "speech": (speech, speech_mask)}
    out = core({k: mods[k] for k in present}, text, text_mask)
    assert out.tokens.shape == (2, 3, 20)
    assert out.pooled.shape == (2, 16)
    assert out.answer_logits.shape == (2, 3)
    assert torch.isfinite(out.tokens).all()


@pytest.mark.parametrize("strategy", VARIANTS)
def test_padding_does_not_leak(strategy):
    """Changing masked-out tokens must not change the output."""
    torch.manual_seed(0)
    core = core_for(strategy).eval()
    image, speech, speech_mask, text, text_mask = inputs()
    out1 = core({"image": (image, None), "speech": (speech, speech_mask)}, text, text_mask)
    speech2, text2 = speech.clone(), text.clone()
    speech2[1, 10:] = 100.0
    text2[0, 3:] = -50.0
    out2 = core({"image": (image, None), "speech": (speech2, speech_mask)}, text2, text_mask)
    assert torch.allclose(out1.tokens, out2.tokens, atol=1e-5)


@pytest.mark.parametrize("strategy", VARIANTS)
def test_output_depends_on_text_and_image(strategy):
    torch.manual_seed(0)
    core = core_for(strategy).eval()
    image, _, _, text, text_mask = inputs()
    base = core({"image": (image, None)}, text, text_mask).tokens
    assert (base - core({"image": (-image, None)}, text, text_mask).tokens).abs().max() > 1e-3
    assert (base - core({"image": (image, None)}, -text, text_mask).tokens).abs().max() > 1e-3


@pytest.mark.parametrize("strategy", VARIANTS)
def test_save_and_load_roundtrip(tmp_path, strategy):
    torch.manual_seed(0)
    core = core_for(strategy).eval()
    core.save(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["strategy"] == core.cfg.strategy and saved["relation_layers"] == core.cfg.relation_layers
    again = load_fusion(tmp_path)
    image, _, _, text, text_mask = inputs()
    a = core({"image": (image, None)}, text, text_mask).tokens
    b = again({"image": (image, None)}, text, text_mask).tokens
    assert torch.allclose(a, b, atol=1e-6)
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))


def test_fp16_save_is_half_the_size(tmp_path):
    core = build_fusion(tiny("attention", d_model=64, n_heads=4))
    core.save(tmp_path / "f32")
    core.save(tmp_path / "f16", dtype=torch.float16)
    s32 = (tmp_path / "f32" / "model.safetensors").stat().st_size
    s16 = (tmp_path / "f16" / "model.safetensors").stat().st_size
    assert s16 < 0.6 * s32
    load_fusion(tmp_path / "f16")  # loads back as float32


def test_bad_config_is_explained():
    with pytest.raises(ValueError, match="choose one of attention, early, late, dual"):
        FusionConfig(strategy="magic")
    with pytest.raises(ValueError, match="divisible"):
        FusionConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="image_grid 'fine' gives 196 image tokens of 432"):
        FusionConfig(image_grid="fine")  # the default widths are the 7x7 grid's
    with pytest.raises(ValueError, match="choose final or fine"):
        FusionConfig(image_grid="huge")
    with pytest.raises(ValueError, match="relation_layers belong to the attention strategy"):
        FusionConfig(strategy="late", relation_layers=1)


def test_unknown_modality_and_too_many_tokens():
    core = build_fusion(tiny("attention"))
    with pytest.raises(ValueError, match="no 'depth' modality"):
        core({"depth": (torch.randn(1, 2, 12), None)})
    with pytest.raises(ValueError, match="more than the 9"):
        core({"image": (torch.randn(1, 10, 12), None)})


def test_missing_weights_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json and model.safetensors"):
        load_fusion(tmp_path)


def test_answer_evidence_threshold():
    cfg = tiny("attention")
    core = build_fusion(cfg)
    out = core({"image": (torch.randn(2, 9, 12), None)})
    out.answer_logits = torch.tensor([[5.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    assert "is yes" in answer_evidence(cfg, out, 0, "q?")
    assert answer_evidence(cfg, out, 1, "q?") is None  # unsure: say nothing


def test_trains_on_a_toy_task():
    """A few steps of Adam separate two classes: gradients reach every part that should learn."""
    torch.manual_seed(0)
    cfg = tiny("attention", answers=["bright", "dark"])
    core = build_fusion(cfg)
    opt = torch.optim.Adam(core.parameters(), lr=3e-3)
    image = torch.randn(32, 9, 12)
    labels = (image.mean(dim=(1, 2)) > 0).long()
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(core({"image": (image, None)}).answer_logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    acc = (core({"image": (image, None)}).answer_logits.argmax(-1) == labels).float().mean()
    assert acc > 0.9


def test_relation_stage_starts_as_the_identity_and_can_be_added_to_a_trained_core():
    """A core without relation layers and grid coordinates loads into one with them (the new
    keys are theirs alone), and answers exactly as before until they are trained."""
    torch.manual_seed(0)
    plain = build_fusion(tiny("attention")).eval()
    related = build_fusion(tiny("attention+relation")).eval()
    missing, unexpected = related.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("relation", "embed.coord")) for k in missing)
    image, _, _, text, text_mask = inputs()
    before = plain({"image": (image, None)}, text, text_mask).tokens
    assert torch.allclose(before, related({"image": (image, None)}, text, text_mask).tokens, atol=1e-6)
    with torch.no_grad():
        related.relation_gate.fill_(0.5)
    assert (before - related({"image": (image, None)}, text, text_mask).tokens).abs().max() > 1e-4


def test_grid_coordinates_are_cell_centres_in_row_major_order():
    from models.fusion import grid_coordinates

    g = grid_coordinates(7)
    assert g.shape == (49, 3)
    assert torch.allclose(g[0, :2], torch.tensor([-6 / 7, -6 / 7]))  # top-left cell: x, y
    assert torch.allclose(g[6, :2], torch.tensor([6 / 7, -6 / 7]))  # end of the first row: right, still top
    assert torch.allclose(g[42, :2], torch.tensor([-6 / 7, 6 / 7]))  # start of the last row: left, bottom
    assert torch.allclose(g[:, 2], g[:, 0] ** 2 + g[:, 1] ** 2)
    # distances between cells are a linear function of the features: |p-q|^2 = r_p + r_q - 2 p.q
    d2 = torch.cdist(g[:, :2], g[:, :2]) ** 2
    assert torch.allclose(d2, g[:, 2:] + g[:, 2:].T - 2 * g[:, :2] @ g[:, :2].T, atol=1e-5)


def test_grid_coordinates_only_touch_square_image_grids():
    torch.manual_seed(0)
    core = core_for("attention+relation").eval()
    image = inputs()[0]
    with torch.no_grad():
        on = core.embed.modality("image", image)  # 9 tokens: a 3x3 grid
        odd = core.embed.modality("image", image[:, :8])  # 8 tokens: not a grid, no coordinates
        core.embed.coord.weight.zero_()
        off = core.embed.modality("image", image)
        assert (on - off).abs().max() > 1e-3
        assert torch.allclose(odd, off[:, :8])


def test_effective_route_needs_trained_tokens_and_sends_descriptions_by_tokens_when_trained_to():
    plain = FusionConfig(strategy="attention")
    assert [effective_route(r, plain) for r in ("text", "tokens", "both")] == ["text"] * 3
    aligned = FusionConfig(strategy="attention", aligned_to_generator=True)
    assert [effective_route(r, aligned) for r in ("text", "tokens", "both")] == ["text", "tokens", "both"]
    assert effective_route("tokens", aligned, soft_tokens=False) == "text"  # a generator that takes no soft tokens
    assert effective_route("text", aligned, describe=True) == "text"  # not trained to describe
    describes = FusionConfig(strategy="attention", aligned_to_generator=True, describes=True)
    assert [effective_route(r, describes, describe=True) for r in ("text", "tokens", "both")] == ["tokens"] * 3
    assert effective_route("text", describes) == "text"  # any other question keeps the setting
    assert effective_route("text", describes, soft_tokens=False, describe=True) == "text"
