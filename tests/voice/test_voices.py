"""The split of synthetic voices into tuning and evaluation voices (models/speech/voices.py)."""

from __future__ import annotations

import pytest

from models.speech.voices import EVAL_VOICES, PIPER_EVAL_VOICE, TUNING_VOICES, is_tuning_voice


def test_tuning_and_evaluation_voices_are_disjoint():
    tuning = {v.name.lower() for v in TUNING_VOICES}
    evaluation = {v.name.lower() for v in EVAL_VOICES}
    assert len(tuning) == len(TUNING_VOICES) and len(evaluation) == len(EVAL_VOICES)  # no duplicates
    assert not tuning & evaluation
    assert len(EVAL_VOICES) >= 6
    assert not any(is_tuning_voice(v.name) for v in EVAL_VOICES)
    assert all(is_tuning_voice(v.name) for v in TUNING_VOICES)


@pytest.mark.parametrize("voice", [*TUNING_VOICES, *EVAL_VOICES], ids=lambda v: v.name)
def test_every_espeak_voice_exists(voice):
    from models.speech.tts import EspeakSynthesizer

    synth = EspeakSynthesizer(voice.name, voice.rate)  # raises ValueError for an unknown voice
    audio = synth.synthesize("Testing one two three.")
    assert audio.size > 0.5 * synth.sample_rate


def test_the_piper_evaluation_voice_is_the_packaged_joe_voice():
    from models.speech.tts import JOE_VOICE_NAMES

    assert PIPER_EVAL_VOICE in JOE_VOICE_NAMES and PIPER_EVAL_VOICE
    assert not is_tuning_voice(PIPER_EVAL_VOICE)
