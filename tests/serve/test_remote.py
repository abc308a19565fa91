"""The remote generator (``generator.backend = "openai"``): replies written by an OpenAI-compatible
server, here a real ``assistant serve`` on a free loopback port (the tiny random Llama, or a
scripted generator), while the client's pipeline stays local; and a fake server that fails
in every way a remote can, for the one-line errors. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistant.config import Settings
from assistant.errors import ConfigError, InputError, ModelError
from assistant.pipeline import Assistant, MessageTooLong, remote_generator
from assistant.serve.background import serving
from models.generator import Generator
from models.sampling import Sampling
from models.remote import RemoteGenerator
from tests.serve.conftest import fake_bot


@pytest.fixture(scope="module")
def tiny(tiny_folder, tmp_path_factory):
    """The tiny random Llama on the ONNX runtime: the server's generator, and the client's
    local one (which only measures prompts there)."""
    return Generator.load(str(tiny_folder), device="cpu", runtime="onnx", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def tiny_server(tiny):
    """`assistant serve` around an Assistant whose generator is the tiny Llama."""
    bot = Assistant(Settings(), generator=tiny)
    with serving(lambda: bot) as url:
        yield url, bot


def remote_bot(local, url: str, **generator_settings) -> Assistant:
    """An Assistant whose replies come from the server at ``url`` (built as Assistant.load builds it)."""
    settings = Settings()
    for key, value in {"backend": "openai", "base_url": f"{url}/v1", "max_retries": 0, "timeout_s": 30.0,
                       **generator_settings}.items():
        setattr(settings.generator, key, value)
    return Assistant(settings, generator=remote_generator(settings, local))


def test_the_reply_is_the_servers_generators_streamed(tiny, tiny_server):
    url, _ = tiny_server
    # (greedy, the random model writes only newlines: sampled with a seed, its replies differ)
    bot = remote_bot(tiny, url, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=7)
    chunks = []
    reply = bot.ask("Name a colour.", on_text=chunks.append)
    messages = [{"role": "system", "content": bot.settings.generator.system_prompt},
                {"role": "user", "content": "Name a colour."}]
    sampling = Sampling(max_new_tokens=12, temperature=1.0, top_p=1.0)  # top_k is the server's own (50)
    local = "".join(tiny.stream(messages, sampling=sampling, seed=7)).strip()
    assert reply.text == local != ""
    assert len(chunks) > 1  # streamed, not one block
    assert bot.generator.generated_tokens == tiny.generated_tokens  # the server's own count (usage)
    assert bot.generator.prompt_tokens == tiny.count_tokens(messages)
    assert reply.partial == (tiny.stop_reason != "eos")
    assert bot.generator.name == "synesthesia"  # no model configured: the first the server lists


def test_a_seed_makes_sampling_reproducible_through_the_server(tiny, tiny_server):
    url, _ = tiny_server
    replies = {}
    for seed in (11, 11, 12):
        bot = remote_bot(tiny, url, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=seed)
        replies.setdefault(seed, []).append(bot.ask("Name a colour.").text)
    assert replies[11][0] == replies[11][1]
    assert replies[11][0] != replies[12][0]


@pytest.fixture
def scripted_server(image_encoder):
    bot = fake_bot(image_encoder)
    with serving(lambda: bot) as url:
        yield url, bot


def test_history_sampling_and_fitting_are_the_local_pipelines(tiny, scripted_server):
    url, server = scripted_server
    long_reply = " ".join(["word"] * 90)
    server.generator.replies += [long_reply] * 3
    bot = remote_bot(tiny, url, context_tokens=256, max_new_tokens=100, temperature=0.7, top_p=0.5, seed=3)
    for question in ("First question?", "Second question?", "Third question?"):
        bot.ask(question)
    sent = server.generator.prompts[-1]
    assert sent == [{"role": "system", "content": bot.settings.generator.system_prompt}] + bot.history[:-1]
    assert sent[-1] == {"role": "user", "content": "Third question?"}
    assert len(sent) < 6  # the oldest turns were dropped locally to fit 256 - 100 tokens
    used = server.generator.samplings[-1]
    assert (used.max_new_tokens, used.temperature, used.top_p, server.generator.seeds[-1]) == (100, 0.7, 0.5, 3)


def test_cancel_ends_the_reply_at_once_and_stops_the_server(tiny, image_encoder):
    server = fake_bot(image_encoder, " ".join(["word"] * 200), delay=0.05)
    with serving(lambda: server) as url:
        bot = remote_bot(tiny, url)
        cancel = threading.Event()
        got = []

        def on_text(chunk):
            got.append(chunk)
            if len(got) == 3:
                cancel.set()

        reply = bot.ask("Talk.", cancel=cancel, on_text=on_text)
        assert reply.partial and bot.generator.stop_reason == "cancelled" and len(got) == 3
        assert server.generator.finished.wait(5)
        assert server.generator.stop_reason == "cancelled"  # the server saw the client leave
        assert server.generator.generated_tokens < 20

        # before the first token: a server that takes 2 s for it is left at once
        server.generator.replies.append("slow")
        server.generator.delay = 2.0
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        t0 = time.perf_counter()
        reply = bot.ask("Talk.", cancel=cancel)
        assert time.perf_counter() - t0 < 1.0 and reply.text == "" and bot.generator.stop_reason == "cancelled"


# ---------------------------------------------------------------------- a server that fails


class FailingServer:
    """Answers every request as ``mode`` says, and counts them."""

    def __init__(self):
        self.mode = "503"
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                outer.requests.append({"path": self.path, "auth": self.headers.get("authorization"),
                                       "body": self.rfile.read(length)})
                outer.answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, h) -> None:
        mode = self.mode
        if mode == "hang":
            time.sleep(1.5)
            mode = "503"
        if mode == "broken":  # the stream starts, then the connection drops
            h.send_response(200)
            h.send_header("content-type", "text/event-stream")
            h.send_header("content-length", "1000")
            h.end_headers()
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        status, message, code = {
            "503": (503, "the models are still loading", "models_loading"),
            "429": (429, "busy", "queue_full"),
            "401": (401, "missing or wrong API key", "invalid_api_key"),
            "404": (404, "model 'x' not found", "model_not_found"),
            "too long": (400, "the prompt is 9000 tokens; this model holds 4096", "context_length_exceeded"),
        }[mode]
        body = json.dumps({"error": {"message": message, "type": "x", "param": None, "code": code}}).encode()
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(body)))
        h.send_header("retry-after-ms", "10")
        h.end_headers()
        h.wfile.write(body)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def failing():
    server = FailingServer()
    yield server
    server.close()


@pytest.mark.parametrize("mode,retries,needle,tries", [
    ("503", 1, "failed after 1 retry (HTTP 503: the models are still loading)", 2),
    ("429", 2, "failed after 2 retries (HTTP 429: busy)", 3),
    ("401", 2, "refused the API key (HTTP 401: missing or wrong API key)", 1),
    ("404", 2, "answered HTTP 404: model 'x' not found (is generator.base_url the API root", 1),
    ("hang", 0, "did not answer within 0.5 s (generator.timeout_s)", 1),
    ("broken", 0, "dropped the connection during the reply (peer closed connection", 1),
])
def test_a_failing_server_is_one_line(tiny, failing, mode, retries, needle, tries):
    failing.mode = mode
    bot = remote_bot(tiny, failing.url, remote_model="m", max_retries=retries, timeout_s=0.5)
    with pytest.raises(ModelError) as caught:
        bot.ask("hi")
    message = str(caught.value)
    assert message.startswith(f"generator failed: the generator server at {failing.url}/v1 ")
    assert needle in message and "\n" not in message
    assert len(failing.requests) == tries and failing.requests[0]["path"] == "/v1/chat/completions"


def test_too_long_for_the_server_is_message_too_long(tiny, failing):
    failing.mode = "too long"
    bot = remote_bot(tiny, failing.url, remote_model="m")
    with pytest.raises(MessageTooLong) as caught:
        bot.ask("hi")
    assert "refused the prompt as too long (HTTP 400: the prompt is 9000 tokens" in str(caught.value)
    assert isinstance(caught.value, InputError)


def test_the_key_comes_only_from_the_named_variable(tiny, failing, monkeypatch):
    failing.mode = "401"
    monkeypatch.setenv("OPENAI_API_KEY", "a key for another service")
    with pytest.raises(ModelError):
        remote_bot(tiny, failing.url, remote_model="m").ask("hi")
    assert failing.requests[-1]["auth"] == "Bearer none"
    monkeypatch.setenv("GPU_BOX_KEY", "sekret")
    with pytest.raises(ModelError):
        remote_bot(tiny, failing.url, remote_model="m", api_key_env="GPU_BOX_KEY").ask("hi")
    assert failing.requests[-1]["auth"] == "Bearer sekret"
    body = json.loads(failing.requests[-1]["body"])
    assert body["model"] == "m" and body["stream"] is True and body["messages"][-1] == {"role": "user", "content": "hi"}


def test_settings_mistakes_are_config_errors(tiny, monkeypatch):
    settings = Settings()
    settings.generator.backend = "openai"
    with pytest.raises(ConfigError, match="needs generator.base_url"):
        remote_generator(settings, tiny)
    settings.generator.base_url = "gpu-box:8000"
    with pytest.raises(ConfigError, match="give the server's API root"):
        remote_generator(settings, tiny)
    settings.generator.base_url, settings.generator.api_key_env = "http://127.0.0.1:9/v1", "NO_SUCH_KEY_VAR"
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR is not set"):
        remote_generator(settings, tiny)


def test_the_cli_says_one_line_when_the_server_is_down(tiny, monkeypatch, capsys):
    from assistant.cli import main

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(Generator, "load", classmethod(lambda cls, *a, **k: tiny))
    for key, value in {"BACKEND": "openai", "BASE_URL": f"http://127.0.0.1:{port}/v1", "MAX_RETRIES": "0"}.items():
        monkeypatch.setenv(f"SYNESTHESIA_GENERATOR__{key}", value)
    assert main(["--no-plugins", "ask", "hi"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"assistant: error: generator failed: the generator server at http://127.0.0.1:{port}/v1 "
                          "cannot be reached (")
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert isinstance(Assistant.load(Settings.load(), plugins=False).generator, RemoteGenerator)
