"""Small shipped models (MMGAN, MMRNN): a dataclass config saved as ``config.json`` beside
float16 ``model.safetensors``, and rebuilt from it on load. No pickle."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable

import torch


def config_from_dict(cls: type, raw: dict, what: str, ignore: tuple[str, ...] = ()) -> Any:
    """``cls(**raw)`` for a dataclass read from JSON, naming unknown fields instead of a
    TypeError; keys in ``ignore`` (e.g. a file's "comment") are dropped."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known - set(ignore))
    if unknown:
        raise ValueError(f"unknown {what} config fields: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**{k: v for k, v in raw.items() if k in known})


class TrainingConfigFile:
    """What every training config (a dataclass) inherits: reading it from a JSON file, with
    unknown fields named and a "comment" key ignored (``assistant train CONFIG``)."""

    @classmethod
    def from_file(cls, path: str | Path, **overrides):
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: cannot read the training config ({e})") from e
        return cls.from_dict({**raw, **overrides})

    @classmethod
    def from_dict(cls, raw: dict):
        return config_from_dict(cls, raw, "training", ignore=("comment",))


def save(folder: str | Path, module: torch.nn.Module, meta: dict | None = None) -> Path:
    """``module.cfg`` (+ ``meta``) as config.json, its floating-point weights as float16 safetensors."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({**asdict(module.cfg), **({"meta": meta} if meta else {})}, indent=1) + "\n")
    save_file({k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items() if v.is_floating_point()},
              str(folder / "model.safetensors"))
    return folder


def load(folder: str | Path, build: Callable[[dict], torch.nn.Module], what: str) -> torch.nn.Module:
    """Rebuild with ``build(config dict)`` and load the weights (float32, eval mode).
    FileNotFoundError when the folder holds no such weights, ValueError when they do not fit."""
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        raw = json.loads((folder / "config.json").read_text())
        raw.pop("meta", None)
        module = build(raw)
        state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{folder}: no {what} weights there ({e})") from e
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return module.eval()
