"""/v1/audio/transcriptions and /v1/audio/speech through the openai client."""

from __future__ import annotations

import io

import pytest
import soundfile as sf
from openai import OpenAI

from tests.serve.conftest import wav_bytes


@pytest.fixture
def client(server):
    url, _ = server
    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)


def test_transcription_formats(client, server):
    _, bot = server
    r = client.audio.transcriptions.create(model="whisper-1", file=("question.wav", wav_bytes()))
    assert r.text == "what is this"
    text = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav_bytes()), response_format="text")
    assert text.strip() == "what is this"
    verbose = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav_bytes(1.5)),
                                                 response_format="verbose_json")
    assert verbose.text == "what is this" and verbose.duration == pytest.approx(1.5, abs=0.01)
    assert bot.recognizer.calls == 3


def test_silence_transcribes_to_nothing(client):
    assert client.audio.transcriptions.create(model="whisper-1", file=("s.wav", wav_bytes(level=0.0))).text == ""


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_speech_file(client, server, fmt):
    _, bot = server
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there. How are you?",
                                       response_format=fmt).read()
    samples, rate = sf.read(io.BytesIO(audio))
    assert rate == 16_000 and abs(samples).max() > 0.1
    assert bot.synthesizer.said[-2:] == ["Hello there.", "How are you?"]  # sentence by sentence, like a reply


def test_speech_pcm_is_24khz_16bit(client):
    pcm = client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.", response_format="pcm").read()
    assert len(pcm) == 2 * int(0.2 * 24_000)  # one 0.2 s sentence at 24 kHz, 2 bytes a sample
