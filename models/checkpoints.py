"""Training checkpoints of the fusion core: float32 weights and optimizer state as safetensors
plus ``state.json`` (resumable), starting from earlier weights, and the size check of what
ships. No pickle anywhere."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.fusion import FusionConfig, FusionCore, load_fusion

MAX_WEIGHTS_BYTES = 16 * 1024 * 1024
"""Shipped fusion weights must stay under this (the repository stays small)."""

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



def checkpoint_fusion_config(ckpt: Path) -> FusionConfig:
    raw = json.loads((ckpt / "config.json").read_text())
    known = {f.name for f in fields(FusionConfig)}
    return FusionConfig(**{k: v for k, v in raw.items() if k in known})
