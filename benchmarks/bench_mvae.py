"""MVAE benchmark: captions from images, images from captions, answers with a modality missing.
On held-out scenes only (seeds from 1,000,000; the MVAE trains on seeds 0-49,999).

    python benchmarks/bench_mvae.py [--weights models/weights/mvae] [--scenes 500] [--out benchmarks/results_mvae.md]
    [--first-seed 1000000]  (2000000: the validation scenes training is tuned on, not the benchmark)

(a) Captions from the image alone: the posterior mean given the image (prior x image expert),
    read by the caption decoder; scored per object like MMRNN's (colour named once, shape,
    left/right, top/bottom, all three).
(b) The same from the caption alone (reconstruction) and from both.
(c) Images from captions: z sampled from q(z | caption), decoded, read back by the palette
    detector (models/blobs.py): per object colour present, shape, quadrant. MMGAN draws the same
    six-object layouts beside it. Diversity: 4 drawings each of 50 captions.
(d) Sort-of-CLEVR questions (6 types x 6 colours a scene) answered from the latent when only
    the caption, only the image, both, or neither is given: shape, left/right, top/bottom and
    count from the decoded facts; closest and furthest from the objects' centres in the image
    decoded from the same latent (quadrant centres where the detector misses a colour).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIRST_SEED = 1_000_000
CONDITIONS = (("both", True, True), ("image only", True, False), ("caption only", False, True), ("neither (prior mean)", False, False))


def quadrant_centre(quadrant: str) -> tuple[float, float]:
    from models import clevr

    v, h = quadrant.split()
    lo, hi = clevr.IMAGE_SIZE * 0.25, clevr.IMAGE_SIZE * 0.75
    return (hi if h == "right" else lo), (hi if v == "bottom" else lo)


def answers_from(facts: list[float], decoded: np.ndarray | None) -> dict[tuple[str, str], str]:
    """Every (question type, colour) answered from 18 fact probabilities and a decoded image
    (centres from the palette detector; the quadrant centre for a colour it does not find)."""
    from models import blobs, clevr, mvae

    objects = mvae.fact_objects(facts)
    found = {}
    if decoded is not None:
        for b in reversed(blobs.detect(decoded)):  # largest blob of a colour wins
            found[b.colour] = (b.x, b.y)
    pos = {c: found.get(c, quadrant_centre(q)) for c, _, q in objects}
    shape = {c: s for c, s, _ in objects}
    out = {}
    for c, s, q in objects:
        v, h = q.split()
        others = [o for o in clevr.COLOURS if o != c]
        d = {o: (pos[o][0] - pos[c][0]) ** 2 + (pos[o][1] - pos[c][1]) ** 2 for o in others}
        out[("shape", c)] = s
        out[("horizontal", c)] = h
        out[("vertical", c)] = v
        out[("closest", c)] = shape[min(others, key=d.get)]
        out[("furthest", c)] = shape[max(others, key=d.get)]
        out[("count", c)] = clevr.NUMBERS[sum(shape[o] == s for o in clevr.COLOURS) - 1]
    return out


def question_accuracy(scenes, facts: np.ndarray, decoded: list[np.ndarray | None]) -> dict[str, float]:
    from models import clevr

    right = {k: 0 for k in clevr.QUESTION_TYPES}
    for scene, f, img in zip(scenes, facts, decoded):
        got = answers_from(list(f), img)
        for kind in clevr.QUESTION_TYPES:
            for c in clevr.COLOURS:
                right[kind] += got[(kind, c)] == clevr.answer(scene, kind, c)
    n = len(scenes) * len(clevr.COLOURS)
    return {k: v / n for k, v in right.items()}


def gan_reference() -> str:
    """MMGAN's headline numbers from results_draw.md (held-out layouts of 1-6 objects, and of 6)."""
    path = ROOT / "benchmarks" / "results_draw.md"
    if not path.exists():
        return "results_draw.md not found"
    text = path.read_text()
    overall = re.search(r"\| 1000 held-out layouts[^\n]*?\*\*([\d.]+%)\*\*", text)
    six = re.search(r"6: ([\d.]+%)", text)
    return (f"{overall.group(1) if overall else '?'} of objects right on its 1,000 held-out layouts of 1-6 objects, "
            f"{six.group(1) if six else '?'} on those of six objects")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--weights", default=str(ROOT / "models" / "weights" / "mvae"))
    p.add_argument("--gan-weights", default=str(ROOT / "models" / "weights" / "mmgan"))
    p.add_argument("--scenes", type=int, default=500)
    p.add_argument("--first-seed", type=int, default=FIRST_SEED,
                   help="first scene seed (default: the held-out scenes; 2000000: the validation scenes used to choose settings)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results_mvae.md"))
    a = p.parse_args()
    import torch

    from models import clevr, mmgan, mvae
    from models.draw_eval import diversity, evaluate_drawings
    from models.draw_text import Layout, Placed
    from models.mmrnn import caption_accuracy

    torch.set_num_threads(a.threads)
    model = mvae.load(a.weights)
    meta = json.loads((Path(a.weights) / "config.json").read_text()).get("meta", {})
    n_params = sum(p.numel() for p in model.parameters())
    size_kb = sum(f.stat().st_size for f in Path(a.weights).iterdir()) / 1024
    first = a.first_seed
    if first < 1_000_000:
        p.error("--first-seed below 1,000,000 would score training scenes")
    scenes = [clevr.make_scene(s) for s in range(first, first + a.scenes)]
    x, y = mvae.scene_batch(scenes)  # (N, 3, 75, 75), (N, 18)
    images = mvae.tensor_to_images(x)

    # (a), (b), (d): one posterior per condition
    captions, answers = {}, {}
    t0 = time.perf_counter()
    for name, use_image, use_caption in CONDITIONS:
        with torch.no_grad():
            if use_image or use_caption:
                mu, _ = model.infer(x if use_image else None, y if use_caption else None)  # (N, z)
            else:
                mu = torch.zeros(len(scenes), model.cfg.z_dim)
            facts = torch.sigmoid(model.caption_decoder(mu)).numpy()  # (N, 18)
            decoded = mvae.tensor_to_images(model.decode_image(mu))  # (N, 75, 75, 3)
        captions[name] = caption_accuracy([clevr.caption_from_facts(f) for f in facts], scenes)
        answers[name] = question_accuracy(scenes, facts, list(decoded))
    truth = np.array([clevr.caption_targets(s) for s in scenes])
    answers["reference: the true caption, quadrant centres"] = question_accuracy(scenes, truth, [None] * len(scenes))
    t_eval = time.perf_counter() - t0

    # (c) images from captions, beside MMGAN on the same six-object layouts
    layouts = [Layout(tuple(Placed(o.colour, o.shape, f"{o.vertical} {o.horizontal}") for o in s.objects)) for s in scenes]

    def mvae_draw(lays, seed, sample=True):
        facts = torch.tensor([mvae.layout_facts(lay.objects) for lay in lays])
        return mvae.draw_facts(model, facts, seed=seed, sample=sample)

    drawn = evaluate_drawings(None, layouts=layouts, seed=12345, draw=mvae_draw).summary()
    drawn_mean = evaluate_drawings(None, layouts=layouts, seed=12345, draw=lambda lays, s: mvae_draw(lays, s, sample=False)).summary()
    div = diversity(None, layouts[:50], seed=777, draw=mvae_draw)
    gan = mmgan.load_generator(a.gan_weights)
    gan_drawn = evaluate_drawings(gan, layouts=layouts, seed=12345).summary()
    held = [lay for lay in layouts if mmgan.held_out(lay)]
    gan_held = evaluate_drawings(gan, layouts=held, seed=12345).summary() if held else None
    gan_div = diversity(gan, layouts[:50], seed=777)

    one = torch.tensor([mvae.layout_facts(layouts[0].objects)])
    mvae.draw_facts(model, one)
    t1 = time.perf_counter()
    for i in range(20):
        mvae.draw_facts(model, one, seed=i)
    ms_draw = (time.perf_counter() - t1) / 20 * 1000
    t1 = time.perf_counter()
    for i in range(20):
        mvae.caption_facts(model, images[i:i + 1])
    ms_caption = (time.perf_counter() - t1) / 20 * 1000

    def cap_row(name, s):
        return (f"| {name} | {s['objects']} | {s['named']:.1%} | {s['shape']:.1%} | {s['horizontal']:.1%} | "
                f"{s['vertical']:.1%} | **{s['object']:.1%}** |")

    def draw_row(name, s):
        return (f"| {name} | {s['drawings']} | {s['objects']} | {s['colour_present']:.1%} | {s['shape']:.1%} | "
                f"{s['quadrant']:.1%} | **{s['object_correct']:.1%}** | {s['drawing_exact']:.1%} | {s['extra_per_drawing']:.2f} |")

    def q_row(name, acc):
        nonrel = np.mean([acc[k] for k in clevr.NON_RELATIONAL])
        rel = np.mean([acc[k] for k in clevr.RELATIONAL])
        return (f"| {name} | " + " | ".join(f"{acc[k]:.1%}" for k in clevr.QUESTION_TYPES)
                + f" | **{nonrel:.1%}** | **{rel:.1%}** |")

    compute = (f"{meta.get('steps', '?')} steps of batch {meta.get('batch_size', '?')}, "
               f"{meta.get('train_wall_s', 0) / 60:.1f} min of wall time")
    if meta.get("init_steps"):  # a second stage, started from the weights of a first
        compute = (f"{meta['init_steps']} + {meta['steps']} = {meta['total_steps']} steps of batch {meta.get('batch_size', '?')} "
                   f"(the second stage from the first's weights, `{meta['init_from']}`), "
                   f"{meta['init_wall_s'] / 60:.1f} + {meta['train_wall_s'] / 60:.1f} = {meta['total_wall_s'] / 60:.1f} min of wall time")
    lines = [
        "# MVAE: a product-of-experts latent over image and caption, on held-out scenes",
        "",
        f"Weights: `{Path(a.weights).relative_to(ROOT) if Path(a.weights).is_relative_to(ROOT) else a.weights}` "
        f"({n_params:,} parameters, {size_kb:.0f} KB; {compute}, seed {meta.get('seed', '?')}, on a shared 2-core CPU; "
        f"training scenes: seeds {meta.get('train_seeds', ['?', '?'])[0]:,}-{meta.get('train_seeds', ['?', '?'])[1]:,}). "
        f"Command: `python benchmarks/bench_mvae.py` ({a.threads} thread).",
        "",
        (f"Evaluation: the {a.scenes} held-out scenes with seeds {first:,}-{first + a.scenes - 1:,} "
         f"({a.scenes * 6:,} objects; the fusion core's and MMRNN's held-out scenes too), never trained on, "
         f"and not used to choose training settings (those were chosen on validation scenes from seed 2,000,000)."
         if first == FIRST_SEED else
         f"Evaluation: the {a.scenes} scenes with seeds {first:,}-{first + a.scenes - 1:,} ({a.scenes * 6:,} objects), "
         f"never trained on; NOT the benchmark's held-out scenes (seeds from {FIRST_SEED:,})."),
        "",
        "## (a, b) Captions, per object, decoded from the posterior mean given ...",
        "",
        "| given | objects | colour named once | shape | left/right | top/bottom | all three |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        cap_row("(a) the image only: a caption from an image", captions["image only"]),
        cap_row("(b) the caption only: reconstruction", captions["caption only"]),
        cap_row("(b) both", captions["both"]),
        cap_row("neither (the prior's mean): chance", captions["neither (prior mean)"]),
        "",
        "## (c) Images from captions, read back by the palette detector (models/blobs.py)",
        "",
        "Both models draw the same six-object layouts (each held-out scene's caption: colour, shape and quadrant of all six objects).",
        "",
        "| model | drawings | objects | colour present | shape right | quadrant right | all three right | drawing exactly right | extra blobs / drawing |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        draw_row("MVAE, z sampled from q(z given caption)", drawn),
        draw_row("MVAE, z = the posterior mean", drawn_mean),
        draw_row("MMGAN, same layouts", gan_drawn),
    ]
    if gan_held:
        lines.append(draw_row(f"MMGAN, the {len(held)} of them in its held-out bucket", gan_held))
    lines += [
        "",
        f"MMGAN's own benchmark (results_draw.md): {gan_reference()}.",
        "",
        f"Diversity, 4 drawings each of 50 captions, objects' centres moving by more than 1 px on average: "
        f"MVAE {div['pairs_differing']:.1%} of {div['pairs']} pairs (mean shift {div['mean_centre_shift_px']} px); "
        f"MMGAN {gan_div['pairs_differing']:.1%} of {gan_div['pairs']} (mean shift {gan_div['mean_centre_shift_px']} px).",
        "",
        "## (d) Sort-of-CLEVR questions answered from the latent, with a modality missing",
        "",
        "36 questions a scene (6 types x 6 colours, canonical forms), answered from the posterior mean: shape, "
        "left/right, top/bottom and count from the decoded caption facts; closest and furthest from the centres of "
        "the objects in the image decoded from the same latent. The last row is what the true caption alone "
        "allows (quadrant facts, objects put at their quadrant's centre): the caption does not hold positions "
        "inside a quadrant, so the relational questions are not fully answerable from it.",
        "",
        "| given | " + " | ".join(clevr.QUESTION_TYPES) + " | non-relational | relational |",
        "| --- | " + " | ".join("---:" for _ in clevr.QUESTION_TYPES) + " | ---: | ---: |",
    ]
    lines += [q_row(name, acc) for name, acc in answers.items()]
    lines += [
        "",
        f"Speed (CPU, one thread, after loading): a caption from an image {ms_caption:.1f} ms, a drawing {ms_draw:.1f} ms; "
        f"the four conditions of (a), (b), (d) over {a.scenes} scenes {t_eval:.1f} s.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
