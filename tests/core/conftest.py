"""A lazily loading Assistant on fakes, reached through the real CLI entry point."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import soundfile as sf

from tests.core.fakes import FakeGenerator, FakeImageEncoder, FakeRecognizer, FakeSynthesizer, fake_speech_engines


@dataclass
class LazyStack:
    """What `Assistant.load` built (``bot``) and what the lazy slots loaded, in order."""

    generator: FakeGenerator
    image_encoder: FakeImageEncoder = field(default_factory=FakeImageEncoder)
    recognizer: FakeRecognizer = field(default_factory=FakeRecognizer)
    synthesizer: FakeSynthesizer = field(default_factory=FakeSynthesizer)
    loaded: list[str] = field(default_factory=list)
    bot: object = None


@pytest.fixture
def lazy_stack(monkeypatch):
    """`Assistant.load` (what `assistant ask` calls) builds a real, lazily loading Assistant
    whose generator, image encoder and speech engines are fakes; the plugin host is real."""
    from assistant.config import Settings
    from assistant.pipeline import Assistant, load_plugin_host

    stack = LazyStack(generator=FakeGenerator("The capital of France is Paris."))

    def load(cls, config=None, *, offline=None, plugins=True, progress=None):
        settings = config if isinstance(config, Settings) else Settings.load(config)
        stack.bot = cls(settings, generator=stack.generator, plugins=load_plugin_host(settings) if plugins else None,
                        progress=progress)
        return stack.bot

    def load_image_encoder(self):
        stack.loaded.append("image")
        return stack.image_encoder

    monkeypatch.setattr(Assistant, "load", classmethod(load))
    monkeypatch.setattr(Assistant, "_load_image_encoder", load_image_encoder)
    monkeypatch.setattr("assistant.loading.speech_engines", lambda plugins, notify: fake_speech_engines(
        recognizer=stack.recognizer, synthesizer=stack.synthesizer, built=stack.loaded))
    return stack


@pytest.fixture
def question_wav(tmp_path):
    """One second of a tone (the fake recognizer hears "what is this" in anything audible)."""
    path = tmp_path / "question.wav"
    sf.write(path, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    return path
