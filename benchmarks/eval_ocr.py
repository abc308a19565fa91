"""Character error rate of the text reader on generated screenshots, per kind, size and theme.

    python benchmarks/eval_ocr.py --split tune [--n 20] [--set det_max_side=1280 space_gap=1.6]
    python benchmarks/eval_ocr.py --split eval --n 30 --out benchmarks/results_ocr_eval.md

``tune`` images are the ones settings were chosen on; ``eval`` images (other fonts, word lists
and seeds, see models/ocr_eval.py) give the reported numbers. ``--save DIR`` writes the images
and their texts for a look.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.ocr import OcrConfig, load_ocr  # noqa: E402
from models.ocr_eval import cer, fonts_for, normalize, samples  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=["tune", "eval"], default="tune")
    p.add_argument("--n", type=int, default=20, help="images per kind")
    p.add_argument("--sizes", type=int, nargs="*", help="text sizes in px (default: 12 14 16 20 28)")
    p.add_argument("--set", nargs="*", default=[], help="OcrConfig fields, NAME=VALUE")
    p.add_argument("--full", action="store_true", help="detect as image.ocr = 'on' does")
    p.add_argument("--out", help="append the markdown table to this file")
    p.add_argument("--save", help="write the images and texts here")
    p.add_argument("--errors", type=int, default=0, help="print this many worst readings")
    args = p.parse_args(argv)

    cfg = OcrConfig()
    for item in args.set:
        key, value = item.split("=", 1)
        setattr(cfg, key, type(getattr(cfg, key))(value))
    engine = load_ocr(cfg)
    data = samples(args.split, args.n, **({"sizes": tuple(args.sizes)} if args.sizes else {}))
    _, missing = fonts_for(args.split)
    engine.read(data[0].image)  # warm-up, not measured

    per = defaultdict(lambda: [0, 0, 0.0, 0])  # key -> [edits, chars, seconds, images]
    worst = []
    for s in data:
        t0 = time.perf_counter()
        result = engine.read(s.image, full=args.full)
        dt = time.perf_counter() - t0
        edits, chars = cer(result.text, s.text)
        worst.append((edits / chars, s.name, normalize(s.text), normalize(result.text)))
        for key in (f"kind={s.kind}", f"size={s.size}px", f"theme={s.theme}", f"font={s.font}", "all"):
            row = per[key]
            row[0] += edits
            row[1] += chars
            row[2] += dt
            row[3] += 1
        if args.save:
            folder = Path(args.save)
            folder.mkdir(parents=True, exist_ok=True)
            s.image.save(folder / f"{s.name}.png")
            (folder / f"{s.name}.txt").write_text(s.text + "\n", encoding="utf-8")

    load = os.getloadavg()[0]
    lines = [f"\n### {args.split} split, {len(data)} images ({args.n} per kind), "
             f"{'full' if args.full else 'auto'} detection, load average {load:.1f}"
             + (f", sizes {'/'.join(map(str, args.sizes))} px" if args.sizes else ""),
             f"settings: {', '.join(args.set) or 'defaults'}" + (f"; fonts not installed: {', '.join(missing)}" if missing else ""),
             "", "| group | images | CER | mean s / image |", "|---|---|---|---|"]
    for key in sorted(per, key=lambda k: (k.split("=")[0], _num(k))):
        e, c, t, n = per[key]
        lines.append(f"| {key} | {n} | {e / c:.2%} | {t / n:.2f} |")
    table = "\n".join(lines)
    print(table)
    for score, name, ref, got in sorted(worst, reverse=True)[: args.errors]:
        print(f"\n{name}: CER {score:.1%}\n  want: {ref!r}\n  got:  {got!r}")
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


def _num(key: str):
    tail = key.split("=", 1)[-1].rstrip("px")
    return (0, int(tail), "") if tail.isdigit() else (1, 0, tail)


if __name__ == "__main__":
    raise SystemExit(main())
