"""MMRNN: the GRU caption decoder on a tiny config, caption scoring, and the shipped weights."""

from __future__ import annotations

import json

import torch

from models import clevr, mmrnn


def test_caption_scoring_is_per_object():
    scene = clevr.make_scene(5)
    truth = clevr.caption(scene)
    assert mmrnn.caption_accuracy([truth], [scene])["object"] == 1.0
    o = scene.objects[0]
    other = "circle" if o.shape == "square" else "square"
    wrong = truth.replace(f"{o.colour} {o.shape}", f"{o.colour} {other}", 1)
    acc = mmrnn.caption_accuracy([wrong], [scene])
    assert acc["shape"] == acc["object"] == round(5 / 6, 4) and acc["horizontal"] == 1.0
    assert mmrnn.caption_accuracy([truth + " " + truth], [scene])["named"] == 0.0  # each colour named twice


def test_tiny_decoder_learns_and_round_trips(tmp_path):
    torch.manual_seed(0)
    n = 8
    tokens = torch.randn(n, 2, 16)  # (scenes, K, token_dim): fake fusion tokens
    cfg = mmrnn.RNNTrainConfig(output_dir=str(tmp_path / "run"), rnn={"hidden": 32, "embed": 8}, train_scenes=n,
                               eval_scenes=2, eval_first_seed=0, batch_size=8, steps=3, log_every=1,
                               ship_dir=str(tmp_path / "ship"))
    final = mmrnn.train(cfg, log=lambda m: None, tokens=(tokens, tokens[:2]))
    meta = json.loads((final / "config.json").read_text())["meta"]
    assert set(meta["eval"]) == {"objects", "named", "shape", "horizontal", "vertical", "object"}
    model = mmrnn.load(tmp_path / "ship")
    logits = model(tokens[:2], mmrnn.encode_captions(["there are six objects."] * 2, model.cfg.vocab))
    assert logits.shape[:2] == (2, 7) and logits.shape[2] == len(model.cfg.vocab)  # (B, L, V)
    assert all(isinstance(c, str) for c in model.generate(tokens[:2]))


def test_shipped_decoder_is_small_and_measured():
    size = sum(f.stat().st_size for f in mmrnn.DEFAULT_WEIGHTS.iterdir())
    assert size < 5 * 1024 * 1024
    meta = json.loads((mmrnn.DEFAULT_WEIGHTS / "config.json").read_text())["meta"]
    assert meta["eval"]["objects"] == 3000 and meta["eval"]["object"] > 0.5
