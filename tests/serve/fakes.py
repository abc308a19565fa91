"""A scripted generator with what the server reads from a real one (token counts, stop reason)."""

from __future__ import annotations

import threading
import time

from tests.core.fakes import FakeGenerator


class ScriptedGenerator(FakeGenerator):
    """Replays queued replies word by word (one word = one token), ``delay`` seconds a word;
    honours ``sampling.max_new_tokens`` and the cancel event as the real generator does."""

    def __init__(self, *replies: str, delay: float = 0.0):
        super().__init__(*replies)
        self.delay = delay
        self.generated_tokens = 0
        self.started = threading.Event()
        self.finished = threading.Event()
        """Set when a reply's stream has ended (cleared when the next begins)."""
        self.samplings: list = []
        self.seeds: list = []

    def stream(self, messages, *, inserts=None, sampling=None, cancel=None, seed=None):
        self.prompts.append(messages)
        self.samplings.append(sampling)
        self.seeds.append(seed)
        words = (self.replies.pop(0) if self.replies else "ok").split(" ")
        self.generated_tokens, self.stop_reason = 0, "length"
        self.finished.clear()
        self.started.set()
        try:
            yield from self._words(words, sampling, cancel)
        finally:
            self.finished.set()

    def _words(self, words, sampling, cancel):
        for i, word in enumerate(words[:sampling.max_new_tokens]):
            if cancel is not None and cancel.is_set():
                self.stop_reason = "cancelled"
                return
            time.sleep(self.delay)
            self.generated_tokens += 1
            yield word if i == 0 else " " + word
        if len(words) <= sampling.max_new_tokens:
            self.stop_reason = "eos"
