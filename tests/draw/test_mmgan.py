"""MMGAN: layouts, the networks on a tiny config, checkpoints, and the shipped weights' drawings."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from models import blobs, mmgan
from models.draw_eval import evaluate_drawings, held_out_layouts
from models.train_gan import GANTrainConfig, train

TINY = {"z_dim": 2, "hidden": 8, "sprite": 13, "d_channels": 4}
RED_TL = mmgan.Placed("red", "circle", "top left")
BLUE_BR = mmgan.Placed("blue", "square", "bottom right")


def test_condition_encoding():
    c = mmgan.encode_layout(mmgan.Layout((RED_TL, BLUE_BR))).view(6, 7)
    assert c.shape == (6, 7) and c.sum() == 6
    assert c[0].tolist() == [1, 0, 1, 1, 0, 0, 0]  # red: present, circle, top left
    assert c[1].tolist() == [1, 1, 0, 0, 0, 0, 1]  # blue: present, square, bottom right


def test_split_is_fixed_and_disjoint():
    rng = random.Random(0)
    train = [mmgan.sample_layout(rng) for _ in range(200)]
    held = held_out_layouts(50)
    assert not any(mmgan.held_out(lay) for lay in train)
    assert all(mmgan.held_out(lay) for lay in held)
    assert {lay.key() for lay in train}.isdisjoint({lay.key() for lay in held})
    assert held_out_layouts(5) == held_out_layouts(5)  # a pure function of the seed


def test_the_detector_reads_rendered_scenes_exactly():
    rng = random.Random(3)
    for _ in range(30):
        lay = mmgan.sample_layout(rng)
        img = ((mmgan.render_layout(lay, rng) + 1) * 127.5).round().astype(np.uint8).transpose(1, 2, 0)
        chk, _ = blobs.check(img, lay.objects)
        assert all(chk.correct) and chk.extra == 0, lay.describe()


def test_detector_on_a_blank_image_finds_nothing():
    chk, found = blobs.check(np.full((75, 75, 3), 255, np.uint8), [RED_TL])
    assert found == [] and chk.present == [False] and chk.correct == [False]


def test_tiny_networks_shapes_and_weights_round_trip(tmp_path):
    cfg = mmgan.GANConfig(**TINY)
    G = mmgan.Generator(cfg).eval()
    cond = torch.stack([mmgan.encode_layout(mmgan.Layout((RED_TL,)))] * 3)  # (3, 42)
    obj = G.objects(torch.randn(3, G.noise_dim), cond)
    assert obj.sprite.shape == (3, 6, 3, 13, 13) and obj.t.shape == obj.xy.shape == (3, 6, 2)
    x = G.compose(obj, cond)
    assert x.shape == (3, 3, 75, 75) and x.abs().max() <= 1
    assert (x[:, :, 40:, :] == 1).all()  # nothing named below the top half: white there
    which = mmgan.sprite_targets(cond)  # (3, 6, 12)
    assert which.sum() == 3 and which[0, 0, 1] == 1  # red circle
    score, logits = mmgan.SpriteCritic(cfg)(obj.sprite[:, 0], which[:, 0])
    assert score.shape == (3,) and logits.shape == (3, 12)
    assert mmgan.LayoutCritic(cfg)(obj.t, cond).shape == (3,)
    assert mmgan.real_sprites(13).shape == (12, 3, 13, 13)
    mmgan.save_generator(tmp_path / "w", G)
    G2 = mmgan.load_generator(tmp_path / "w")
    a, b = mmgan.draw(G, [mmgan.Layout((RED_TL,))], seed=5), mmgan.draw(G2, [mmgan.Layout((RED_TL,))], seed=5)
    assert a.shape == (1, 75, 75, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2  # float16 weights


def test_overlap_penalty_counts_only_named_neighbours():
    cond = mmgan.encode_layout(mmgan.Layout((RED_TL, mmgan.Placed("blue", "square", "top left"))))[None]
    xy = torch.zeros(1, 6, 2)
    xy[0, 1] = torch.tensor([5.0, 0.0])  # blue 5 px from red: 13 - 5 = 8 px of intrusion
    xy[0, 2] = torch.tensor([1.0, 1.0])  # green is not named: ignored
    assert mmgan.overlap_penalty(xy, cond).item() == pytest.approx(8.0)


def test_a_perfect_sprite_is_drawn_like_the_scenes():
    """The pasting is exact: a square mask at the quadrant's first position is the rendered square."""
    from models import clevr

    G = mmgan.Generator(mmgan.GANConfig(**TINY)).eval()
    with torch.no_grad():
        m = torch.full((13, 13), -30.0)
        m[1:12, 1:12] = 30
        for lin, bias in ((G.to_mask, m.flatten()), (G.to_rgb, torch.tensor([30.0, -30, -30])), (G.to_pos, torch.full((2,), -30.0))):
            lin.weight.zero_(), lin.bias.copy_(bias)
    x0, _, y0, _ = mmgan.quadrant_box("bottom right")
    ref = np.asarray(clevr.render(clevr.Scene(-1, (clevr.SceneObject("red", "square", x0, y0),))))
    img = mmgan.draw(G, [mmgan.Layout((mmgan.Placed("red", "square", "bottom right"),))])[0]
    assert np.array_equal(img, ref)


def test_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no MMGAN weights"):
        mmgan.load_generator(tmp_path)


def test_training_resumes_and_writes_final(tmp_path):
    cfg = GANTrainConfig(output_dir=str(tmp_path / "run"), gan=TINY, batch_size=4, steps=3, stop_after=2,
                         log_every=1, save_every=1, eval_every=100, eval_layouts=4, ship_dir=str(tmp_path / "ship"))
    assert train(cfg, progress=False, log=lambda m: None).name == "checkpoint"
    cfg.stop_after = 0
    final = train(cfg, progress=False, log=lambda m: None)
    assert (final / "model.safetensors").is_file() and (tmp_path / "ship" / "config.json").is_file()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "d_sprite" in r] == [1, 2, 3]  # resumed at 2, nothing repeated


def test_bad_training_config_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown training config fields: stepz"):
        GANTrainConfig.from_dict({"stepz": 3})


@pytest.fixture(scope="module")
def shipped():
    return mmgan.load_generator()


def test_shipped_weights_are_small_and_draw_what_is_asked(shipped):
    size = sum(f.stat().st_size for f in mmgan.DEFAULT_WEIGHTS.iterdir())
    assert size < 5 * 1024 * 1024
    lay = mmgan.Layout((RED_TL, BLUE_BR))
    ok = 0
    for seed in range(4):
        chk, _ = blobs.check(mmgan.draw(shipped, [lay], seed=seed)[0], lay.objects)
        ok += all(chk.correct)
    assert ok >= 3


def test_shipped_weights_on_held_out_layouts(shipped):
    res = evaluate_drawings(shipped, n_layouts=40, seed=99).summary()
    assert res["object_correct"] >= 0.9, res


def test_drawings_differ_with_the_seed(shipped):
    lay = mmgan.Layout((RED_TL,))
    a, b = mmgan.draw(shipped, [lay, lay], seed=1)
    assert (a != b).any()
