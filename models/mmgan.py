"""MMGAN: a conditional GAN that draws a 75x75 Sort-of-CLEVR scene from a layout parsed from words.

The words are parsed by :mod:`models.draw_text` into a :class:`Layout`: for each of the six
colours, absent or (shape, quadrant). The layout is the GAN's condition, a 42-number vector
(:func:`encode_layout`): per colour [present, square, circle, top-left, top-right,
bottom-left, bottom-right]. The object's pixels, its colour and where it sits inside its
quadrant, clear of its neighbours, are the generator's to draw (from the noise z).

- :class:`Generator` (condition + noise -> image): object-centric, in the manner of layered
  GANs: per colour slot, an MLP writes a sprite mask, its colour and its position inside the
  named quadrant, and the named objects are pasted onto a white canvas. 42k parameters.
- :class:`SpriteCritic` (training only, not shipped): is a generated object patch the real
  object of its colour and shape? Spectral norm, hinge loss, a projection of the condition
  (Miyato & Koyama 2018) and a naming head (AC-GAN, Odena et al. 2017).
- :class:`LayoutCritic` (training only): are the objects' places inside their quadrants like
  the places real scenes give them? :func:`overlap_penalty` keeps named objects apart.

Real objects and places come from the project's own Sort-of-CLEVR renderer (:mod:`models.clevr`;
:func:`real_sprites`, :func:`sample_layout` + :func:`place`; :func:`render_layout` renders a
whole training scene). Layouts in the held-out bucket (:func:`held_out`) are never used for
training.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import clevr, small_weights
from models.draw_text import MAX_PER_QUADRANT, QUADRANTS, Layout, Placed

COND_PER_COLOUR = 1 + len(clevr.SHAPES) + len(QUADRANTS)  # 7
COND_DIM = len(clevr.COLOURS) * COND_PER_COLOUR  # 42
CENTRE_GAP = 3
"""Drawn objects keep their centre this many pixels off the centre lines, so quadrants are unambiguous."""
HELD_OUT_BUCKETS = 10
"""One layout in this many (by a hash of its objects) is held out: never drawn for training."""

DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "mmgan"


# ------------------------------------------------------------------------------ layouts


def held_out(layout: Layout) -> bool:
    """True for the evaluation bucket: layouts the GAN never sees in training."""
    return zlib.crc32(layout.key().encode()) % HELD_OUT_BUCKETS == 0


def encode_layout(layout: Layout) -> torch.Tensor:
    """The condition vector (42,) float32: per colour [present, square, circle, TL, TR, BL, BR]."""
    c = torch.zeros(len(clevr.COLOURS), COND_PER_COLOUR)
    for o in layout.objects:
        i = clevr.COLOURS.index(o.colour)
        c[i, 0] = 1
        c[i, 1 + clevr.SHAPES.index(o.shape)] = 1
        c[i, 1 + len(clevr.SHAPES) + QUADRANTS.index(o.quadrant)] = 1
    return c.flatten()


def sample_layout(rng: random.Random, *, split: str = "train", counts: tuple[float, ...] = (0.2, 0.25, 0.2, 0.15, 0.1, 0.1)) -> Layout:
    """A random layout of 1-6 objects (weights ``counts``) from the train or the held-out split."""
    while True:
        k = rng.choices(range(1, 7), weights=counts)[0]
        colours = rng.sample(clevr.COLOURS, k)
        objs = tuple(Placed(c, rng.choice(clevr.SHAPES), rng.choice(QUADRANTS)) for c in colours)
        if max(sum(o.quadrant == q for o in objs) for q in QUADRANTS) > MAX_PER_QUADRANT:
            continue
        layout = Layout(objs)
        if held_out(layout) == (split == "eval"):
            return layout


def quadrant_box(quadrant: str) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) inclusive range of object centres allowed in a quadrant."""
    mid = clevr.IMAGE_SIZE // 2  # 37
    lo = (clevr.MARGIN, mid - CENTRE_GAP)
    hi = (mid + CENTRE_GAP + 1, clevr.IMAGE_SIZE - 1 - clevr.MARGIN)
    xs = lo if quadrant.endswith("left") else hi
    ys = lo if quadrant.startswith("top") else hi
    return xs[0], xs[1], ys[0], ys[1]


def place(layout: Layout, rng: random.Random) -> clevr.Scene:
    """Pixel positions for a layout: each object inside its quadrant, no two overlapping."""
    for _ in range(200):
        objects: list[clevr.SceneObject] = []
        for o in layout.objects:
            x0, x1, y0, y1 = quadrant_box(o.quadrant)
            for _ in range(100):
                x, y = rng.randint(x0, x1), rng.randint(y0, y1)
                if all(max(abs(x - p.x), abs(y - p.y)) > 2 * clevr.HALF + 2 for p in objects):
                    objects.append(clevr.SceneObject(o.colour, o.shape, x, y))
                    break
            else:
                break
        if len(objects) == len(layout.objects):
            return clevr.Scene(-1, tuple(objects))
    raise ValueError(f"cannot fit {layout.describe()} without overlaps")


def render_layout(layout: Layout, rng: random.Random) -> np.ndarray:
    """A rendered training image for a layout: (3, 75, 75) float32 in [-1, 1]."""
    arr = np.asarray(clevr.render(place(layout, rng)), dtype=np.float32)  # (75, 75, 3)
    return arr.transpose(2, 0, 1) / 127.5 - 1.0


def sprite_targets(cond: torch.Tensor) -> torch.Tensor:
    """Per object slot, which of the 12 sprites (colour x shape) it is: (B, 6, 12) one-hot (zeros when absent)."""
    c = cond.view(-1, len(clevr.COLOURS), COND_PER_COLOUR)  # (B, 6, 7)
    eye = torch.eye(len(clevr.COLOURS), device=cond.device)  # (6, 6)
    return (eye[None, :, :, None] * c[..., None, 1:3]).flatten(2)  # (B, 6, 12)


def real_sprites(size: int) -> torch.Tensor:
    """The 12 real objects (colour-major, square then circle) as ``size`` x ``size`` patches
    centred on the object, cut from rendered scenes: (12, 3, size, size) in [-1, 1]."""
    half = size // 2
    out = []
    for colour in clevr.COLOURS:
        for shape in clevr.SHAPES:
            im = np.asarray(clevr.render(clevr.Scene(-1, (clevr.SceneObject(colour, shape, 37, 37),))), dtype=np.float32)
            out.append(im[37 - half:37 + half + 1, 37 - half:37 + half + 1].transpose(2, 0, 1) / 127.5 - 1)
    return torch.from_numpy(np.stack(out))


def real_positions(layouts: list[Layout], scenes: list[clevr.Scene]) -> torch.Tensor:
    """Where each placed object's centre sits inside its quadrant, as a fraction of the
    quadrant's range: (B, 6, 2) in [0, 1] (zeros for absent colours)."""
    t = torch.zeros(len(layouts), len(clevr.COLOURS), 2)
    for b, (lay, sc) in enumerate(zip(layouts, scenes)):
        for want, o in zip(lay.objects, sc.objects):
            x0, x1, y0, y1 = quadrant_box(want.quadrant)
            t[b, clevr.COLOURS.index(o.colour)] = torch.tensor([(o.x - x0) / (x1 - x0), (o.y - y0) / (y1 - y0)])
    return t


# ------------------------------------------------------------------------------ networks


@dataclass
class GANConfig:
    z_dim: int = 8
    """Noise per object slot (the generator takes 6 * z_dim numbers)."""
    hidden: int = 128
    """Width of the generator's per-object MLP."""
    sprite: int = 13
    """Side of an object's sprite, in pixels (objects are 11 px across)."""
    d_channels: int = 32
    """Channels of the sprite critic's first convolution (its MLP critic of positions uses 4x)."""

    @classmethod
    def from_dict(cls, raw: dict) -> "GANConfig":
        return small_weights.config_from_dict(cls, raw, "MMGAN")


def _quadrant_bounds() -> torch.Tensor:
    """(4, 4): per quadrant the (x0, x1, y0, y1) range of object centres, in pixels."""
    return torch.tensor([quadrant_box(q) for q in QUADRANTS], dtype=torch.float32)


@dataclass
class Objects:
    """What the generator decides per colour slot, before the objects are pasted."""

    sprite: torch.Tensor
    """(B, 6, 3, S, S) in [-1, 1]: the object's patch on white (colour x alpha mask)."""
    alpha: torch.Tensor
    """(B, 6, 1, S, S) in [0, 1]."""
    rgb: torch.Tensor
    """(B, 6, 3) in [0, 1]."""
    t: torch.Tensor
    """(B, 6, 2) in [0, 1]: the centre inside the quadrant's range."""
    xy: torch.Tensor
    """(B, 6, 2) pixels, rounded to whole pixels (straight-through)."""


class Generator(nn.Module):
    """Object-centric (layered) generator: one slot per colour. For each slot an MLP reads
    [colour, shape, quadrant, the slot's noise] and writes a sprite (an alpha mask of
    ``sprite`` x ``sprite`` pixels), its RGB colour, and where its centre goes inside the named
    quadrant; the named objects are pasted onto a white canvas (centres on whole pixels, as
    the real scenes are drawn). The shape's pixels, the colour and the place inside the
    quadrant are learned adversarially; the quadrant bounds the position by construction."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        self.cfg = cfg
        n = len(clevr.COLOURS)
        h = cfg.hidden
        self.mlp = nn.Sequential(nn.Linear(n + COND_PER_COLOUR - 1 + cfg.z_dim, h), nn.ReLU(),
                                 nn.Linear(h, h), nn.ReLU())
        self.to_mask = nn.Linear(h, cfg.sprite * cfg.sprite)
        self.to_rgb = nn.Linear(h, 3)
        self.to_pos = nn.Linear(h, 2)
        self.register_buffer("colour_ids", torch.eye(n), persistent=False)
        self.register_buffer("bounds", _quadrant_bounds(), persistent=False)

    @property
    def noise_dim(self) -> int:
        return len(clevr.COLOURS) * self.cfg.z_dim

    def objects(self, z: torch.Tensor, cond: torch.Tensor) -> Objects:
        # z: (B, 6 * z_dim), cond: (B, 42) -> per-slot sprites, colours and positions
        B, n, S = cond.shape[0], len(clevr.COLOURS), self.cfg.sprite
        c = cond.view(B, n, COND_PER_COLOUR)  # (B, 6, 7)
        inp = torch.cat([self.colour_ids.expand(B, n, n), c[..., 1:], z.view(B, n, -1)], dim=-1)  # (B, 6, 12+z)
        h = self.mlp(inp)  # (B, 6, hidden)
        alpha = torch.sigmoid(self.to_mask(h)).view(B, n, 1, S, S)  # (B, 6, 1, S, S)
        rgb = torch.sigmoid(self.to_rgb(h))  # (B, 6, 3)
        sprite = (1 - alpha + alpha * rgb[..., None, None]) * 2 - 1  # (B, 6, 3, S, S) on white
        box = c[..., 3:] @ self.bounds  # (B, 6, 4): x0, x1, y0, y1 of the quadrant
        t = torch.sigmoid(self.to_pos(h))  # (B, 6, 2)
        xy = torch.stack([box[..., 0] + t[..., 0] * (box[..., 1] - box[..., 0]),
                          box[..., 2] + t[..., 1] * (box[..., 3] - box[..., 2])], dim=-1)  # (B, 6, 2)
        xy = xy + (xy.round() - xy).detach()  # whole pixels forward, smooth gradient backward
        return Objects(sprite, alpha, rgb, t, xy)

    def compose(self, obj: Objects, cond: torch.Tensor) -> torch.Tensor:
        # obj: per-slot sprites and positions, cond: (B, 42) -> image (B, 3, 75, 75) in [-1, 1]
        B, n, S, W = cond.shape[0], len(clevr.COLOURS), self.cfg.sprite, clevr.IMAGE_SIZE
        present = cond.view(B, n, COND_PER_COLOUR)[..., 0]  # (B, 6)
        theta = torch.zeros(B * n, 2, 3, device=cond.device)  # canvas -> sprite coordinates
        theta[:, 0, 0] = theta[:, 1, 1] = W / S
        theta[:, :, 2] = ((W - 1) - 2 * obj.xy.reshape(B * n, 2)) / S
        grid = F.affine_grid(theta, [B * n, 1, W, W], align_corners=False)  # (B*6, 75, 75, 2)
        alpha = F.grid_sample(obj.alpha.reshape(B * n, 1, S, S), grid, align_corners=False).view(B, n, 1, W, W)
        alpha = alpha * present[..., None, None, None]  # (B, 6, 1, 75, 75); absent objects are not drawn
        canvas = torch.ones(B, 3, W, W, device=cond.device)  # white, in [0, 1]
        for k in range(n):
            canvas = canvas * (1 - alpha[:, k]) + obj.rgb[:, k, :, None, None] * alpha[:, k]
        return canvas * 2 - 1  # (B, 3, 75, 75)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # z: (B, 6 * z_dim), cond: (B, 42) -> image (B, 3, 75, 75) in [-1, 1]
        return self.compose(self.objects(z, cond), cond)


class SpriteCritic(nn.Module):
    """Training only: is this S x S patch a real object of the given colour and shape?
    Hinge score with a projection of the condition (12 sprites, Miyato & Koyama 2018), and an
    auxiliary head that names the sprite (AC-GAN, Odena et al. 2017; trained on real patches,
    the generator is trained to be named as asked)."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        ch = cfg.d_channels
        sn = nn.utils.parametrizations.spectral_norm
        self.conv1 = sn(nn.Conv2d(3, ch, 3, padding=1))
        self.conv2 = sn(nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1))
        side = (cfg.sprite + 1) // 2
        self.fc = sn(nn.Linear(ch * 2 * side * side, ch * 2))
        self.score = sn(nn.Linear(ch * 2, 1))
        self.embed = sn(nn.Linear(2 * len(clevr.COLOURS), ch * 2, bias=False))
        self.classify = nn.Linear(ch * 2 * side * side, 2 * len(clevr.COLOURS))

    def forward(self, x: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (N, 3, S, S), which: (N, 12) one-hot sprite -> score (N,), sprite logits (N, 12)
        h = F.leaky_relu(self.conv1(x), 0.2)  # (N, ch, S, S)
        h = F.leaky_relu(self.conv2(h), 0.2)  # (N, 2ch, S/2, S/2)
        f = F.leaky_relu(self.fc(h.flatten(1)), 0.2)  # (N, 2ch)
        return self.score(f).squeeze(1) + (self.embed(which) * f).sum(1), self.classify(h.flatten(1))


class LayoutCritic(nn.Module):
    """Training only: are these positions (every named object's place inside its quadrant)
    like those of real scenes, given the layout? An MLP over all slots at once, so it can
    see crowding and overlaps."""

    def __init__(self, cfg: GANConfig):
        super().__init__()
        h = cfg.d_channels * 4
        sn = nn.utils.parametrizations.spectral_norm
        n = len(clevr.COLOURS)
        self.net = nn.Sequential(sn(nn.Linear(COND_DIM + 2 * n, h)), nn.LeakyReLU(0.2),
                                 sn(nn.Linear(h, h)), nn.LeakyReLU(0.2), sn(nn.Linear(h, 1)))

    def forward(self, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # t: (B, 6, 2) positions in [0, 1], cond: (B, 42) -> score (B,)
        present = cond.view(-1, len(clevr.COLOURS), COND_PER_COLOUR)[..., :1]  # (B, 6, 1)
        return self.net(torch.cat([cond, (t * present).flatten(1)], dim=1)).squeeze(1)


def overlap_penalty(xy: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """How far named objects intrude on each other (pixels; 0 when every pair of centres is
    more than 2 * HALF + 2 apart, the rule real scenes are drawn by). xy: (B, 6, 2)."""
    present = cond.view(-1, len(clevr.COLOURS), COND_PER_COLOUR)[..., 0]  # (B, 6)
    d = (xy[:, :, None] - xy[:, None]).abs().amax(-1)  # (B, 6, 6) Chebyshev distance
    both = present[:, :, None] * present[:, None] * (1 - torch.eye(len(clevr.COLOURS), device=xy.device))
    return (F.relu(2 * clevr.HALF + 3 - d) * both).sum((1, 2)).mean() / 2


# ------------------------------------------------------------------------------ weights


def save_generator(folder: str | Path, gen: Generator, extra: dict | None = None) -> Path:
    """``config.json`` + float16 ``model.safetensors`` (no pickle)."""
    return small_weights.save(folder, gen, extra)


def load_generator(folder: str | Path = DEFAULT_WEIGHTS) -> Generator:
    """Rebuild the generator from its ``config.json`` and load its weights (eval mode, float32)."""
    return small_weights.load(folder, lambda raw: Generator(GANConfig.from_dict(raw)), "MMGAN")


@torch.no_grad()
def draw(gen: Generator, layouts: list[Layout], seed: int = 0) -> np.ndarray:
    """Draw each layout once: (N, 75, 75, 3) uint8. The same seed gives the same drawings."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(layouts), gen.noise_dim, generator=g)  # (N, 6 * z_dim)
    cond = torch.stack([encode_layout(lay) for lay in layouts])  # (N, 42)
    x = gen(z, cond)  # (N, 3, 75, 75)
    return ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
