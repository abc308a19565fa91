"""Integration: the server around the real offline stack (SmolLM2, EfficientNet-Lite0, Whisper
tiny.en, Piper), driven by the openai client: a spoken question about a photo, end to end."""

from __future__ import annotations

import base64

import pytest
from openai import OpenAI

from tests.conftest import DATA
from assistant.serve.background import serving

pytestmark = pytest.mark.integration


def test_real_pipeline_through_the_api(real_bot, generator):
    bot = real_bot
    with serving(lambda: bot) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=120)
        r = client.chat.completions.create(model="synesthesia", messages=[
            {"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in r.choices[0].message.content
        prompt = [{"role": "system", "content": bot.settings.generator.system_prompt},
                  {"role": "user", "content": "What is the capital of France?"}]
        assert r.usage.prompt_tokens == generator.count_tokens(prompt)
        assert r.usage.completion_tokens == generator.generated_tokens > 0
        follow_up = prompt[1:] + [{"role": "assistant", "content": r.choices[0].message.content},
                                  {"role": "user", "content": "And of Germany?"}]
        r = client.chat.completions.create(model="synesthesia", messages=follow_up)
        assert "Berlin" in r.choices[0].message.content
        assert generator.reused_tokens > 20  # the conversation so far came from the KV cache

        wav = client.audio.speech.create(model="tts-1", voice="alloy", input="What animal is in this photo?",
                                         response_format="wav").read()
        heard = client.audio.transcriptions.create(model="whisper-1", file=("q.wav", wav)).text
        assert "animal" in heard.lower()
        with open(f"{DATA}/cat.jpg", "rb") as f:
            image = "data:image/jpeg;base64," + base64.b64encode(f.read()).decode()
        r = client.chat.completions.create(model="synesthesia", messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}},
            {"type": "image_url", "image_url": {"url": image}},
        ]}])
        assert "cat" in r.choices[0].message.content.lower()
        assert "animal" in r.model_extra["synesthesia"]["transcript"][0].lower()
