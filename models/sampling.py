"""How the generator picks each next token: the same numpy code for every runtime.

* :class:`Sampling`: the settings (greedy or temperature / top-k / top-p, a reply-scoped
  repetition penalty, n-gram blocking across replies, words a reply may not write).
* :class:`Chooser`: applies them to one step's logits, (vocab,) -> a token id.
* :func:`looping`: whether a reply has fallen into a short repeated loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Sampling:
    """How the next token is chosen. temperature 0 means greedy (deterministic)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 0.9
    top_k: int = 50
    repetition_penalty: float = 1.0
    """Above 1: tokens already in this reply are made less likely (the prompt is not counted)."""
    no_repeat_ngram: int = 0
    """n > 0: never produce an n-gram that an earlier assistant reply in the conversation
    contains (stops copying a previous answer's template), except one the user's question holds
    (an answer may echo its question). Repeats inside the reply are left alone: a list says
    "at the top" many times; a reply stuck in a loop is cut by :func:`looping`."""
    ngram_penalty: float = float("inf")
    """What :attr:`no_repeat_ngram` does to a token that would repeat an n-gram: subtract this
    from its logit. inf blocks it outright; a finite value lets a token the model strongly
    prefers through (the same answer to the same question asked twice)."""
    avoid_words: tuple[str, ...] = ()
    """Words this reply may not write (any case, with or without a leading space), e.g. the
    choice the fusion core ruled out: a small generator otherwise contradicts the core's note."""


def looping(ids: list[int], max_period: int = 8, min_span: int = 16) -> bool:
    """True when the reply's last tokens are one short piece (at most ``max_period`` tokens)
    repeated back to back over at least ``min_span`` tokens and at least 4 times: a small
    model stuck in a loop ('Z: "Z: "Z: ...'), which would otherwise run to the token limit
    and be read aloud. The reply ends there, keeping what was written (the loop included)."""
    for period in range(1, max_period + 1):
        span = max(min_span, 4 * period)
        if len(ids) < span:
            break
        tail = ids[-span:]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return True
    return False


class Chooser:
    """Picks each next token from the logits (numpy, the same for every runtime)."""

    def __init__(self, sampling: Sampling, seed: int | None, earlier: list[list[int]], avoid: list[int] = (),
                 quoted: Callable[[list[int]], bool] | None = None):
        """``earlier``: the conversation's earlier replies (token ids), whose n-grams are not
        repeated; ``quoted(ngram ids)``: True for an n-gram the user's question holds, which
        may be repeated all the same."""
        self.s = sampling
        self.quoted = quoted
        self.avoid = list(avoid)  # token ids never chosen
        self.rng = np.random.default_rng(seed)
        self.n = sampling.no_repeat_ngram
        self.seen: dict[tuple, set[int]] = {}  # (n-1)-gram -> tokens that followed it
        for ids in earlier:
            self._remember(ids)

    def _remember(self, ids: list[int]) -> None:
        n = self.n
        for i in range(len(ids) - n + 1 if n > 0 else 0):
            self.seen.setdefault(tuple(ids[i:i + n - 1]), set()).add(ids[i + n - 1])

    def choose(self, logits: np.ndarray, generated: list[int]) -> int:
        scores = logits.astype(np.float32, copy=True)  # (vocab,)
        s = self.s
        if self.avoid:
            scores[self.avoid] = -np.inf
        if s.repetition_penalty != 1.0 and generated:
            ids = np.unique(np.asarray(generated))
            vals = scores[ids]
            scores[ids] = np.where(vals > 0, vals / s.repetition_penalty, vals * s.repetition_penalty)
        if self.seen and len(generated) >= self.n - 1:
            context = generated[len(generated) - self.n + 1:]
            banned = [t for t in self.seen.get(tuple(context), ()) if not (self.quoted and self.quoted(context + [t]))]
            if banned:
                scores[banned] -= s.ngram_penalty  # inf: -inf, blocked
        if s.temperature <= 0:
            return int(scores.argmax())
        scores = scores / s.temperature
        if 0 < s.top_k < scores.shape[0]:
            cut = np.partition(scores, -s.top_k)[-s.top_k]
            scores[scores < cut] = -np.inf
        order = np.argsort(-scores)
        probs = np.exp(scores[order] - scores[order[0]])
        probs /= probs.sum()
        if s.top_p < 1.0:
            keep = np.searchsorted(np.cumsum(probs), s.top_p) + 1
            probs = probs[:keep] / probs[:keep].sum()
            order = order[:keep]
        return int(order[self.rng.choice(len(probs), p=probs)])
