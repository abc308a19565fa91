"""Object slots: where each object is, what shape it has, and the six Sort-of-CLEVR questions
answered from that by explicit geometry (``FusionConfig.object_slots``).

The fusion core's cross-attention layers learned to say where one named object is (left or
right: 99-100%) but compare distances between objects coarsely: "which object is furthest
from the green one?" stayed at 82-85% through eight training runs, while a small readout of
the same frozen 7x7 image tokens places every object within 0.7 px on average (75-px scenes).
So relations are not learned by attention here; they are computed, as neuro-symbolic VQA does:

1. one learned slot per object (Sort-of-CLEVR: one per colour) attends over the image tokens
   and reads off its object's centre (x, y, in the token grid's frame: 0..1 across the
   encoder's crop) and its shape;
2. from the core's pooled output (which has read the question) a pointer picks the slot the
   question names and a classifier the question's type;
3. each type is a small differentiable program over the slots: the named slot's shape, its x
   or y against the middle, the shape of the slot at the smallest or largest distance from it
   (a softmax over distances with a learned sharpness), or how many slots share its shape (the
   distribution of that count). The types' answers are mixed by the type probabilities.

The result replaces the answer head's distribution over the answer words for the types in
``FusionConfig.slot_kinds``; how much goes to the answer words at all (rather than ``none`` or
``describe``) stays the head's call. Trained in its own stage with the rest of the core frozen
(:mod:`models.train`, ``slots_steps``), so the core's soft tokens are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from models import clevr

if TYPE_CHECKING:
    from models.fusion import FusionConfig

KINDS = clevr.QUESTION_TYPES
"""The question types a slot program exists for, in the type classifier's order."""


@dataclass
class SlotOutput:
    positions: torch.Tensor
    """(B, S, 2): each slot's object centre (x, y) in the token grid's frame, 0..1."""
    shape_logits: torch.Tensor
    """(B, S, len(clevr.SHAPES))."""
    pointer_logits: torch.Tensor
    """(B, S): which slot the question names."""
    kind_logits: torch.Tensor
    """(B, len(KINDS)): which type of question it is."""
    answer_probs: torch.Tensor
    """(B, A) over the core's answer words: the slot programs' answer for the types in
    ``slot_kinds``, mixed by the type probabilities (zero on words no program says)."""
    kind_probs: torch.Tensor
    """(B, len(KINDS)) softmax of ``kind_logits``."""


class SlotReasoner(nn.Module):
    """Image tokens (B, N, D) and the core's pooled question-and-image vector (B, d) -> :class:`SlotOutput`."""

    def __init__(self, cfg: FusionConfig, width: int = 128, hidden: int = 256):
        super().__init__()
        n, dim = cfg.max_tokens["image"], cfg.modality_dims["image"]
        self.side = round(n ** 0.5)
        s = cfg.object_slots
        self.norm = nn.LayerNorm(dim)
        self.key = nn.Linear(dim, width)
        self.value = nn.Linear(dim, width)
        self.pos = nn.Parameter(torch.randn(n, width) * 0.02)
        self.slots = nn.Parameter(torch.randn(s, width) * 0.1)
        self.where = nn.Sequential(nn.Linear(width + 2, hidden), nn.GELU(), nn.Linear(hidden, 2))
        self.what = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, len(clevr.SHAPES)))
        self.pointer = nn.Linear(cfg.d_model, s)
        self.kind = nn.Linear(cfg.d_model, len(KINDS))
        self.log_sharpness = nn.Parameter(torch.log(torch.tensor([0.01, 0.01])))  # distances, middle line
        cells = torch.arange(self.side, dtype=torch.float32)
        y, x = torch.meshgrid(cells, cells, indexing="ij")
        self.register_buffer("centres", (torch.stack([x, y], -1).reshape(-1, 2) + 0.5) / self.side, persistent=False)  # (N, 2)
        words = list(cfg.answers)
        self.targets = {  # type -> the answer words its program's outcomes are, in order
            "shape": clevr.SHAPES, "horizontal": ("left", "right"), "vertical": ("top", "bottom"),
            "closest": clevr.SHAPES, "furthest": clevr.SHAPES, "count": clevr.NUMBERS,
        }
        self.index = {k: [words.index(w) for w in ws] for k, ws in self.targets.items()}
        self.used = [KINDS.index(k) for k in cfg.slot_kinds]
        self.n_answers = len(words)

    def read(self, image: torch.Tensor, pad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """image (B, N, D), pad (B, N) True = padding -> positions (B, S, 2), shape logits (B, S, C)."""
        if image.shape[1] != self.pos.shape[0]:
            raise ValueError(f"the object slots read a {self.side}x{self.side} grid of image tokens, not {image.shape[1]} tokens")
        h = self.norm(image)
        k, v = self.key(h) + self.pos, self.value(h) + self.pos  # (B, N, w)
        scores = torch.einsum("sw,bnw->bsn", self.slots, k) / k.shape[-1] ** 0.5  # (B, S, N)
        if pad is not None:
            scores = scores.masked_fill(pad[:, None, :], float("-inf"))
        w = scores.softmax(dim=-1)
        read = torch.einsum("bsn,bnw->bsw", w, v)  # (B, S, w)
        centroid = torch.einsum("bsn,nk->bsk", w, self.centres)  # (B, S, 2)
        positions = centroid + 0.1 * self.where(torch.cat([read, centroid], dim=-1))  # (B, S, 2)
        return positions, self.what(read)

    def forward(self, image: torch.Tensor, pad: torch.Tensor | None, pooled: torch.Tensor) -> SlotOutput:
        positions, shape_logits = self.read(image, pad)  # (B, S, 2), (B, S, C)
        pointer_logits, kind_logits = self.pointer(pooled), self.kind(pooled)  # (B, S), (B, 6)
        named = pointer_logits.softmax(dim=-1)  # (B, S)
        kinds = kind_logits.softmax(dim=-1)  # (B, 6)
        shapes = shape_logits.softmax(dim=-1)  # (B, S, C)
        far, middle = self.log_sharpness.exp()
        outcome = {  # type -> (B, outcomes)
            "shape": torch.einsum("bs,bsc->bc", named, shapes),
            "horizontal": _side(named, positions[..., 0], middle),
            "vertical": _side(named, positions[..., 1], middle),
            "closest": _by_distance(named, positions, shapes, far, nearest=True),
            "furthest": _by_distance(named, positions, shapes, far, nearest=False),
            "count": _same_shape_count(named, shapes),
        }
        probs = pooled.new_zeros(pooled.shape[0], self.n_answers)  # (B, A)
        for i in self.used:
            kind = KINDS[i]
            probs[:, self.index[kind]] += kinds[:, i:i + 1] * outcome[kind]
        return SlotOutput(positions, shape_logits, pointer_logits, kind_logits, probs, kinds)

    def combine(self, head_logits: torch.Tensor, out: SlotOutput) -> torch.Tensor:
        """The answer head's logits (B, A) with the slot programs' answer put in for the types
        they cover -> log-probabilities (B, A). The head keeps its share on words no program
        says (``none``, ``describe``) and its own answer for the types left to it."""
        head = head_logits.float().softmax(dim=-1)  # (B, A)
        words = sorted({i for ids in self.index.values() for i in ids})
        scene = head[:, words].sum(dim=-1, keepdim=True)  # (B, 1): how much is an answer word at all
        left_to_head = 1.0 - out.kind_probs[:, self.used].sum(dim=-1, keepdim=True)  # (B, 1)
        own = head[:, words] / scene.clamp_min(1e-9)  # (B, W) the head's answer among the words
        mixed = out.answer_probs[:, words] + left_to_head * own  # (B, W), sums to 1
        probs = head.clone()
        probs[:, words] = scene * mixed
        return probs.clamp_min(1e-9).log()


def _side(named: torch.Tensor, coord: torch.Tensor, sharpness: torch.Tensor) -> torch.Tensor:
    """named (B, S), coord (B, S) -> (B, 2): P(the named object lies before the middle), P(after)."""
    before = torch.sigmoid((0.5 - coord) / sharpness)  # (B, S)
    p = (named * before).sum(dim=-1, keepdim=True)
    return torch.cat([p, 1 - p], dim=-1)


def _by_distance(named, positions, shapes, sharpness, nearest: bool) -> torch.Tensor:
    """The shape of the object nearest to (or furthest from) the named one -> (B, C)."""
    dist = torch.cdist(positions, positions)  # (B, S, S)
    logits = (-dist if nearest else dist) / sharpness
    eye = torch.eye(dist.shape[-1], dtype=torch.bool, device=dist.device)
    pick = logits.masked_fill(eye, float("-inf")).softmax(dim=-1)  # (B, S anchor, S other)
    per_anchor = torch.einsum("bao,boc->bac", pick, shapes)  # (B, S, C)
    return torch.einsum("ba,bac->bc", named, per_anchor)


def _same_shape_count(named: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
    """How many objects share the named one's shape (itself included) -> (B, S) over 1..S."""
    b, s, _ = shapes.shape
    same = torch.einsum("bac,boc->bao", shapes, shapes)  # (B, S, S): P(o has a's shape)
    same = same.masked_fill(torch.eye(s, dtype=torch.bool, device=shapes.device), 0.0)
    count = shapes.new_zeros(b, s, s)  # (B, anchor, others sharing: 0..S-1)
    count[..., 0] = 1.0
    for o in range(s):  # add one object at a time (a Poisson-binomial distribution)
        q = same[:, :, o:o + 1]  # (B, S, 1)
        count = count * (1 - q) + torch.cat([count.new_zeros(b, s, 1), count[..., :-1]], dim=-1) * q
    return torch.einsum("ba,bak->bk", named, count)
