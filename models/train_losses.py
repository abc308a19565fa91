"""The fusion core's training objectives: the answer and caption heads (``answer``), the
projector's regression onto the generator's embeddings (``align``, with its targets), and the
generator's own language-model loss (``generator``). The loop is :mod:`models.train`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from models import clevr
from models.fusion import FusionConfig, FusionCore
from models.train_data import DESCRIBE_ANSWER

if TYPE_CHECKING:
    from models.train import TrainConfig
    from models.train_data import ClevrData

# ------------------------------------------------------------------------------ alignment targets


def carrier_targets(cfg: TrainConfig, fcfg: FusionConfig, text_encoder) -> torch.Tensor:
    """The align stage's targets: for each answer class, the generator input embeddings of the
    last K tokens of the carrier sentence stating it -> (A, K, 576) float32. 'none' and
    'describe' get sentences of their own."""
    sentences = []
    for a in fcfg.answers:
        if a == clevr.NONE_ANSWER:
            sentences.append("This picture is not one of the coloured shapes puzzles I know about")
        elif a == DESCRIBE_ANSWER:
            sentences.append("The picture shows six coloured shapes, a square or a circle each")
        else:
            sentences.append(cfg.carrier.format(answer=a))
    embeds, mask = text_encoder(sentences)  # (A, T, 576), (A, T)
    k = fcfg.n_queries
    out = []
    for e, m in zip(embeds, mask):
        e = e[m]  # (T_a, 576)
        if e.shape[0] < k:
            e = torch.cat([e[:1].expand(k - e.shape[0], -1), e])  # repeat the first token on the left
        out.append(e[-k:])
    return torch.stack(out).float()  # (A, K, 576)


# ------------------------------------------------------------------------------ losses


def answer_loss(out, batch: dict, caption_weight: float) -> tuple[torch.Tensor, dict]:
    """Cross-entropy on the answer head + BCE on the caption head for description requests."""
    ce = F.cross_entropy(out.answer_logits, batch["answer"])  # answer_logits (B, A)
    loss = ce
    stats = {"answer_loss": float(ce.detach())}
    has = batch["has_facts"]
    if out.caption_logits is not None and bool(has.any()):
        bce = F.binary_cross_entropy_with_logits(out.caption_logits[has], batch["facts"][has])  # (b, 18)
        loss = loss + caption_weight * bce
        stats["caption_loss"] = float(bce.detach())
    acc = (out.answer_logits.argmax(-1) == batch["answer"]).float().mean()
    stats["answer_acc"] = float(acc)
    return loss, stats


def align_loss(out, batch: dict, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Projected tokens (B, K, 576) regress onto targets[answer] (B, K, 576): MSE on the
    embedding scale + (1 - cosine)."""
    tgt = targets[batch["answer"]]  # (B, K, 576)
    pred = out.tokens  # (B, K, 576)
    scale = tgt.pow(2).mean().clamp(min=1e-8)
    mse = (pred - tgt).pow(2).mean() / scale
    cos = 1 - F.cosine_similarity(pred, tgt, dim=-1).mean()
    return mse + cos, {"align_mse": float(mse.detach()), "align_cos": float(1 - cos.detach())}



# ------------------------------------------------------------------------------ generator-coupled stage


def generator_loss(model: FusionCore, gen, batch: dict, data: ClevrData, cfg: TrainConfig) -> tuple[torch.Tensor, dict]:
    """LM loss of the frozen generator on "The answer is X." with the K fusion tokens spliced
    into the user's turn (at FUSION_MARKER, before the question). Gradients flow through the
    generator into the projector and core. Meant for a GPU (10-20 s per batch of 8 on 2 CPU cores)."""
    from models.generator import FUSION_MARKER

    out = model({"image": (batch["image"], None)}, batch["text"], batch["text_mask"])  # tokens (B, K, 576)
    lm = gen.model
    table = lm.get_input_embeddings()
    seqs, labels = [], []
    for i in range(out.tokens.shape[0]):
        question = data.texts.texts[int(batch["row"][i])]
        word = data.vocab[int(batch["answer"][i])]
        prompt = gen.render([{"role": "user", "content": f"{FUSION_MARKER}\n{question}"}])
        before, after = prompt.split(FUSION_MARKER)
        reply = gen.encode(f"The answer is {word}.") + [gen.tokenizer.eos_token_id]
        ids_b, ids_a = gen.encode(before), gen.encode(after)
        dev = out.tokens.device
        emb = torch.cat([
            table(torch.tensor(ids_b, device=dev)),  # (T_b, 576)
            out.tokens[i].to(table.weight.dtype),  # (K, 576)
            table(torch.tensor(ids_a + reply, device=dev)),  # (T_a + R, 576)
        ])
        lab = [-100] * (len(ids_b) + out.tokens.shape[1] + len(ids_a)) + reply
        seqs.append(emb), labels.append(torch.tensor(lab, device=dev))
    width = max(s.shape[0] for s in seqs)
    embeds = torch.stack([F.pad(s, (0, 0, 0, width - s.shape[0])) for s in seqs])  # (B, L, 576), right-padded
    attn = torch.stack([torch.arange(width, device=embeds.device) < s.shape[0] for s in seqs]).long()  # (B, L)
    lab = torch.stack([F.pad(l, (0, width - l.shape[0]), value=-100) for l in labels])  # (B, L)
    res = lm(inputs_embeds=embeds, attention_mask=attn, labels=lab)
    return res.loss, {"lm_loss": float(res.loss.detach())}
