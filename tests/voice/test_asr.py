"""Pocketsphinx recognition (a selectable engine): round trip through eSpeak NG, silence, long audio,
engine selection by name."""

import numpy as np
import pytest

from models.speech import load_recognizer
from models.speech.asr import PocketsphinxRecognizer
from models.speech.domain import domain_corpus, normalise, word_error_rate, word_errors

from .conftest import pad

# Thresholds from the former pocketsphinx benchmark (in-domain WER 0.06, open 0.47, on tuning voices) plus headroom for these few
# sentences: measured WER in-domain 0.06 clean / 0.06 noisy, open speech 0.47 / 0.57.
IN_DOMAIN_MAX_WER = 0.15
OPEN_MAX_WER = 0.65

IN_DOMAIN = [
    ("What is the shape of the red object?", "en-us", 175),
    ("Is the blue object on the left or right of the image?", "en-us+f3", 160),
    ("How many objects have the same shape as the green object?", "en", 190),
    ("Tell me a joke.", "en-us+m3", 140),
]
OPEN = [
    ("My sister is moving to a new apartment next week.", "en-us", 175),
    ("The children played in the park all afternoon.", "en", 175),
]


def test_word_error_rate():
    assert word_errors("What is 2 + 2?", "what is two plus two") == (0, 5)
    assert word_errors("the red object", "the bed object here") == (2, 3)
    assert word_error_rate([("a b c d", "a b c d"), ("a b", "")]) == pytest.approx(2 / 6)
    assert normalise("It's 3 o'clock, DR. Who!") == "it's three o'clock dr who"


def test_domain_corpus_has_clevr_questions_and_extra_phrases():
    corpus = domain_corpus(["Turn on the Lights!", "turn on the lights"])
    assert "what is the shape of the red object" in corpus
    assert "is the blue object on the left or right of the image" in corpus
    assert "how many objects have the same shape as the green object" in corpus
    assert corpus.count("turn on the lights") == 1


def test_in_domain_round_trip(recognizer, say16):
    pairs = []
    for text, voice, rate in IN_DOMAIN:
        heard = recognizer.transcribe(pad(say16(text, voice, rate), 0.4, 0.4, noise=0.003))
        pairs.append((text, heard))
    wer = word_error_rate(pairs)
    assert wer <= IN_DOMAIN_MAX_WER, pairs


def test_open_speech_round_trip(recognizer, say16):
    pairs = [(t, recognizer.transcribe(pad(say16(t, v, r), 0.4, 0.4, noise=0.003))) for t, v, r in OPEN]
    wer = word_error_rate(pairs)
    assert wer <= OPEN_MAX_WER, pairs
    assert recognizer.last_source == "generic"  # open speech is not forced into the domain model


def test_silence_and_noise_give_empty_transcripts(recognizer):
    rng = np.random.default_rng(3)
    assert recognizer.transcribe(np.zeros(2 * 16000, np.float32)) == ""
    assert recognizer.transcribe(rng.normal(0, 0.05, 3 * 16000).astype(np.float32)) == ""


def test_long_audio_is_decoded_segment_by_segment(recognizer, say16, monkeypatch):
    phrase = pad(say16("Tell me a joke."), 0.0, 1.0, noise=0.002)
    audio = np.tile(phrase, 40)  # about 90 s, 40 utterances: decoded one segment at a time
    seen = []
    monkeypatch.setattr(recognizer, "_decode", lambda seg: seen.append(len(seg)) or f"s{len(seen)}")
    text = recognizer.transcribe(audio)
    assert len(seen) == 40 and max(seen) < 3 * 16000
    assert text.split() == [f"s{i}" for i in range(1, 41)]


def test_long_speech_without_pauses_is_cut(recognizer, monkeypatch):
    seen = []
    monkeypatch.setattr(recognizer.vad, "probabilities", lambda a: np.ones((len(a) + 511) // 512, np.float32))
    monkeypatch.setattr(recognizer, "_decode", lambda seg: seen.append(len(seg)) or "x")
    recognizer.transcribe(np.zeros(70 * 16000, np.float32))
    assert len(seen) >= 4 and max(seen) <= 20.5 * 16000


def test_bad_audio_is_a_value_error(recognizer):
    with pytest.raises(ValueError, match="mono"):
        recognizer.transcribe(np.zeros((2, 16000), np.float32))
    with pytest.raises(ValueError, match="float"):
        recognizer.transcribe(np.zeros(16000, np.int16))


def test_engine_names_choose_the_engine(tmp_path, monkeypatch):
    from models.speech import sphinx, whisper

    made = []
    monkeypatch.setattr(sphinx, "PocketsphinxRecognizer", lambda **kw: made.append(("ps", kw)) or "ps")
    monkeypatch.setattr(whisper, "WhisperRecognizer", lambda model, **kw: made.append(("w", model, kw)) or "w")
    assert load_recognizer("pocketsphinx", extra_phrases=["hi there"]) == "ps"
    assert made[-1][1]["mode"] == "combined" and made[-1][1]["extra_phrases"] == ["hi there"]
    assert load_recognizer("pocketsphinx-generic") == "ps" and made[-1][1]["mode"] == "generic"
    assert load_recognizer("auto") == "w" and made[-1][1] == "tiny.en"
    assert load_recognizer("whisper:base.en", whisper_dir=tmp_path) == "w"
    assert made[-1][1] == "base.en" and made[-1][2]["whisper_dir"] == tmp_path
    with pytest.raises(ValueError, match="unknown recognizer 'kaldi'; choose one of whisper, pocketsphinx"):
        load_recognizer("kaldi")
    with pytest.raises(ValueError, match="English"):
        load_recognizer("pocketsphinx", language="de")


def test_extra_phrases_reach_the_domain_model(tmp_path, vad):
    rec = PocketsphinxRecognizer(extra_phrases=["water the plants in the garden", "frobnicate the zorblax"],
                                 cache_dir=tmp_path, vad=vad)
    assert rec.name == "pocketsphinx (domain LM)"
    assert "water the plants in the garden" in rec.sentences
    assert "frobnicate the zorblax" in rec.skipped  # words missing from the dictionary
