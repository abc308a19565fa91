"""``assistant draw "DESCRIPTION" -o out.png``: MMGAN (or, with ``--model mvae``, the MVAE)
draws a 75x75 scene from words; ``assistant caption IMAGE``: the MVAE captions a scene.

Added to the CLI by :func:`add_commands` (listed in ``cli.FEATURE_MODULES``). Drawings are made
by the built-in draw plugin's :func:`plugins.builtin.draw.draw_picture` (either model), captions
here with :mod:`models.mvae`. No other model loads, so each takes about a second.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from assistant.errors import InputError, ModelError


def add_commands(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("draw", parents=parents, help="draw a scene of coloured squares and circles from a description")
    p.add_argument("description", help="e.g. 'a red circle at the top left and a blue square left of a gray circle'")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="where to write the picture (PNG)")
    p.add_argument("--seed", type=int, help="noise and layout seed (default: random; printed, to draw it again)")
    p.add_argument("--scale", type=int, default=1, help="enlarge the 75x75 picture this many times (default 1)")
    p.add_argument("--model", choices=("mmgan", "mvae"), default="mmgan",
                   help="mmgan (default: 1-6 objects) or mvae (whole scenes: all six colours named)")
    p.add_argument("--weights", metavar="DIR", help="weights folder (default: the shipped models/weights/MODEL)")
    p.add_argument("--json", action="store_true", help="print what was drawn as JSON")
    p.set_defaults(handler=cmd_draw)

    c = sub.add_parser("caption", parents=parents, help="caption a Sort-of-CLEVR scene image with the MVAE (no other model loads)")
    c.add_argument("image", metavar="IMAGE", help="a 75x75 scene (PNG etc.; larger scenes, e.g. from `assistant draw --scale`, are shrunk)")
    c.add_argument("--model", choices=("mvae",), default="mvae", help="the captioner (only the MVAE so far)")
    c.add_argument("--weights", metavar="DIR", help="MVAE weights folder (default: the shipped models/weights/mvae)")
    c.add_argument("--json", action="store_true", help="print the caption and each object as JSON")
    c.set_defaults(handler=cmd_caption)


def cmd_draw(args: argparse.Namespace) -> int:
    from plugins.builtin.draw import draw_picture

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise InputError(f"{out}: the picture is written as PNG; give a path ending in .png")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such folder")
    drawing = draw_picture(args.description, seed=args.seed, scale=args.scale, weights=args.weights, model=args.model)
    try:
        drawing.image.save(out)
    except OSError as e:
        raise InputError(f"{out}: cannot write the picture ({e.strerror or e})") from e
    if args.json:
        print(json.dumps({"output": str(out), "understood": drawing.understood,
                          "drawn": drawing.layout.describe(), "seed": drawing.seed}))
    else:
        print(f"drew {drawing.layout.describe()} (seed {drawing.seed}) -> {out}")
    return 0


def _load_mvae(weights: str | None):
    from models import mvae

    try:
        return mvae.load(weights or mvae.DEFAULT_WEIGHTS)
    except (FileNotFoundError, ValueError) as e:
        raise ModelError(f"cannot load the MVAE: {e}") from e


def cmd_caption(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from models import blobs, clevr, mvae

    try:
        with Image.open(args.image) as im:
            img = im.convert("RGB")
    except FileNotFoundError as e:
        raise InputError(f"{args.image}: no such file") from e
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{args.image}: not an image I can read ({e.__class__.__name__})") from e
    if img.size != (clevr.IMAGE_SIZE, clevr.IMAGE_SIZE):
        img = img.resize((clevr.IMAGE_SIZE, clevr.IMAGE_SIZE), Image.Resampling.NEAREST)
    pixels = np.asarray(img, dtype=np.uint8)
    share = blobs.palette_share(pixels)
    if share < mvae.MIN_PALETTE_SHARE:
        raise InputError(f"{args.image}: this does not look like a Sort-of-CLEVR scene (only {share:.0%} of its pixels "
                         f"are white or one of the six scene colours); the MVAE knows nothing else")
    model = _load_mvae(args.weights)
    probs = mvae.caption_facts(model, pixels[None])[0]  # (18,)
    text = clevr.caption_from_facts(probs.tolist())
    if args.json:
        objects = [{"colour": c, "shape": s, "quadrant": q} for c, s, q in mvae.fact_objects(probs.tolist())]
        sure = float(torch.maximum(probs, 1 - probs).min())
        print(json.dumps({"caption": text, "objects": objects, "least_sure_fact": round(sure, 3)}))
    else:
        print(text)
    return 0
