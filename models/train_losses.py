"""The fusion core's training objectives: the answer and caption heads (``answer``), where the
core looks (``attention_loss``), the slot reasoner's readings (``slot_loss``), the projector's regression onto the generator's embeddings or
onto a teacher core's tokens (``align``), and the generator's own language-model loss
(``generator``). The loop is :mod:`models.train`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from models import clevr
from models.fusion import FusionConfig, FusionCore
from models.train_data import DESCRIBE_ANSWER, crop_pixels

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


def attention_loss(out, batch: dict, target: float) -> tuple[torch.Tensor, dict]:
    """For questions about one named object (``batch["attend"]``), the share of the last
    cross-attention layer's attention (averaged over queries and heads) on the cells the object
    covers (``batch["cells"]`` (B, N)) should reach ``target``: mean of max(0, target - share)."""
    on = batch["attend"]  # (B,)
    if out.attention is None or not bool(on.any()):
        return torch.zeros((), device=batch["answer"].device), {}
    share = (out.attention["image"] * batch["cells"]).sum(dim=-1)[on]  # (b,)
    return F.relu(target - share).mean(), {"attention_share": float(share.detach().mean())}


def slot_loss(out, batch: dict) -> tuple[torch.Tensor, dict]:
    """The slot reasoner's readings against the scene (:mod:`models.slots`): every object's
    centre (L1, in hundredths of the crop: about 0.66 px each) and shape (cross-entropy) for
    scene images; the named colour (pointer) and the question type for questions of types 0-5."""
    slots = out.slots
    scene, asked = batch["scene"] >= 0, batch["kind"] < len(clevr.QUESTION_TYPES)  # (B,), (B,)
    zero = torch.zeros((), device=batch["answer"].device)
    if slots is None:
        return zero, {}
    where = (100 * (slots.positions[scene] - batch["slot_xy"][scene]).abs()).mean() if bool(scene.any()) else zero
    what = F.cross_entropy(slots.shape_logits[scene].flatten(0, 1), batch["slot_shape"][scene].flatten()) if bool(scene.any()) else zero
    pointer = F.cross_entropy(slots.pointer_logits[asked], batch["colour"][asked]) if bool(asked.any()) else zero
    kind = F.cross_entropy(slots.kind_logits[asked], batch["kind"][asked]) if bool(asked.any()) else zero
    stats = {"slot_px": float(where.detach()) * 0.01 * crop_pixels(), "slot_shape_loss": float(what.detach()),
             "pointer_loss": float(pointer.detach()), "kind_loss": float(kind.detach())}
    return where + what + pointer + kind, stats


def align_loss(out, batch: dict, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Projected tokens (B, K, 576) regress onto targets[answer] (B, K, 576): MSE on the
    embedding scale + (1 - cosine)."""
    return regression_loss(out.tokens, targets[batch["answer"]])


def teacher_loss(out, batch: dict, teacher: FusionCore) -> tuple[torch.Tensor, dict]:
    """Projected tokens (B, K, 576) regress onto a teacher core's tokens for the same image and
    question (the teacher reading ``teacher_image``, its own grid, when the batch has it)."""
    with torch.no_grad():
        image = batch.get("teacher_image", batch["image"])  # (B, N', D')
        tgt = teacher({"image": (image, None)}, batch["text"], batch["text_mask"]).tokens  # (B, K, 576)
    return regression_loss(out.tokens, tgt)


def regression_loss(pred: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """pred, tgt (B, K, 576) -> MSE on the target's scale + (1 - cosine), and their values."""
    scale = tgt.pow(2).mean().clamp(min=1e-8)
    mse = (pred - tgt).pow(2).mean() / scale
    cos = 1 - F.cosine_similarity(pred, tgt, dim=-1).mean()
    return mse + cos, {"align_mse": float(mse.detach()), "align_cos": float(1 - cos.detach())}



# ------------------------------------------------------------------------------ generator-coupled stage


def tokens_prompt(gen, system: str, question: str) -> str:
    """The prompt of a question about one picture on the tokens route, as the pipeline writes it
    (``Assistant.user_message`` with the fusion tokens and no scene notes): the system message,
    then "[Image features: <the K soft tokens>]" and the question."""
    from models.generator import FUSION_MARKER

    messages = [{"role": "system", "content": system}] if system else []
    return gen.render(messages + [{"role": "user", "content": f"[Image features: {FUSION_MARKER}]\n{question}"}])


class _Prefix:
    """The keys and values of the part of the prompt before the soft tokens: the same for every
    question, and before anything the fusion core writes, so computed once without gradients."""

    def __init__(self):
        self.ids: list[int] | None = None
        self.lm = None
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def cache_for(self, lm, ids: list[int], batch: int):
        from transformers import DynamicCache

        if ids != self.ids or lm is not self.lm:
            with torch.no_grad():
                past = lm(input_ids=torch.tensor([ids], device=lm.device), use_cache=True).past_key_values
            self.ids, self.lm = ids, lm
            self.layers = [(layer.keys, layer.values) for layer in past.layers]  # (1, kv_heads, P, head_dim) each
        cache = DynamicCache()
        for i, (k, v) in enumerate(self.layers):
            cache.update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1), i)
        return cache


_PREFIX = _Prefix()


def generator_loss(model: FusionCore, gen, batch: dict, data: ClevrData, cfg: TrainConfig) -> tuple[torch.Tensor, dict]:
    """The frozen generator's loss on a sentence stating the answer
    (:func:`models.clevr.answer_statement`; for a description request, the scene's caption
    :func:`models.clevr.caption`), with the K fusion tokens in the prompt where the
    pipeline puts them on the tokens route (:func:`tokens_prompt`, the system message included).
    Gradients flow through the generator into the projector and the core.

    Made to run on a CPU too: the prompt's constant start is computed once (:class:`_Prefix`),
    the rest runs under bf16 autocast when ``cfg.generator_bf16``, and the output layer is
    applied only where a reply token is predicted (49,152 logits a position otherwise).
    Measured on 2 cores: about 2 s a step at batch 32 (4 s in fp32)."""
    from models.generator import FUSION_MARKER

    out = model({"image": (batch["image"], None)}, batch["text"], batch["text_mask"])  # tokens (B, K, 576)
    lm = gen.model
    table = lm.get_input_embeddings()
    dev = out.tokens.device
    rows, targets, described = [], [], []
    prefix_ids = None
    for i in range(out.tokens.shape[0]):
        question = data.texts.texts[int(batch["row"][i])]
        word = data.vocab[int(batch["answer"][i])]
        if word == DESCRIBE_ANSWER:  # a description request: the reply is the scene's caption
            statement = clevr.caption(data.scenes[int(batch["scene"][i])])
        else:
            statement = clevr.answer_statement(question, word)
        before, after = tokens_prompt(gen, cfg.generator_system, question).split(FUSION_MARKER)
        ids_b = gen.encode(before)
        prefix_ids = prefix_ids or ids_b
        if ids_b != prefix_ids:
            raise ValueError("the prompt before the fusion tokens must not depend on the question")
        reply = gen.encode(statement) + [gen.tokenizer.convert_tokens_to_ids("<|im_end|>")]
        ids_a = gen.encode(after)
        rows.append(torch.cat([out.tokens[i], table(torch.tensor(ids_a + reply, device=dev))]))  # (K + T_a + R, 576)
        targets.append((out.tokens.shape[1] + len(ids_a), reply))
        described.append(word == DESCRIBE_ANSWER)
    width = max(r.shape[0] for r in rows)
    embeds = torch.stack([F.pad(r, (0, 0, 0, width - r.shape[0])) for r in rows])  # (B, L, 576), right-padded
    valid = torch.stack([torch.arange(width, device=dev) < r.shape[0] for r in rows])  # (B, L)
    past = _PREFIX.cache_for(lm, prefix_ids, len(rows))
    mask = torch.cat([torch.ones(len(rows), len(prefix_ids), dtype=torch.long, device=dev), valid.long()], 1)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.generator_bf16):
        hidden = lm.model(inputs_embeds=embeds, attention_mask=mask, past_key_values=past).last_hidden_state  # (B, L, 576)
        # position j predicts token j + 1: the reply's tokens are predicted from start - 1 on
        picked = torch.cat([hidden[b, s - 1:s - 1 + len(r)] for b, (s, r) in enumerate(targets)])  # (sum R, 576)
        logits = lm.lm_head(picked).float()  # (sum R, vocab)
    labels = torch.tensor([t for _, r in targets for t in r], device=dev)
    loss = F.cross_entropy(logits, labels)
    right = (logits.argmax(-1) == labels).split([len(r) for _, r in targets])  # per reply
    stats = {"lm_loss": float(loss.detach()), "token_acc": float(torch.cat(right).float().mean()),
             "reply_acc": sum(bool(r.all()) for r in right) / len(right)}
    if any(described):  # descriptions apart: long replies, and the answers' accuracy stays comparable
        told = [r for r, d in zip(right, described) if d]
        stats["describe_token_acc"] = float(torch.cat(told).float().mean())
        stats["describe_reply_acc"] = sum(bool(r.all()) for r in told) / len(told)
        answers = [r for r, d in zip(right, described) if not d]
        stats["answer_reply_acc"] = sum(bool(r.all()) for r in answers) / max(1, len(answers))
    return loss, stats
