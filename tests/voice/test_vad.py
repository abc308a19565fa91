import numpy as np
import pytest

from models.speech.vad import FRAME, EndOfSpeech, _speech_ranges

from .conftest import pad


def test_finds_speech_padded_with_silence_and_noise(vad, say16):
    speech = say16("What is the shape of the red object?")
    audio = pad(speech, before=1.5, after=2.0, noise=0.01)
    segments = vad.segments(audio)
    assert len(segments) == 1
    start, end = segments[0]
    onset, offset = int(1.5 * 16000), int(1.5 * 16000) + len(speech)
    assert abs(start - onset) < 0.3 * 16000
    assert abs(end - offset) < 0.4 * 16000


def test_two_utterances_are_two_segments(vad, say16):
    a, b = say16("Describe this image."), say16("Tell me a joke.")
    audio = np.concatenate([pad(a, 0.5, 1.5), pad(b, 0, 0.5)])
    assert len(vad.segments(audio)) == 2


def test_silence_and_noise_alone_have_no_speech(vad):
    rng = np.random.default_rng(0)
    assert vad.segments(np.zeros(3 * 16000, np.float32)) == []
    assert vad.segments(rng.normal(0, 0.05, 4 * 16000).astype(np.float32)) == []
    hum = (0.1 * np.sin(2 * np.pi * 50 * np.arange(3 * 16000) / 16000)).astype(np.float32)
    assert vad.segments(hum) == []
    assert vad.segments(np.zeros(100, np.float32)) == []


def test_long_speech_is_cut_into_bounded_segments():
    probs = np.ones(2000, np.float32)  # 64 s of speech
    probs[700] = 0.0
    ranges = _speech_ranges(probs, 2000 * FRAME, 0.5, 200, 300, 0, 20.0)
    assert len(ranges) >= 4
    assert all((e - s) / 16000 <= 20.0 + 1e-6 for s, e in ranges)
    assert ranges[0][0] == 0 and ranges[-1][1] == 2000 * FRAME


def test_frame_probability_checks_its_input(vad):
    with pytest.raises(ValueError, match="512 samples"):
        vad.frame_probability(np.zeros(100, np.float32))


def test_end_of_speech_waits_for_the_configured_silence():
    eos = EndOfSpeech(0.5, end_silence_ms=700)
    assert eos.update(0.9) == "start"
    events = [eos.update(0.9) for _ in range(10)]
    assert events == [None] * 10
    quiet = [eos.update(0.05) for _ in range(eos.end_frames)]
    assert quiet[:-1] == [None] * (eos.end_frames - 1) and quiet[-1] == "end"
    assert eos.end_frames * FRAME / 16000 == pytest.approx(0.7, abs=0.02)
    # A blip shorter than the minimum speech is dropped, not an utterance.
    assert eos.update(0.9) == "start"
    assert [eos.update(0.0) for _ in range(eos.end_frames)][-1] == "cancel"
