"""Evaluation inside training: the heads' accuracy per question type on held-out scenes, and
the domain calibration that lets the core stay silent about images unlike its training data."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from models import clevr
from models.fusion import FusionCore
from models.train_data import to_device

if TYPE_CHECKING:
    from models.train_data import ClevrData

# ------------------------------------------------------------------------------ evaluation of the heads


@torch.no_grad()
def evaluate_heads(model: FusionCore, data: ClevrData, n: int, seed: int, *, variant: str = "typed",
                   canonical: bool = False, targets: torch.Tensor | None = None, batch_size: int = 500) -> dict:
    """Answer-head accuracy per question type on ``n`` held-out questions (plus 'none' and
    'describe' routing, caption facts and exact captions; with ``targets`` the align stage's
    token-recovery rate). Deterministic for a seed."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    right = np.zeros(8)
    total = np.zeros(8)
    fact_right = fact_total = exact = n_desc = 0
    cos_sum = 0.0
    for b in range(0, n, batch_size):
        batch = to_device(data.examples(min(batch_size, n - b), rng, variant=variant, canonical=canonical), device)
        out = model({"image": (batch["image"], None)}, batch["text"], batch["text_mask"])
        ok = (out.answer_logits.argmax(-1) == batch["answer"]).cpu().numpy()
        kinds = batch["kind"].cpu().numpy()
        np.add.at(right, kinds, ok)
        np.add.at(total, kinds, 1)
        has = batch["has_facts"]
        if out.caption_logits is not None and bool(has.any()):
            pred = (out.caption_logits[has] > 0).float()  # (b, 18)
            match = pred == batch["facts"][has]
            fact_right += int(match.sum())
            fact_total += match.numel()
            exact += int(match.all(dim=1).sum())
            n_desc += int(has.sum())
        if targets is not None:
            tgt = targets[batch["answer"]]  # (B, K, 576)
            cos_sum += float(F.cosine_similarity(out.tokens, tgt, dim=-1).mean(dim=1).sum())
    model.train(was)
    names = list(clevr.QUESTION_TYPES) + ["describe", "none"]
    res: dict = {f"acc_{k}": float(right[i] / total[i]) for i, k in enumerate(names) if total[i]}
    nr = [clevr.QUESTION_TYPES.index(k) for k in clevr.NON_RELATIONAL]
    rel = [clevr.QUESTION_TYPES.index(k) for k in clevr.RELATIONAL]
    res["acc_non_relational"] = float(right[nr].sum() / max(1, total[nr].sum()))
    res["acc_relational"] = float(right[rel].sum() / max(1, total[rel].sum()))
    if fact_total:
        res["caption_facts"] = fact_right / fact_total
        res["caption_exact"] = exact / n_desc
    if targets is not None:
        res["align_cos"] = cos_sum / n
    return res



def calibrate_domain(model: FusionCore, train_data: "ClevrData", eval_data: "ClevrData", margin: float) -> dict:
    """Give the core its training images' pooled-feature mean and spread and a threshold of
    ``margin`` x the largest training-image distance; report how held-out scenes (should be
    inside) and held-out non-scene images (should be outside) fall."""
    pooled = model.core_tokens(train_data.image, None)[0].float().mean(dim=1)  # (S, 320): what the core's layers read
    mean, std = pooled.mean(dim=0), pooled.std(dim=0).clamp(min=1e-3)
    dist = ((pooled - mean) / std).pow(2).mean(dim=-1).sqrt()  # (S,)
    threshold = margin * float(dist.max())
    model.set_domain(mean, std, threshold)
    dev = model.out_norm.weight.device
    with torch.no_grad():
        scenes = model.domain_distance(eval_data.image.float().to(dev))  # (E,)
        res = {"threshold": threshold, "train_max": float(dist.max()),
               "eval_scenes_inside": float((scenes <= threshold).float().mean())}
        if eval_data.other is not None:
            others = model.domain_distance(eval_data.other.float().to(dev))
            res["eval_other_images_outside"] = float((others > threshold).float().mean())
    return res
