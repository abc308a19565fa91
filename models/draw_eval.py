"""Check MMGAN's drawings against their layouts on held-out descriptions (never used in training).

For each named object, the palette detector (:mod:`models.blobs`) says whether its colour is
present, with the named shape, in the named quadrant; a drawing's extra blobs are counted too.
Diversity: several drawings of one description (different noise) should differ, measured as
the share of pairs whose objects' centres move by more than a pixel on average.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from models import blobs, mmgan


@dataclass
class DrawResults:
    objects: int = 0
    present: int = 0
    shape: int = 0
    quadrant: int = 0
    correct: int = 0
    drawings: int = 0
    drawings_correct: int = 0
    """Drawings with every named object right and nothing extra."""
    extra: int = 0
    by_count: dict = field(default_factory=dict)
    """Objects in the description -> [objects right, objects]."""

    def add(self, chk: blobs.Check) -> None:
        n = len(chk.present)
        self.objects += n
        self.present += sum(chk.present)
        self.shape += sum(chk.shape)
        self.quadrant += sum(chk.quadrant)
        self.correct += sum(chk.correct)
        self.drawings += 1
        self.drawings_correct += int(all(chk.correct) and chk.extra == 0)
        self.extra += chk.extra
        row = self.by_count.setdefault(n, [0, 0])
        row[0] += sum(chk.correct)
        row[1] += n

    def summary(self) -> dict:
        n, d = max(1, self.objects), max(1, self.drawings)
        return {
            "objects": self.objects, "drawings": self.drawings,
            "colour_present": round(self.present / n, 4), "shape": round(self.shape / n, 4),
            "quadrant": round(self.quadrant / n, 4), "object_correct": round(self.correct / n, 4),
            "drawing_exact": round(self.drawings_correct / d, 4), "extra_per_drawing": round(self.extra / d, 4),
            "by_count": {k: round(v[0] / max(1, v[1]), 4) for k, v in sorted(self.by_count.items())},
        }


def held_out_layouts(n: int, seed: int = 12345) -> list[mmgan.Layout]:
    rng = random.Random(seed)
    return [mmgan.sample_layout(rng, split="eval") for _ in range(n)]


DrawFn = Callable[[list[mmgan.Layout], int], np.ndarray]
"""(layouts, seed) -> drawings (N, 75, 75, 3) uint8: how another model (the MVAE) is checked."""


def evaluate_drawings(gen: mmgan.Generator | None, *, n_layouts: int = 500, seed: int = 12345,
                      layouts: list[mmgan.Layout] | None = None, batch: int = 100, draw: DrawFn | None = None) -> DrawResults:
    """Draw each held-out layout once (with MMGAN ``gen``, or ``draw``) and check it object by object."""
    layouts = layouts if layouts is not None else held_out_layouts(n_layouts, seed)
    draw = draw or (lambda lays, s: mmgan.draw(gen, lays, seed=s))
    res = DrawResults()
    for i in range(0, len(layouts), batch):
        chunk = layouts[i:i + batch]
        for img, lay in zip(draw(chunk, seed + i), chunk):
            res.add(blobs.check(img, lay.objects)[0])
    return res


def diversity(gen: mmgan.Generator | None, layouts: list[mmgan.Layout], draws: int = 4, seed: int = 7,
              draw: DrawFn | None = None) -> dict:
    """For each layout, ``draws`` drawings with different noise (MMGAN ``gen``, or ``draw``): the
    share of drawing pairs whose matched objects' centres differ by more than one pixel on
    average, and that mean shift."""
    draw = draw or (lambda lays, s: mmgan.draw(gen, lays, seed=s))
    shifts, differ = [], 0
    pairs = 0
    for k, lay in enumerate(layouts):
        imgs = draw([lay] * draws, seed + k)
        found = [{b.colour: b for b in reversed(blobs.detect(im))} for im in imgs]
        for a in range(draws):
            for b in range(a + 1, draws):
                common = [c for c in found[a] if c in found[b]]
                if not common:
                    continue
                d = float(np.mean([np.hypot(found[a][c].x - found[b][c].x, found[a][c].y - found[b][c].y) for c in common]))
                shifts.append(d)
                differ += d > 1.0
                pairs += 1
    return {"pairs": pairs, "pairs_differing": round(differ / max(1, pairs), 4),
            "mean_centre_shift_px": round(float(np.mean(shifts)) if shifts else 0.0, 2)}


# ------------------------------------------------------------------------------ descriptions in words

_VERT = {"top": ("top", "upper"), "bottom": ("bottom", "lower")}
_REL_WORDS = {"left of": ("left of", "to the left of"), "right of": ("right of", "to the right of"),
              "above": ("above",), "below": ("below", "under")}


def _a(colour: str) -> str:
    return "an" if colour[0] in "aeiou" else "a"


def _quadrant_phrase(rng: random.Random, o) -> str:
    v, h = o.quadrant.split()
    form = rng.randrange(3)
    if form == 0:
        return f"{_a(o.colour)} {o.colour} {o.shape} at the {v} {h}"
    if form == 1:
        return f"{_a(o.colour)} {o.colour} {o.shape} in the {rng.choice(_VERT[v])} {h} corner"
    return f"{o.colour} {o.shape} {v}-{h}"


def held_out_descriptions(n: int, seed: int = 2024) -> list[tuple[str, str]]:
    """``n`` descriptions in words, half by quadrant and half by relation ('a green square left
    of a gray circle'), each as (kind, text). Quadrant descriptions are held-out layouts; a
    relation is drawn in a held-out layout that satisfies it (see :func:`evaluate_descriptions`)."""
    from models import clevr

    rng = random.Random(seed)
    out = []
    while len(out) < n:
        if len(out) % 2 == 0:
            lay = mmgan.sample_layout(rng, split="eval", counts=(0.3, 0.3, 0.25, 0.15, 0, 0))
            out.append(("quadrant", " and ".join(_quadrant_phrase(rng, o) for o in lay.objects)))
        else:
            a, b, c = rng.sample(clevr.COLOURS, 3)
            rel = rng.choice(list(_REL_WORDS))
            text = (f"{_a(a)} {a} {rng.choice(clevr.SHAPES)} {rng.choice(_REL_WORDS[rel])} "
                    f"{_a(b)} {b} {rng.choice(clevr.SHAPES)}")
            if rng.random() < 0.5:
                text += f" and {_a(c)} {c} {rng.choice(clevr.SHAPES)} at the {rng.choice(mmgan.QUADRANTS)}"
            out.append(("relation", text))
    return out


def _relation_holds(blobs_by_colour: dict, a: str, rel: str, b: str) -> bool:
    if a not in blobs_by_colour or b not in blobs_by_colour:
        return False
    pa, pb = blobs_by_colour[a], blobs_by_colour[b]
    return {"left of": pa.x < pb.x, "right of": pa.x > pb.x, "above": pa.y < pb.y, "below": pa.y > pb.y}[rel]


def evaluate_descriptions(gen: mmgan.Generator, items: list[tuple[str, str]], seed: int = 31) -> dict:
    """Parse each description, draw it in a held-out layout that satisfies it, and check every
    named object (colour, shape, quadrant) and every relation on the drawing."""
    from models.draw_text import parse

    rng = random.Random(seed)
    per_kind: dict[str, DrawResults] = {}
    relations = [0, 0]
    skipped = 0
    for k, (kind, text) in enumerate(items):
        desc = parse(text)
        options = [lay for lay in desc.layouts() if mmgan.held_out(lay)]
        if not options:
            skipped += 1
            continue
        lay = rng.choice(options)
        img = mmgan.draw(gen, [lay], seed=seed + k)[0]
        chk, found = blobs.check(img, lay.objects)
        per_kind.setdefault(kind, DrawResults()).add(chk)
        largest = {}
        for bl in found:
            largest.setdefault(bl.colour, bl)
        for a, rel, b in desc.relations:
            relations[0] += _relation_holds(largest, a, rel, b)
            relations[1] += 1
    return {"per_kind": {k: v.summary() for k, v in per_kind.items()},
            "relations_hold": round(relations[0] / max(1, relations[1]), 4), "relations": relations[1],
            "skipped_no_held_out_layout": skipped}
