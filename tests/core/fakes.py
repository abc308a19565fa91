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
        self.samplings: list = []
        self.stop_reason = ""
        self.forgotten = 0

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) + 4 for m in messages)

    def fit(self, messages, budget, history=None):
        def over():
            earlier = self.count_tokens(messages[1:-3])  # before the latest exchange
            return self.count_tokens(messages) > budget or bool(history and earlier > history)

        while len(messages) > 2 and over():
            messages = messages[:1] + messages[3:]
        if self.count_tokens(messages) > budget:
            raise ValueError(f"the message is {self.count_tokens(messages)} tokens long; the model's context budget is {budget}")
        return messages

    def embed_text(self, texts, max_tokens=64):
        return torch.ones(len(texts), 3, self.hidden_size), torch.ones(len(texts), 3, dtype=torch.bool)

    def stream(self, messages, *, inserts=None, sampling=None, cancel=None, seed=None):
        self.prompts.append(messages)
        self.inserts.append(inserts)
        self.samplings.append(sampling)
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


class FakeImageEncoder:
    """Counts its calls; every image gets the same feature tokens and two one-word labels
    (the typical photo the pipeline's estimate assumes, in the fake generator's tokens)."""

    name = "fake-image"
    feature_dim = 320

    def __init__(self):
        self.calls = 0
        self.images_seen = 0

    def encode(self, images, top_k=3, min_probability=0.0):
        from models.image import ImageFeatures

        self.calls += 1
        self.images_seen += len(images)
        labels = [[("tabby", 0.45), ("lynx", 0.2)][:top_k] for _ in images]
        return ImageFeatures(tokens=torch.zeros(len(images), 49, self.feature_dim), labels=labels)


class FakeSynthesizer:
    name = "fake-tts"
    sample_rate = 16000

    def __init__(self):
        self.said: list[str] = []

    def synthesize(self, text):
        import numpy as np

        self.said.append(text)
        return np.zeros(1600, np.float32)


def fake_speech_engines(recognizer=None, synthesizer=None, built=None):
    """A speech-engine registry whose 'whisper' and 'piper' build the fakes (and count it in ``built``)."""
    from models.speech.engines import SpeechEngines

    built = built if built is not None else []
    engines = SpeechEngines()

    def make_recognizer(**options):
        built.append("recognizer")
        return recognizer or FakeRecognizer()

    def make_synthesizer(**options):
        built.append("synthesizer")
        return synthesizer or FakeSynthesizer()

    engines.add("whisper", make_recognizer, kind="recognizer", description="fake recognizer")
    engines.add("piper", make_synthesizer, kind="synthesizer", description="fake voice")
    return engines
