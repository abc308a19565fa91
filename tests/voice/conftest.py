"""Voice test fixtures: real offline speech engines loaded once per session, audio helpers."""

from __future__ import annotations

import builtins

import numpy as np
import pytest


@pytest.fixture(scope="session")
def synth():
    from models.speech import load_synthesizer

    return load_synthesizer("espeak", voice="en-us", rate=175)


@pytest.fixture(scope="session")
def whisper_rec(vad, tmp_path_factory):
    """The default recognizer: Whisper tiny.en from its pip package (hash checked)."""
    from models.speech.whisper import WhisperRecognizer

    return WhisperRecognizer("tiny.en", vad=vad, stamp_dir=tmp_path_factory.mktemp("stamps"))


@pytest.fixture(scope="session")
def vad():
    from models.speech.vad import SileroVAD

    return SileroVAD()


@pytest.fixture(scope="session")
def recognizer(vad, tmp_path_factory):
    from models.speech.asr import PocketsphinxRecognizer

    return PocketsphinxRecognizer(vad=vad, cache_dir=tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="session")
def say16():
    """text, voice, rate -> float32 16 kHz eSpeak audio."""
    import soxr

    from models.speech import load_synthesizer

    cache: dict = {}

    def make(text: str, voice: str = "en-us", rate: int = 175) -> np.ndarray:
        key = (voice, rate)
        if key not in cache:
            cache[key] = load_synthesizer("espeak", voice=voice, rate=rate)
        s = cache[key]
        return soxr.resample(s.synthesize(text), s.sample_rate, 16_000).astype(np.float32)

    return make


def pad(audio: np.ndarray, before: float = 0.5, after: float = 0.5, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Surround with silence (seconds) and add white noise of the given std."""
    out = np.concatenate([np.zeros(int(before * 16000), np.float32), audio, np.zeros(int(after * 16000), np.float32)])
    if noise:
        out = out + np.random.default_rng(seed).normal(0, noise, len(out)).astype(np.float32)
    return out.astype(np.float32)


@pytest.fixture
def no_portaudio(monkeypatch):
    """``import sounddevice`` fails as it does on a machine without libportaudio2."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
