"""Cached frozen-encoder features for training and evaluating the fusion core.

The image encoder and the generator stay frozen during training, so their outputs are
computed once and kept on disk (safetensors, never pickle):

* image tokens: ``<cache>/images/<kind>-<first seed>-<chunk>.safetensors`` holding
  ``tokens`` (n, 49, 320) float16 for ``n`` consecutive seeds; ``kind`` is ``scene``
  (Sort-of-CLEVR scenes) or ``other`` (images that are not scenes). The encoder's fine grid
  (n, 196, 432) is kept as ``<kind>-fine-...``. Chunks make an
  interrupted extraction resumable and let a small run reuse a big run's cache.
* text embeddings: :class:`TextTable` keeps every distinct string's generator input
  embeddings in one padded table (S, T, 576) float16 with its mask, saved as
  ``<cache>/text-<digest>.safetensors`` + ``.json`` (the strings).

The default cache folder is ``clevr/`` in the cache directory (:func:`models.cache.cache_root`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models import clevr
from models.cache import cache_root

CHUNK = 500
"""Images per cache file."""

TextEncoder = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]
"""texts -> (embeddings (B, T, D) float, mask (B, T) bool), e.g. ``Generator.embed_text``."""


def default_cache_dir() -> Path:
    return cache_root() / "clevr"


def make_image(kind: str, seed: int):
    """The PIL image behind a cache entry."""
    if kind == "scene":
        return clevr.render(clevr.make_scene(seed))
    if kind == "other":
        return clevr.other_image(seed)
    raise ValueError(f"unknown image kind {kind!r} (scene or other)")


def image_tokens(
    encoder,
    kind: str,
    first_seed: int,
    count: int,
    cache_dir: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 50,
    grid: str = "final",
) -> torch.Tensor:
    """Encoder tokens for seeds ``first_seed .. first_seed+count-1``: (count, N, D) float16.

    ``encoder`` is an :class:`models.image.ImageEncoder` (or anything with ``preprocess`` and
    ``features``); it is only called for chunks missing from the cache, so ``None`` works
    when everything is cached. ``grid`` is the encoder's token grid ("final" or "fine")."""
    folder = Path(cache_dir or default_cache_dir()) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for start in range(first_seed, first_seed + count, CHUNK):
        n = min(CHUNK, first_seed + count - start)
        # A chunk file is keyed by its first seed and holds CHUNK seeds (fewer only at the end of a request).
        name = kind if grid == "final" else f"{kind}-{grid}"
        path = folder / f"{name}-{start}-{n}.safetensors"
        full = folder / f"{name}-{start}-{CHUNK}.safetensors"
        if full.is_file():
            out.append(load_file(str(full))["tokens"][:n])
        elif path.is_file():
            out.append(load_file(str(path))["tokens"])
        else:
            if encoder is None:
                raise FileNotFoundError(f"{path}: not cached and no image encoder was given")
            parts = []
            for b in range(start, start + n, batch_size):
                seeds = range(b, min(b + batch_size, start + n))
                pixels = encoder.preprocess([make_image(kind, s) for s in seeds])  # (b, 3, 224, 224)
                tokens, _ = encoder.features(pixels) if grid == "final" else encoder.features(pixels, grid)  # (b, 49, 320) or (b, 196, 432)
                parts.append(tokens.to(torch.float16).cpu())
                if progress:
                    progress(len(seeds))
            tokens = torch.cat(parts)  # (n, N, D)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            save_file({"tokens": tokens.contiguous()}, str(tmp))
            tmp.replace(path)
            out.append(tokens)
            continue
        if progress:
            progress(n)
    return torch.cat(out)


class TextTable:
    """Distinct strings -> their embeddings, as one padded table.

    ``embeds`` (S, T, D) float16, ``mask`` (S, T) bool, ``index[text]`` -> row."""

    def __init__(self, texts: Sequence[str], embeds: torch.Tensor, mask: torch.Tensor):
        self.texts = list(texts)
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.embeds = embeds
        self.mask = mask

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        encode: TextEncoder | None,
        cache_dir: str | Path | None = None,
        batch_size: int = 256,
    ) -> "TextTable":
        texts = list(dict.fromkeys(texts))  # distinct, order kept
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        folder = Path(cache_dir or default_cache_dir())
        path = folder / f"text-{digest}.safetensors"
        if path.is_file():
            data = load_file(str(path))
            return cls(texts, data["embeds"], data["mask"].bool())
        if encode is None:
            raise FileNotFoundError(f"{path}: text embeddings not cached and no text encoder was given")
        rows, masks = [], []
        for b in range(0, len(texts), batch_size):
            e, m = encode(texts[b : b + batch_size])  # (b, T_b, D), (b, T_b)
            rows.append(e.to(torch.float16).cpu())
            masks.append(m.bool().cpu())
        width = max(r.shape[1] for r in rows)
        embeds = torch.cat([torch.nn.functional.pad(r, (0, 0, 0, width - r.shape[1])) for r in rows])  # (S, T, D)
        mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in masks])  # (S, T)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({"embeds": embeds.contiguous(), "mask": mask.to(torch.uint8).contiguous()}, str(tmp))
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps(texts, indent=0), encoding="utf-8")
        return cls(texts, embeds, mask)

    def lookup(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rows (B,) long -> (embeds (B, T, D) float32, mask (B, T) bool), trimmed to the longest."""
        mask = self.mask[rows]  # (B, T)
        # Strings are right-padded: keep columns up to the longest real one.
        width = int(mask.any(dim=0).nonzero().max()) + 1 if mask.any() else 1
        return self.embeds[rows, :width].float(), mask[:, :width]
