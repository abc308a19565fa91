"""The attention view: the fusion core's last-layer attention, the grid, the heat map, and the
way `assistant ask --attention` / `--json` carry it (tiny random cores and fakes, plus one check
of the shipped weights on held-out scenes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models.attention import AttentionMap, attention_map, cell_of, draw_attention, heat_colours, top_cells
from models.fusion import FusionConfig, attention_weights, build_fusion


def tiny_core(**kw):
    cfg = dict(strategy="attention", modality_dims={"image": 12, "speech": 8}, max_tokens={"image": 9, "speech": 16},
               text_dim=10, max_text_tokens=6, d_model=16, n_heads=2, n_layers=2, n_queries=3, generator_dim=20,
               answers=["yes", "no"])
    cfg.update(kw)
    torch.manual_seed(0)
    return build_fusion(FusionConfig(**cfg)).eval()


def test_weights_match_the_layers_own():
    """The recomputed weights are the ones nn.MultiheadAttention uses (need_weights=True)."""
    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    q, kv = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    ours = attention_weights(attn, q, kv, pad)  # (B, H, K, N)
    _, theirs = attn(q, kv, kv, key_padding_mask=pad, need_weights=True, average_attn_weights=False)
    assert ours.shape == (2, 4, 3, 7)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    assert float(ours.detach()[1, :, :, 5:].abs().max()) == 0.0


def test_attention_output_per_modality_and_outputs_unchanged():
    core = tiny_core()
    g = torch.Generator().manual_seed(1)
    image, speech = torch.randn(2, 9, 12, generator=g), torch.randn(2, 16, 8, generator=g)
    speech_mask = torch.ones(2, 16, dtype=torch.bool)
    speech_mask[1, 10:] = False
    text = torch.randn(2, 5, 10, generator=g)
    out = core({"image": (image, None), "speech": (speech, speech_mask)}, text)
    assert set(out.attention) == {"image", "speech"}
    assert out.attention["image"].shape == (2, 9) and out.attention["speech"].shape == (2, 16)
    total = out.attention["image"].sum(-1) + out.attention["speech"].sum(-1)  # the rest: the null token
    assert bool((total > 0).all()) and bool((total <= 1 + 1e-5).all())
    assert float(out.attention["speech"][1, 10:].abs().max()) == 0.0  # padding gets nothing
    # the queries as the plain layer loop computes them: the weights changed nothing
    t = core.embed.text(text)
    mods = {"image": (core.embed.modality("image", image), torch.zeros(2, 9, dtype=torch.bool)),
            "speech": (core.embed.modality("speech", speech), ~speech_mask)}
    from models.fusion import _with_null

    kv, kv_pad = _with_null(mods, core.null, 2)
    q = core.queries.unsqueeze(0).expand(2, -1, -1)
    for layer in core.layers:
        q = layer(q, t, torch.zeros(2, t.shape[1], dtype=torch.bool), kv, kv_pad)
    torch.testing.assert_close(out.pooled, core.out_norm(q).mean(dim=1))


@pytest.mark.parametrize("strategy", ["early", "late", "dual"])
def test_other_strategies_report_no_attention(strategy):
    core = tiny_core(strategy=strategy)
    out = core({"image": (torch.randn(1, 9, 12), None)}, torch.randn(1, 4, 10))
    assert out.attention is None


def test_grid_has_the_token_grid_shape_and_sums_to_one():
    core = tiny_core()
    out = core({"image": (torch.randn(3, 9, 12), None)}, torch.randn(3, 4, 10))
    for i in range(3):
        amap = attention_map(out.attention["image"][i], (0, 0, 30, 30))
        assert amap.shape == (3, 3)
        assert abs(amap.grid.sum() - 1) < 1e-6
        assert 0 < amap.image_share <= 1
        again = AttentionMap.from_dict(json.loads(json.dumps(amap.to_dict())))
        assert again.shape == (3, 3) and abs(again.grid.sum() - 1) < 1e-9


def test_no_grid_for_tokens_that_are_not_square():
    assert attention_map(torch.full((8,), 0.1), (0, 0, 8, 8)) is None
    assert attention_map(torch.zeros(9), (0, 0, 8, 8)) is None


def test_cells_and_top_cells():
    box = (5.0, 5.0, 75.0, 75.0)  # a 7x7 grid of 10 px cells
    assert cell_of(5.0, 5.0, box, (7, 7)) == (0, 0)
    assert cell_of(74.9, 40.0, box, (7, 7)) == (3, 6)
    assert cell_of(2.0, 40.0, box, (7, 7)) is None
    grid = np.zeros((7, 7))
    grid[2, 3], grid[6, 0], grid[0, 1] = 0.5, 0.3, 0.2
    assert top_cells(grid, 3) == [(2, 3), (6, 0), (0, 1)]


def test_colour_map_runs_dark_to_light():
    c = heat_colours(np.linspace(0, 1, 5)).astype(int)  # (5, 3)
    assert c.shape == (5, 3)
    assert list(c.sum(-1)) == sorted(c.sum(-1))


def test_heat_map_keeps_the_size_and_marks_the_hot_cell():
    im = Image.new("RGB", (120, 80), (255, 255, 255))
    grid = np.full((4, 4), 0.01)
    grid[1, 2] = 1.0
    amap = AttentionMap(grid / grid.sum(), 0.9, (20.0, 0.0, 100.0, 80.0))
    drawn = draw_attention(im, amap)
    assert drawn.size == im.size and drawn.mode == "RGB"
    px = np.asarray(drawn, dtype=int)
    hot, cold = px[25, 70], px[70, 30]  # inside cell (1, 2) / inside cell (3, 0)
    assert not np.array_equal(hot, cold)
    assert px[40, 5].tolist() != [255, 255, 255]  # outside the box: dimmed


def test_encoder_crop_box_matches_its_preprocessing():
    from models.image import ImageEncoder

    enc = ImageEncoder.__new__(ImageEncoder)  # crop_box needs no weights
    assert enc.crop_box(256, 256) == pytest.approx((16, 16, 240, 240))
    left, top, right, bottom = enc.crop_box(75, 75)
    assert left == pytest.approx(75 * 16 / 256) and right == pytest.approx(75 * 240 / 256)
    left, top, right, bottom = enc.crop_box(400, 200)  # wide: the crop is a centred square
    assert bottom - top == pytest.approx(right - left) and (left + right) / 2 == pytest.approx(200, abs=1)
