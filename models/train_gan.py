"""Train MMGAN (:mod:`models.mmgan`): ``python -m models.train_gan CONFIG`` or ``assistant train CONFIG``
(a config with ``"family": "mmgan"``, e.g. configs/mmgan_cpu.json).

Every step draws a fresh batch of layouts from the training split and places their objects
as the renderer does (:func:`models.mmgan.sample_layout`, :func:`~models.mmgan.place`), from a
random generator seeded by (seed, step): a rerun gives the same batches, and resuming repeats
nothing. Two critics judge the generator's per-object output: the sprite critic compares each
generated object patch with the real patch of that colour and shape (hinge loss, projection
of the condition, plus an AC-GAN naming head), the layout critic compares where the objects
sit inside their quadrants with where real scenes put them. A small penalty keeps named
objects from overlapping. The shipped generator is an exponential moving average of the
trained one; it is checked on whole composed drawings of held-out layouts during training.

One output folder: ``train_config.json``, ``metrics.jsonl``, ``checkpoint/`` (generator,
average, both critics and both optimizers as float32 safetensors + ``state.json``; a rerun
resumes from it) and ``final/`` (``config.json`` + float16 ``model.safetensors`` of the
averaged generator). No pickle anywhere.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from models import mmgan
from models.draw_eval import evaluate_drawings
from models.small_weights import TrainingConfigFile


@dataclass
class GANTrainConfig(TrainingConfigFile):
    """Everything a run needs; saved as ``train_config.json`` in the output folder."""

    family: str = "mmgan"
    output_dir: str = "out/mmgan"
    gan: dict = field(default_factory=dict)
    """GANConfig fields (z_dim, hidden, sprite, d_channels)."""
    batch_size: int = 32
    steps: int = 4000
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    class_weight: float = 1.0
    """Weight of the sprite critic's naming head (AC-GAN): on real patches for the critic, on drawn ones for the generator."""
    overlap_weight: float = 0.1
    """Weight of the penalty on named objects drawn on top of each other (per pixel of intrusion)."""
    ema: float = 0.999
    """Largest decay of the averaged generator that is shipped (warmed up as (1+step)/(10+step))."""
    seed: int = 0
    threads: int = 1
    log_every: int = 50
    save_every: int = 250
    eval_every: int = 1000
    eval_layouts: int = 200
    """Held-out layouts drawn at each evaluation during training (the benchmark draws more)."""
    stop_after: int = 0
    """Stop after this many steps in this run (0: to the end); a rerun resumes."""
    ship_dir: str = ""
    """If set, the final weights are also copied here (e.g. models/weights/mmgan)."""


def batch(cfg: GANTrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For a step: conditions (B, 42) and the real positions of their objects inside their
    quadrants (B, 6, 2), from layouts of the training split placed as the renderer places them."""
    rng = random.Random(f"{cfg.seed}/{step}")
    layouts = [mmgan.sample_layout(rng) for _ in range(cfg.batch_size)]
    scenes = [mmgan.place(lay, rng) for lay in layouts]
    return torch.stack([mmgan.encode_layout(lay) for lay in layouts]), mmgan.real_positions(layouts, scenes)


# ------------------------------------------------------------------------------ checkpoints


def _opt_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    tensors, scalars = {}, {}
    for pid, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            (tensors if torch.is_tensor(v) and v.dim() > 0 else scalars)[f"{prefix}.{pid}.{name}"] = (
                v.detach().contiguous() if torch.is_tensor(v) and v.dim() > 0 else float(v))
    return tensors, scalars


def _opt_load(prefix: str, opt: torch.optim.Optimizer, tensors: dict, scalars: dict, groups: list) -> None:
    state: dict = {}
    for key, v in list(tensors.items()) + list(scalars.items()):
        p, pid, name = key.split(".", 2)
        if p == prefix:
            state.setdefault(int(pid), {})[name] = torch.tensor(v) if name == "step" else v
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(folder: Path, nets: dict, opts: dict, state: dict) -> None:
    """All networks and optimizer tensors in one safetensors file + state.json, replaced atomically."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors, scalars, groups = {}, {}, {}
    for name, net in nets.items():
        tensors.update({f"{name}.{k}": v.detach().contiguous() for k, v in net.state_dict().items()})
    for name, opt in opts.items():
        t, s = _opt_tensors(name, opt)
        tensors.update(t), scalars.update(s)
        groups[name] = opt.state_dict()["param_groups"]
    save_file(tensors, str(tmp / "state.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "scalars": scalars, "param_groups": groups}, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def load_checkpoint(folder: Path, nets: dict, opts: dict) -> dict:
    state = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "state.safetensors"))
    for name, net in nets.items():
        net.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
    for name, opt in opts.items():
        _opt_load(name, opt, {k: v for k, v in tensors.items() if k.startswith(name + ".")},
                  state["scalars"], state["param_groups"][name])
    return state


def start_run(out: Path, nets: dict, opts: dict, *, total: int, stop_after: int, resume: bool, progress: bool,
              desc: str, log) -> tuple:
    """Resume from ``out/checkpoint`` when there is one (and ``resume``); returns (first step,
    last step of this run, wall seconds already spent, a tqdm bar or None, the metrics file)."""
    ckpt = out / "checkpoint"
    start, elapsed = 0, 0.0
    if resume and (ckpt / "state.json").exists():
        st = load_checkpoint(ckpt, nets, opts)
        start, elapsed = st["step"], st.get("elapsed_s", 0.0)
        log(f"resuming from step {start} ({ckpt})")
    end = min(total, start + stop_after) if stop_after else total
    bar = None
    if progress and start < end:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, file=sys.stderr)
    return start, end, elapsed, bar, (out / "metrics.jsonl").open("a")


# ------------------------------------------------------------------------------ training


def train(cfg: GANTrainConfig, *, resume: bool = True, progress: bool = True, log=print) -> Path:
    """Train (or resume), write ``final/`` and return its path."""
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")
    torch.manual_seed(cfg.seed)
    gcfg = mmgan.GANConfig.from_dict(cfg.gan)
    G, Ds, Dl = mmgan.Generator(gcfg), mmgan.SpriteCritic(gcfg), mmgan.LayoutCritic(gcfg)
    E = copy.deepcopy(G).eval()
    for p in E.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(list(Ds.parameters()) + list(Dl.parameters()), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    nets, opts = {"G": G, "Ds": Ds, "Dl": Dl, "E": E}, {"opt_g": opt_g, "opt_d": opt_d}
    sprites = mmgan.real_sprites(gcfg.sprite)  # (12, 3, S, S)
    ckpt = out / "checkpoint"
    total = cfg.steps
    start, end, elapsed, bar, metrics = start_run(out, nets, opts, total=total, stop_after=cfg.stop_after, resume=resume,
                                                  progress=progress, desc="mmgan", log=log)
    t0 = time.time()
    for step in range(start, end):
        G.train()
        cond, t_real = batch(cfg, step)  # (B, 42), (B, 6, 2)
        z = torch.randn(cfg.batch_size, G.noise_dim, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
        which = mmgan.sprite_targets(cond)  # (B, 6, 12)
        named = which.sum(-1) > 0  # (B, 6) the slots of named objects
        which = which[named]  # (N, 12)
        real = sprites[which.argmax(-1)]  # (N, 3, S, S)
        obj = G.objects(z, cond)
        fake = obj.sprite[named]  # (N, 3, S, S)
        # critics: hinge on real vs generated sprites and positions
        label = which.argmax(-1)  # (N,)
        s_real, c_real = Ds(real, which)
        s_fake, _ = Ds(fake.detach(), which)
        d_sprite = F.relu(1 - s_real).mean() + F.relu(1 + s_fake).mean()
        d_class = F.cross_entropy(c_real, label)
        d_layout = F.relu(1 - Dl(t_real, cond)).mean() + F.relu(1 + Dl(obj.t.detach(), cond)).mean()
        opt_d.zero_grad(set_to_none=True)
        (d_sprite + d_layout + cfg.class_weight * d_class).backward()
        opt_d.step()
        # generator: fool both critics, keep named objects apart
        s_fake, c_fake = Ds(fake, which)
        g_sprite = -s_fake.mean()
        g_class = F.cross_entropy(c_fake, label)
        g_layout = -Dl(obj.t, cond).mean()
        overlap = mmgan.overlap_penalty(obj.xy, cond)
        opt_g.zero_grad(set_to_none=True)
        (g_sprite + g_layout + cfg.class_weight * g_class + cfg.overlap_weight * overlap).backward()
        opt_g.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1 + step) / (10 + step))  # warm-up: early averages forget the random start
            for pe, pg in zip(E.parameters(), G.parameters()):
                pe.lerp_(pg, 1 - decay)
            for be, bg in zip(E.buffers(), G.buffers()):
                be.copy_(bg)
        done = step + 1
        if bar is not None:
            bar.update(1)
        if done % cfg.log_every == 0:
            rec = {"step": done, "d_sprite": round(d_sprite.item(), 4), "d_layout": round(d_layout.item(), 4),
                   "g_sprite": round(g_sprite.item(), 4), "g_layout": round(g_layout.item(), 4),
                   "g_class": round(g_class.item(), 4), "overlap": round(overlap.item(), 4),
                   "elapsed_s": round(elapsed + time.time() - t0, 1)}
            metrics.write(json.dumps(rec) + "\n"), metrics.flush()
            if bar is not None:
                bar.set_postfix(d_sprite=rec["d_sprite"], d_layout=rec["d_layout"])
        if done % cfg.eval_every == 0 or done == total:
            res = evaluate_drawings(E, n_layouts=cfg.eval_layouts, seed=12345)
            rec = {"step": done, "eval": res.summary()}
            metrics.write(json.dumps(rec) + "\n"), metrics.flush()
            log(f"step {done}: held-out objects all right {res.summary()['object_correct']:.3f}")
        if done % cfg.save_every == 0 or done == end:
            save_checkpoint(ckpt, nets, opts, {"step": done, "elapsed_s": round(elapsed + time.time() - t0, 1)})
    if bar is not None:
        bar.close()
    metrics.close()
    if end < total:
        log(f"stopped at step {end} of {total} (stop_after); run again to resume")
        return ckpt
    meta = {"steps": cfg.steps, "seed": cfg.seed, "batch_size": cfg.batch_size,
            "train_wall_s": round(elapsed + time.time() - t0, 1) if start < end else elapsed}
    final = mmgan.save_generator(out / "final", E, extra=meta)
    if cfg.ship_dir:
        mmgan.save_generator(cfg.ship_dir, E, extra=meta)
    return final


def cli_main(argv: list[str] | None, description: str, config_cls, train_fn) -> int:
    """``python -m models.train_X CONFIG [--output-dir DIR] [--no-resume]`` for a resumable trainer."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("config")
    p.add_argument("--output-dir")
    p.add_argument("--no-resume", action="store_true")
    a = p.parse_args(argv)
    cfg = config_cls.from_file(a.config, **({"output_dir": a.output_dir} if a.output_dir else {}))
    print(train_fn(cfg, resume=not a.no_resume, log=lambda m: print(m, file=sys.stderr)))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(argv, "train MMGAN (text -> 75x75 scene)", GANTrainConfig, train)


if __name__ == "__main__":
    sys.exit(main())
