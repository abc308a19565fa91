"""The attention view: where the fusion core's queries looked in an image.

:class:`models.fusion.AttentionFusion` reports, per image token, the share of its last
cross-attention layer's attention (averaged over queries and heads; ``FusionOutput.attention``).
Image encoders flatten a square grid of cells row by row (EfficientNet-Lite0: 7x7 over the
224x224 centre crop, 14x14 on its fine grid), so those shares fold back into a grid:

* :func:`attention_map` -> :class:`AttentionMap`: the grid renormalised over the image's cells
  (rows x cols floats summing to 1), the share the image got at all (the rest went to the
  core's null token), and the part of the picture the grid covers (the encoder's crop);
* :func:`draw_attention`: the picture with the grid upsampled over that part as a heat map
  (a colour map written out below, no plotting library); what the encoder never saw is dimmed;
* :func:`cell_of` / :func:`top_cells` / :func:`pool_grid`: which cell a point falls in, the
  most attended cells, a fine map summed onto coarser cells;
  :func:`measure_on_scenes`: how often the object a Sort-of-CLEVR question names is among the
  most attended cells (``benchmarks/bench_attention.py`` prints it; a test checks a few scenes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

SINGLE_OBJECT_KINDS = ("shape", "horizontal", "vertical", "closest", "furthest")
"""Sort-of-CLEVR question types about one named object (closest / furthest: the reference object)."""
TOP = 5
"""How many of the most attended cells the measure looks at (chance for one cell of 49: 10.2%;
of 196: 2.6%)."""
COARSE = 7
"""The measure also reports finer maps summed onto this grid (EfficientNet-Lite0's last block)."""

Box = tuple[float, float, float, float]
"""(left, top, right, bottom) in the original image's pixels (continuous coordinates)."""

# Anchors of the colour map (value in [0, 1] -> RGB): dark blue, violet, red, orange, pale yellow.
_ANCHORS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
_COLOURS = np.array([
    [20, 10, 80],
    [120, 30, 160],
    [220, 40, 70],
    [250, 150, 30],
    [255, 250, 190],
], dtype=np.float32)


@dataclass
class AttentionMap:
    grid: np.ndarray
    """(rows, cols) float, sums to 1: the share of the image's attention on each cell."""
    image_share: float
    """How much of the layer's attention went to this image's tokens at all (the rest: null token)."""
    box: Box
    """The part of the original image the grid covers (the encoder's crop)."""
    known: bool | None = None
    """Whether the image is like the core's training images (None: the core is not calibrated)."""
    answered: bool | None = None
    """Whether the core answered the question about this image (None: not recorded)."""

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.grid.shape[0]), int(self.grid.shape[1])

    def to_dict(self, digits: int = 6) -> dict:
        """JSON-ready: ``grid`` as rows of floats, ``rows``, ``cols``, ``image_share``, ``crop_box``."""
        rows, cols = self.shape
        return {"rows": rows, "cols": cols, "grid": [[round(float(v), digits) for v in row] for row in self.grid],
                "image_share": round(self.image_share, 4), "crop_box": [round(float(v), 2) for v in self.box],
                "known_image": self.known, "answered": self.answered}

    @classmethod
    def from_dict(cls, data: dict) -> "AttentionMap":
        grid = np.asarray(data["grid"], dtype=np.float64)  # (rows, cols)
        return cls(grid / max(grid.sum(), 1e-12), float(data.get("image_share", 1.0)), tuple(data["crop_box"]),
                   data.get("known_image"), data.get("answered"))


def attention_map(weights, box: Box) -> AttentionMap | None:
    """One image's token weights (N,) (a row of ``FusionOutput.attention["image"]``) -> its map,
    or None when the tokens do not form a square grid or got no attention at all."""
    w = np.asarray(weights.detach().float().cpu().numpy() if hasattr(weights, "detach") else weights, dtype=np.float64)
    side = round(len(w) ** 0.5)
    total = float(w.sum())
    if side * side != len(w) or not total > 0:
        return None
    return AttentionMap((w / total).reshape(side, side), total, tuple(float(v) for v in box))


def full_box(image: Image.Image) -> Box:
    """The whole picture (for an encoder that does not crop)."""
    return (0.0, 0.0, float(image.width), float(image.height))


def cell_of(x: float, y: float, box: Box, shape: tuple[int, int]) -> tuple[int, int] | None:
    """The (row, col) of the grid cell holding the point (x, y) (original pixels, continuous
    coordinates: pixel i spans [i, i+1)), or None when it lies outside the grid's box."""
    left, top, right, bottom = box
    rows, cols = shape
    if not (left <= x < right and top <= y < bottom):
        return None
    return min(rows - 1, int((y - top) / (bottom - top) * rows)), min(cols - 1, int((x - left) / (right - left) * cols))


def pool_grid(grid: np.ndarray, side: int) -> np.ndarray:
    """A (rows, cols) map whose sides are multiples of ``side`` summed onto side x side cells
    (a 14x14 map onto 7x7); any other map is returned as it is."""
    rows, cols = grid.shape
    if rows % side or cols % side:
        return grid
    return grid.reshape(side, rows // side, side, cols // side).sum(axis=(1, 3))


def top_cells(grid: np.ndarray, k: int = 5) -> list[tuple[int, int]]:
    """The ``k`` most attended cells, most attended first, as (row, col)."""
    order = np.argsort(-grid, axis=None, kind="stable")[:k]
    return [(int(i) // grid.shape[1], int(i) % grid.shape[1]) for i in order]


def heat_colours(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1], any shape (...) -> (..., 3) uint8 RGB, piecewise linear between the anchors."""
    v = np.clip(values, 0.0, 1.0)
    channels = [np.interp(v, _ANCHORS, _COLOURS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def draw_attention(image: Image.Image, amap: AttentionMap, *, opacity: float = 0.6) -> Image.Image:
    """The picture (same size) with the map upsampled over its box as a heat map: each cell's
    share scaled by the largest, smoothed bilinearly, coloured and blended in (more opaque
    where the attention is higher); outside the box (never seen by the encoder) dimmed."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    h, w = base.shape[:2]
    left, top, right, bottom = amap.box
    x0, y0 = max(0, int(round(left))), max(0, int(round(top)))
    x1, y1 = min(w, int(round(right))), min(h, int(round(bottom)))
    out = base * 0.45 + 255 * 0.55 * 0.25  # dimmed where nothing was seen
    if x1 > x0 and y1 > y0:
        peak = float(amap.grid.max()) or 1.0
        small = Image.fromarray((amap.grid / peak).astype(np.float32))  # mode "F"
        heat = np.asarray(small.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR), dtype=np.float32)  # (h', w')
        heat = np.clip(heat, 0.0, 1.0)
        alpha = (opacity * (0.2 + 0.8 * heat))[..., None]  # (h', w', 1)
        region = base[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = region * (1 - alpha) + heat_colours(heat).astype(np.float32) * alpha
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8))  # (H, W, 3) -> RGB


# -- measuring it on Sort-of-CLEVR ---------------------------------------------------------------

def covered_cells(obj, box, shape) -> set:
    """The grid cells an object's pixels overlap (pixels x-HALF .. x+HALF, each 1 px wide)."""
    from models.clevr import HALF

    corners = [cell_of(min(max(px, box[0]), box[2] - 1e-6), min(max(py, box[1]), box[3] - 1e-6), box, shape)
               for px in (obj.x - HALF, obj.x + HALF + 0.999) for py in (obj.y - HALF, obj.y + HALF + 0.999)]
    rows = range(min(r for r, _ in corners), max(r for r, _ in corners) + 1)
    cols = range(min(c for _, c in corners), max(c for _, c in corners) + 1)
    return {(r, c) for r in rows for c in cols}


def measure_on_scenes(core, image_encoder, embed_text, seeds, *, kinds=None, paraphrase: bool = False,
                      progress=None) -> dict:
    """Ask every single-object question (``kinds``, default :data:`SINGLE_OBJECT_KINDS`) about
    every object of the Sort-of-CLEVR scenes ``seeds`` and check the core's attention against
    the named object's cell. ``embed_text(texts) -> (B, T, text_dim), (B, T)``. -> per kind:
    ``n`` questions; ``top5`` / ``top1``: the object's centre cell among the TOP most attended
    cells / the most attended; ``covers``: any cell the object overlaps in the top TOP; ``mass``:
    summed attention on its 3x3 cells; ``control``: summed share of the *other* objects' cells in
    the top TOP; ``answer``: closest/furthest, the answer object's cell in the top TOP;
    ``top5_coarse``: ``top5`` with the map summed onto a 7x7 grid (the same as ``top5`` on one)."""
    import random

    import torch

    from models import clevr
    from models.image import encode_grid

    kinds = tuple(kinds or SINGLE_OBJECT_KINDS)
    stats = {k: {"n": 0, "top5": 0, "top1": 0, "covers": 0, "mass": 0.0, "control": 0.0, "answer": 0, "outside": 0,
                 "top5_coarse": 0} for k in kinds}
    seeds = list(seeds)
    rng = random.Random(seeds[0] if seeds else 0)
    for s, seed in enumerate(seeds):
        scene = clevr.make_scene(seed)
        image = clevr.render(scene)
        crop = getattr(image_encoder, "crop_box", None)
        box = crop(*image.size) if callable(crop) else full_box(image)
        tokens = encode_grid(image_encoder, [image], core.cfg.image_grid).tokens  # (1, N, D): 49 x 320 or 196 x 432
        questions = [clevr.make_question(scene, kind, colour, rng.randrange(len(clevr.TEMPLATES[kind])) if paraphrase else 0)
                     for kind in kinds for colour in clevr.COLOURS]
        text, mask = embed_text([q.text for q in questions])  # (Q, T, 576), (Q, T)
        with torch.inference_mode():
            out = core({"image": (tokens.expand(len(questions), -1, -1), None)}, text, mask)
        for j, q in enumerate(questions):
            amap = attention_map(out.attention["image"][j], box)
            row = stats[q.kind]
            row["n"] += 1
            obj = scene.by_colour(q.colour)
            cell = cell_of(obj.x + 0.5, obj.y + 0.5, box, amap.shape)
            if cell is None:
                row["outside"] += 1
                continue
            top = top_cells(amap.grid, TOP)
            row["top5"] += cell in top
            coarse = pool_grid(amap.grid, COARSE)  # a finer grid summed onto 7x7 cells, to compare with a 7x7 core
            row["top5_coarse"] += cell_of(obj.x + 0.5, obj.y + 0.5, box, coarse.shape) in top_cells(coarse, TOP)
            row["top1"] += cell == top[0]
            row["covers"] += any(c in top for c in covered_cells(obj, box, amap.shape))
            r, c = cell
            row["mass"] += float(amap.grid[max(0, r - 1):r + 2, max(0, c - 1):c + 2].sum())
            others = [cell_of(o.x + 0.5, o.y + 0.5, box, amap.shape) for o in scene.objects if o is not obj]
            row["control"] += float(np.mean([o in top for o in others]))
            if q.kind in ("closest", "furthest"):
                dist = [((o.x - obj.x) ** 2 + (o.y - obj.y) ** 2, o) for o in scene.objects if o is not obj]
                target = (min if q.kind == "closest" else max)(dist, key=lambda t: t[0])[1]
                row["answer"] += cell_of(target.x + 0.5, target.y + 0.5, box, amap.shape) in top
        if progress and (s + 1) % 50 == 0:
            progress(f"{s + 1}/{len(seeds)} scenes")
    return stats
