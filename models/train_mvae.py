"""Train the MVAE (:mod:`models.mvae`): ``python -m models.train_mvae CONFIG`` or ``assistant train CONFIG``
(a config with ``"family": "mvae"``, e.g. configs/mvae_cpu.json).

Data: Sort-of-CLEVR scenes rendered by the project (:func:`models.clevr.make_scene`), training
scenes from seeds ``train_first_seed .. + train_scenes`` (default 0-49,999), evaluation scenes
from seed 1,000,000 (the held-out scenes of the fusion core and MMRNN; never trained on) are
the benchmark's (benchmarks/bench_mvae.py) and are not looked at here: the evaluation during
training scores validation scenes from ``eval_first_seed`` (default 2,000,000; also never
trained on), so that settings chosen from it do not tune on the benchmark. Each
step's batch is a function of (seed, step): a rerun gives the same batches, and resuming
repeats nothing.

Objective (Wu & Goodman 2018): the joint ELBO (posterior = prior x image expert x caption
expert, both modalities reconstructed) plus the image-only ELBO (prior x image expert, the
image reconstructed) plus the caption-only ELBO (prior x caption expert, the facts
reconstructed). The caption's 18 Bernoulli log-likelihoods are weighted by ``caption_weight``
(the image has 16,875), and every KL term by a weight annealed linearly from ``beta_start`` to 1
over the first ``anneal_steps`` steps. Two additions to the paper's objective, both measured to
be needed in a CPU budget of minutes: ``cross_weight`` (the image-only posterior also
reconstructs the facts; without it, in a first version with a convolutional image encoder,
captions from images stayed at chance through 400 steps, 12-14% of objects right) and ``blur_weight`` (the squared error of the blurred images, a smooth pull on
objects drawn far from where they belong).

A run may start from earlier weights (``init_from``: a folder with ``config.json`` +
``model.safetensors``, e.g. the ``final/`` of a shorter run) instead of a random initialisation;
its optimizer starts afresh. The learning rate follows a cosine from ``lr`` down to
``lr * lr_final`` at the last step.

One output folder: ``train_config.json``, ``metrics.jsonl``, ``checkpoint/`` (model and
optimizer as float32 safetensors + ``state.json``; a rerun resumes from it) and ``final/``
(``config.json`` + float16 ``model.safetensors``). No pickle anywhere.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from models import clevr, mvae
from models.small_weights import TrainingConfigFile
from models.train_gan import cli_main, save_checkpoint, start_run

EVAL_FIRST_SEED = 1_000_000
"""The benchmark's held-out scenes start here; training scenes must end below it."""
VALIDATION_FIRST_SEED = 2_000_000
"""Default first seed of the scenes scored during training (never trained on, not the benchmark's)."""


@dataclass
class MVAETrainConfig(TrainingConfigFile):
    """Everything a run needs; saved as ``train_config.json`` in the output folder."""

    family: str = "mvae"
    output_dir: str = "out/mvae"
    mvae: dict = field(default_factory=dict)
    """MVAEConfig fields (z_dim, hidden, edge)."""
    train_first_seed: int = 0
    train_scenes: int = 50_000
    """Training scenes: seeds train_first_seed .. train_first_seed + train_scenes - 1 (must stay below 1,000,000)."""
    eval_scenes: int = 200
    """Validation scenes scored at each evaluation during training."""
    eval_first_seed: int = VALIDATION_FIRST_SEED
    """Their first seed: not a training seed, and not the benchmark's (from 1,000,000)."""
    batch_size: int = 64
    steps: int = 3000
    lr: float = 1e-3
    lr_final: float = 0.1
    """The learning rate decays along a cosine from ``lr`` to ``lr * lr_final`` at the last step."""
    init_from: str = ""
    """If set, a weights folder (config.json + model.safetensors) the model starts from; its
    MVAEConfig must equal ``mvae``. Ignored when resuming from a checkpoint (which holds them)."""
    caption_weight: float = 50.0
    cross_weight: float = 1.0
    """Weight of the facts reconstructed from the image-only posterior (not in the paper; see the module doc)."""
    blur_weight: float = 1.0
    """Weight of the blurred-image squared error added to each image reconstruction (see MVAE.elbo_terms)."""
    beta_start: float = 0.0
    anneal_steps: int = 1000
    seed: int = 0
    threads: int = 2
    log_every: int = 50
    save_every: int = 250
    eval_every: int = 500
    stop_after: int = 0
    """Stop after this many steps in this run (0: to the end); a rerun resumes."""
    ship_dir: str = ""
    """If set, the final weights are also copied here (e.g. models/weights/mvae)."""

    def beta(self, step: int) -> float:
        if step >= self.anneal_steps:
            return 1.0
        return self.beta_start + (1.0 - self.beta_start) * step / max(1, self.anneal_steps)


def batch(cfg: MVAETrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A step's training scenes: images (B, 3, 75, 75) in [0, 1] and caption facts (B, 18)."""
    if cfg.train_first_seed + cfg.train_scenes > EVAL_FIRST_SEED:
        raise ValueError(f"training scenes must end below seed {EVAL_FIRST_SEED:,} (the held-out scenes)")
    if cfg.train_first_seed < cfg.eval_first_seed + cfg.eval_scenes and cfg.eval_first_seed < cfg.train_first_seed + cfg.train_scenes:
        raise ValueError("the validation scenes (eval_first_seed) overlap the training scenes")
    rng = random.Random(f"{cfg.seed}/{step}")
    seeds = [cfg.train_first_seed + rng.randrange(cfg.train_scenes) for _ in range(cfg.batch_size)]
    return mvae.scene_batch([clevr.make_scene(s) for s in seeds])


def loss_terms(model: mvae.MVAE, x: torch.Tensor, y: torch.Tensor, cfg: MVAETrainConfig, beta: float) -> dict:
    """The training loss (joint + image-only + caption-only ELBO, negated) and its parts."""
    experts = (*model.image_encoder(x), *model.caption_encoder(y))
    joint = model.elbo_terms(x, y, experts, use_image=True, use_caption=True, blur_weight=cfg.blur_weight)
    image = model.elbo_terms(x, y, experts, use_image=True, use_caption=False, cross=cfg.cross_weight > 0,
                             blur_weight=cfg.blur_weight)
    caption = model.elbo_terms(x, y, experts, use_image=False, use_caption=True)
    w = cfg.caption_weight
    loss = (joint.image + w * joint.caption + beta * joint.kl
            + image.image + cfg.cross_weight * w * image.caption + beta * image.kl
            + w * caption.caption + beta * caption.kl)
    return {"loss": loss, "joint_image": joint.image, "joint_caption": joint.caption, "image_only": image.image,
            "caption_only": caption.caption, "kl_joint": joint.kl, "kl_image": image.kl, "kl_caption": caption.kl}


@torch.no_grad()
def fact_accuracy(model: mvae.MVAE, first_seed: int, n: int, **given: bool) -> float:
    """Share of objects whose three facts (shape, left/right, top/bottom) are all decoded right
    from the posterior given the image and/or the caption of the scenes with seeds
    ``first_seed .. first_seed + n - 1`` (never trained on)."""
    x, y = mvae.scene_batch([clevr.make_scene(s) for s in range(first_seed, first_seed + n)])
    mu, _ = model.infer(x if given.get("image") else None, y if given.get("caption") else None)
    right = ((model.caption_decoder(mu) > 0) == (y > 0.5)).view(n, len(clevr.COLOURS), 3).all(-1)  # (n, 6)
    return right.float().mean().item()


def train(cfg: MVAETrainConfig, *, resume: bool = True, progress: bool = True, log=print) -> Path:
    """Train (or resume), write ``final/`` and return its path (``checkpoint/`` when stopped early)."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    torch.manual_seed(cfg.seed)
    model = mvae.MVAE(mvae.MVAEConfig.from_dict(cfg.mvae))
    init_meta = {}
    if cfg.init_from:
        try:
            init = mvae.load(cfg.init_from)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"init_from: {e}; train the run that writes it first") from e
        if init.cfg != model.cfg:
            raise ValueError(f"init_from {cfg.init_from}: its MVAE config {init.cfg} differs from this run's {model.cfg}")
        model.load_state_dict(init.state_dict())
        init_meta = json.loads((Path(cfg.init_from) / "config.json").read_text()).get("meta", {})
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    nets, opts = {"M": model}, {"opt": opt}
    ckpt = out / "checkpoint"
    total = cfg.steps
    start, end, elapsed, bar, metrics = start_run(out, nets, opts, total=total, stop_after=cfg.stop_after, resume=resume,
                                                  progress=progress, desc="mvae", log=log)
    t0 = time.time()
    for step in range(start, end):
        model.train()
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # the reparametrisation noise, reproducible on resume
        x, y = batch(cfg, step)
        for g in opt.param_groups:  # cosine decay from lr to lr * lr_final
            g["lr"] = cfg.lr * (cfg.lr_final + (1 - cfg.lr_final) * 0.5 * (1 + math.cos(math.pi * step / total)))
        terms = loss_terms(model, x, y, cfg, cfg.beta(step))
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        opt.step()
        done = step + 1
        if bar is not None:
            bar.update(1)
        if done % cfg.log_every == 0:
            rec = {"step": done, **{k: round(v.item(), 3) for k, v in terms.items()}, "beta": round(cfg.beta(step), 3),
                   "elapsed_s": round(elapsed + time.time() - t0, 1)}
            metrics.write(json.dumps(rec) + "\n"), metrics.flush()
            if bar is not None:
                bar.set_postfix(loss=rec["loss"], cap=rec["caption_only"])
        if done % cfg.eval_every == 0 or done == total:
            model.eval()
            acc = {name: round(fact_accuracy(model, cfg.eval_first_seed, cfg.eval_scenes, **given), 4)
                   for name, given in (("from_image", {"image": True}), ("from_caption", {"caption": True}),
                                       ("from_both", {"image": True, "caption": True}))}
            metrics.write(json.dumps({"step": done, "eval": acc}) + "\n"), metrics.flush()
            log(f"step {done}: validation objects right (seeds from {cfg.eval_first_seed:,}), caption from image {acc['from_image']:.3f}, "
                f"from caption {acc['from_caption']:.3f}, from both {acc['from_both']:.3f}")
        if done % cfg.save_every == 0 or done == end:
            save_checkpoint(ckpt, nets, opts, {"step": done, "elapsed_s": round(elapsed + time.time() - t0, 1)})
    if bar is not None:
        bar.close()
    metrics.close()
    if end < total:
        log(f"stopped at step {end} of {total} (stop_after); run again to resume")
        return ckpt
    model.eval()
    wall = round(elapsed + time.time() - t0, 1) if start < end else elapsed
    meta = {"steps": cfg.steps, "seed": cfg.seed, "batch_size": cfg.batch_size,
            "train_seeds": [cfg.train_first_seed, cfg.train_first_seed + cfg.train_scenes - 1],
            "train_wall_s": wall}
    if cfg.init_from:  # the steps and wall time of the run it started from, and the totals
        meta.update(init_from=cfg.init_from, init_steps=init_meta.get("steps", 0), init_wall_s=init_meta.get("train_wall_s", 0),
                    total_steps=cfg.steps + init_meta.get("total_steps", init_meta.get("steps", 0)),
                    total_wall_s=round(wall + init_meta.get("total_wall_s", init_meta.get("train_wall_s", 0)), 1))
    final = mvae.save(out / "final", model, meta)
    if cfg.ship_dir:
        mvae.save(cfg.ship_dir, model, meta)
    return final


def main(argv: list[str] | None = None) -> int:
    return cli_main(argv, "train the MVAE (product-of-experts latent over image and caption)", MVAETrainConfig, train)


if __name__ == "__main__":
    sys.exit(main())
