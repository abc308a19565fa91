"""MVAE: shapes and the product of experts on a tiny config, training and resuming, weights
round trip, the CLI's refusals, and the shipped weights' captions of held-out scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from models import clevr, mvae
from models.draw_text import Layout, Placed
from models.train_mvae import MVAETrainConfig, fact_accuracy, loss_terms, train

TINY = {"z_dim": 4, "hidden": 16}
HELD_OUT = 1_000_000


def tiny() -> mvae.MVAE:
    torch.manual_seed(0)
    return mvae.MVAE(mvae.MVAEConfig(**TINY))


def test_shapes_of_every_part():
    model = tiny().eval()
    x, y = mvae.scene_batch([clevr.make_scene(s) for s in range(3)])
    assert x.shape == (3, 3, 75, 75) and 0 <= x.min() and x.max() <= 1 and y.shape == (3, 18)
    for mu, logvar in (model.image_encoder(x), model.caption_encoder(y), model.infer(x, y), model.infer(x), model.infer(None, y)):
        assert mu.shape == logvar.shape == (3, 4)
    image, fact_logits = model(torch.zeros(3, 4))
    assert image.shape == (3, 3, 75, 75) and fact_logits.shape == (3, 18)
    assert mvae.draw_facts(model, y, seed=1).shape == (3, 75, 75, 3)
    assert mvae.caption_facts(model, mvae.tensor_to_images(x)).shape == (3, 18)
    with pytest.raises(ValueError, match="needs an image, a caption or both"):
        model.infer()


def test_the_image_decoder_puts_objects_where_the_facts_say():
    model = tiny().eval()
    facts = torch.tensor([[-20.0, 20.0, 20.0] * 6])  # every object a square at the bottom right
    with torch.no_grad():
        xy, square, rgb = model.image_decoder.objects(torch.randn(1, 4), facts)
    assert (xy > 75 / 2 + mvae.QUADRANT_GAP).all() and (xy <= 75 - 1 - clevr.MARGIN).all()
    assert torch.allclose(square, torch.ones(1, 6)) and rgb.shape == (1, 6, 3)



def test_drawn_colours_are_the_scene_palette_not_learned(tmp_path):
    model = tiny()
    palette = torch.tensor([clevr.RGB[c] for c in clevr.COLOURS], dtype=torch.float32) / 255
    assert torch.equal(model.image_decoder.rgb, palette)
    assert not any("rgb" in name for name, _ in model.named_parameters())
    mvae.save(tmp_path, model)
    from safetensors.torch import load_file, save_file

    old = load_file(str(tmp_path / "model.safetensors"))  # weights saved while the colours were learned (logits)
    save_file({**old, "image_decoder.rgb": torch.zeros(6, 3, dtype=torch.float16)}, str(tmp_path / "model.safetensors"))
    assert torch.equal(mvae.load(tmp_path).image_decoder.rgb, palette)  # loaded; the learned colours ignored

def test_product_of_experts_with_the_prior():
    mu, lv = torch.tensor([[2.0, -4.0]]), torch.zeros(1, 2)
    m, v = mvae.product_of_experts([mu], [lv])  # N(0, 1) x N(mu, 1) = N(mu / 2, 1 / 2)
    assert torch.allclose(m, mu / 2) and torch.allclose(v, torch.full((1, 2), -np.log(2.0)))
    sure = torch.full((1, 2), -10.0)  # a very confident expert dominates the prior and a vague one
    m, _ = mvae.product_of_experts([mu, torch.tensor([[9.0, 9.0]])], [sure, torch.full((1, 2), 5.0)])
    assert torch.allclose(m, mu, atol=1e-3)


def test_a_missing_modality_is_the_prior_times_the_other_expert():
    model = tiny().eval()
    x, y = mvae.scene_batch([clevr.make_scene(s) for s in range(2)])
    with torch.no_grad():
        for given, expert in (({"image": x}, model.image_encoder(x)), ({"facts": y}, model.caption_encoder(y))):
            got, want = model.infer(**given), mvae.product_of_experts([expert[0]], [expert[1]])
            assert all(torch.allclose(a, b) for a, b in zip(got, want))
        both = model.infer(x, y)
        im, cap = model.image_encoder(x), model.caption_encoder(y)
        want = mvae.product_of_experts([im[0], cap[0]], [im[1], cap[1]])
        assert all(torch.allclose(a, b) for a, b in zip(both, want))


def test_a_few_steps_lower_the_loss():
    cfg = MVAETrainConfig(mvae=TINY, caption_weight=10.0, cross_weight=1.0, blur_weight=1.0)
    x, y = mvae.scene_batch([clevr.make_scene(s) for s in range(4)])

    def six_steps(train_caption_decoder: bool) -> tuple[dict, dict]:
        model = tiny()
        opt = torch.optim.Adam([p for n, p in model.named_parameters()
                                if train_caption_decoder or not n.startswith("caption_decoder.")], lr=2e-2)

        def loss(train_step: bool) -> dict:
            torch.manual_seed(1)  # the same reparametrisation noise each time
            out = loss_terms(model, x, y, cfg, beta=1.0)
            if train_step:
                opt.zero_grad(), out["loss"].backward(), opt.step()
            return {k: v.item() for k, v in out.items()}

        before = loss(False)
        for _ in range(6):
            loss(True)
        return before, loss(False)

    before, after = six_steps(True)
    assert after["caption_only"] < 0.9 * before["caption_only"], (before, after)
    # the objects' halves and shapes come from the decoded facts (gradient stopped), so while the
    # caption decoder moves in a tiny model's first steps the image terms jump; with it held, they fall
    before, after = six_steps(False)
    assert all(after[k] < before[k] for k in ("loss", "joint_image", "image_only")), (before, after)


def test_training_resumes_and_weights_round_trip(tmp_path):
    cfg = MVAETrainConfig(output_dir=str(tmp_path / "run"), mvae=TINY, batch_size=4, steps=3, stop_after=2,
                          log_every=1, save_every=1, eval_every=100, eval_scenes=4, threads=1,
                          ship_dir=str(tmp_path / "ship"))
    assert train(cfg, progress=False, log=lambda m: None).name == "checkpoint"
    cfg.stop_after = 0
    final = train(cfg, progress=False, log=lambda m: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]  # resumed at 2, nothing repeated
    assert [r["step"] for r in rows if "eval" in r] == [3]
    saved = json.loads((final / "config.json").read_text())
    assert saved["z_dim"] == 4 and saved["meta"]["train_seeds"] == [0, 49_999]
    assert not any(tmp_path.rglob("*.pt")) and not any(tmp_path.rglob("*.pkl"))
    model = mvae.load(tmp_path / "ship")
    facts = torch.tensor([clevr.caption_targets(clevr.make_scene(HELD_OUT))])
    a = mvae.draw_facts(model, facts, seed=3)
    assert np.array_equal(a, mvae.draw_facts(model, facts, seed=3))  # a seed gives the same drawing
    assert 0 <= fact_accuracy(model, HELD_OUT, 4, image=True) <= 1


def test_a_run_can_start_from_earlier_weights(tmp_path):
    first = MVAETrainConfig(output_dir=str(tmp_path / "one"), mvae=TINY, batch_size=4, steps=2, eval_every=100,
                            eval_scenes=4, threads=1)
    start = train(first, progress=False, log=lambda m: None)
    second = MVAETrainConfig(output_dir=str(tmp_path / "two"), mvae=TINY, batch_size=4, steps=1, eval_every=100,
                             eval_scenes=4, threads=1, init_from=str(start), lr=0.0)
    final = train(second, progress=False, log=lambda m: None)  # lr 0: the weights stay those it started from
    a, b = mvae.load(start).state_dict(), mvae.load(final).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.endswith(("running_mean", "running_var")))
    meta = json.loads((final / "config.json").read_text())["meta"]
    assert (meta["init_steps"], meta["steps"], meta["total_steps"]) == (2, 1, 3)
    with pytest.raises(ValueError, match="differs from this run's"):
        train(MVAETrainConfig(output_dir=str(tmp_path / "three"), mvae={"z_dim": 5, "hidden": 16}, init_from=str(start),
                              steps=1, threads=1), progress=False, log=lambda m: None)


def test_configs_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown training config fields: stepz"):
        MVAETrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="unknown MVAE config fields: depth"):
        mvae.MVAEConfig.from_dict({"depth": 3})
    with pytest.raises(FileNotFoundError, match="no MVAE weights"):
        mvae.load(tmp_path)
    with pytest.raises(ValueError, match="below seed 1,000,000"):
        from models.train_mvae import batch

        batch(MVAETrainConfig(train_first_seed=999_990, train_scenes=20), 0)
    with pytest.raises(ValueError, match="validation scenes .* overlap the training scenes"):
        batch(MVAETrainConfig(eval_first_seed=49_900), 0)


def test_a_layout_must_name_all_six_colours():
    scene = clevr.make_scene(HELD_OUT)
    objects = [Placed(o.colour, o.shape, f"{o.vertical} {o.horizontal}") for o in scene.objects]
    assert mvae.layout_facts(objects) == clevr.caption_targets(scene)
    assert mvae.fact_objects(clevr.caption_targets(scene)) == [(p.colour, p.shape, p.quadrant) for p in objects]
    with pytest.raises(ValueError, match="leaves out blue, gray"):
        mvae.layout_facts([p for p in objects if p.colour not in ("blue", "gray")])


def test_cli_refusals_are_one_line(tmp_path, capsys):
    from assistant.cli import main

    assert main(["draw", "a red circle at the top left", "--model", "mvae", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "six objects" in err and "--model mmgan" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()
    assert main(["caption", str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "notes.png").write_text("not a picture")
    assert main(["caption", str(tmp_path / "notes.png")]) == 2
    assert "not an image" in capsys.readouterr().err
    noise = np.random.default_rng(0).integers(0, 256, (75, 75, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    assert main(["caption", str(tmp_path / "noise.png")]) == 2
    err = capsys.readouterr().err
    assert "does not look like a Sort-of-CLEVR scene" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ shipped weights


@pytest.fixture(scope="module")
def shipped():
    return mvae.load()


def test_shipped_weights_are_small_and_caption_held_out_scenes(shipped):
    size = sum(f.stat().st_size for f in mvae.DEFAULT_WEIGHTS.iterdir())
    assert size < 2 * 1024 * 1024
    scenes = [clevr.make_scene(s) for s in range(HELD_OUT + 100, HELD_OUT + 160)]  # 360 held-out objects
    x, y = mvae.scene_batch(scenes)
    probs = mvae.caption_facts(shipped, mvae.tensor_to_images(x))  # from the image alone
    right = ((probs > 0.5) == (y > 0.5)).view(len(scenes), 6, 3).all(-1).float().mean().item()
    assert right >= 0.9, right  # measured 96.6% on 3,000 (benchmarks/results_mvae.md); chance is 12.5%
    assert ((mvae.caption_facts(shipped, facts=y) > 0.5) == (y > 0.5)).float().mean().item() >= 0.95



def test_shipped_weights_draw_every_colour_the_detector_knows(shipped):
    from models import blobs

    scenes = [clevr.make_scene(s) for s in range(HELD_OUT + 200, HELD_OUT + 240)]
    drawn = mvae.draw_facts(shipped, torch.tensor([clevr.caption_targets(s) for s in scenes]), seed=5)
    found = [{b.colour for b in blobs.detect(im)} for im in drawn]
    for c in clevr.COLOURS:  # gray went missing in almost every drawing while the colours were learned
        assert sum(c in f for f in found) >= 0.75 * len(scenes), (c, sum(c in f for f in found))

def test_cli_caption_and_draw_with_the_shipped_weights(tmp_path, capsys):
    from assistant.cli import main

    scene = clevr.make_scene(HELD_OUT + 7)
    scene.render().resize((300, 300), Image.Resampling.NEAREST).save(tmp_path / "scene.png")  # as `draw --scale 4` writes
    assert main(["caption", str(tmp_path / "scene.png"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["caption"].startswith("There are six objects: a red ") and len(out["objects"]) == 6
    text = clevr.caption(scene).replace("There are six objects: ", "").replace(", and ", " and ").replace(", ", " and ")
    assert main(["draw", text, "--model", "mvae", "-o", str(tmp_path / "d.png"), "--seed", "1"]) == 0
    assert Image.open(tmp_path / "d.png").size == (75, 75)
