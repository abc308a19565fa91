"""Train the fusion core on Sort-of-CLEVR: ``python -m models.train CONFIG`` (or ``assistant train CONFIG``).

The image encoder and the generator stay frozen; the fusion core and its projector train.
Their outputs are cached (:mod:`models.features`), so a step only runs the small core.
Four stages run one after another in the same script, each for ``*_steps`` steps (0 skips):

1. ``answer`` — the fusion core with its answer head (cross-entropy over the answer words,
   plus ``none`` for questions or images that are not Sort-of-CLEVR and ``describe`` for
   description requests) and its caption head (one sigmoid per caption fact), without the
   generator, as BLIP-2 pre-trains its Q-Former.
2. ``align`` — CPU-trainable alignment: the core is frozen, the projector learns to make the K
   output tokens regress onto the generator's own input embeddings of a K-token sentence
   that states the answer (cosine + MSE), so no backward pass goes through the generator.
   With ``align_teacher`` the targets are instead a generator-trained core's tokens, and the
   whole core trains, keeping the answer stage's losses.
3. ``generator`` — the generator-coupled stage (meant for a GPU): the K tokens are spliced
   into the generator's chat prompt in front of the question and the generator's
   language-model loss on the answer sentence back-propagates through the frozen generator
   into the projector and core. About 80 ms a step at batch 256 on an H200; 10-20 s per
   batch of 8 on two CPU cores, which is why the CPU recipe leaves it at 0 steps.
4. ``slots`` — with ``fusion.object_slots``, only the slot reasoner (:mod:`models.slots`)
   trains: the answer loss on the answers it gives, plus every object's centre and shape, the
   named colour and the question type; the rest of the core is frozen.

HF Accelerate runs the same script on the CPU, one GPU, or several (``accelerate launch -m
models.train CONFIG``): each process samples different batches; the main process writes.

One output folder holds everything: ``train_config.json``, ``metrics.jsonl`` (one JSON line
per logged step and evaluation), ``checkpoint/`` (float32 weights, optimizer state as
safetensors, ``state.json``; a rerun resumes from it), and ``final/`` (``config.json`` +
float16 ``model.safetensors``: the shippable fusion weights). No pickle anywhere.

This file is the configuration and the loop; beside it: :mod:`models.train_data` (scenes,
questions, batches), :mod:`models.train_losses` (the three objectives),
:mod:`models.checkpoints` (saving, resuming, starting from earlier weights),
:mod:`models.train_eval` (head accuracy, domain calibration) and :mod:`models.spoken_data`
(spoken training questions).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from models import clevr
from models.fusion import FusionConfig, FusionCore, build_fusion, load_fusion

from models.checkpoints import (
    check_weights_size, checkpoint_fusion_config, init_weights, load_checkpoint, save_checkpoint,
)
from models.small_weights import TrainingConfigFile
from models.spoken_data import make_spoken
from models.train_data import answer_vocabulary, build_data, to_device
from models.train_eval import calibrate_domain, evaluate_heads
from models.train_losses import (
    align_loss,
    answer_loss,
    attention_loss,
    carrier_targets,
    generator_loss,
    slot_loss,
    teacher_loss,
)

STAGES = ("answer", "align", "generator", "slots")


# ------------------------------------------------------------------------------ configuration


@dataclass
class TrainConfig(TrainingConfigFile):
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
    slots_steps: int = 0
    """The slot reasoner's stage (``fusion.object_slots``): only the reasoner trains, the rest
    of the core (and so its soft tokens) stays as it was."""
    lr: float = 1e-3
    slots_lr: float = 2e-3
    align_lr: float = 1e-3
    generator_lr: float = 1e-4
    generator_trains: str = "all"
    """What the generator-coupled stage trains: "all" of the core, or only its "projector" (the
    answer heads, which the text route reads, then stay exactly as they were)."""
    generator_describe_fraction: float = 0.0
    """Share of the generator-coupled stage's batch that asks for a description of the scene:
    the reply to learn is the scene's caption (:func:`models.clevr.caption`, every object's
    colour, shape and quadrant), so the generator learns to describe from the soft tokens."""
    generator_bf16: bool = True
    """bf16 autocast for the generator-coupled stage (CPUs with avx512_bf16 and GPUs: about 2x)."""
    generator_system: str = ""
    """The system message the tokens route's prompt starts with: the assistant's default
    (``generator.system_prompt``), which a test keeps equal."""
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    caption_weight: float = 1.0
    attention_weight: float = 0.0
    """Weight of the attention loss in the answer stage and a teacher's align stage (0: none): for questions about one named
    object (shape, left/right, top/bottom) the last cross-attention layer's attention share on
    the cells that object covers should reach ``attention_target`` (the attention view's promise)."""
    attention_target: float = 0.5
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
    align_teacher: str = ""
    """A fusion weights folder whose soft tokens the align stage regresses onto, for the same
    image and question, instead of the carrier sentences: a core trained on another image grid
    takes over a generator-trained core's projector behaviour (tokens route, descriptions)
    without a backward pass through the generator. The teacher reads its own grid's tokens;
    the whole student trains (its query tokens must carry what the teacher's carry, and the
    projector works token by token), keeping the answer stage's losses so its heads stay as
    good; it inherits the teacher's ``aligned_to_generator`` and ``describes``."""
    init_from: str = ""
    """A fusion weights folder (config.json + model.safetensors, e.g. an earlier run's final/)
    to start from instead of random weights; parameters this config adds (relation layers,
    grid coordinates) keep their fresh values. Ignored when resuming from a checkpoint."""


    def fusion_config(self) -> FusionConfig:
        extra = dict(self.fusion)
        extra["answers"] = answer_vocabulary()
        extra["caption_attributes"] = clevr.caption_attributes()
        return FusionConfig(**extra)

    @property
    def total_steps(self) -> int:
        return self.answer_steps + self.align_steps + self.generator_steps + self.slots_steps

    def stage_at(self, step: int) -> tuple[str, int, int]:
        """(stage name, step within it, its length) for a global step."""
        for name, n in zip(STAGES, (self.answer_steps, self.align_steps, self.generator_steps, self.slots_steps)):
            if step < n:
                return name, step, n
            step -= n
        raise ValueError("step past the end of training")


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
    elif stage == "align" and cfg.align_teacher:  # the whole core, which keeps its answer loss
        params, lr = list(model.parameters()), cfg.align_lr
    elif stage == "align":
        params, lr = list(model.projector.parameters()), cfg.align_lr
    elif stage == "slots":  # train() has checked that the config has object slots
        params, lr = list(model.reasoner.parameters()), cfg.slots_lr
    elif cfg.generator_trains == "projector":  # the core (and its answer heads) stay as they are
        params, lr = list(model.projector.parameters()), cfg.generator_lr
    else:
        params, lr = list(model.parameters()), cfg.generator_lr
    trainable = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    opt.stage_name = stage
    return opt


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
    teacher = None
    if cfg.align_teacher and cfg.align_steps > 0:
        teacher = load_fusion(cfg.align_teacher).eval().requires_grad_(False)
    if cfg.attention_weight > 0 and cfg.fusion_config().strategy != "attention":
        raise ValueError(f"attention_weight needs the attention strategy, not {cfg.fusion_config().strategy!r}")
    if cfg.slots_steps > 0 and not cfg.fusion_config().object_slots:
        raise ValueError("slots_steps need fusion.object_slots")
    data = build_data(cfg, text_encoder, image_encoder, teacher_grid=teacher.cfg.image_grid if teacher else "")
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
    if cfg.align_steps > 0 and teacher is None:
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
            if stage == "generator" and cfg.generator_describe_fraction > 0:
                fcfg.describes = True
            elif stage == "align" and teacher is not None:
                fcfg.alignment = "teacher"
                fcfg.aligned_to_generator, fcfg.describes = teacher.cfg.aligned_to_generator, teacher.cfg.describes
            elif stage == "align" and fcfg.alignment == "":
                fcfg.alignment = "regression"
            if stage == "slots" and cfg.init_from and cfg.answer_steps == cfg.align_steps == cfg.generator_steps == 0:
                # only the reasoner trains: the frozen core's tokens keep what they were trained for
                earlier = checkpoint_fusion_config(Path(cfg.init_from))
                fcfg.alignment, fcfg.aligned_to_generator, fcfg.describes = earlier.alignment, earlier.aligned_to_generator, earlier.describes
            model, optimizer = accelerator.prepare(raw_model, optimizer)
            stage_now = stage
            if stage == "generator":
                gen = generator()
        base = {"answer": cfg.lr, "align": cfg.align_lr, "generator": cfg.generator_lr, "slots": cfg.slots_lr}[stage]
        lr = _lr(sstep, slen, base, min(cfg.warmup_steps, max(1, slen // 10)))
        for g in optimizer.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([cfg.seed, accelerator.process_index, step])
        model.train()
        if stage == "generator":
            batch = to_device(train_data.examples(cfg.batch_size, rng, none_fraction=0.0,
                                                     describe_fraction=cfg.generator_describe_fraction), accelerator.device)
            loss, stats = generator_loss(accelerator.unwrap_model(model), gen, batch, train_data, cfg)
        else:
            batch = to_device(train_data.examples(cfg.batch_size, rng), accelerator.device)
            out_ = model({"image": (batch["image"], None)}, batch["text"], batch["text_mask"])
            if stage == "slots":
                loss, stats = answer_loss(out_, batch, 0.0)
                sl, s_stats = slot_loss(out_, batch)
                loss, stats = loss + sl, {**stats, **s_stats}
            elif stage == "answer" or teacher is not None:
                loss, stats = answer_loss(out_, batch, cfg.caption_weight)
                if cfg.attention_weight > 0:
                    att, att_stats = attention_loss(out_, batch, cfg.attention_target)
                    loss, stats = loss + cfg.attention_weight * att, {**stats, **att_stats}
                if stage == "align":  # with a teacher: its tokens, and the answers kept
                    tl, t_stats = teacher_loss(out_, batch, teacher.to(accelerator.device))
                    loss, stats = loss + tl, {**stats, **t_stats}
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
            fcfg = checkpoint_fusion_config(ckpt)
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


def _append(path: Path, record: dict) -> None:
    """One JSON line of metrics."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


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

    def features(self, pixels, grid="final"):
        return self._get().features(pixels, grid)


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
