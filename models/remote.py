"""A remote generator: an OpenAI-compatible server writes the reply (vLLM, llama.cpp's server,
Ollama, another ``assistant serve``), everything else stays in this process.

:class:`RemoteGenerator` has the surface the pipeline uses of :class:`models.generator.Generator`
(``stream``, ``fit``, ``count_tokens``, ``forget``, ``prefill``, ``stop_reason``...). A local
generator rides along for the text side: its tokenizer and chat template measure prompts (so
the history is fitted to the context budget exactly as with a local generator, in its tokens:
an estimate of the server's), and its input embeddings condition the fusion core, whose
evidence then reaches the server as text. Soft tokens (fusion embeddings spliced into the
prompt) need the generator in-process and never travel: :attr:`RemoteGenerator.soft_tokens`
is False.

Nothing touches the network until the first reply is wanted. The ``openai`` package is the
client (``pip install 'synesthesia[remote]'``): streaming, timeouts, and retries with
exponential backoff on connection errors, 408, 409, 429 and 5xx (honouring ``Retry-After``).
Every failure becomes one :class:`RemoteError` line naming the server and what to check.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

from models.sampling import Sampling

BIG_WINDOW = 1 << 30
"""The server's context window is not known here: ``generator.context_tokens`` is the budget."""


class RemoteError(RuntimeError):
    """The generator server failed or refused: one line, naming the server and what to check."""

    context_too_long = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


class RemoteTooLong(RemoteError):
    """The server counted more tokens than its context holds (OpenAI's ``context_length_exceeded``)."""

    context_too_long = True


class RemoteGenerator:
    """Streams replies from ``base_url`` (an OpenAI API root, e.g. ``http://gpu-box:8000/v1``)."""

    soft_tokens = False
    """Fusion tokens cannot be sent; the pipeline gives this generator the text evidence only."""
    runtime = "remote"

    def __init__(self, local, *, base_url: str, model: str = "", api_key: str = "", timeout_s: float = 60.0,
                 max_retries: int = 2):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"generator.base_url {base_url!r}: give the server's API root, e.g. http://gpu-box:8000/v1")
        try:
            import openai
        except ImportError:
            raise ValueError("generator.backend = \"openai\" needs the openai package: "
                             "pip install 'synesthesia[remote]'") from None
        self.local = local
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._model = model
        # The key is always given (else the client would read OPENAI_API_KEY and could send a
        # key meant for another service); "none" is what keyless servers ignore.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "none", max_retries=max_retries,
                                    timeout=openai.Timeout(timeout_s, connect=min(timeout_s, 10.0)))
        self.stop_reason = ""
        """Why the last stream ended: 'eos', 'length' or 'cancelled'."""
        self.generated_tokens = 0
        """Tokens in the last reply, as the server counted them (else the chunks received)."""
        self.prompt_tokens: int | None = None
        """The server's count of the last prompt, when it reports usage."""
        self.reused_tokens = 0  # the server keeps its own prefix cache (vLLM, llama.cpp), unseen here
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ what the pipeline reads

    @property
    def name(self) -> str:
        return self._model or "(the server's model)"

    @property
    def source(self) -> str:
        return f"{self.base_url} (OpenAI-compatible server; prompts measured with the local {self.local.name})"

    @property
    def device(self) -> str:
        """Where the local models (image encoder, fusion core) run."""
        return self.local.device

    @property
    def hidden_size(self) -> int:
        return self.local.hidden_size

    @property
    def context_window(self) -> int:
        return BIG_WINDOW

    @property
    def tokenizer(self):
        return self.local.tokenizer

    def render(self, messages: list[dict]) -> str:
        return self.local.render(messages)

    def encode(self, text: str) -> list[int]:
        return self.local.encode(text)

    def count_tokens(self, messages: list[dict]) -> int:
        return self.local.count_tokens(messages)

    def fit(self, messages: list[dict], budget: int, history: int | None = None) -> list[dict]:
        return self.local.fit(messages, budget, history)

    def embed_text(self, texts: list[str], max_tokens: int = 64):
        return self.local.embed_text(texts, max_tokens)

    def forget(self, keep: list[dict] | None = None) -> None:
        """Nothing is cached here (the server caches prompt prefixes itself, if it does)."""

    def prefill(self, messages: list[dict]) -> None:
        """No-op: prefilling happens on the server with the first request."""

    # ------------------------------------------------------------------ generation

    def stream(self, messages: list[dict], *, inserts: list | None = None, sampling: Sampling | None = None,
               cancel: threading.Event | None = None, seed: int | None = None) -> Iterator[str]:
        """Yield the reply as the server streams it. ``cancel`` stops it at once: the reply ends
        here and the connection is closed at the server's next chunk (which stops a server that
        notices disconnects, as ``assistant serve`` and vLLM do)."""
        if inserts:
            raise ValueError("fusion tokens cannot be sent to a remote generator (the evidence goes as text)")
        with self._lock:
            yield from self._stream(messages, sampling or Sampling(), cancel or threading.Event(), seed)

    def _stream(self, messages, sampling: Sampling, cancel: threading.Event, seed) -> Iterator[str]:
        self.stop_reason, self.generated_tokens, self.prompt_tokens = "length", 0, None
        request = {
            "model": self._model_name(),
            "messages": [{"role": m["role"], "content": m["content"]} for m in messages],
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if seed is not None:
            request["seed"] = seed
        reader = _Reader(lambda: self.client.chat.completions.create(**request), cancel)
        chunks, finish, started = 0, None, False
        for kind, value in reader:
            if kind == "error":
                raise self._explain(value, started=started)
            started = True
            if kind == "cancelled":
                self.stop_reason = "cancelled"
                break
            if getattr(value, "usage", None) is not None:
                self.generated_tokens = int(value.usage.completion_tokens or 0)
                self.prompt_tokens = int(value.usage.prompt_tokens or 0)
            for choice in value.choices or ():
                text = choice.delta.content if choice.delta is not None else None
                if text:
                    chunks += 1
                    yield text
                finish = choice.finish_reason or finish
        else:
            self.stop_reason = "length" if finish == "length" else "eos"
        if not self.generated_tokens:
            self.generated_tokens = chunks

    def _model_name(self) -> str:
        """``model`` as configured, else the first model the server lists (asked once)."""
        if not self._model:
            try:
                models = self.client.models.list().data
            except Exception as e:  # noqa: BLE001 - the client's errors are explained; others re-raised there
                raise self._explain(e) from None
            if not models:
                raise RemoteError(f"the generator server at {self.base_url} lists no models; set generator.remote_model")
            self._model = models[0].id
        return self._model

    def _explain(self, e: BaseException, *, started: bool = False) -> BaseException:
        """An exception from the client -> a one-line RemoteError (anything unknown is returned as is).
        ``started``: the reply had begun to stream."""
        import openai

        where = f"the generator server at {self.base_url}"
        if isinstance(e, openai.APITimeoutError):
            return RemoteError(f"{where} did not answer within {self.timeout_s:g} s (generator.timeout_s)")
        broken = isinstance(e, openai.APIConnectionError) or _is_transport_error(e)
        if broken and started:  # (older clients raise the HTTP library's own error here)
            cause = e.__cause__ if isinstance(e, openai.APIConnectionError) and e.__cause__ is not None else e
            return RemoteError(f"{where} dropped the connection during the reply ({_first_line(cause)})")
        if broken:
            cause = _first_line(e.__cause__) if e.__cause__ is not None else _first_line(e)
            return RemoteError(f"{where} cannot be reached ({cause}); is it running, and is generator.base_url right?")
        if isinstance(e, openai.APIStatusError):
            status, message, code = e.status_code, _server_message(e), getattr(e, "code", None)
            said = f"HTTP {status}: {message}" if message else f"HTTP {status}"
            if code == "context_length_exceeded":
                return RemoteTooLong(f"{where} refused the prompt as too long ({said}); lower generator.context_tokens",
                                     status=status, code=code)
            if status in (401, 403):
                hint = "set its key in the environment variable that generator.api_key_env names"
                return RemoteError(f"{where} refused the API key ({said}); {hint}", status=status, code=code)
            if status == 404:
                return RemoteError(f"{where} answered {said} (is generator.base_url the API root, e.g. ending in "
                                   f"/v1, and generator.remote_model a model it serves?)", status=status, code=code)
            if status in (408, 409, 429) or status >= 500:
                tries = f" after {self.max_retries} retr{'y' if self.max_retries == 1 else 'ies'}" if self.max_retries else ""
                return RemoteError(f"{where} failed{tries} ({said})", status=status, code=code)
            return RemoteError(f"{where} refused the request ({said})", status=status, code=code)
        return e


class _Reader:
    """Reads the server's chunks on a thread of its own, so that ``cancel`` ends the reply at once
    even while the server has not sent anything yet (a long prompt being read). Yields
    ("chunk", chunk), ("error", exception) or ("cancelled", None). The thread closes the stream
    (and with it the connection) when it sees the cancel, at the server's next chunk."""

    POLL_S = 0.05

    def __init__(self, open_stream, cancel: threading.Event):
        self._open = open_stream
        self._cancel = cancel
        self._stop = threading.Event()  # the caller stopped reading
        self._items: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="remote-generator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        stream = None
        try:
            stream = self._open()
            for chunk in stream:
                if self._cancel.is_set() or self._stop.is_set():
                    break
                self._items.put(("chunk", chunk))
            self._items.put(("end", None))
        except Exception as e:  # noqa: BLE001 - handed to the caller, which explains or re-raises it
            self._items.put(("error", e))
        finally:
            if stream is not None:
                stream.close()

    def __iter__(self):
        try:
            while True:
                if self._cancel.is_set():
                    yield "cancelled", None
                    return
                try:
                    kind, value = self._items.get(timeout=self.POLL_S)
                except queue.Empty:
                    continue
                if kind == "end":
                    return
                yield kind, value
                if kind == "error":
                    return
        finally:
            self._stop.set()  # cancelled, an error, or the caller closed the generator: the thread closes the stream


def _server_message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or body.get("error")
        return _first_line(text) if text else ""
    if isinstance(body, str):
        return _first_line(body)[:200]
    return ""


def _is_transport_error(e: BaseException) -> bool:
    """An error of the HTTP library under the client (httpx or its successor, httpcore)."""
    return type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")


def _first_line(value) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
