"""Fakes for the training tests: small deterministic stand-ins for the frozen encoders.

* :class:`FakeImageEncoder` average-pools the picture to a 7x7 grid of RGB values and maps
  each cell to 320 numbers with a fixed random matrix (the "fine" grid: 14x14 cells of 432), so the tokens carry the scene (what
  the real EfficientNet features do) at a tiny fraction of the cost.
* :func:`fake_text_encoder` gives each lower-cased word a fixed random 576-d vector (seeded
  by a checksum of the word), so different questions embed differently and identically on
  every run.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F


class FakeImageEncoder:
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.proj = torch.randn(3, 320, generator=g)
        self.proj_fine = torch.randn(3, 432, generator=g)
        self.calls = 0

    def preprocess(self, images) -> torch.Tensor:  # -> (B, 3, 75, 75)
        arrays = [np.asarray(im.convert("RGB").resize((75, 75)), dtype=np.float32) / 255.0 for im in images]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)

    def features(self, pixels: torch.Tensor, grid: str = "final"):  # (B, 3, H, W) -> ((B, 49, 320), None)
        """On the "fine" grid: 14x14 cells of 432 numbers -> ((B, 196, 432), None)."""
        self.calls += 1
        side, proj = (7, self.proj) if grid == "final" else (14, self.proj_fine)
        cells = F.adaptive_avg_pool2d(pixels, side)  # (B, 3, side, side)
        tokens = cells.flatten(2).transpose(1, 2) @ proj  # (B, side*side, 320 or 432)
        return tokens, None


def fake_text_encoder(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """texts -> ((B, T, 576), (B, T) bool), one fixed random vector per word."""
    words = [t.lower().replace("?", " ").replace(".", " ").replace(",", " ").split() or [""] for t in texts]
    width = max(len(w) for w in words)
    out = torch.zeros(len(texts), width, 576)
    mask = torch.zeros(len(texts), width, dtype=torch.bool)
    for i, ws in enumerate(words):
        for j, w in enumerate(ws):
            rng = np.random.default_rng(zlib.crc32(w.encode()))
            out[i, j] = torch.from_numpy(rng.standard_normal(576).astype(np.float32)) * 0.05
            mask[i, j] = True
    return out, mask


@pytest.fixture
def fake_image_encoder() -> FakeImageEncoder:
    return FakeImageEncoder()
