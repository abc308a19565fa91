"""Fakes for pipeline tests: a generator that replays queued replies and records its prompts."""

from __future__ import annotations

import torch


class FakeGenerator:
    name = "fake"
    source = "tests"
    device = "cpu"
    hidden_size = 8
    context_window = 4096

    def __init__(self, *replies: str):
        self.replies = list(replies)
        self.prompts: list[list[dict]] = []
        self.inserts: list = []
        self.stop_reason = ""
        self.forgotten = 0

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) + 4 for m in messages)

    def fit(self, messages, budget):
        while len(messages) > 2 and self.count_tokens(messages) > budget:
            messages = messages[:1] + messages[3:]
        if self.count_tokens(messages) > budget:
            raise ValueError(f"the message is {self.count_tokens(messages)} tokens long; the model's context budget is {budget}")
        return messages

    def embed_text(self, texts, max_tokens=64):
        return torch.ones(len(texts), 3, self.hidden_size), torch.ones(len(texts), 3, dtype=torch.bool)

    def stream(self, messages, *, inserts=None, sampling=None, cancel=None, seed=None):
        self.prompts.append(messages)
        self.inserts.append(inserts)
        reply = self.replies.pop(0) if self.replies else "ok"
        self.stop_reason = "eos"
        for word in reply.split(" "):
            if cancel is not None and cancel.is_set():
                self.stop_reason = "cancelled"
                return
            yield word + " "

    def forget(self, keep=None):
        self.forgotten += 1
        self.kept = keep


class FakeRecognizer:
    name = "fake-asr"

    def __init__(self, text="what is this"):
        self.text = text
        self.calls = 0

    def transcribe(self, audio):
        self.calls += 1
        return self.text if abs(audio).max() > 0.01 else ""
