"""Time to read the text in an image: a 1920x1080 screenshot, a phone photo of a page, and how
the cost grows with the amount of text (and a page of 10,000 tiny characters).

    python benchmarks/bench_ocr.py [--out benchmarks/results_ocr.md] [--repeat 2]

Every image is generated (models/ocr_eval.py, evaluation word lists and fonts); the reader is
loaded once and warmed up on another image first. Times are the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from models.ocr import OcrConfig, load_ocr  # noqa: E402
from models.ocr_eval import FONTS, THEMES, cer_by_line, make_line, photo_of_page, render  # noqa: E402


def screenshot(n_lines: int, rng: random.Random, size=(1920, 1080), px: int = 14) -> tuple[Image.Image, str]:
    """A desktop: windows of code and prose stacked on a dark wallpaper, ``n_lines`` lines in all."""
    canvas = Image.new("RGB", size, (24, 32, 48))
    texts, x, y, left = [], 0, 0, n_lines
    mono = FONTS["ibm-plex-mono"]() or FONTS["dejavu-sans-mono"]()
    sans = FONTS["noto-sans"]() or FONTS["dejavu-sans"]()
    while left > 0:
        k = min(left, rng.randint(8, 20))
        kind = rng.choice(["code", "prose"])
        lines = [make_line(kind, rng, "eval") for _ in range(k)]
        bg, fg = rng.choice(THEMES[rng.choice(["light", "dark"])])
        window = render(lines, mono if kind == "code" else sans, px, bg, fg, rng=rng, width=900, margin=16)
        if y + window.height > size[1]:
            x, y = x + 960, 0
            if x >= size[0]:
                break
        canvas.paste(window, (x + 20, y + 20))
        texts += lines
        y += window.height + 20
        left -= k
    return canvas, "\n".join(texts)


def tiny_page(rng: random.Random, chars: int = 10_000) -> Image.Image:
    """A 1920x1080 image packed with about ``chars`` characters of 8 px text."""
    img = Image.new("RGB", (1920, 1080), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.truetype(str(FONTS["dejavu-sans"]()), 8)
    drawn, y = 0, 2
    while drawn < chars and y < 1070:
        line = ""
        while font.getlength(line) < 1880:
            line += make_line("prose", rng, "eval") + " "
        d.text((4, y), line, font=font, fill="black")
        drawn, y = drawn + len(line), y + 10
    return img


def timed(engine, image, repeat: int, **kw):
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = engine.read(image, **kw)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args(argv)
    rng = random.Random(7)

    t0 = time.perf_counter()
    engine = load_ocr()
    load_s = time.perf_counter() - t0
    engine.read(screenshot(6, random.Random(99), size=(800, 400))[0])  # warm-up

    rows = []

    def row(name, image, reference, **kw):
        seconds, result = timed(engine, image, args.repeat, **kw)
        # windows stand in two columns, whose lines the reader joins row by row: each detected
        # segment is scored against the drawn line it is closest to
        if reference is not None:
            edits, chars = cer_by_line([line.text for line in result.lines], reference)
            score = f"{edits / chars:.1%}"
        else:
            score = "—"
        rows.append(f"| {name} | {image.width}x{image.height} | {seconds:.2f} | {result.timings.get('detect', 0):.2f} | "
                    f"{result.timings.get('recognize', 0):.2f} | {len(result.lines)} | {len(result.text):,} | {score} | "
                    f"{result.stopped or ''} | {os.getloadavg()[0]:.1f} |")
        print(rows[-1], flush=True)

    shot, text = screenshot(60, rng)
    row("1920x1080 screenshot, 60 lines of 14 px, `auto`", shot, text)
    row("the same, `on` (detection at full size)", shot, text, full=True)
    photo, page = photo_of_page(rng)
    row("phone photo of a printed page (40 lines)", photo, page)
    for n in (0, 10, 40, 120):
        image, text = screenshot(n, rng)
        row(f"screenshot with {n} lines", image, text if n else None)
    row("flat colour 1920x1080 (no edges)", Image.new("RGB", (1920, 1080), (40, 90, 160)), None)
    row("10,000 characters of 8 px text", tiny_page(rng), None)
    limited = load_ocr(OcrConfig(time_limit_s=10))
    seconds, result = timed(limited, tiny_page(rng), 1)
    rows.append(f"| the same with `time_limit_s = 10` | 1920x1080 | {seconds:.2f} | {result.timings.get('detect', 0):.2f} | "
                f"{result.timings.get('recognize', 0):.2f} | {len(result.lines)} | {len(result.text):,} | — | {result.stopped or ''} | "
                f"{os.getloadavg()[0]:.1f} |")
    print(rows[-1], flush=True)

    load = os.getloadavg()[0]
    table = "\n".join([
        f"\n## Reading time (bench_ocr.py, median of {args.repeat}, load average {load:.1f}, {os.cpu_count()} cores; "
        f"load: the 1-minute load average when the row was measured)",
        f"\nEngine load (three ONNX Runtime sessions, weights checked by SHA-256): {load_s:.2f} s.\n",
        "CER: character error rate, each line read scored against the drawn line closest to it (reading order is "
        "not scored here; until the third OCR session both texts' lines were sorted and compared, which counted a "
        "line whose first character was misread twice).\n",
        "| image | size | total s | detect s | recognize s | lines | characters | CER | stopped | load |",
        "|---|---|---|---|---|---|---|---|---|---|", *rows])
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
