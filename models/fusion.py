"""The fusion core: modality tokens + the user's text in, K tokens in the generator's space out.

Four strategies from the seed document sit behind one interface (:class:`FusionCore`):

* ``attention`` (default): learned queries, conditioned on the user's text, cross-attend to
  the concatenated modality tokens (the BLIP-2 Q-Former / Flamingo Perceiver family).
  Optionally (``relation_layers``) the modality tokens first attend to each other and to the
  question, so relations between objects are computed before the queries read them.
* ``early``: the inputs are concatenated into one sequence (queries, text, every modality)
  and one transformer encoder runs over all of it; the query positions are the output.
* ``late``: each modality is pooled on its own, the pooled vectors and the pooled text are
  merged by an MLP into the K output tokens.
* ``dual``: independent encoders (one per modality and one for text) whose pooled
  representations are fused by a gated product, then expanded to K tokens.

Every strategy accepts any subset of modalities: absent ones are simply not passed, and
padding inside a modality is masked (the seed's "missing modality" challenge). Each
modality token gets a learned modality-type embedding and a learned position embedding.

Outputs (:class:`FusionOutput`): ``tokens`` (B, K, generator_dim) to place in the
generator's prompt, and, when the config names answers, ``answer_logits`` (B, A) from an
answer head on the pooled queries (trained first without the generator, as BLIP-2 does).
The ``attention`` strategy also reports where its queries looked (``attention``: per modality,
the last cross-attention layer's weights averaged over queries and heads; the attention view
of :mod:`models.attention` draws them over the image). With ``object_slots`` a slot reasoner
(:mod:`models.slots`) answers the Sort-of-CLEVR question types from each object's centre and
shape by explicit geometry, in place of the answer head's guess for them.

Weights are saved as ``model.safetensors`` beside a ``config.json`` holding
:class:`FusionConfig`; :func:`load_fusion` rebuilds the module from them. No pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from models.slots import SlotOutput

STRATEGIES = ("attention", "early", "late", "dual")


@dataclass
class FusionConfig:
    strategy: str = "attention"
    modality_dims: dict[str, int] = field(default_factory=lambda: {"image": 320})
    """Input width of each modality's tokens (EfficientNet-Lite0 gives 320)."""
    max_tokens: dict[str, int] = field(default_factory=lambda: {"image": 49})
    """Most tokens per modality (size of its position table)."""
    text_dim: int = 576
    """Width of the text token embeddings (the generator's input embeddings)."""
    max_text_tokens: int = 64
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    n_queries: int = 8
    """K, the number of output tokens handed to the generator."""
    image_grid: str = "final"
    """Which token grid of the image encoder the core reads: "final" (EfficientNet-Lite0's last
    block, 7x7 x 320) or "fine" (14x14 x 432: the stride-16 block beside the last one, see
    :mod:`models.image`); ``modality_dims`` and ``max_tokens`` must match it."""
    core_grid: str = ""
    """"" (the same as ``image_grid``), or "final" with ``image_grid`` "fine": the core is fed the
    fine grid but its own layers read the final grid taken back out of it
    (:func:`models.image.final_from_fine`, exact), so a core trained on the final grid keeps its
    weights while the slot reasoner (``object_slots``) reads the finer one."""
    grid_coordinates: bool = False
    """Image tokens that form a square grid (EfficientNet's 7x7) also get a learned linear
    function of their cell centre's (x, y, x^2 + y^2), so attention scores can be distances
    (q.k can hold |p_k - p_q|^2 exactly); zero at the start, so it can be added to trained weights.
    On Sort-of-CLEVR it measured no better than the learned position embeddings alone (model card)."""
    relation_layers: int = 0
    """``attention`` only: self-attention layers over [modality tokens ; question] that run
    before the queries read the modality tokens, so each image token can compare itself with
    the others (relational questions: "the object furthest from ..."). Gated, starting as the
    identity. 0: the queries read the encoder's tokens as they come."""
    object_slots: int = 0
    """0: off. 6 (one per Sort-of-CLEVR colour): a slot reasoner (:mod:`models.slots`) reads
    each object's centre and shape off the image tokens and answers the question types in
    ``slot_kinds`` by explicit geometry (nearest, furthest, same-shape count...), in place of
    the answer head's own guess for them."""
    slot_kinds: list[str] = field(default_factory=list)
    """The question types the slot reasoner answers (of ``models.slots.KINDS``); the answer
    head keeps the others."""
    generator_dim: int = 576
    """Width of the generator's embeddings (SmolLM2-135M: 576)."""
    dropout: float = 0.0
    answers: list[str] = field(default_factory=list)
    """Vocabulary of the answer head; empty: no answer head."""
    caption_attributes: list[str] = field(default_factory=list)
    """Names of the binary facts a caption head predicts (one logit each); empty: no caption head."""
    aligned_to_generator: bool = False
    """True when the projected tokens were trained against the generator (so the pipeline may
    insert them into its prompt); False: use only the heads' outputs (as text evidence)."""
    describes: bool = False
    """True when the projector was also trained to make the generator describe a scene from the
    soft tokens (descriptions in the generator-coupled stage): description requests then take
    the tokens whatever ``fusion.route`` says (see :func:`effective_route`)."""
    domain_threshold: float = 0.0
    """When > 0, the core carries the mean and spread of its training images' pooled features
    (buffers ``domain_mean``, ``domain_std``) and reports for each image how far it lies from
    them (RMS z-score, ``FusionOutput.domain_distance``); beyond this threshold the image is
    unlike the training data and :func:`answer_evidence` says nothing about it."""
    alignment: str = ""
    """How the projector was trained: "" (not at all), "regression" (onto the generator's input
    embeddings of a sentence stating the answer, no backprop through the generator),
    "lm" (the generator's language-model loss through the frozen generator), or "teacher"
    (onto the tokens of a core trained with "lm", see ``TrainConfig.align_teacher``)."""

    def core_view(self) -> "FusionConfig":
        """The config the core's own layers see: with ``core_grid``, the image tokens that grid's."""
        if not self.core_grid:
            return self
        from models.image import GRIDS

        n, d = GRIDS[self.core_grid]
        return replace(self, image_grid=self.core_grid, core_grid="", modality_dims={**self.modality_dims, "image": d},
                       max_tokens={**self.max_tokens, "image": n}, object_slots=0, slot_kinds=[])

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"fusion strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.relation_layers and self.strategy != "attention":
            raise ValueError(f"relation_layers belong to the attention strategy, not {self.strategy!r}")
        if self.image_grid not in ("final", "fine"):
            raise ValueError(f"image_grid {self.image_grid!r}: choose final or fine")
        if self.image_grid == "fine":
            from models.image import GRIDS

            n, d = GRIDS["fine"]
            if self.modality_dims.get("image") != d or self.max_tokens.get("image", 0) < n:
                raise ValueError(f"image_grid 'fine' gives {n} image tokens of {d}: set modality_dims and max_tokens to match")
        if self.core_grid not in ("", "final") or (self.core_grid and self.image_grid != "fine"):
            raise ValueError(f"core_grid {self.core_grid!r}: only 'final', and only with image_grid 'fine'")
        if self.object_slots:
            from models import clevr
            from models.slots import KINDS

            if self.object_slots != len(clevr.COLOURS) or "image" not in self.modality_dims:
                raise ValueError(f"object_slots: {len(clevr.COLOURS)} (one per colour) over image tokens, not {self.object_slots}")
            n = self.max_tokens.get("image", 0)
            if round(n ** 0.5) ** 2 != n:
                raise ValueError(f"object_slots read a square grid of image tokens: max_tokens {n} is not one")
            missing = [w for w in clevr.ANSWERS if w not in self.answers]
            unknown = [k for k in self.slot_kinds if k not in KINDS]
            if missing:
                raise ValueError(f"object_slots need the answer words among the answers (missing: {', '.join(missing)})")
            if unknown or not self.slot_kinds:
                raise ValueError(f"slot_kinds {self.slot_kinds}: choose some of {', '.join(KINDS)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")


@dataclass
class FusionOutput:
    tokens: torch.Tensor
    """(B, K, generator_dim): soft tokens for the generator's prompt."""
    pooled: torch.Tensor
    """(B, d_model): one vector per example (what the answer head reads)."""
    answer_logits: torch.Tensor | None = None
    """(B, A) when the config has answers."""
    caption_logits: torch.Tensor | None = None
    """(B, C) when the config has caption attributes (independent sigmoid logits)."""
    domain_distance: torch.Tensor | None = None
    """(B,) distance of each image from the training images (when the core is calibrated)."""
    slots: "SlotOutput | None" = None
    """With ``object_slots``: the slot reasoner's reading (positions, shapes, pointer, type);
    ``answer_logits`` are then log-probabilities with its answers put in."""
    attention: dict[str, torch.Tensor] | None = None
    """``attention`` strategy only: modality name -> (B, N_m), the share of the last
    cross-attention layer's attention (averaged over its queries and heads) that fell on each
    token of that modality; what is left of 1 went to the always-present null token. Computed
    beside the layer from its own projections, so the other outputs are unchanged (detached
    unless the core is training: ``TrainConfig.attention_weight`` trains on them)."""


Modalities = dict[str, tuple[torch.Tensor, torch.Tensor | None]]
"""name -> (tokens (B, N, D_m), mask (B, N) with True = real token, or None = all real)."""


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """x (B, N, D), mask (B, N) -> (B, D); an all-masked row gives zeros."""
    if mask is None:
        return x.mean(dim=1)
    w = mask.to(x.dtype).unsqueeze(-1)  # (B, N, 1)
    return (x * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)


def grid_coordinates(side: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Cell centres of a side x side token grid (row-major, as image encoders flatten them),
    as (x, y, x^2 + y^2) with x, y in [-1, 1] -> (side*side, 3)."""
    c = (torch.arange(side, device=device, dtype=dtype) + 0.5) / side * 2 - 1  # (side,)
    y, x = torch.meshgrid(c, c, indexing="ij")
    x, y = x.reshape(-1), y.reshape(-1)
    return torch.stack([x, y, x * x + y * y], dim=-1)


class TokenEmbedder(nn.Module):
    """Projects each modality (and the text) to d_model, adds type and position embeddings."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        names = sorted(cfg.modality_dims)
        self.names = names
        self.proj = nn.ModuleDict({m: nn.Linear(cfg.modality_dims[m], cfg.d_model) for m in names})
        self.pos = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(cfg.max_tokens.get(m, 64), cfg.d_model) * 0.02) for m in names}
        )
        self.type_emb = nn.ParameterDict({m: nn.Parameter(torch.randn(cfg.d_model) * 0.02) for m in names})
        self.norm = nn.ModuleDict({m: nn.LayerNorm(cfg.modality_dims[m]) for m in names})
        self.text_proj = nn.Linear(cfg.text_dim, cfg.d_model)
        self.text_norm = nn.LayerNorm(cfg.text_dim)
        self.text_pos = nn.Parameter(torch.randn(cfg.max_text_tokens, cfg.d_model) * 0.02)
        self.text_type = nn.Parameter(torch.randn(cfg.d_model) * 0.02)
        self.coord = None
        if cfg.grid_coordinates:
            self.coord = nn.Linear(3, cfg.d_model)
            nn.init.zeros_(self.coord.weight)
            nn.init.zeros_(self.coord.bias)

    def modality(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, D_m) -> (B, N, d_model)."""
        if name not in self.proj:
            raise ValueError(f"fusion core has no {name!r} modality (it knows {', '.join(self.names)})")
        n = x.shape[1]
        if n > self.pos[name].shape[0]:
            raise ValueError(f"{name}: {n} tokens, more than the {self.pos[name].shape[0]} the core was built for")
        h = self.proj[name](self.norm[name](x)) + self.pos[name][:n] + self.type_emb[name]
        side = round(n ** 0.5)
        if self.coord is not None and name == "image" and side * side == n:
            h = h + self.coord(grid_coordinates(side, x.device, h.dtype))  # (N, d) broadcast over B
        return h

    def text(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, text_dim) -> (B, T', d_model), T' = min(T, max_text_tokens) (the end is kept)."""
        x = x[:, -self.text_pos.shape[0]:]
        return self.text_proj(self.text_norm(x)) + self.text_pos[: x.shape[1]] + self.text_type


def attention_weights(
    attn: nn.MultiheadAttention,
    query: torch.Tensor,  # (B, K, d), as the layer passes it in
    key: torch.Tensor,  # (B, N, d)
    key_pad: torch.Tensor | None,  # (B, N) True = padding
) -> torch.Tensor:  # (B, H, K, N)
    """The attention weights ``attn`` uses for ``query`` over ``key``, per head, recomputed
    from its input projections: softmax(q k^T / sqrt(d_head)) with padded keys masked.
    (``need_weights=True`` would make the layer leave its fused kernel; this leaves it alone.)"""
    b, k, d = query.shape
    n, h = key.shape[1], attn.num_heads
    w_q, w_k, _ = attn.in_proj_weight.chunk(3)  # (d, d) each
    b_q, b_k, _ = attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
    q = F.linear(query, w_q, b_q).view(b, k, h, d // h).transpose(1, 2)  # (B, H, K, d_h)
    kk = F.linear(key, w_k, b_k).view(b, n, h, d // h).transpose(1, 2)  # (B, H, N, d_h)
    scores = q @ kk.transpose(-1, -2) / (d // h) ** 0.5  # (B, H, K, N)
    if key_pad is not None:
        scores = scores.masked_fill(key_pad[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)


class CrossAttentionLayer(nn.Module):
    """Queries attend to (queries + text), then cross-attend to modality tokens, then an MLP."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d)
        self.cross_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))

    def forward(
        self,
        q: torch.Tensor,  # (B, K, d) queries
        text: torch.Tensor,  # (B, T, d) text tokens (conditioning)
        text_pad: torch.Tensor,  # (B, T) True = padding
        kv: torch.Tensor,  # (B, N, d) modality tokens
        kv_pad: torch.Tensor,  # (B, N) True = padding
        *,
        with_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:  # (B, K, d) [, (B, H, K, N) cross-attention weights]
        h = self.norm_self(q)
        ctx = torch.cat([h, self.norm_self(text)], dim=1)  # (B, K+T, d)
        ctx_pad = torch.cat([torch.zeros_like(text_pad[:, :1]).expand(-1, q.shape[1]), text_pad], dim=1)
        q = q + self.self_attn(h, ctx, ctx, key_padding_mask=ctx_pad, need_weights=False)[0]
        kv_n = self.norm_kv(kv)  # (B, N, d)
        h = self.norm_cross(q)  # (B, K, d)
        out = q + self.cross_attn(h, kv_n, kv_n, key_padding_mask=kv_pad, need_weights=False)[0]
        out = out + self.mlp(self.norm_mlp(out))  # (B, K, d)
        if not with_weights:
            return out
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):  # a training loss may read them
            weights = attention_weights(self.cross_attn, h, kv_n, kv_pad)  # (B, H, K, N)
        return out, weights


class FusionCore(nn.Module):
    """Common parts: embedder, output projector into the generator's space, answer head."""

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.embed = TokenEmbedder(cfg.core_view())
        self.out_norm = nn.LayerNorm(d)
        self.projector = nn.Sequential(nn.Linear(d, cfg.generator_dim), nn.GELU(), nn.Linear(cfg.generator_dim, cfg.generator_dim))
        self.answer_head = nn.Linear(d, len(cfg.answers)) if cfg.answers else None
        self.caption_head = nn.Linear(d, len(cfg.caption_attributes)) if cfg.caption_attributes else None
        self.reasoner = None
        if cfg.object_slots:
            from models.slots import SlotReasoner

            self.reasoner = SlotReasoner(cfg)
        if cfg.domain_threshold > 0:
            dim = cfg.core_view().modality_dims["image"]
            self.register_buffer("domain_mean", torch.zeros(dim))
            self.register_buffer("domain_std", torch.ones(dim))

    def set_domain(self, mean: torch.Tensor, std: torch.Tensor, threshold: float) -> None:
        """Store the training images' pooled-feature statistics (D,) and the distance threshold."""
        self.cfg.domain_threshold = float(threshold)
        dev = self.out_norm.weight.device
        self.register_buffer("domain_mean", mean.detach().float().to(dev).clone())
        self.register_buffer("domain_std", std.detach().float().clamp(min=1e-3).to(dev).clone())

    def core_tokens(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image tokens (B, N, D) and mask the core was fed -> the ones its own layers read
        (with ``core_grid``: the final grid out of the fine one)."""
        if not self.cfg.core_grid:
            return x, mask
        from models.image import final_from_fine

        core = final_from_fine(x)  # (B, 49, 320)
        if mask is not None:
            side = round(mask.shape[1] ** 0.5)
            mask = mask.reshape(-1, side, side)[:, ::2, ::2].reshape(len(mask), -1)
        return core, mask

    def domain_distance(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Image tokens (B, N, D) -> (B,) RMS z-score of their mean against the training images."""
        x, mask = self.core_tokens(x, mask)
        pooled = masked_mean(x.float(), mask)  # (B, D)
        return ((pooled - self.domain_mean) / self.domain_std).pow(2).mean(dim=-1).sqrt()

    # -- the part each strategy writes
    def fuse(self, mods: dict[str, tuple[torch.Tensor, torch.Tensor]], text: torch.Tensor, text_pad: torch.Tensor) -> torch.Tensor:
        """mods: name -> (tokens (B, N_m, d), pad (B, N_m)) for the modalities present;
        text (B, T, d), text_pad (B, T) -> (B, K, d)."""
        raise NotImplementedError

    def fuse_with_attention(self, mods, text, text_pad) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`fuse` plus, where the strategy has one, the last cross-attention layer's
        weights over [null ; modality tokens in ``mods`` order], averaged over queries and
        heads -> ((B, K, d), (B, 1+N) or None)."""
        return self.fuse(mods, text, text_pad), None

    def forward(
        self,
        modalities: Modalities,
        text: torch.Tensor | None = None,  # (B, T, text_dim)
        text_mask: torch.Tensor | None = None,  # (B, T) True = real token
    ) -> FusionOutput:
        batch = _batch_size(modalities, text)
        device = self.out_norm.weight.device
        mods = {}
        for name in sorted(modalities):
            x, mask = modalities[name] if name != "image" else self.core_tokens(*modalities[name])
            if mask is None:
                mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            mods[name] = (self.embed.modality(name, x), ~mask.bool())
        if text is None:
            text = torch.zeros(batch, 1, self.cfg.text_dim, device=device)
            text_mask = torch.zeros(batch, 1, dtype=torch.bool, device=device)
        elif text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        t = self.embed.text(text)  # (B, T', d)
        text_pad = ~text_mask[:, -t.shape[1]:].bool()
        fused, weights = self.fuse_with_attention(mods, t, text_pad)  # (B, K, d), (B, 1+N) or None
        q = self.out_norm(fused)  # (B, K, d)
        pooled = q.mean(dim=1)  # (B, d)
        logits = self.answer_head(pooled) if self.answer_head is not None else None  # (B, A)
        caption = self.caption_head(pooled) if self.caption_head is not None else None  # (B, C)
        slots = None
        if self.reasoner is not None and logits is not None and "image" in modalities:
            x, mask = modalities["image"]
            slots = self.reasoner(x.float(), None if mask is None else ~mask.bool(), pooled)  # positions (B, S, 2) ...
            logits = self.reasoner.combine(logits, slots)  # (B, A) log-probabilities
        distance = None
        if self.cfg.domain_threshold > 0 and "image" in modalities:
            x, mask = modalities["image"]
            distance = self.domain_distance(x, mask)  # (B,)
        attention = None
        if weights is not None:  # split [null ; modality tokens] back into modalities (null dropped)
            attention, start = {}, 1
            for name, (x, _) in mods.items():
                attention[name] = weights[:, start:start + x.shape[1]]  # (B, N_m)
                start += x.shape[1]
        return FusionOutput(tokens=self.projector(q), pooled=pooled, answer_logits=logits, caption_logits=caption,
                            domain_distance=distance, slots=slots, attention=attention)

    # -- persistence
    def save(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write config.json and model.safetensors (optionally cast, e.g. to float16)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2), encoding="utf-8")
        state = {k: (v.to(dtype) if dtype and v.is_floating_point() else v).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"))
        return directory


def _batch_size(modalities: Modalities, text: torch.Tensor | None) -> int:
    for x, _ in modalities.values():
        return x.shape[0]
    if text is not None:
        return text.shape[0]
    raise ValueError("fusion needs at least one modality or the text")


def _with_null(mods, null: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate modality tokens behind one always-valid null token, so attention never sees
    an all-masked row when every modality is absent. -> (B, 1+N, d), (B, 1+N) pad."""
    null_tok = null.expand(batch, 1, -1)
    toks = [null_tok] + [x for x, _ in mods.values()]
    pads = [torch.zeros(batch, 1, dtype=torch.bool, device=null.device)] + [p for _, p in mods.values()]
    return torch.cat(toks, dim=1), torch.cat(pads, dim=1)


class AttentionFusion(FusionCore):
    """Learned queries, conditioned on the text, cross-attend to all modality tokens."""

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        self.queries = nn.Parameter(torch.randn(cfg.n_queries, cfg.d_model) * 0.02)
        self.null = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
        self.layers = nn.ModuleList(CrossAttentionLayer(cfg.d_model, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_layers))
        self.relation = None
        if cfg.relation_layers > 0:
            layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 4 * cfg.d_model, cfg.dropout, batch_first=True, norm_first=True)
            self.relation = nn.TransformerEncoder(layer, cfg.relation_layers, enable_nested_tensor=False)
            # tanh gate starting at 0 (as Flamingo gates its new cross-attention): the relation stage
            # begins as the identity, so it can be added to a core trained without it.
            self.relation_gate = nn.Parameter(torch.zeros(1))

    def fuse(self, mods, text, text_pad):  # -> (B, K, d)
        return self.fuse_with_attention(mods, text, text_pad)[0]

    def fuse_with_attention(self, mods, text, text_pad):  # -> (B, K, d), (B, 1+N)
        b = text.shape[0]
        kv, kv_pad = _with_null(mods, self.null, b)  # (B, 1+N, d)
        if self.relation is not None:  # tokens compare themselves with each other, in the light of the question
            n = kv.shape[1]
            seq = torch.cat([kv, text], dim=1)  # (B, 1+N+T, d)
            related = self.relation(seq, src_key_padding_mask=torch.cat([kv_pad, text_pad], dim=1))[:, :n]  # (B, 1+N, d)
            kv = kv + torch.tanh(self.relation_gate) * (related - kv)
        q = self.queries.unsqueeze(0).expand(b, -1, -1)  # (B, K, d)
        if not len(self.layers):
            return q, None
        for layer in self.layers[:-1]:
            q = layer(q, text, text_pad, kv, kv_pad)
        q, weights = self.layers[-1](q, text, text_pad, kv, kv_pad, with_weights=True)  # (B, K, d), (B, H, K, 1+N)
        return q, weights.mean(dim=(1, 2))  # (B, K, d), (B, 1+N)


class EarlyFusion(FusionCore):
    """One transformer encoder over [queries ; text ; all modality tokens]."""

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        self.queries = nn.Parameter(torch.randn(cfg.n_queries, cfg.d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 4 * cfg.d_model, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)

    def fuse(self, mods, text, text_pad):  # -> (B, K, d)
        b, k = text.shape[0], self.cfg.n_queries
        q = self.queries.unsqueeze(0).expand(b, -1, -1)
        seq = torch.cat([q, text] + [x for x, _ in mods.values()], dim=1)  # (B, K+T+N, d)
        pad = torch.cat([torch.zeros(b, k, dtype=torch.bool, device=q.device), text_pad] + [p for _, p in mods.values()], dim=1)
        return self.encoder(seq, src_key_padding_mask=pad)[:, :k]


class LateFusion(FusionCore):
    """Pool each modality on its own; an MLP merges the pooled vectors into K tokens."""

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        d, n = cfg.d_model, len(cfg.modality_dims) + 1
        self.merge = nn.Sequential(nn.Linear(n * d, 4 * d), nn.GELU(), nn.Linear(4 * d, cfg.n_queries * d))

    def fuse(self, mods, text, text_pad):  # -> (B, K, d)
        b, d = text.shape[0], self.cfg.d_model
        pooled = [  # one slot per known modality; an absent one contributes zeros
            masked_mean(mods[name][0], ~mods[name][1]) if name in mods else text.new_zeros(b, d)
            for name in self.embed.names
        ]
        pooled.append(masked_mean(text, ~text_pad))  # (B, d) each
        return self.merge(torch.cat(pooled, dim=-1)).view(b, self.cfg.n_queries, d)


class DualEncoderFusion(FusionCore):
    """Independent encoders per modality and for the text; pooled outputs fused by a gated product."""

    def __init__(self, cfg: FusionConfig):
        super().__init__(cfg)
        d = cfg.d_model

        def encoder() -> nn.TransformerEncoder:
            layer = nn.TransformerEncoderLayer(d, cfg.n_heads, 4 * d, cfg.dropout, batch_first=True, norm_first=True)
            return nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)

        self.encoders = nn.ModuleDict({m: encoder() for m in sorted(cfg.modality_dims)})
        self.text_encoder = encoder()
        self.gate = nn.Linear(d, d)
        self.expand = nn.Sequential(nn.Linear(2 * d, 4 * d), nn.GELU(), nn.Linear(4 * d, cfg.n_queries * d))

    def fuse(self, mods, text, text_pad):  # -> (B, K, d)
        b, d = text.shape[0], self.cfg.d_model
        t = masked_mean(self.text_encoder(text, src_key_padding_mask=text_pad), ~text_pad)  # (B, d)
        m = text.new_zeros(b, d)
        for name, (x, pad) in mods.items():
            m = m + masked_mean(self.encoders[name](x, src_key_padding_mask=pad), ~pad)
        fused = torch.cat([m * torch.sigmoid(self.gate(t)), t], dim=-1)  # (B, 2d)
        return self.expand(fused).view(b, self.cfg.n_queries, d)


_CLASSES = {"attention": AttentionFusion, "early": EarlyFusion, "late": LateFusion, "dual": DualEncoderFusion}


def build_fusion(cfg: FusionConfig) -> FusionCore:
    return _CLASSES[cfg.strategy](cfg)


def load_fusion(directory: str | Path, device: str = "cpu") -> FusionCore:
    """Rebuild a fusion core from ``config.json`` and load ``model.safetensors`` into it (float32)."""
    directory = Path(directory)
    cfg_file, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{directory}: fusion weights need config.json and model.safetensors")
    raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    known = set(FusionConfig.__dataclass_fields__)
    cfg = FusionConfig(**{k: v for k, v in raw.items() if k in known})
    model = build_fusion(cfg)
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    model.load_state_dict(state)
    return model.to(device).eval()


def effective_route(route: str, cfg: FusionConfig, soft_tokens: bool = True, describe: bool = False) -> str:
    """``fusion.route`` ("text", "tokens" or "both") as it can be taken: the soft tokens need
    weights trained through the generator and a generator that takes them (``soft_tokens``),
    else every route is "text". A description request (``describe``: the answer head read
    "describe") goes by the tokens when the weights were trained to describe
    (``cfg.describes``): given the caption as text, SmolLM2-135M does not repeat a six-object
    list (2.8% of objects described right on validation scenes, against 52.8% from the tokens;
    docs/MODEL_CARD.md)."""
    if not (cfg.aligned_to_generator and soft_tokens):
        return "text"
    return "tokens" if describe and cfg.describes else route


def confident_answer(cfg: FusionConfig, out: FusionOutput, index: int, min_probability: float = 0.5) -> tuple[str, float] | None:
    """The answer head's word for example ``index`` and its probability, or None when the core
    has no answer head, is not confident, or sees an image unlike its training data."""
    if out.answer_logits is None or not cfg.answers:
        return None
    if out.domain_distance is not None and float(out.domain_distance[index]) > cfg.domain_threshold:
        return None  # an image unlike the training images: say nothing about it
    probs = out.answer_logits[index].float().softmax(dim=-1)  # (A,)
    p, i = float(probs.max()), int(probs.argmax())
    return (cfg.answers[i], p) if p >= min_probability else None


def question_reading(cfg: FusionConfig, out: FusionOutput, index: int, min_probability: float = 0.5) -> str | None:
    """The question of example ``index`` as the slot reasoner read it, in the canonical wording of
    its type with the colour it points at ('Is the red object on the left or right of the image?'),
    or None when the core has no slot reasoner, is unsure of the type or the colour (either under
    ``min_probability``), or its answer does not answer that type (a description request, a
    question about something else: the type reader knows only the six question types). A
    misheard question ('Is the red object on the left or like a video?') reads as what the core answered."""
    if out.slots is None:
        return None
    from models import clevr
    from models.slots import KINDS

    kinds = out.slots.kind_probs[index].float()  # (6,)
    named = out.slots.pointer_logits[index].float().softmax(dim=-1)  # (S,) over the colours
    if float(kinds.max()) < min_probability or float(named.max()) < min_probability:
        return None
    kind = KINDS[int(kinds.argmax())]
    verdict = confident_answer(cfg, out, index, min_probability)
    if verdict is None or verdict[0] not in clevr.CANDIDATES[kind]:
        return None
    return clevr.TEMPLATES[kind][0].format(c=clevr.COLOURS[int(named.argmax())])


def answer_evidence(cfg: FusionConfig, out: FusionOutput, index: int, question: str, min_probability: float = 0.5) -> str | None:
    """The answer head's verdict for example ``index`` as a short note for the generator, or None
    when the core has no answer head or is not confident (e.g. a photo unlike its training data)."""
    verdict = confident_answer(cfg, out, index, min_probability)
    if verdict is None:
        return None
    answer, p = verdict
    if answer == "none":  # trained to say: not a question about a scene the core knows
        return None
    if answer == "describe":  # a description request: the caption head speaks
        from models.clevr import caption_attributes, caption_from_facts

        if out.caption_logits is None or list(cfg.caption_attributes) != caption_attributes():
            return None
        return caption_from_facts(out.caption_logits[index].float().sigmoid().tolist())  # caption (C,) -> sentence
    from models.clevr import ANSWERS, answer_statement

    if answer in ANSWERS:  # a sentence stating the answer, naming no other candidate
        return answer_statement(question, answer)
    return f"the answer to {question!r} is {answer} (confidence {p:.0%})"
