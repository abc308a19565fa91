"""Built-in plugin: ``/draw DESCRIPTION`` and requests like "draw me a yellow circle in the bottom
right corner": MMGAN (:mod:`models.mmgan`) draws a 75x75 Sort-of-CLEVR scene from the words
(:func:`draw_picture` can also draw with the MVAE, :mod:`models.mvae`, for ``assistant draw --model mvae``).

The description is parsed by :mod:`models.draw_text` (a description it cannot use gets one
line saying what it understood); the picture is saved as a PNG under the app's data folder
(``ctx.data_dir() / "drawings"``; ``SYNESTHESIA_DATA_DIR`` moves it) and its path comes back in the result's
``data["image"]``, which the terminal UI shows inline. Only the app's own folder is written,
so no capability is declared. ``assistant draw "..." -o out.png`` uses :func:`draw_picture` too.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugins.errors import InputError, ModelError
from plugins.hookspecs import hookimpl
from plugins.types import CommandResult, ToolResult, usage_error

MAX_SCALE = 16
LOAD_TIMEOUT_S = 60.0
"""The first drawing loads torch and the weights (seconds on a busy machine); later ones take milliseconds."""
_LOCK = threading.Lock()
_GENERATORS: dict[str, Any] = {}

_DRAW_VERB = re.compile(r"\b(draw|paint|sketch|render|make|create|generate|show)\b", re.IGNORECASE)
_REQUEST = re.compile(
    r"^\s*(?:please\s+)?(?:(?:can|could|would|will)\s+you\s+)?(?:please\s+)?"
    r"(?:draw|paint|sketch|render|make|create|generate|show)\s+(?:me\s+)?"
    r"(?:(?:a|an)\s+)?(?:(?:picture|image|drawing|scene)\s+(?:of|with)\s+)?",
    re.IGNORECASE,
)


@dataclass
class Drawing:
    image: Any
    """PIL.Image (75 * scale px square)."""
    understood: str
    """What the parser read from the description."""
    layout: Any
    """The :class:`models.mmgan.Layout` drawn (quadrants and shapes chosen)."""
    seed: int


def _generator(weights: str | Path | None, model: str = "mmgan"):
    from models import mmgan, mvae

    default, load, name = ((mvae.DEFAULT_WEIGHTS, mvae.load, "the MVAE") if model == "mvae"
                           else (mmgan.DEFAULT_WEIGHTS, mmgan.load_generator, "the drawing model"))
    key = f"{model}:{weights or default}"
    with _LOCK:
        if key not in _GENERATORS:
            try:
                _GENERATORS[key] = load(weights or default)
            except (FileNotFoundError, ValueError) as e:
                raise ModelError(f"cannot load {name}: {e}") from e
        return _GENERATORS[key]


def draw_picture(description: str, *, seed: int | None = None, scale: int = 1, weights: str | Path | None = None,
                 model: str = "mmgan") -> Drawing:
    """Parse ``description`` and draw it with MMGAN (``model="mmgan"``: 1-6 objects) or the MVAE
    (``"mvae"``: whole six-object scenes, z sampled from q(z | caption facts)). Raises InputError
    (one line) for a description that cannot be drawn, ModelError when the weights are missing."""
    from PIL import Image

    from models import mmgan, mvae
    from models.draw_text import DescriptionError, parse

    if not 1 <= scale <= MAX_SCALE:
        raise InputError(f"scale must be between 1 and {MAX_SCALE}")
    try:
        desc = parse(description)
        seed = random.randrange(2**31) if seed is None else int(seed)
        layout = desc.layout(random.Random(seed))
        facts = mvae.layout_facts(layout.objects) if model == "mvae" else None
    except DescriptionError as e:
        raise InputError(str(e)) from e
    except ValueError as e:
        raise InputError(f"{e}; `--model mmgan` draws any 1-6 of them") from e
    net = _generator(weights, model)
    if facts is not None:
        import torch

        pixels = mvae.draw_facts(net, torch.tensor([facts]), seed=seed)[0]  # (75, 75, 3) uint8
    else:
        pixels = mmgan.draw(net, [layout], seed=seed)[0]  # (75, 75, 3) uint8
    img = Image.fromarray(pixels, "RGB")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    return Drawing(img, desc.understood(), layout, seed)


def drawing_path(description: str, data_dir: Path) -> Path:
    """A fresh PNG path under ``drawings/`` of the application's data folder ``data_dir``."""
    slug = "-".join(re.findall(r"[a-z]+", description.lower()))[:40].strip("-") or "drawing"
    folder = Path(data_dir) / "drawings"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{slug}.png"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stamp}-{slug}-{n}.png"
    return path


def _draw_and_save(description: str, ctx: Any) -> tuple[Drawing, Path]:
    drawing = draw_picture(description, scale=4)
    path = drawing_path(description, ctx.data_dir())
    drawing.image.save(path)
    return drawing, path


def draw_command(args: str, ctx: Any) -> CommandResult:
    """Draw a scene from words: /draw a red circle at the top left and a blue square left of a gray circle."""
    if not args.strip():
        raise usage_error("/draw DESCRIPTION   e.g. /draw a red circle at the top left and a blue square at the bottom right")
    drawing, path = _draw_and_save(args, ctx)
    return CommandResult(
        text=f"Drew {drawing.layout.describe()} (from: {drawing.understood}; seed {drawing.seed}). Saved to {path}",
        data={"image": str(path), "understood": drawing.understood, "layout": drawing.layout.describe(), "seed": drawing.seed},
    )


def description_from_request(text: str) -> str:
    """'draw me a yellow circle in the bottom right corner' -> 'yellow circle in the bottom right corner'."""
    return _REQUEST.sub("", text.strip(), count=1).rstrip(" .!?")


def _looks_like_drawing_request(text: str) -> bool:
    from models.draw_text import DescriptionError, parse

    if not _DRAW_VERB.search(text):
        return False
    try:
        parse(description_from_request(text))
    except DescriptionError:
        return False
    return True


def draw_tool(text: str, ctx: Any) -> ToolResult:
    drawing, path = _draw_and_save(description_from_request(text), ctx)
    return ToolResult(text=f"I drew {drawing.layout.describe()} and saved the picture to {path}",
                      data={"image": str(path), "understood": drawing.understood, "seed": drawing.seed})


@hookimpl
def register_commands(register):
    register(draw_command, name="draw", usage="/draw DESCRIPTION", timeout_s=LOAD_TIMEOUT_S)


@hookimpl
def register_tools(register):
    register(
        draw_tool,
        name="draw",
        description="Draw a small scene of coloured squares and circles from a description.",
        examples=(
            "draw me a yellow circle in the bottom right corner",
            "draw a red square at the top left",
            "can you draw a blue circle and a green square",
            "paint a gray square left of an orange circle",
            "sketch a red circle above a blue square",
            "make a picture of a green circle at the top right",
            "draw an orange square in the lower left corner",
            "please draw two shapes: a red circle and a yellow square",
        ),
        # the guard is strict (a drawing verb and a description the parser can draw)
        threshold=0.45,
        guard=_looks_like_drawing_request,
        timeout_s=LOAD_TIMEOUT_S,
    )
