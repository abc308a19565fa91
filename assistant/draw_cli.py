"""``assistant draw "DESCRIPTION" -o out.png``: MMGAN draws a 75x75 scene from words.

Added to the CLI by :func:`add_commands` (listed in ``cli.FEATURE_MODULES``). The drawing is
done by the built-in draw plugin's :func:`plugins.builtin.draw.draw_picture`; no other model
loads, so this takes about a second.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from assistant.errors import InputError


def add_commands(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("draw", parents=parents, help="draw a scene of coloured squares and circles from a description")
    p.add_argument("description", help="e.g. 'a red circle at the top left and a blue square left of a gray circle'")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help="where to write the picture (PNG)")
    p.add_argument("--seed", type=int, help="noise and layout seed (default: random; printed, to draw it again)")
    p.add_argument("--scale", type=int, default=1, help="enlarge the 75x75 picture this many times (default 1)")
    p.add_argument("--weights", metavar="DIR", help="MMGAN weights folder (default: the shipped models/weights/mmgan)")
    p.add_argument("--json", action="store_true", help="print what was drawn as JSON")
    p.set_defaults(handler=cmd_draw)


def cmd_draw(args: argparse.Namespace) -> int:
    from plugins.builtin.draw import draw_picture

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise InputError(f"{out}: the picture is written as PNG; give a path ending in .png")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such folder")
    drawing = draw_picture(args.description, seed=args.seed, scale=args.scale, weights=args.weights)
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
