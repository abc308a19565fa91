"""Attention view benchmark: does the fusion core look at the object a question is about?

    python benchmarks/bench_attention.py [--scenes 200] [--first-seed 1000000] [--paraphrase]
                                         [--out benchmarks/results_attention.md]

For held-out Sort-of-CLEVR scenes (seeds from 1,000,000, as models/evaluate.py uses; training
never sees them) every single-object question is asked of the shipped fusion core
(models/weights/fusion) with the real image encoder and the generator's text embeddings, as
`assistant ask` does: shape, horizontal and vertical about each of the six objects, and
closest / furthest, whose *reference* object is the one named. The last cross-attention
layer's attention (averaged over queries and heads, renormalised over the image cells: 7x7,
or 14x14 for a core on the encoder's fine grid; models/attention.py) is checked against the
cell holding the named object's centre:

* top-5: the object's cell is among the 5 most attended cells (chance: 5/49 = 10.2%; 5/196 = 2.6%);
* top-5 on 7x7: the same with a 14x14 map summed onto 7x7 cells (comparable across grids);
* top-1: it is the most attended cell;
* any cell it covers: one of the cells the object's 11x11 px overlap is in the top 5 (a 7x7
  cell is about 9 px of the 75 px scene, so most objects straddle two to four cells; nine of 14x14);
* 3x3 mass: the share of the attention on the object's cell and its 8 neighbours;
* control: how often the cell of one of the *other* five objects is in the top 5 (a map that
  lit up every object whatever the question would score as high there as on the named one);
* answer object (closest / furthest only): the object the answer is about, in the top 5.

Prints a Markdown table and writes it to --out.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models.attention import SINGLE_OBJECT_KINDS as KINDS, TOP  # noqa: E402

def table(stats: dict) -> str:
    def pct(a, n):
        return f"{100 * a / n:.1f}%" if n else "-"

    lines = ["| question type | questions | object's cell in top 5 | top 5 on 7x7 | top 1 | any cell it covers in top 5 | "
             "mass on its 3x3 cells | control: another object's cell in top 5 | answer object in top 5 |",
             "|---|---|---|---|---|---|---|---|---|"]
    total = {"n": 0, "top5": 0, "top5_coarse": 0, "top1": 0, "covers": 0, "mass": 0.0, "control": 0.0}
    for kind in KINDS:
        r = stats[kind]
        for k in total:
            total[k] += r[k]
        answer = pct(r["answer"], r["n"]) if kind in ("closest", "furthest") else ""
        name = kind if kind not in ("closest", "furthest") else f"{kind} (reference object)"
        lines.append(f"| {name} | {r['n']} | **{pct(r['top5'], r['n'])}** | {pct(r['top5_coarse'], r['n'])} | {pct(r['top1'], r['n'])} | "
                     f"{pct(r['covers'], r['n'])} | {pct(r['mass'], r['n'])} | {pct(r['control'], r['n'])} | {answer} |")
    t = total
    lines.append(f"| **all single-object** | {t['n']} | **{pct(t['top5'], t['n'])}** | {pct(t['top5_coarse'], t['n'])} | {pct(t['top1'], t['n'])} | "
                 f"{pct(t['covers'], t['n'])} | {pct(t['mass'], t['n'])} | {pct(t['control'], t['n'])} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1_000_000)
    parser.add_argument("--paraphrase", action="store_true", help="paraphrased questions instead of the canonical forms")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results_attention.md"))
    args = parser.parse_args(argv)

    import torch

    from assistant.config import Settings
    from assistant.pipeline import Assistant, packaged_fusion_dir
    from models.attention import measure_on_scenes

    torch.set_num_threads(os.cpu_count() or 1)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    settings = Settings()
    settings.plugins.enabled = False
    bot = Assistant.load(settings, plugins=False)
    core, encoder = bot.fusion, bot.image_encoder
    if core is None:
        say(f"no fusion core: {bot.fusion_source}")
        return 1
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = measure_on_scenes(core, encoder, lambda texts: bot.generator.embed_text(texts, max_tokens=core.cfg.max_text_tokens),
                              range(args.first_seed, args.first_seed + args.scenes), paraphrase=args.paraphrase,
                              progress=say)
    run_s = time.perf_counter() - t0
    seeds = f"{args.first_seed:,}-{args.first_seed + args.scenes - 1:,}"
    forms = "paraphrased" if args.paraphrase else "canonical"
    cfg = core.cfg.core_view()  # the grid the cross-attention layers read
    side = round(cfg.max_tokens["image"] ** 0.5)
    packaged = packaged_fusion_dir()
    shipped = packaged is not None and Path(bot.fusion_source).resolve() == Path(packaged).resolve()
    head = (f"### {args.scenes} held-out scenes (seeds {seeds}), {forms} questions, every object of each scene\n"
            f"fusion core: {'shipped weights (models/weights/fusion)' if shipped else bot.fusion_source}, "
            f"{cfg.strategy}, {cfg.n_layers} cross-attention layers x {cfg.n_heads} heads, {cfg.n_queries} queries; "
            f"image grid {side}x{side} (EfficientNet-Lite0, {cfg.image_grid} grid); "
            f"chance of a given cell in the top 5: {100 * TOP / side ** 2:.1f}%; "
            f"load {load_s:.1f} s, measured in {run_s:.1f} s\n")
    text = head + "\n" + table(stats) + "\n"
    print(text)
    out = Path(args.out)
    intro = ("# Attention view: does the fusion core look at the asked-about object?\n\n"
             "Regenerate with `python benchmarks/bench_attention.py` (and `--paraphrase`). The last cross-attention\n"
             "layer's weights, averaged over queries and heads and renormalised over the image's cells\n"
             "(models/attention.py), against the cell holding the named object's centre. Target (issue 12): the\n"
             "object's cell in the top 5 for >= 70% of single-object questions. Measured on the project's 2-core VM.\n")
    sections = {}  # one section per question form and image grid, the latest run of each kept
    if out.exists():
        for part in out.read_text(encoding="utf-8").split("\n### ")[1:]:
            grid = re.search(r"image grid (\d+x\d+)", part)
            key = part.split(" questions", 1)[0].rsplit(" ", 1)[-1] + " " + (grid.group(1) if grid else "7x7")
            sections[key] = "### " + part.strip() + "\n"
    sections[f"{forms} {side}x{side}"] = text
    out.write_text(intro + "".join("\n" + sections[k] for k in sorted(sections)), encoding="utf-8")
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
