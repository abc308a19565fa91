"""Run the API in a background thread on a free loopback port: for tests, benchmarks, and any
program that wants the assistant's HTTP API beside its own work."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Callable, Iterator

import httpx

from assistant.serve.app import ServeOptions, create_app


class Served(str):
    """The base URL of a running server (``http://127.0.0.1:PORT``), with the app it serves."""

    app: Any = None


@contextlib.contextmanager
def serving(load: Callable[[], Any], options: ServeOptions | None = None, *, wait: bool = True,
            timeout: float = 120.0) -> Iterator[Served]:
    """Serve ``create_app(load, options)`` on 127.0.0.1 (a free port) until the block ends.
    ``wait``: return only once the models are loaded (``/health`` says ready)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = Served(f"http://127.0.0.1:{sock.getsockname()[1]}")
    url.app = create_app(load, options)
    server = uvicorn.Server(uvicorn.Config(url.app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="synesthesia-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError("the server did not start")
        if wait:
            wait_ready(url, timeout)
        yield url
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def wait_ready(url: str, timeout: float = 120.0) -> None:
    """Wait until the server at ``url`` has loaded its models (RuntimeError if loading failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/health").json()
        if health["status"] == "ready":
            return
        if health["status"] != "loading":
            raise RuntimeError(f"the server is {health['status']}: {health.get('error')}")
        time.sleep(0.02)
    raise TimeoutError(f"the server at {url} was not ready within {timeout:g} s")
