"""MMRNN: a GRU that writes a scene's caption word by word from the fusion core's output tokens.

The recurrent baseline beside the fusion core's caption head (a Transformer-style core read
by a linear head). The frozen, shipped fusion core (``models/weights/fusion``) reads a scene's
image tokens with the question "Describe the image." and gives K output tokens (K, d_model = 128, read before the projector into the generator's
embedding space); the decoder starts from them (the flattened tokens -> the GRU's first state) and attends to them at
every word (dot-product attention), writing the caption of :func:`models.clevr.caption`
("There are six objects: a red square at the top left, ...") from a closed vocabulary.

Training (``python -m models.mmrnn CONFIG`` or ``assistant train configs/mmrnn_cpu.json``):
teacher forcing, cross-entropy, on the cached features of the fusion core's training scenes;
evaluated by greedy decoding on its held-out scenes (seeds from 1,000,000), per object:
colour named, shape, left/right, top/bottom (:func:`caption_accuracy`). Weights: float16
safetensors + ``config.json``; no pickle.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import clevr, small_weights

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "mmrnn"
DESCRIBE = "Describe the image."


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z]+|[,.:]", text.lower())


def caption_vocabulary() -> list[str]:
    words = {"there", "are", "six", "objects", ":", "a", "an", "at", "the", ",", "and", ".",
             "top", "bottom", "left", "right", *clevr.COLOURS, *clevr.SHAPES}
    return [PAD, BOS, EOS] + sorted(words)


@dataclass
class RNNConfig:
    token_dim: int = 128
    """Width of the fusion core's output tokens (its d_model)."""
    n_tokens: int = 8
    hidden: int = 256
    embed: int = 64
    vocab: list = field(default_factory=caption_vocabulary)
    max_len: int = 64

    @classmethod
    def from_dict(cls, raw: dict) -> "RNNConfig":
        return small_weights.config_from_dict(cls, raw, "MMRNN")


class CaptionGRU(nn.Module):
    def __init__(self, cfg: RNNConfig):
        super().__init__()
        self.cfg = cfg
        self.init = nn.Linear(cfg.token_dim * cfg.n_tokens, cfg.hidden)
        self.keys = nn.Linear(cfg.token_dim, cfg.hidden)
        self.embed = nn.Embedding(len(cfg.vocab), cfg.embed)
        self.gru = nn.GRUCell(cfg.embed + cfg.hidden, cfg.hidden)
        self.out = nn.Linear(2 * cfg.hidden, len(cfg.vocab))

    def start(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # tokens: (B, K, token_dim) -> first state (B, H), attention keys (B, K, H)
        return torch.tanh(self.init(tokens.flatten(1))), self.keys(tokens)

    def step(self, word: torch.Tensor, h: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # word: (B,) ids, h: (B, H), keys: (B, K, H) -> logits (B, V), next state (B, H)
        att = torch.softmax((keys @ h.unsqueeze(-1)).squeeze(-1) / self.cfg.hidden ** 0.5, dim=-1)  # (B, K)
        ctx = (att.unsqueeze(-1) * keys).sum(1)  # (B, H)
        h = self.gru(torch.cat([self.embed(word), ctx], dim=-1), h)  # (B, H)
        return self.out(torch.cat([h, ctx], dim=-1)), h

    def forward(self, tokens: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        # tokens: (B, K, token_dim), words: (B, L) with BOS first -> logits (B, L, V) for the next words
        h, keys = self.start(tokens)
        out = []
        for i in range(words.shape[1]):
            logits, h = self.step(words[:, i], h, keys)
            out.append(logits)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor) -> list[str]:
        # tokens: (B, K, token_dim) -> captions, greedy
        vocab = self.cfg.vocab
        h, keys = self.start(tokens)
        word = torch.full((tokens.shape[0],), vocab.index(BOS), dtype=torch.long)
        words: list[list[str]] = [[] for _ in range(tokens.shape[0])]
        done = torch.zeros(tokens.shape[0], dtype=torch.bool)
        for _ in range(self.cfg.max_len):
            logits, h = self.step(word, h, keys)
            word = logits.argmax(-1)  # (B,)
            for b, w in enumerate(word.tolist()):
                if not done[b] and vocab[w] != EOS:
                    words[b].append(vocab[w])
            done |= word == vocab.index(EOS)
            if done.all():
                break
        return [" ".join(w).replace(" ,", ",").replace(" .", ".").replace(" :", ":") for w in words]


def encode_captions(captions: list[str], vocab: list[str]) -> torch.Tensor:
    """(B, L+2) ids: BOS, words, EOS, padding."""
    ids = [[vocab.index(BOS)] + [vocab.index(w) for w in tokenize(c)] + [vocab.index(EOS)] for c in captions]
    n = max(map(len, ids))
    return torch.tensor([row + [vocab.index(PAD)] * (n - len(row)) for row in ids])


_OBJECT = re.compile(r"\b(?:a|an) (\w+) (square|circle) at the (top|bottom) (left|right)\b")


def caption_accuracy(captions: list[str], scenes: list[clevr.Scene]) -> dict:
    """Per object of each scene: its colour named once, and with the right shape, horizontal and
    vertical half (all three: 'object')."""
    n = named = shape = hor = ver = obj = 0
    for text, scene in zip(captions, scenes):
        said = {}
        for colour, sh, v, hz in _OBJECT.findall(text.lower()):
            said.setdefault(colour, []).append((sh, v, hz))
        for o in scene.objects:
            n += 1
            got = said.get(o.colour, [])
            if len(got) != 1:
                continue
            sh, v, hz = got[0]
            named += 1
            shape += sh == o.shape
            hor += hz == o.horizontal
            ver += v == o.vertical
            obj += (sh, v, hz) == (o.shape, o.vertical, o.horizontal)
    return {"objects": n, "named": round(named / n, 4), "shape": round(shape / n, 4), "horizontal": round(hor / n, 4),
            "vertical": round(ver / n, 4), "object": round(obj / n, 4)}


# ------------------------------------------------------------------------------ features, training


def fusion_tokens(first_seed: int, count: int, fusion_dir: str | Path, cache_dir: str | None = None) -> torch.Tensor:
    """The frozen fusion core's K output tokens (before its projector) for the cached scenes
    ``first_seed ..``: (count, K, d_model)."""
    from models.features import default_cache_dir, image_tokens
    from models.fusion import load_fusion

    core = load_fusion(fusion_dir)
    folder = Path(cache_dir or default_cache_dir())
    text = None
    for meta in folder.glob("text-*.json"):  # the fusion core's cached question embeddings
        texts = json.loads(meta.read_text())
        if DESCRIBE in texts:
            from safetensors.torch import load_file

            data = load_file(str(meta.with_suffix(".safetensors")))
            i = texts.index(DESCRIBE)
            text, mask = data["embeds"][i:i + 1].float(), data["mask"][i:i + 1].bool()
    if text is None:
        raise FileNotFoundError(f"{folder}: no cached embedding of {DESCRIBE!r}; run `assistant train configs/fusion_cpu.json` first")
    images = image_tokens(None, "scene", first_seed, count, cache_dir, grid=core.cfg.image_grid)  # (count, N, D)
    out: list[torch.Tensor] = []
    # the core's K output tokens before the projector into the generator's space (what its heads read)
    hook = core.out_norm.register_forward_hook(lambda _m, _i, y: out.append(y))
    try:
        with torch.no_grad():
            for b in range(0, count, 250):
                x = images[b:b + 250].float()
                core({"image": (x, None)}, text.expand(len(x), -1, -1), mask.expand(len(x), -1))
    finally:
        hook.remove()
    return torch.cat(out)  # (count, K, d_model)


@dataclass
class RNNTrainConfig(small_weights.TrainingConfigFile):
    family: str = "mmrnn"
    output_dir: str = "out/mmrnn"
    rnn: dict = field(default_factory=dict)
    fusion_dir: str = "models/weights/fusion"
    cache_dir: str = ""
    train_scenes: int = 4000
    train_first_seed: int = 0
    eval_scenes: int = 500
    eval_first_seed: int = 1_000_000
    batch_size: int = 64
    steps: int = 1500
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1
    log_every: int = 50
    ship_dir: str = ""


def train(cfg: RNNTrainConfig, *, log=print, tokens: tuple[torch.Tensor, torch.Tensor] | None = None) -> Path:
    """Train and write ``final/`` (and ``ship_dir``). ``tokens``: (train, eval) fusion tokens, for tests."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    t0 = time.time()
    if tokens is None:
        tokens = (fusion_tokens(cfg.train_first_seed, cfg.train_scenes, cfg.fusion_dir, cfg.cache_dir or None),
                  fusion_tokens(cfg.eval_first_seed, cfg.eval_scenes, cfg.fusion_dir, cfg.cache_dir or None))
    train_tok, eval_tok = tokens
    rcfg = RNNConfig.from_dict({**cfg.rnn, "token_dim": train_tok.shape[-1], "n_tokens": train_tok.shape[1]})
    model = CaptionGRU(rcfg)
    train_scenes = [clevr.make_scene(s) for s in range(cfg.train_first_seed, cfg.train_first_seed + len(train_tok))]
    eval_scenes = [clevr.make_scene(s) for s in range(cfg.eval_first_seed, cfg.eval_first_seed + len(eval_tok))]
    words = encode_captions([clevr.caption(s) for s in train_scenes], rcfg.vocab)  # (S, L)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    g = torch.Generator().manual_seed(cfg.seed)
    metrics = (out / "metrics.jsonl").open("w")
    for step in range(cfg.steps):
        idx = torch.randint(len(train_tok), (cfg.batch_size,), generator=g)
        w = words[idx]  # (B, L)
        logits = model(train_tok[idx].float(), w[:, :-1])  # (B, L-1, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), ignore_index=rcfg.vocab.index(PAD))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % cfg.log_every == 0:
            metrics.write(json.dumps({"step": step + 1, "loss": round(loss.item(), 4), "elapsed_s": round(time.time() - t0, 1)}) + "\n")
            metrics.flush()
            log(f"step {step + 1}/{cfg.steps}: loss {loss.item():.4f}")
    model.eval()
    captions = model.generate(eval_tok.float())
    acc = caption_accuracy(captions, eval_scenes)
    meta = {"steps": cfg.steps, "seed": cfg.seed, "train_wall_s": round(time.time() - t0, 1), "eval": acc,
            "example": captions[0]}
    metrics.write(json.dumps({"final": meta}) + "\n")
    metrics.close()
    log(f"held-out caption accuracy (per object, all attributes): {acc['object']:.3f}")
    final = save(out / "final", model, meta)
    if cfg.ship_dir:
        save(cfg.ship_dir, model, meta)
    return final


def save(folder: str | Path, model: CaptionGRU, meta: dict) -> Path:
    return small_weights.save(folder, model, meta)


def load(folder: str | Path = DEFAULT_WEIGHTS) -> CaptionGRU:
    return small_weights.load(folder, lambda raw: CaptionGRU(RNNConfig.from_dict(raw)), "MMRNN")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="train MMRNN (GRU captions from the fusion core's tokens)")
    p.add_argument("config")
    a = p.parse_args(argv)
    print(train(RNNTrainConfig.from_file(a.config), log=lambda m: print(m, file=sys.stderr)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
