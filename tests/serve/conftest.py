"""A fake bot (scripted generator, fake recognizer, tone voice, the real image encoder) and a
server around it on a free loopback port (assistant.serve.background)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from assistant.config import Settings
from assistant.pipeline import Assistant
from assistant.serve.background import serving
from tests.core.fakes import FakeRecognizer
from tests.serve.fakes import ScriptedGenerator
from tests.voice.fakes import ToneSynth


def fake_bot(image_encoder, *replies: str, delay: float = 0.0, plugins=None) -> Assistant:
    bot = Assistant(Settings(), generator=ScriptedGenerator(*replies, delay=delay), image_encoder=image_encoder,
                    plugins=plugins)
    bot._recognizer = FakeRecognizer("what is this")
    bot._synthesizer = ToneSynth(seconds=0.2)
    return bot


def wav_bytes(seconds: float = 0.5, rate: int = 16_000, level: float = 0.3) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    sf.write(out, (level * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate, format="WAV")
    return out.getvalue()


@pytest.fixture
def bot(image_encoder):
    return fake_bot(image_encoder)


@pytest.fixture
def server(bot):
    """A server around the fake bot (default options); yields (base URL, bot)."""
    with serving(lambda: bot) as url:
        yield url, bot
