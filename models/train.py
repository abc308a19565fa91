"""Train the fusion core on Sort-of-CLEVR: ``python -m models.train CONFIG`` (or ``assistant train CONFIG``).

The image encoder and the generator stay frozen; the fusion core and its projector train.
Their outputs are cached (:mod:`models.features`), so a step only runs the small core.
Three stages run one after another in the same script, each for ``*_steps`` steps (0 skips):

1. ``answer`` — the fusion core with its answer head (cross-entropy over the answer words,
   plus ``none`` for questions or images that are not Sort-of-CLEVR and ``describe`` for
   description requests) and its caption head (one sigmoid per caption fact), without the
   generator, as BLIP-2 pre-trains its Q-Former.
2. ``align`` — CPU-trainable alignment: the core is frozen, the projector learns to make the K
   output tokens regress onto the generator's own input embeddings of a K-token sentence
   that states the answer (cosine + MSE), so no backward pass goes through the generator.
3. ``generator`` — the generator-coupled stage (meant for a GPU): the K tokens are spliced
   into the generator's chat prompt in front of the question and the generator's
   language-model loss on the answer sentence back-propagates through the frozen generator
   into the projector and core. About 80 ms a step at batch 256 on an H200; 10-20 s per
   batch of 8 on two CPU cores, which is why the CPU recipe leaves it at 0 steps.

HF Accelerate runs the same script on the CPU, one GPU, or several (``accelerate launch -m
models.train CONFIG``): each process samples different batches; the main process writes.

One output folder holds everything: ``train_config.json``, ``metrics.jsonl`` (one JSON line
per logged step and evaluation), ``checkpoint/`` (float32 weights, optimizer state as
safetensors, ``state.json``; a rerun resumes from it), and ``final/`` (``config.json`` +
float16 ``model.safetensors``: the shippable fusion weights). No pickle anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from models import clevr
from models.features import TextTable, default_cache_dir, image_tokens
from models.fusion import FusionConfig, FusionCore, build_fusion, load_fusion

MAX_WEIGHTS_BYTES = 16 * 1024 * 1024
STAGES = ("answer", "align", "generator")
DESCRIBE_ANSWER = "describe"
"""Answer-head class for 'this asks for a description: read the caption head'."""


def answer_vocabulary() -> list[str]:
    """The answer head's classes: the 12 answer words, then 'none' and 'describe'."""
    return list(clevr.ANSWERS) + [clevr.NONE_ANSWER, DESCRIBE_ANSWER]


# ------------------------------------------------------------------------------ configuration


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``train_config.json`` in the output folder."""

    output_dir: str = "out/fusion"
    cache_dir: str = ""
    """Feature cache (image tokens, text embeddings); "" = $SYNESTHESIA_CACHE_DIR/clevr."""
    fusion: dict = field(default_factory=dict)
    """FusionConfig fields (strategy, d_model, ...); answers and caption attributes are filled in."""
    train_scenes: int = 6000
    train_first_seed: int = 0
    eval_scenes: int = 500
    eval_first_seed: int = 1_000_000
    other_images: int = 600
    """Images that are not scenes (for the 'none' class)."""
    other_first_seed: int = 2_000_000
    eval_other_images: int = 100
    eval_other_first_seed: int = 3_000_000
    none_fraction: float = 0.08
    """Share of each batch that is a 'none' example (a non-scene image or an unrelated question)."""
    describe_fraction: float = 0.08
    """Share of each batch that asks for a description (caption head)."""
    noise_fraction: float = 0.2
    """Share of questions replaced by a synthetic recognition-error variant."""
    noise_variants: int = 4
    """Distinct synthetic-noise variants per question string."""
    spoken_fraction: float = 0.2
    """Share of questions replaced by a real recognizer transcript, when spoken data exists."""
    spoken_file: str = ""
    """Transcripts of spoken questions (JSON written by :func:`make_spoken`, e.g. configs/clevr_spoken.json); "" = none."""
    batch_size: int = 128
    answer_steps: int = 3000
    align_steps: int = 600
    generator_steps: int = 0
    lr: float = 1e-3
    align_lr: float = 1e-3
    generator_lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    caption_weight: float = 1.0
    log_every: int = 50
    eval_every: int = 500
    save_every: int = 250
    eval_questions: int = 3000
    """Questions sampled from the held-out scenes for the evaluations during training."""
    seed: int = 0
    threads: int = 2
    """torch threads on the CPU (the machine is shared: keep it small)."""
    generator: str = "smollm2"
    generator_cache_dir: str = ""
    carrier: str = "Looking at the picture, the answer to the question is {answer}"
    """Sentence whose last K tokens the align stage regresses onto (its last word: the answer)."""
    domain_margin: float = 1.25
    """After training, the core stores its training images' feature statistics and calls an
    image out of domain beyond this many times the largest training-image distance (0: off)."""
    stop_after: int = 0
    """Stop this run after so many steps (0: run to the end); a rerun resumes. For time-sliced
    runs on a shared machine, and for testing resumption."""
    ship_dir: str = ""
    """If set, the final weights are also copied here (e.g. models/weights/fusion)."""
    init_from: str = ""
    """A fusion weights folder (config.json + model.safetensors, e.g. an earlier run's final/)
    to start from instead of random weights; parameters this config adds (relation layers,
    grid coordinates) keep their fresh values. Ignored when resuming from a checkpoint."""

    @classmethod
    def from_file(cls, path: str | Path, **overrides) -> "TrainConfig":
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the training config ({e})") from e
        return cls.from_dict({**raw, **overrides})

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known - {"comment"})
        if unknown:
            raise ValueError(f"unknown training config fields: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**{k: v for k, v in raw.items() if k in known})

    def fusion_config(self) -> FusionConfig:
        extra = dict(self.fusion)
        extra["answers"] = answer_vocabulary()
        extra["caption_attributes"] = clevr.caption_attributes()
        return FusionConfig(**extra)

    @property
    def total_steps(self) -> int:
        return self.answer_steps + self.align_steps + self.generator_steps

    def stage_at(self, step: int) -> tuple[str, int, int]:
        """(stage name, step within it, its length) for a global step."""
        for name, n in zip(STAGES, (self.answer_steps, self.align_steps, self.generator_steps)):
            if step < n:
                return name, step, n
            step -= n
        raise ValueError("step past the end of training")


# ------------------------------------------------------------------------------ text variants

_HOMOPHONES = {
    "red": ["read", "rid", "bread"], "blue": ["blew", "below"], "right": ["write", "bright"],
    "gray": ["grey", "great", "grade"], "four": ["for"], "two": ["to", "too"], "the": ["a", "uh"],
    "square": ["squared", "where"], "circle": ["circles", "cycle"], "left": ["lift", "laughed"],
    "top": ["stop", "tap"], "bottom": ["button", "bottle"], "object": ["objects", "subject"],
    "shape": ["shaped", "change"], "yellow": ["hello", "yellows"], "green": ["greene", "screen"],
    "orange": ["arrange", "oranges"], "closest": ["close", "closes"], "furthest": ["farthest", "first"],
    "many": ["money"], "is": ["as", "it's"], "of": ["off", "a"],
}
_KEEP = set(clevr.COLOURS) | {h for c in clevr.COLOURS for h in _HOMOPHONES.get(c, [])}
"""Never dropped: without its colour (or what it was misheard as) a question is unanswerable."""


def noisy_text(text: str, rng: random.Random) -> str:
    """A recognizer-like corruption: lower case, no punctuation, then one to three of
    homophone swaps, dropped or repeated words, and fillers (colour words are never dropped)."""
    words = re.sub(r"[^a-z' ]+", " ", text.lower()).split()
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        i = rng.randrange(len(words))
        w = words[i]
        if op < 0.5 and w in _HOMOPHONES:
            words[i] = rng.choice(_HOMOPHONES[w])
        elif op < 0.7 and w not in _KEEP and len(words) > 3:
            del words[i]
        elif op < 0.85:
            words.insert(i, w)
        else:
            words.insert(i, rng.choice(["uh", "um", "and", "so"]))
    return " ".join(words)


def question_strings(noise_variants: int, seed: int = 0) -> dict[tuple[str, str | None, int], list[str]]:
    """(kind, colour, template) -> [clean text, noisy variant 1, ...] for every question form."""
    out = {}
    for kind, forms in clevr.TEMPLATES.items():
        colours = [None] if kind == clevr.DESCRIBE else list(clevr.COLOURS)
        for colour in colours:
            for t, form in enumerate(forms):
                text = form.format(c=colour)
                rng = random.Random(f"{seed}/{text}")
                out[(kind, colour, t)] = [text] + [noisy_text(text, rng) for _ in range(noise_variants)]
    return out


# ------------------------------------------------------------------------------ data


class ClevrData:
    """Cached features + answers for a range of scenes and of non-scene images, and a sampler.

    Batches are drawn by :meth:`batch` from a numpy generator, so a (seed, step) pair always
    gives the same batch (resuming repeats nothing and skips nothing)."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        split: str,
        texts: TextTable,
        strings: dict,
        spoken: dict[str, list[str]],
        encoder=None,
    ):
        self.cfg = cfg
        first, count = (cfg.train_first_seed, cfg.train_scenes) if split == "train" else (cfg.eval_first_seed, cfg.eval_scenes)
        ofirst, ocount = (cfg.other_first_seed, cfg.other_images) if split == "train" else (cfg.eval_other_first_seed, cfg.eval_other_images)
        cache = cfg.cache_dir or None
        self.scenes = [clevr.make_scene(s) for s in range(first, first + count)]
        self.image = image_tokens(encoder, "scene", first, count, cache)  # (S, 49, 320) float16
        self.other = image_tokens(encoder, "other", ofirst, ocount, cache) if ocount else None  # (O, 49, 320)
        vocab = answer_vocabulary()
        self.vocab = vocab
        kinds = clevr.QUESTION_TYPES
        # answers[s, k, c]: answer index of question type k about colour c in scene s
        self.answers = torch.tensor(
            [[[vocab.index(clevr.answer(sc, k, c)) for c in clevr.COLOURS] for k in kinds] for sc in self.scenes]
        )  # (S, 6, 6)
        self.facts = torch.tensor([clevr.caption_targets(sc) for sc in self.scenes])  # (S, 18)
        self.texts, self.strings, self.spoken = texts, strings, spoken
        # Row tables: rows[(kind, colour, template)] = (clean row, [noisy rows], [spoken rows])
        self.rows = {}
        for key, variants in strings.items():
            clean = texts.index[variants[0]]
            noisy = [texts.index[v] for v in variants[1:]]
            heard = [texts.index[v] for v in spoken.get(variants[0], [])]
            self.rows[key] = (clean, noisy, heard)
        self.other_rows = [texts.index[q] for q in clevr.OTHER_QUESTIONS]

    def _row(self, key, rng: np.random.Generator, variant: str) -> int:
        clean, noisy, heard = self.rows[key]
        if variant == "spoken":
            return heard[rng.integers(len(heard))] if heard else clean
        if variant == "noisy":
            return noisy[rng.integers(len(noisy))] if noisy else clean
        if variant == "typed":
            return clean
        r = rng.random()  # "mix": the training distribution
        if heard and r < self.cfg.spoken_fraction:
            return heard[rng.integers(len(heard))]
        if noisy and r < self.cfg.spoken_fraction + self.cfg.noise_fraction:
            return noisy[rng.integers(len(noisy))]
        return clean

    def examples(self, n: int, rng: np.random.Generator, *, variant: str = "mix", canonical: bool = False,
                 none_fraction: float | None = None, describe_fraction: float | None = None) -> dict:
        """Sample n examples. Returns a dict of tensors:
        image (n, 49, 320) float32, text (n, T, 576), text_mask (n, T), answer (n,) long,
        facts (n, 18), has_facts (n,) bool, kind (n,) long (0-5 question types, 6 describe,
        7 none), scene (n,) long (-1 for non-scene images), row (n,) text rows."""
        nf = self.cfg.none_fraction if none_fraction is None else none_fraction
        df = self.cfg.describe_fraction if describe_fraction is None else describe_fraction
        kinds = list(clevr.QUESTION_TYPES)
        scene = rng.integers(len(self.scenes), size=n)
        draw = rng.random(n)
        images, rows, answers, kind_ids, scene_ids, has_facts = [], [], [], [], [], []
        none_id, describe_id = self.vocab.index(clevr.NONE_ANSWER), self.vocab.index(DESCRIBE_ANSWER)
        for i in range(n):
            s = int(scene[i])
            if draw[i] < nf:  # a 'none' example: non-scene image with any question, or scene + unrelated question
                if self.other is not None and rng.random() < 0.6:
                    img = self.other[rng.integers(len(self.other))]
                    k = clevr.DESCRIBE if rng.random() < 0.3 else kinds[rng.integers(6)]
                    colour = None if k == clevr.DESCRIBE else clevr.COLOURS[rng.integers(6)]
                    t = 0 if canonical else int(rng.integers(len(clevr.TEMPLATES[k])))
                    row = self._row((k, colour, t), rng, variant)
                    s = -1
                else:
                    img = self.image[s]
                    row = self.other_rows[rng.integers(len(self.other_rows))]
                images.append(img), rows.append(row), answers.append(none_id), kind_ids.append(7)
                scene_ids.append(s), has_facts.append(False)
            elif draw[i] < nf + df:  # describe a scene
                t = 0 if canonical else int(rng.integers(len(clevr.TEMPLATES[clevr.DESCRIBE])))
                images.append(self.image[s]), rows.append(self._row((clevr.DESCRIBE, None, t), rng, variant))
                answers.append(describe_id), kind_ids.append(6), scene_ids.append(s), has_facts.append(True)
            else:
                k, c = int(rng.integers(6)), int(rng.integers(6))
                t = 0 if canonical else int(rng.integers(len(clevr.TEMPLATES[kinds[k]])))
                images.append(self.image[s]), rows.append(self._row((kinds[k], clevr.COLOURS[c], t), rng, variant))
                answers.append(int(self.answers[s, k, c])), kind_ids.append(k), scene_ids.append(s), has_facts.append(False)
        rows_t = torch.tensor(rows)
        text, mask = self.texts.lookup(rows_t)  # (n, T, 576), (n, T)
        sid = torch.tensor(scene_ids)
        facts = torch.zeros(n, self.facts.shape[1])
        ok = sid >= 0
        facts[ok] = self.facts[sid[ok]]
        return {
            "image": torch.stack(images).float(),  # (n, 49, 320)
            "text": text,
            "text_mask": mask,
            "answer": torch.tensor(answers),
            "facts": facts,  # (n, 18)
            "has_facts": torch.tensor(has_facts),
            "kind": torch.tensor(kind_ids),
            "scene": sid,
            "row": rows_t,
        }


def load_spoken(path: str, split: str = "train") -> dict[str, list[str]]:
    """{question: transcripts} from a :func:`make_spoken` file: every rendition but the last
    for ``split="train"``, only the last (a voice/rate/pitch/noise draw never trained on) for
    ``"eval"``, which the training-time spoken check reads. Those are still tuning voices: the
    spoken evaluation proper (:func:`models.evaluate.evaluate_spoken`) speaks with voices no
    transcript was made from. Empty transcripts (nothing recognized) are dropped."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: spoken questions file not found (make it with `python -m models.train CONFIG --make-spoken {p}`)")
    raw = json.loads(p.read_text(encoding="utf-8"))["transcripts"]
    pick = (lambda ts: ts[:-1]) if split == "train" else (lambda ts: ts[-1:])
    return {q: [t for t in pick(ts) if t.strip()] for q, ts in raw.items()}


def build_data(cfg: TrainConfig, text_encoder=None, image_encoder=None, splits=("train", "eval")) -> dict[str, ClevrData]:
    """Texts and features for the splits (computed with the encoders when not cached). The
    eval split's spoken questions are the held-out renditions."""
    strings = question_strings(cfg.noise_variants, cfg.seed)
    spoken = {s: load_spoken(cfg.spoken_file, "train" if s == "train" else "eval") for s in splits}
    all_texts = [v for vs in strings.values() for v in vs] + list(clevr.OTHER_QUESTIONS)
    all_texts += [t for sp in spoken.values() for ts in sp.values() for t in ts]
    texts = TextTable.build(all_texts, text_encoder, cfg.cache_dir or None)
    return {s: ClevrData(cfg, split=s, texts=texts, strings=strings, spoken=spoken[s], encoder=image_encoder) for s in splits}


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


# ------------------------------------------------------------------------------ checkpoints


def save_checkpoint(folder: Path, model: FusionCore, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """float32 weights + optimizer tensors (safetensors) + state.json, written atomically."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        for f in tmp.iterdir():
            f.unlink()
    model.save(tmp)  # config.json + model.safetensors (float32)
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in opt["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = v
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    groups = [{k: v for k, v in g.items()} for g in opt["param_groups"]]
    (tmp / "state.json").write_text(json.dumps({**state, "param_groups": groups, "optimizer_scalars": scalars}, indent=1))
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        if old.exists():
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        folder.rename(old)
        tmp.rename(folder)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(folder)


def load_checkpoint(folder: Path, model: FusionCore, optimizer: torch.optim.Optimizer | None) -> dict:
    state = json.loads((folder / "state.json").read_text())
    weights = load_file(str(folder / "model.safetensors"))
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    if optimizer is not None and state.get("stage") == _stage_marker(optimizer):
        tensors = load_file(str(folder / "optimizer.safetensors"))
        opt_state: dict = {}
        for key, v in tensors.items():
            pid, name = key.split(".", 1)
            opt_state.setdefault(int(pid), {})[name] = v
        for key, v in state.get("optimizer_scalars", {}).items():
            pid, name = key.split(".", 1)
            opt_state.setdefault(int(pid), {})[name] = v
        optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    return state


def init_weights(model: FusionCore, folder: str | Path) -> list[str]:
    """Load an earlier core's weights into ``model`` (same strategy and widths). Returns the
    names of the parameters ``model`` has and the folder lacks (left as initialised); a shape
    mismatch, a parameter ``model`` does not have, or a different strategy is an error."""
    try:
        earlier = load_fusion(folder)
    except (OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"init_from {folder}: cannot read fusion weights ({e})") from e
    if earlier.cfg.strategy != model.cfg.strategy:
        raise ValueError(f"init_from {folder}: strategy {earlier.cfg.strategy!r}, this run trains {model.cfg.strategy!r}")
    # the domain statistics are not carried over: they are recalibrated at the end of the run
    weights = {k: v for k, v in earlier.state_dict().items() if not k.startswith("domain_")}
    own = model.state_dict()
    bad = [k for k, v in weights.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise ValueError(f"init_from {folder}: {len(bad)} tensors do not fit this config (first: {bad[0]})")
    model.load_state_dict(weights, strict=False)
    return sorted({k.rsplit(".", 1)[0] for k in own if k not in weights and not k.startswith("domain_")})


def _stage_marker(optimizer) -> str:
    return getattr(optimizer, "stage_name", "")


def check_weights_size(folder: Path) -> int:
    size = (folder / "model.safetensors").stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise ValueError(f"{folder}/model.safetensors is {size / 2**20:.1f} MiB, over the 16 MiB limit: shrink the core")
    return size


# ------------------------------------------------------------------------------ the loop


def _lr(step: int, length: int, base: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5% within a stage."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, length - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _make_optimizer(model: FusionCore, stage: str, cfg: TrainConfig) -> torch.optim.Optimizer:
    if stage == "answer":
        params, lr = [p for n, p in model.named_parameters() if not n.startswith("projector.")], cfg.lr
    elif stage == "align":
        params, lr = list(model.projector.parameters()), cfg.align_lr
    else:
        params, lr = list(model.parameters()), cfg.generator_lr
    trainable = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    opt.stage_name = stage
    return opt


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def train(cfg: TrainConfig, *, text_encoder=None, image_encoder=None, generator=None,
          progress: bool = True, resume: bool = True, log=print) -> Path:
    """Run (or resume) the stages in ``cfg``; returns the folder of the final weights.

    ``text_encoder`` (texts -> (embeds, mask)) and ``image_encoder`` are only needed for
    features not cached yet; when both are None and something is missing, the real frozen
    models are loaded (EfficientNet-Lite0 and the generator)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    torch.set_num_threads(max(1, cfg.threads))
    accelerator = Accelerator()
    set_seed(cfg.seed)
    out = Path(cfg.output_dir)
    ckpt = out / "checkpoint"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))

    needs_generator = cfg.align_steps > 0 or cfg.generator_steps > 0
    if generator is None and (needs_generator or text_encoder is None):
        generator = _lazy_generator(cfg, log)
    if text_encoder is None:
        text_encoder = lambda texts: generator().embed_text(texts)  # noqa: E731
    elif generator is None:
        generator = lambda: None  # noqa: E731
    if image_encoder is None:
        image_encoder = _LazyImageEncoder()
    data = build_data(cfg, text_encoder, image_encoder)
    train_data, eval_data = data["train"], data["eval"]

    fcfg = cfg.fusion_config()
    model = build_fusion(fcfg)
    n_params = sum(p.numel() for p in model.parameters())
    start, stage_now = 0, None
    state: dict = {}
    if resume and (ckpt / "state.json").is_file():
        state = json.loads((ckpt / "state.json").read_text())
        start = int(state["step"])
        log(f"resuming from {ckpt} at step {start}")
    elif cfg.init_from:
        fresh = init_weights(model, cfg.init_from)
        log(f"starting from {cfg.init_from}" + (f" (new: {', '.join(fresh)})" if fresh else ""))
    targets = None
    if cfg.align_steps > 0:
        targets = carrier_targets(cfg, fcfg, text_encoder)
    metrics_file = out / "metrics.jsonl"
    eval_rng_seed = cfg.seed + 12345
    bar = None
    if progress and accelerator.is_main_process and start < cfg.total_steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.total_steps, initial=start, desc="fusion", dynamic_ncols=True)
    optimizer = None
    t0 = time.time()
    elapsed0 = float(state.get("elapsed_s", 0.0))
    end = min(cfg.total_steps, start + cfg.stop_after) if cfg.stop_after else cfg.total_steps
    for step in range(start, end):
        stage, sstep, slen = cfg.stage_at(step)
        if stage != stage_now:  # a new stage (or a resume): fresh optimizer over that stage's parameters
            raw_model = model if optimizer is None else accelerator.unwrap_model(model)
            optimizer = _make_optimizer(raw_model, stage, cfg)
            if state and stage_now is None and (ckpt / "state.json").is_file():
                load_checkpoint(ckpt, raw_model, optimizer)
            if stage == "generator" and fcfg.alignment != "lm":
                fcfg.alignment, fcfg.aligned_to_generator = "lm", True
            elif stage == "align" and fcfg.alignment == "":
                fcfg.alignment = "regression"
            model, optimizer = accelerator.prepare(raw_model, optimizer)
            stage_now = stage
            if stage == "generator":
                gen = generator()
        base = {"answer": cfg.lr, "align": cfg.align_lr, "generator": cfg.generator_lr}[stage]
        lr = _lr(sstep, slen, base, min(cfg.warmup_steps, max(1, slen // 10)))
        for g in optimizer.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([cfg.seed, accelerator.process_index, step])
        model.train()
        if stage == "generator":
            batch = _to(train_data.examples(cfg.batch_size, rng, none_fraction=0.0, describe_fraction=0.0), accelerator.device)
            loss, stats = generator_loss(accelerator.unwrap_model(model), gen, batch, train_data, cfg)
        else:
            batch = _to(train_data.examples(cfg.batch_size, rng), accelerator.device)
            out_ = model({"image": (batch["image"], None)}, batch["text"], batch["text_mask"])
            if stage == "answer":
                loss, stats = answer_loss(out_, batch, cfg.caption_weight)
            else:
                loss, stats = align_loss(out_, batch, targets.to(accelerator.device))
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
        optimizer.step()
        done = step + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(stage=stage, loss=f"{float(loss.detach()):.3f}")
        elapsed = elapsed0 + time.time() - t0
        if accelerator.is_main_process and (done % cfg.log_every == 0 or done == cfg.total_steps):
            _append(metrics_file, {"step": done, "stage": stage, "lr": lr, "loss": float(loss.detach()), "elapsed_s": round(elapsed, 1), **stats})
        if accelerator.is_main_process and (done % cfg.eval_every == 0 or done == cfg.total_steps):
            ev = evaluate_heads(accelerator.unwrap_model(model), eval_data, cfg.eval_questions, eval_rng_seed,
                                targets=targets.to(accelerator.device) if targets is not None and stage != "answer" else None)
            _append(metrics_file, {"step": done, "stage": stage, "eval": ev, "elapsed_s": round(elapsed, 1)})
            if bar is not None:
                bar.write(f"step {done} {stage}: " + ", ".join(f"{k} {v:.3f}" for k, v in ev.items() if isinstance(v, float)))
        if accelerator.is_main_process and (done % cfg.save_every == 0 or done in (cfg.total_steps, end)):
            raw = accelerator.unwrap_model(model)
            raw.cfg = fcfg
            save_checkpoint(ckpt, raw, optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                            {"step": done, "stage": stage, "elapsed_s": round(elapsed, 1)})
    if bar is not None:
        bar.close()
    accelerator.wait_for_everyone()
    final = out / "final"
    if end < cfg.total_steps:
        log(f"stopped at step {end} of {cfg.total_steps} (stop_after); run again to resume")
        return ckpt
    if accelerator.is_main_process:
        raw = accelerator.unwrap_model(model) if stage_now else model
        if stage_now is None and (ckpt / "state.json").is_file():  # nothing left to run: final from the checkpoint
            load_checkpoint(ckpt, raw, None)
            fcfg = _checkpoint_fusion_config(ckpt)
        raw.cfg = fcfg
        if cfg.domain_margin > 0:
            calib = calibrate_domain(raw, train_data, eval_data, cfg.domain_margin)
            _append(metrics_file, {"step": cfg.total_steps, "domain": calib})
            log("domain check: " + ", ".join(f"{k} {v:.3f}" for k, v in calib.items()))
        raw.save(final, dtype=torch.float16)
        size = check_weights_size(final)
        log(f"fusion weights: {final} ({size / 2**20:.2f} MiB, {n_params / 1e6:.2f} M parameters)")
        if cfg.ship_dir:
            raw.save(cfg.ship_dir, dtype=torch.float16)
            log(f"shipped to {cfg.ship_dir}")
    return final


def calibrate_domain(model: FusionCore, train_data: "ClevrData", eval_data: "ClevrData", margin: float) -> dict:
    """Give the core its training images' pooled-feature mean and spread and a threshold of
    ``margin`` x the largest training-image distance; report how held-out scenes (should be
    inside) and held-out non-scene images (should be outside) fall."""
    pooled = train_data.image.float().mean(dim=1)  # (S, 320)
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


def _checkpoint_fusion_config(ckpt: Path) -> FusionConfig:
    raw = json.loads((ckpt / "config.json").read_text())
    known = {f.name for f in fields(FusionConfig)}
    return FusionConfig(**{k: v for k, v in raw.items() if k in known})


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


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
        batch = _to(data.examples(min(batch_size, n - b), rng, variant=variant, canonical=canonical), device)
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


# ------------------------------------------------------------------------------ frozen models, loaded on demand


def _lazy_generator(cfg: TrainConfig, log):
    holder: dict = {}

    def get():
        if "g" not in holder:
            from models.generator import Generator

            log(f"loading the frozen generator ({cfg.generator})")
            holder["g"] = Generator.load(cfg.generator, device="auto", runtime="torch",
                                         cache_dir=cfg.generator_cache_dir or None, progress=log)
        return holder["g"]

    return get


class _LazyImageEncoder:
    """Loads EfficientNet-Lite0 the first time a feature is not in the cache."""

    def __init__(self):
        self._enc = None

    def _get(self):
        if self._enc is None:
            from models.image import ImageEncoder

            self._enc = ImageEncoder.load()
        return self._enc

    def preprocess(self, images):
        return self._get().preprocess(images)

    def features(self, pixels):
        return self._get().features(pixels)


# ------------------------------------------------------------------------------ spoken questions

SPOKEN_RATES = (140, 175, 200)
SPOKEN_PITCHES = (35, 50, 70)
SPOKEN_SNR_DB = (10.0, 30.0)
SPOKEN_CONTEXT = "scene"
"""The recognition context the application uses for a question about a scene picture
(``Assistant.recognition_context``): spoken training data is recognized the same way."""


def voice_spec(voice) -> tuple[str, int | None, int | None]:
    """(eSpeak voice name, rate or None, pitch or None) from a voice entry of
    :mod:`models.speech.voices`: a name, a (name, rate[, pitch]) tuple, or an object with
    ``voice``/``name``, ``rate`` and ``pitch`` attributes."""
    if isinstance(voice, str):
        return voice, None, None
    if isinstance(voice, (tuple, list)):
        name, *rest = voice
        return str(name), (int(rest[0]) if rest and rest[0] is not None else None), \
            (int(rest[1]) if len(rest) > 1 and rest[1] is not None else None)
    name = getattr(voice, "voice", None) or getattr(voice, "name")
    rate, pitch = getattr(voice, "rate", None), getattr(voice, "pitch", None)
    return str(name), (int(rate) if rate is not None else None), (int(pitch) if pitch is not None else None)


def check_tuning_voices(voices) -> None:
    """ValueError if any of ``voices`` is an evaluation voice (:data:`models.speech.voices.EVAL_VOICES`):
    a voice that trained the model can no longer measure it."""
    from models.speech.voices import EVAL_VOICES

    held_out = {voice_spec(v)[0] for v in EVAL_VOICES}
    clash = sorted({voice_spec(v)[0] for v in voices} & held_out)
    if clash:
        raise ValueError(f"{', '.join(clash)}: evaluation voice(s) must never make training data "
                         f"(use models.speech.voices.TUNING_VOICES)")


def espeak_factory():
    """(voice, rate, pitch) -> an eSpeak NG synthesizer, one per setting (cached)."""
    from models.speech.tts import EspeakSynthesizer

    made: dict = {}

    def get(voice: str, rate: int, pitch: int | None):
        key = (voice, rate, pitch)
        if key not in made:
            made[key] = EspeakSynthesizer(voice=voice, rate=rate, pitch=pitch)
        return made[key]

    return get


def noisy_speech(synth, text: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``text`` spoken by ``synth`` (anything with ``synthesize`` and ``sample_rate``), resampled
    to 16 kHz, plus white noise ``snr_db`` dB below the speech's RMS: (T,) float32 in [-1, 1]."""
    audio = _resample(np.asarray(synth.synthesize(text), np.float32), synth.sample_rate, 16000)  # (T,) 16 kHz
    rms = float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    noise = rng.normal(0, (rms or 1e-3) * 10 ** (-snr_db / 20), audio.shape).astype(np.float32)
    return np.clip(audio + noise, -1, 1).astype(np.float32)


def spoken_questions(canonical_only: bool = False) -> list[str]:
    """The question strings :func:`make_spoken` speaks: every form of the six question types
    for every colour and every description request (or only the canonical forms)."""
    return [v[0] for (_kind, _c, t), v in question_strings(0).items() if t == 0 or not canonical_only]


def make_spoken(path: str | Path, *, voices=None, rates=SPOKEN_RATES, pitches=SPOKEN_PITCHES,
                snr_db=SPOKEN_SNR_DB, renditions: int = 4, canonical_only: bool = False, seed: int = 0,
                limit: int | None = None, recognizer=None, synthesizer=None, context: str | None = SPOKEN_CONTEXT,
                log=print) -> Path:
    """Synthesize the questions with eSpeak NG in the tuning voices (never an evaluation voice),
    rates and pitches (drawn from ``rates`` and ``pitches`` per rendition), add white noise at
    a random signal-to-noise ratio, and write what the
    application's default recognizer hears, as JSON::

        {"recognizer": name, "context": "scene", "voices": [...],
         "transcripts": {question: [heard per rendition]}, "settings": {question: [...]}}

    ``recognizer``: default ``load_recognizer("whisper")`` (Whisper tiny.en), asked with
    ``context="scene"`` as the application asks about a scene picture. ``voices``: default
    :data:`models.speech.voices.TUNING_VOICES` (rotating per question and rendition); an
    evaluation voice is refused. ``synthesizer``: ``(voice, rate, pitch) -> synthesizer``
    (default eSpeak NG). The last rendition of each question is kept out of training (see
    :func:`load_spoken`) for the training-time spoken check; the real spoken evaluation
    (``assistant eval --only spoken``) synthesizes with the evaluation voices instead.

    Resumable: questions already in the file are skipped, unless it was made by another
    recognizer or context (then it is made again from scratch)."""
    if voices is None:
        from models.speech.voices import TUNING_VOICES

        voices = TUNING_VOICES
    voices = list(voices)
    check_tuning_voices(voices)
    if recognizer is None:
        from models.speech.asr import load_recognizer

        recognizer = load_recognizer("whisper")
    synthesizer = synthesizer or espeak_factory()
    path = Path(path)
    name = getattr(recognizer, "name", type(recognizer).__name__)
    header = {"recognizer": name, "context": context, "voices": [voice_spec(v)[0] for v in voices]}
    done: dict = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if {k: done.get(k) for k in ("recognizer", "context")} != {k: header[k] for k in ("recognizer", "context")}:
        if done:
            log(f"{path}: made by {done.get('recognizer', 'another recognizer')}; making it again with {name}")
        done = {}
    done = {**header, "transcripts": done.get("transcripts", {}), "settings": done.get("settings", {})}
    questions = spoken_questions(canonical_only)
    if limit:
        questions = questions[:limit]
    t0 = time.time()
    for qi, q in enumerate(questions):
        if q in done["transcripts"]:
            continue
        rng = np.random.default_rng([seed, qi])
        heard, settings = [], []
        for j in range(renditions):
            voice, _rate, vpitch = voice_spec(voices[(qi + j) % len(voices)])
            rate = int(rng.choice(rates))  # every rate, not only the voice's usual one: robustness
            pitch = vpitch if vpitch is not None else int(rng.choice(pitches))
            snr = float(rng.uniform(*snr_db))
            audio = noisy_speech(synthesizer(voice, rate, pitch), q, snr, rng)  # (T,) float32, 16 kHz
            text = recognizer.transcribe(audio, context=context) if context else recognizer.transcribe(audio)
            heard.append(text.strip())
            settings.append({"voice": voice, "rate": rate, "pitch": pitch, "snr_db": round(snr, 1)})
        done["transcripts"][q] = heard
        done["settings"][q] = settings
        path.write_text(json.dumps(done, indent=1), encoding="utf-8")
        log(f"spoken {qi + 1}/{len(questions)} ({time.time() - t0:.0f} s): {q!r} -> {heard}")
    return path


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    import soxr

    return soxr.resample(audio, rate, target).astype(np.float32)


# ------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="training config (JSON), e.g. configs/fusion_cpu.json")
    ap.add_argument("--output-dir", help="override output_dir")
    ap.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    ap.add_argument("--make-spoken", metavar="PATH",
                    help="first synthesize (tuning voices) + recognize (Whisper, scene context) the spoken questions into PATH")
    ap.add_argument("--spoken-only", action="store_true", help="with --make-spoken: stop after making the spoken questions")
    args = ap.parse_args(argv)
    overrides = {"output_dir": args.output_dir} if args.output_dir else {}
    cfg = TrainConfig.from_file(args.config, **overrides)
    if args.make_spoken:
        make_spoken(args.make_spoken)
        if args.spoken_only:
            return 0
    train(cfg, resume=not args.no_resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
