"""Questions about the text in images, answered end to end by `assistant ask --image` (the real
offline stack: image encoder, text reader, fusion core, SmolLM2 generator).

    python benchmarks/ask_ocr.py [--out benchmarks/results_ocr.md] [--keep DIR]

Five generated images (evaluation fonts), one question each; an answer counts as right when it
contains the expected words. The reply, the evidence line and the seconds are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.ocr_eval import FONTS, render  # noqa: E402

CASES = [
    ("traceback.png", "code", (30, 30, 30), (220, 220, 220),
     ["Traceback (most recent call last):", '  File "server.py", line 88, in handle', "    conn = pool.acquire()",
      "TimeoutError: connection pool exhausted after 30 s"],
     "What is the error message?", ["pool exhausted"]),
    ("receipt.png", "prose", (250, 250, 245), (30, 30, 30),
     ["GREEN LEAF MARKET", "Apples 2 x 1.20      2.40", "Bread               3.10", "Milk                1.85",
      "TOTAL               7.35", "Thank you for shopping!"],
     "What is the total?", ["7.35"]),
    ("dialog.png", "prose", (240, 244, 250), (30, 50, 90),
     ["Update failed", "The disk is full. Free at least 2 GB", "and try the update again.", "OK    Cancel"],
     "Why did the update fail?", ["disk", "full"]),
    ("sign.png", "chinese", (0, 90, 60), (255, 255, 255),
     ["出口", "EXIT", "请勿吸烟"], "What does the sign say in English?", ["exit"]),
    ("login.png", "prose", (40, 44, 52), (171, 178, 191),
     ["Sign in to Portal", "Username: alice", "Error: password expired on 12/03", "Reset password"],
     "What is the username?", ["alice"]),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out")
    p.add_argument("--keep", help="save the images here")
    args = p.parse_args(argv)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="ask-ocr-"))
    folder.mkdir(parents=True, exist_ok=True)
    fonts = {"code": FONTS["ibm-plex-mono"]() or FONTS["dejavu-sans-mono"](),
             "prose": FONTS["noto-sans"]() or FONTS["dejavu-serif"](),
             "chinese": FONTS["noto-cjk-regular"]() or FONTS["wqy-microhei"]()}
    rows, right = [], 0
    for name, kind, bg, fg, lines, question, expect in CASES:
        path = folder / name
        render(lines, fonts[kind], 18 if kind != "chinese" else 40, bg, fg, rng=random.Random(len(name))).save(path)
        cmd = [sys.executable, "-c", "import sys; from assistant.cli import main; sys.exit(main())",
               "ask", "--image", str(path), question, "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        try:
            out = json.loads(done.stdout)
        except ValueError:
            out = {"text": f"(failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode})",
                   "evidence": [], "timings": {}}
        reply = " ".join(out["text"].split())
        ok = all(word.lower() in reply.lower() for word in expect)
        right += ok
        read = next((e.split("\n", 1)[1].replace("\n", " / ") for e in out["evidence"] if "contains text" in e), "(none)")
        rows.append(f"| {name} | {question} | {read} | {reply[:160]} | {'yes' if ok else 'no'} | "
                    f"{out['timings'].get('ocr', 0):.1f} / {out['timings'].get('total', 0):.1f} |")
        print(rows[-1], flush=True)
    table = "\n".join([
        f"\n## Questions about the text, end to end (ask_ocr.py: `assistant ask --image`, greedy SmolLM2-135M, "
        f"load average {os.getloadavg()[0]:.1f})",
        f"\n{right} of {len(CASES)} answers contain the expected words.\n",
        "| image | question | text read (evidence) | reply | right | ocr / total s |", "|---|---|---|---|---|---|", *rows])
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
