import sys

import numpy as np
import pytest

from models.speech import load_synthesizer, speak_text


def test_espeak_synthesizes_float32_mono(synth):
    audio = synth.synthesize("Hello, this is Synesthesia speaking.")
    assert synth.sample_rate == 22050 and "espeak" in synth.name
    assert audio.dtype == np.float32 and audio.ndim == 1
    seconds = len(audio) / synth.sample_rate
    assert 1.0 < seconds < 4.0
    assert 0.05 < np.abs(audio).max() <= 1.0
    assert synth.synthesize("   ").size == 0


def test_rate_and_voice_change_the_audio():
    text = "The quick brown fox jumps over the lazy dog."
    slow = load_synthesizer(voice="en-us", rate=120).synthesize(text)
    fast = load_synthesizer(voice="en-us", rate=260).synthesize(text)
    assert len(slow) > 1.5 * len(fast)
    female = load_synthesizer(voice="en-us+f3", rate=120).synthesize(text)
    assert female.shape != slow.shape or not np.allclose(female, slow)


def test_bad_voice_rate_and_engine_are_clear_errors():
    with pytest.raises(ValueError, match="no voice 'xx-nope'"):
        load_synthesizer(voice="xx-nope")
    with pytest.raises(ValueError, match="out of range"):
        load_synthesizer(rate=5)
    with pytest.raises(ValueError, match="unknown speech synthesis engine"):
        load_synthesizer("festival")


def test_optional_engines_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "TTS", None)  # import TTS -> ImportError
    monkeypatch.setitem(sys.modules, "TTS.api", None)
    with pytest.raises(RuntimeError, match="coqui"):
        load_synthesizer("coqui")
    monkeypatch.setitem(sys.modules, "piper", None)
    with pytest.raises(RuntimeError, match="pip install piper-tts"):
        load_synthesizer("piper", voice="voice.onnx")


def test_speak_text_reads_sentences_not_markup(synth):
    audio, rate = speak_text(synth, "# Title\n```\nx = [1, 2, 3]\n```\nDone.")
    plain, _ = speak_text(synth, "Title. (code omitted). Done.")
    assert rate == synth.sample_rate
    assert abs(len(audio) - len(plain)) < 0.05 * rate
    empty, _ = speak_text(synth, "```\ncode only\n```")
    assert empty.size > 0  # "(code omitted)"
    nothing, _ = speak_text(synth, "***")
    assert nothing.size == 0
