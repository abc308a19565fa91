"""Refusals in OpenAI's error shape: bad input (400, the CLI's one-line messages), keys (401),
size (413), a full queue (429), loading (503); and a stream stopped when its client leaves."""

from __future__ import annotations

import base64
import io
import threading
import time

import httpx
import openai
import pytest
from openai import OpenAI
from PIL import Image

from assistant.serve.app import ServeOptions
from assistant.serve.background import serving, wait_ready
from tests.serve.conftest import fake_bot, wav_bytes


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    return error["message"]


def chat(url: str, content, **extra) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": content}], **extra})


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def test_malformed_requests(server):
    url, bot = server
    post = f"{url}/v1/chat/completions"
    assert error_of(httpx.post(post, content=b"{not json"), 400) == "the request body is not valid JSON"
    assert error_of(httpx.post(post, content=b""), 400).startswith("the request body is empty")
    assert error_of(httpx.post(post, json={"model": "x"}), 400) == "messages: Field required"
    assert error_of(httpx.post(post, json={"messages": []}), 400).startswith("messages: List should have at least 1")
    last = httpx.post(post, json={"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    assert error_of(last, 400) == "messages[1]: the last message must be the user's (got 'assistant')"
    assert error_of(chat(url, "hi", temperature=3), 400).startswith("temperature:")
    assert error_of(chat(url, "hi", n=2), 400).startswith("n: only one choice")
    assert error_of(chat(url, ""), 400) == "message: empty (type something, or attach an image or audio)"
    assert error_of(chat(url, [{"type": "file", "file": {}}]), 400) == \
        "messages[0].content[0]: part type 'file' is not supported (text, image_url, input_audio)"
    assert error_of(httpx.get(f"{url}/v1/nothing"), 404) == "Not Found"
    assert bot.generator.prompts == []  # nothing reached the generator


def test_message_over_the_context_budget_is_openais_context_length_exceeded(server):
    url, bot = server
    budget = bot.budget()
    r = chat(url, "word " * (budget + 10))
    assert "context budget" in error_of(r, 400)
    assert r.json()["error"]["code"] == "context_length_exceeded" and r.json()["error"]["param"] == "messages"
    client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "word " * (budget + 10)}])
    assert caught.value.code == "context_length_exceeded"
    assert bot.generator.prompts == []


def test_bad_media_get_the_clis_messages(server):
    url, bot = server
    image = [{"type": "image_url", "image_url": {"url": data_url(b"this is not a picture")}}]
    assert error_of(chat(url, image), 400) == "image-1.png: not an image PIL can read (wrong extension or corrupt data)"
    with open(__file__, "rb") as f:
        text_as_wav = base64.b64encode(f.read()).decode()
    audio = [{"type": "input_audio", "input_audio": {"data": text_as_wav, "format": "wav"}}]
    assert error_of(chat(url, audio), 400) == "audio-1.wav: not an audio file soundfile can read (wav, flac, ogg, mp3)"
    bot.settings.image.max_pixels = 10_000  # the decompression-bomb check of `assistant ask` applies
    png = io.BytesIO()
    Image.new("RGB", (200, 200)).save(png, format="PNG")
    bomb = [{"type": "image_url", "image_url": {"url": data_url(png.getvalue())}}]
    message = error_of(chat(url, bomb), 400)
    assert message.startswith("image-1.png: image ") and "decompression bomb" in message
    bad64 = [{"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}]
    assert error_of(chat(url, bad64), 400).startswith("messages[0].content[0].input_audio.data: not valid base64")
    aac = [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "aac"}}]
    assert "audio format 'aac' is not supported" in error_of(chat(url, aac), 400)
    for remote in ("https://example.com/cat.jpg", "file:///etc/passwd", "/etc/passwd"):
        message = error_of(chat(url, [{"type": "image_url", "image_url": {"url": remote}}]), 400)
        assert "only data: URLs are accepted" in message
    upload = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": ("notes.wav", b"just some text\n")})
    assert error_of(upload, 400) == "notes.wav: not an audio file soundfile can read (wav, flac, ogg, mp3)"
    nofile = httpx.post(f"{url}/v1/audio/transcriptions", files={"other": ("a.wav", wav_bytes())})
    assert error_of(nofile, 400).startswith("file: an audio file is required")
    mp3 = httpx.post(f"{url}/v1/audio/speech", json={"input": "hi", "voice": "alloy", "response_format": "mp3"})
    assert error_of(mp3, 400) == "response_format 'mp3' is not supported here; use wav, flac, pcm"
    assert error_of(httpx.post(f"{url}/v1/audio/speech", json={"input": "  **  "}), 400) == \
        "speak: nothing speakable in the text"


def test_api_key(bot):
    with serving(lambda: bot, ServeOptions(api_key="s3cret")) as url:
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
        assert "API key" in error_of(chat(url, "hi"), 401)
        assert httpx.get(f"{url}/health").status_code == 200  # the health check needs no key
        good = OpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices


def test_body_limit(bot):
    with serving(lambda: bot, ServeOptions(max_body_bytes=64 * 1024)) as url:
        big = "x" * 100_000
        assert "over this server's 65,536-byte limit" in error_of(chat(url, big), 413)

        def chunked():  # no Content-Length: counted as it arrives
            for _ in range(20):
                yield b"x" * 8192

        assert error_of(httpx.post(f"{url}/v1/chat/completions", content=chunked()), 413)
        assert chat(url, "small").status_code == 200


def test_full_queue_is_429_and_a_departed_stream_stops(image_encoder):
    bot = fake_bot(image_encoder, " ".join(["word"] * 400), "second reply", delay=0.02)
    with serving(lambda: bot, ServeOptions(queue_size=1)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=30)
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "long"}], stream=True)
        next(iter(stream))  # the first reply is being generated
        waiting = {}
        second = threading.Thread(target=lambda: waiting.update(r=chat(url, "queued")))
        second.start()
        deadline = time.monotonic() + 10
        while url.app.state.worker.queued() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(openai.RateLimitError) as e:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "one too many"}])
        assert "busy" in e.value.message
        t0 = time.monotonic()
        stream.close()  # the client leaves: the generator stops at its next token
        second.join(10)
        assert waiting["r"].json()["choices"][0]["message"]["content"] == "second reply"
        assert time.monotonic() - t0 < 3  # not the 8 s the long reply would have taken
        assert bot.generator.prompts[0][-1]["content"] == "long" and len(bot.generator.prompts) == 2


def test_503_while_the_models_load(bot):
    loaded = threading.Event()

    def slow_load():
        loaded.wait(10)
        return bot

    with serving(slow_load, wait=False) as url:
        response = chat(url, "hi")
        assert "still loading" in error_of(response, 503) and response.headers["retry-after"] == "5"
        assert httpx.get(f"{url}/health").json()["status"] == "loading"
        # A request that could never be served is refused now, not after the load.
        bad = httpx.post(f"{url}/v1/chat/completions", content=b"not json", headers={"content-type": "application/json"})
        assert error_of(bad, 400) == "the request body is not valid JSON"
        bad = httpx.post(f"{url}/v1/audio/speech", json={"model": "m", "input": "hi", "response_format": "mp3"})
        assert "mp3" in error_of(bad, 400)
        loaded.set()
        wait_ready(url)
        assert chat(url, "hi").status_code == 200


def test_a_failed_load_is_a_503_with_the_reason():
    from assistant.errors import ModelError

    def broken():
        raise ModelError("generator 'nope': not found locally and downloads are off")

    with serving(broken, wait=False) as url:
        deadline = time.monotonic() + 5
        while httpx.get(f"{url}/health").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert error_of(chat(url, "hi"), 503) == \
            "the models failed to load: generator 'nope': not found locally and downloads are off"


def test_commands_are_off_and_file_readers_never_run(image_encoder, tmp_path):
    from assistant.config import Settings
    from assistant.plugin_host import load_plugins

    secret = tmp_path / "secret.txt"
    secret.write_text("the password is swordfish")
    host = load_plugins(Settings().plugins, enabled=False)
    bot = fake_bot(image_encoder, plugins=host)
    with serving(lambda: bot) as url:
        assert "slash commands are off" in error_of(chat(url, "/calc 2+2"), 400)
    with serving(lambda: bot, ServeOptions(allow_commands=True)) as url:
        assert error_of(chat(url, f"/read {secret}"), 400).startswith("/read: this command acts on the server's machine")
        r = chat(url, "/calc 2+2")
        assert r.status_code == 200 and "4" in r.json()["choices"][0]["message"]["content"]
    assert not any("swordfish" in str(p) for p in bot.generator.prompts)
