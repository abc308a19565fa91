"""A detector for the Sort-of-CLEVR palette: which coloured objects a 75x75 drawing holds,
each with its shape (square or circle) and centre. Used to check drawings against their
descriptions (:func:`check`), with no learned parts, so it cannot share a generator's blind spots.

Each pixel takes the nearest palette colour (or the white background) when it is within
:data:`MAX_DISTANCE` of it; the pixels of a colour form connected blobs (8-connectivity), and
blobs under :data:`MIN_AREA` pixels are noise. A blob's shape comes from how much of its
bounding box it fills: a filled square fills all of it, a filled circle about pi/4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models import clevr

MAX_DISTANCE = 80.0
"""Largest RGB distance from a palette colour for a pixel to count as that colour."""
MIN_AREA = 25
"""Smallest blob, in pixels (a drawn object covers about 95-121)."""
SQUARE_FILL = 0.9
"""Blobs that fill at least this share of their bounding box are squares; less, circles."""

_PALETTE = np.array([clevr.RGB[c] for c in clevr.COLOURS] + [(255, 255, 255)], dtype=np.float32)  # (7, 3)


@dataclass(frozen=True)
class Blob:
    colour: str
    shape: str
    x: float
    """Centre column (pixels)."""
    y: float
    """Centre row (pixels)."""
    area: int
    fill: float

    @property
    def quadrant(self) -> str:
        mid = clevr.IMAGE_SIZE / 2
        return f"{'top' if self.y < mid else 'bottom'} {'left' if self.x < mid else 'right'}"


def palette_share(image: np.ndarray) -> float:
    """Share of the pixels of an (H, W, 3) uint8 image within :data:`MAX_DISTANCE` of the white
    background or a palette colour: 1.0 for rendered scenes, low for photos and other pictures."""
    px = np.asarray(image, dtype=np.float32)[..., :3]  # (H, W, 3)
    return float((np.linalg.norm(px[:, :, None, :] - _PALETTE[None, None], axis=-1).min(-1) <= MAX_DISTANCE).mean())


def detect(image: np.ndarray) -> list[Blob]:
    """Objects in a (75, 75, 3) uint8 image, largest first."""
    px = np.asarray(image, dtype=np.float32)[..., :3]  # (H, W, 3)
    dist = np.linalg.norm(px[:, :, None, :] - _PALETTE[None, None], axis=-1)  # (H, W, 7)
    nearest = dist.argmin(-1)  # (H, W)
    near_enough = dist.min(-1) <= MAX_DISTANCE
    blobs = []
    for i, colour in enumerate(clevr.COLOURS):
        mask = (nearest == i) & near_enough
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        for j, sl in enumerate(ndimage.find_objects(labels), start=1):
            comp = labels[sl] == j
            area = int(comp.sum())
            if area < MIN_AREA:
                continue
            ys, xs = np.nonzero(comp)
            fill = area / float(comp.shape[0] * comp.shape[1])
            blobs.append(Blob(colour, "square" if fill >= SQUARE_FILL else "circle",
                              float(xs.mean() + sl[1].start), float(ys.mean() + sl[0].start), area, fill))
    return sorted(blobs, key=lambda b: -b.area)


@dataclass
class Check:
    """How one drawing matches its layout, object by object."""

    present: list[bool]
    shape: list[bool]
    """Right shape (False when the object is missing)."""
    quadrant: list[bool]
    """Right quadrant (False when the object is missing)."""
    extra: int
    """Blobs beyond the named objects (other colours, or a second blob of a named colour)."""

    @property
    def correct(self) -> list[bool]:
        return [p and s and q for p, s, q in zip(self.present, self.shape, self.quadrant)]


def check(image: np.ndarray, objects) -> tuple[Check, list[Blob]]:
    """Compare a drawing with the objects it should hold (anything with .colour, .shape,
    .quadrant, e.g. :class:`models.mmgan.Placed`). The largest blob of a colour is its object."""
    blobs = detect(image)
    first: dict[str, Blob] = {}
    for b in blobs:
        first.setdefault(b.colour, b)
    res = Check([], [], [], len(blobs) - sum(1 for o in objects if o.colour in first))
    for o in objects:
        b = first.get(o.colour)
        res.present.append(b is not None)
        res.shape.append(b is not None and b.shape == o.shape)
        res.quadrant.append(b is not None and b.quadrant == o.quadrant)
    return res, blobs
