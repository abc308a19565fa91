"""MVAE: a multimodal VAE with a product-of-experts latent over a scene's image and its caption
(Wu & Goodman 2018, "Multimodal Generative Models for Scalable Weakly-Supervised Learning").

Two modalities of a Sort-of-CLEVR scene (:mod:`models.clevr`):

- the image, 75x75 RGB, as (3, 75, 75) floats in [0, 1];
- the caption, as the 18 binary facts it is made of (:func:`models.clevr.caption_attributes`:
  per colour 'circle' (else square), 'right' (else left), 'bottom' (else top); the same facts
  the fusion core's caption head predicts). :func:`models.clevr.caption_from_facts` turns them
  back into the sentence. The caption space is whole six-object scenes.

Each modality has an encoder (an "expert") giving a Gaussian over the latent z; the posterior
given any subset of modalities is the product of those experts with a N(0, I) prior expert
(:func:`product_of_experts`), so a missing modality is simply left out of the product. Two
decoders read z back: the caption decoder (18 fact logits) and the image decoder (75x75x3
Bernoulli means; object-centric, it takes each object's halves and shape from the facts decoded
from the same z and learns where inside the quadrant to draw it). Training (:mod:`models.train_mvae`) maximises the joint ELBO plus each
single-modality ELBO, so either modality alone, or both, infers the latent.

Uses: a caption from an image (:func:`caption_facts`), an image from a caption
(:func:`draw_facts`, several drawings of one caption differ: z is sampled), both from both.
Weights: ``config.json`` + float16 ``model.safetensors`` (:mod:`models.small_weights`); no pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models import clevr, small_weights

N_FACTS = 3 * len(clevr.COLOURS)  # 18
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "mvae"
SIDE = clevr.IMAGE_SIZE  # 75
QUADRANT_GAP = 3
"""Drawn objects keep their centre this many pixels off the centre lines (as MMGAN's do)."""
BLUR_SIGMA = 6.0
MIN_PALETTE_SHARE = 0.9
"""An image is captioned only when this share of its pixels is white or a scene colour
(:func:`models.blobs.palette_share`); rendered scenes have 1.0."""


@dataclass
class MVAEConfig:
    z_dim: int = 24
    """Width of the shared latent."""
    hidden: int = 128
    """Width of every MLP (both encoders, both decoders)."""
    edge: float = 3.0
    """Sharpness of a drawn object's edge (per pixel, in logits)."""

    @classmethod
    def from_dict(cls, raw: dict) -> "MVAEConfig":
        return small_weights.config_from_dict(cls, raw, "MVAE")


def _coords(n: int, side: int, device: torch.device) -> torch.Tensor:
    """(n, 2, side, side): x and y of each pixel in [-1, 1] (CoordConv, Liu et al. 2018)."""
    t = torch.linspace(-1, 1, side, device=device)
    return torch.stack(torch.meshgrid(t, t, indexing="xy")).expand(n, 2, side, side)


PALETTE = [clevr.RGB[c] for c in clevr.COLOURS] + [(255, 255, 255)]
"""The six scene colours and the white background: where the encoder's colour assignment starts."""
COLOUR_SHARPNESS = 20.0


class ImageEncoder(nn.Module):
    """Image expert. A 1x1 convolution assigns every pixel softly to the six scene colours or
    the background (a softmax; initialised to the nearest palette colour, trained with the rest).
    Each colour's assignment map is pooled into five numbers: its mass, the centre of mass (x, y)
    and the spread (x, y) around it: what an object's shape (a square fills more than a circle)
    and its place are made of. Batch-normalised, an MLP maps them to the mean and log-variance
    of q(z | image)."""

    def __init__(self, cfg: MVAEConfig):
        super().__init__()
        n = len(clevr.COLOURS)
        self.assign = nn.Conv2d(3, n + 1, 1)
        with torch.no_grad():  # logits = sharpness * (2 x.p - |p|^2): softmax = nearest palette colour
            pal = torch.tensor(PALETTE, dtype=torch.float32) / 255  # (7, 3)
            self.assign.weight.copy_(2 * COLOUR_SHARPNESS * pal[:, :, None, None])
            self.assign.bias.copy_(-COLOUR_SHARPNESS * (pal ** 2).sum(1))
        self.norm = nn.BatchNorm1d(5 * n)
        self.mlp = nn.Sequential(nn.Linear(5 * n, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, 2 * cfg.z_dim))
        self.register_buffer("grid", _coords(1, SIDE, torch.device("cpu")).flatten(2)[0].T.contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, 3, 75, 75) in [0, 1] -> mu, logvar: (B, z)
        n = len(clevr.COLOURS)
        a = torch.softmax(self.assign(x), dim=1)[:, :n].flatten(2)  # (B, 6, 5625): each colour's share of each pixel
        mass = a.sum(-1)  # (B, 6)
        w = a / (mass[..., None] + 1e-3)  # (B, 6, 5625)
        centre = w @ self.grid  # (B, 6, 2)
        spread = (w @ self.grid.pow(2) - centre.pow(2)).clamp_min(1e-6).sqrt()  # (B, 6, 2)
        feats = torch.cat([mass / 100, centre.flatten(1), spread.flatten(1)], dim=1)  # (B, 30)
        mu, logvar = self.mlp(self.norm(feats)).chunk(2, dim=-1)  # (B, z) each
        return mu, logvar


class ImageDecoder(nn.Module):
    """Object-centric (layered) image decoder, one slot per colour, as MMGAN's generator is, and
    hierarchical: it reads z and the caption facts decoded from the same z. Each object's half
    (left / right, top / bottom) and shape come from its facts (probabilities, so a fact in doubt
    draws the object between halves); an MLP reads z and the slot's colour and writes where inside
    that quadrant the centre is. Each object is drawn as a soft disc or square of the scenes' size
    in its slot's scene colour (:data:`models.clevr.RGB`, fixed: when it was learned, a second
    training stage drifted gray lighter, about 128 -> 180 a channel, and the palette detector then
    missed it) on a white canvas. Output: the 75x75x3 Bernoulli means."""

    def __init__(self, cfg: MVAEConfig):
        super().__init__()
        n = len(clevr.COLOURS)
        self.mlp = nn.Sequential(nn.Linear(cfg.z_dim + n, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, 2))
        self.register_buffer("rgb", torch.tensor(PALETTE[:n], dtype=torch.float32) / 255, persistent=False)  # (6, 3)
        self.edge = cfg.edge
        self.register_buffer("colour_ids", torch.eye(n), persistent=False)
        self.register_buffer("pixels", torch.arange(SIDE, dtype=torch.float32), persistent=False)

    def objects(self, z: torch.Tensor, fact_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # z: (B, z), fact_logits: (B, 18) -> centres (B, 6, 2) in pixels, squareness (B, 6), RGB (B, 6, 3) in [0, 1]
        B, n = z.shape[0], len(clevr.COLOURS)
        p = torch.sigmoid(fact_logits).view(B, n, 3)  # (B, 6, 3): circle, right, bottom
        inside = torch.sigmoid(self.mlp(torch.cat([z[:, None].expand(B, n, z.shape[1]), self.colour_ids.expand(B, n, n)], dim=-1)))  # (B, 6, 2)
        near, far = clevr.MARGIN, SIDE // 2 + QUADRANT_GAP + 1  # first centre of the left / right (top / bottom) half
        width = SIDE // 2 - QUADRANT_GAP - clevr.MARGIN  # range of centres inside a half
        xy = near + p[..., 1:3] * (far - near) + inside * width  # (B, 6, 2)
        return xy, 1 - p[..., 0], self.rgb.expand(B, n, 3)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved while the colours were learned hold them as "rgb" (logits); they are ignored
        state_dict.pop(prefix + "rgb", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, z: torch.Tensor, fact_logits: torch.Tensor) -> torch.Tensor:
        # z: (B, z), fact_logits: (B, 18) -> image (B, 3, 75, 75) in [0, 1]
        xy, square, rgb = self.objects(z, fact_logits)
        dx = (self.pixels - xy[..., 0:1]).abs()[:, :, None, :]  # (B, 6, 1, 75): column distance
        dy = (self.pixels - xy[..., 1:2]).abs()[:, :, :, None]  # (B, 6, 75, 1): row distance
        dist = square[..., None, None] * torch.maximum(dx, dy) + (1 - square[..., None, None]) * (dx ** 2 + dy ** 2 + 1e-6).sqrt()
        alpha = torch.sigmoid(self.edge * (clevr.HALF + 0.5 - dist))  # (B, 6, 75, 75)
        canvas = torch.ones(z.shape[0], 3, SIDE, SIDE, device=z.device)  # white
        for k in range(alpha.shape[1]):
            a = alpha[:, k, None]  # (B, 1, 75, 75)
            canvas = canvas * (1 - a) + rgb[:, k, :, None, None] * a
        return canvas  # (B, 3, 75, 75)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of (B, C, H, W) images (zero padding, kernel cut at 3 sigma),
    as two matrix products: K @ x @ K^T with K the (H, H) banded Gaussian."""
    r = int(3 * sigma)
    i = torch.arange(x.shape[-1], dtype=x.dtype, device=x.device)
    d = i[:, None] - i[None, :]  # (H, H)
    k = torch.exp(-d ** 2 / (2 * sigma ** 2)) * (d.abs() <= r)
    k = k / torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma ** 2)).sum()
    return k @ x @ k.T  # (B, C, H, W)


class CaptionEncoder(nn.Module):
    """Caption expert: the 18 facts (as -1 / +1) -> MLP -> mean and log-variance of q(z | caption)."""

    def __init__(self, cfg: MVAEConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FACTS, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, 2 * cfg.z_dim))

    def forward(self, facts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # facts: (B, 18) in {0, 1} -> mu, logvar: (B, z)
        mu, logvar = self.net(facts * 2 - 1).chunk(2, dim=-1)  # (B, z) each
        return mu, logvar


class CaptionDecoder(nn.Module):
    """z -> MLP -> 18 fact logits."""

    def __init__(self, cfg: MVAEConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.z_dim, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU(),
                                 nn.Linear(cfg.hidden, N_FACTS))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z: (B, z) -> fact logits (B, 18)
        return self.net(z)


def product_of_experts(mus: list[torch.Tensor], logvars: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian product of the N(0, I) prior expert and the given experts (each (B, z)):
    precisions add, the mean is the precision-weighted mean. No experts: the prior itself."""
    if not mus:
        raise ValueError("product_of_experts needs the shape of z: give at least one expert")
    prior_mu, prior_lv = torch.zeros_like(mus[0]), torch.zeros_like(logvars[0])
    mu = torch.stack([prior_mu, *mus])  # (E+1, B, z)
    precision = torch.exp(-torch.stack([prior_lv, *logvars]).clamp(-12, 12))  # (E+1, B, z)
    total = precision.sum(0)  # (B, z)
    return (mu * precision).sum(0) / total, -torch.log(total)  # (B, z), (B, z)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample: (B, z) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


@dataclass
class Terms:
    """One ELBO's parts, each averaged over the batch (nats per scene)."""

    image: torch.Tensor
    caption: torch.Tensor
    kl: torch.Tensor


class MVAE(nn.Module):
    def __init__(self, cfg: MVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.image_encoder = ImageEncoder(cfg)
        self.caption_encoder = CaptionEncoder(cfg)
        self.image_decoder = ImageDecoder(cfg)
        self.caption_decoder = CaptionDecoder(cfg)

    def infer(self, image: torch.Tensor | None = None, facts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # image: (B, 3, 75, 75) or None, facts: (B, 18) or None -> mu, logvar of the posterior (B, z)
        mus, lvs = [], []
        if image is not None:
            m, v = self.image_encoder(image)
            mus.append(m), lvs.append(v)
        if facts is not None:
            m, v = self.caption_encoder(facts)
            mus.append(m), lvs.append(v)
        if not mus:
            raise ValueError("the MVAE needs an image, a caption or both to infer the latent")
        return product_of_experts(mus, lvs)

    def decode_image(self, z: torch.Tensor) -> torch.Tensor:
        # z: (B, z) -> image (B, 3, 75, 75) in [0, 1], its objects' halves and shapes from the facts decoded from z
        return self.image_decoder(z, self.caption_decoder(z).detach())

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # z: (B, z) -> image (B, 3, 75, 75) in [0, 1], fact logits (B, 18)
        return self.decode_image(z), self.caption_decoder(z)

    def elbo_terms(self, image: torch.Tensor, facts: torch.Tensor, experts: tuple, *,
                   use_image: bool, use_caption: bool, cross: bool = False, blur_weight: float = 0.0) -> Terms:
        """Reconstruction and KL terms of one ELBO whose posterior is the product of the prior and
        the experts of the modalities used. ``experts``: (image mu, logvar, caption mu, logvar),
        each (B, z). The modalities in the posterior are reconstructed (and, with ``cross``, the
        missing one too). ``blur_weight`` adds the squared error of the two images blurred
        (sigma :data:`BLUR_SIGMA`): a smoother pull on objects drawn away from where they belong."""
        im_mu, im_lv, cap_mu, cap_lv = experts
        mus = ([im_mu] if use_image else []) + ([cap_mu] if use_caption else [])
        lvs = ([im_lv] if use_image else []) + ([cap_lv] if use_caption else [])
        mu, logvar = product_of_experts(mus, lvs)  # (B, z)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # (B, z)
        zero = mu.new_zeros(())
        rec_image = rec_caption = zero
        if use_image or cross:
            drawn = self.decode_image(z).clamp(1e-4, 1 - 1e-4)  # (B, 3, 75, 75)
            rec_image = F.binary_cross_entropy(drawn, image, reduction="sum") / len(z)
            if blur_weight:
                diff = blur(drawn, BLUR_SIGMA) - blur(image, BLUR_SIGMA)  # (B, 3, 75, 75)
                rec_image = rec_image + blur_weight * diff.pow(2).sum() / len(z)
        if use_caption or cross:
            rec_caption = F.binary_cross_entropy_with_logits(self.caption_decoder(z), facts, reduction="sum") / len(z)
        return Terms(rec_image, rec_caption, kl_to_prior(mu, logvar).mean())


# ------------------------------------------------------------------------------ data


def scene_batch(scenes: list[clevr.Scene]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rendered images (B, 3, 75, 75) in [0, 1] and caption facts (B, 18) of scenes."""
    images = np.stack([np.asarray(clevr.render(s), dtype=np.uint8) for s in scenes])  # (B, 75, 75, 3)
    facts = torch.tensor([clevr.caption_targets(s) for s in scenes])  # (B, 18)
    return images_to_tensor(images), facts


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, 75, 75, 3) uint8 -> (B, 3, 75, 75) float32 in [0, 1]."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 255.0


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """(B, 3, 75, 75) in [0, 1] -> (B, 75, 75, 3) uint8."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def layout_facts(objects) -> list[float]:
    """The 18 caption facts of a whole-scene layout: six objects (colour, shape, quadrant), one
    of each colour (e.g. :class:`models.draw_text.Placed`). ValueError naming what is missing."""
    by_colour = {o.colour: o for o in objects}
    missing = [c for c in clevr.COLOURS if c not in by_colour]
    if missing:
        raise ValueError(f"the MVAE draws whole scenes of six objects, one of each colour; "
                         f"the description leaves out {', '.join(missing)}")
    out = []
    for c in clevr.COLOURS:
        o = by_colour[c]
        v, h = o.quadrant.split()
        out += [float(o.shape == "circle"), float(h == "right"), float(v == "bottom")]
    return out


def fact_objects(facts) -> list[tuple[str, str, str]]:
    """18 facts (0/1 or probabilities) -> per colour (colour, shape, quadrant)."""
    out = []
    for i, c in enumerate(clevr.COLOURS):
        p_circle, p_right, p_bottom = (float(v) for v in facts[3 * i:3 * i + 3])
        out.append((c, "circle" if p_circle >= 0.5 else "square",
                    f"{'bottom' if p_bottom >= 0.5 else 'top'} {'right' if p_right >= 0.5 else 'left'}"))
    return out


# ------------------------------------------------------------------------------ use


@torch.no_grad()
def caption_facts(model: MVAE, images: np.ndarray | None = None, facts: torch.Tensor | None = None) -> torch.Tensor:
    """Fact probabilities (B, 18) decoded from the posterior mean given the images
    ((B, 75, 75, 3) uint8), the facts ((B, 18)) or both."""
    x = images_to_tensor(images) if images is not None else None
    mu, _ = model.infer(x, facts)  # (B, z)
    return torch.sigmoid(model.caption_decoder(mu))  # (B, 18)


@torch.no_grad()
def draw_facts(model: MVAE, facts: torch.Tensor, seed: int = 0, *, sample: bool = True) -> np.ndarray:
    """Images (B, 75, 75, 3) uint8 from caption facts (B, 18): z drawn from q(z | caption)
    (the same seed gives the same drawings), or its mean with ``sample=False``."""
    mu, logvar = model.infer(None, facts)  # (B, z)
    if sample:
        noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed))
        mu = mu + noise * torch.exp(0.5 * logvar)
    return tensor_to_images(model.decode_image(mu))


@torch.no_grad()
def reconstruct(model: MVAE, images: np.ndarray | None = None, facts: torch.Tensor | None = None) -> np.ndarray:
    """The image decoded from the posterior mean given images, facts or both: (B, 75, 75, 3) uint8."""
    x = images_to_tensor(images) if images is not None else None
    mu, _ = model.infer(x, facts)
    return tensor_to_images(model.decode_image(mu))


def save(folder: str | Path, model: MVAE, meta: dict | None = None) -> Path:
    """``config.json`` + float16 ``model.safetensors`` (no pickle)."""
    return small_weights.save(folder, model, meta)


def load(folder: str | Path = DEFAULT_WEIGHTS) -> MVAE:
    """Rebuild the MVAE from its ``config.json`` and load its weights (eval mode, float32)."""
    return small_weights.load(folder, lambda raw: MVAE(MVAEConfig.from_dict(raw)), "MVAE")
