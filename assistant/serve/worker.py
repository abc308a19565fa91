"""One thread owns the models: it loads them in the background, then runs one job at a time.

Requests reach it through a bounded queue: :meth:`Worker.submit` refuses (429) when
``capacity`` jobs already wait behind the running one, and 503 until the models are loaded.
A job reports back to the event loop that submitted it (chunks, then its result or error);
its ``cancel`` event, set when the client leaves, skips it if it is still waiting and stops the
generator at the next token if it is running.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any, Callable

from assistant.errors import AssistantError, first_line
from assistant.serve.errors import ApiError

log = logging.getLogger("synesthesia.serve")


class Job:
    """``fn(bot, cancel, emit)`` to run on the worker; its events arrive on ``events`` as
    ``("chunk", text)``, then ``("done", result)`` or ``("error", exception)``."""

    def __init__(self, fn: Callable[..., Any], loop: asyncio.AbstractEventLoop):
        self.fn = fn
        self.loop = loop
        self.cancel = threading.Event()
        self.events: asyncio.Queue = asyncio.Queue()

    def emit(self, chunk: str) -> None:
        self._post(("chunk", chunk))

    def run(self, bot) -> None:
        try:
            item = ("done", self.fn(bot, self.cancel, self.emit))
        except AssistantError as e:
            item = ("error", e)
        except Exception as e:  # noqa: BLE001 - a bug: the client gets a 500, the log the traceback
            log.exception("request failed")
            item = ("error", e)
        self._post(item)

    def _post(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down)
            self.cancel.set()


class Worker:
    def __init__(self, load: Callable[[], Any], *, capacity: int, on_ready: Callable[[Any], None] | None = None,
                 on_failed: Callable[[Exception], None] | None = None):
        self._load = load
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._jobs: queue.Queue = queue.Queue(maxsize=capacity)
        self.capacity = capacity
        self.bot = None
        self.state = "loading"
        """'loading', 'ready', 'failed' or 'stopped'."""
        self.error = ""
        self.load_s = 0.0
        self._current: Job | None = None
        self._thread = threading.Thread(target=self._run, name="synesthesia-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Refuse new jobs, drop the waiting ones, stop the running one at its next token."""
        self.state = "stopped"
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.cancel.set()
        current = self._current
        if current is not None:
            current.cancel.set()
        try:
            self._jobs.put(None, timeout=1.0)
        except queue.Full:  # a submit raced the state change; the daemon thread ends with the process
            pass
        if self._thread.is_alive():
            self._thread.join(timeout)

    def queued(self) -> int:
        """Jobs waiting behind the running one."""
        return self._jobs.qsize()

    def ready_bot(self):
        """The loaded Assistant, or a 503 saying why there is none."""
        if self.state == "ready":
            return self.bot
        if self.state == "loading":
            raise ApiError(503, "the models are still loading; retry in a few seconds", code="models_loading",
                           headers={"retry-after": "5"})
        raise ApiError(503, f"the models failed to load: {self.error}" if self.error else "the server is stopping",
                       code="unavailable")

    def submit(self, job: Job) -> None:
        self.ready_bot()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            raise ApiError(429, f"the server is busy ({self.capacity} requests already waiting); retry shortly",
                           code="queue_full", headers={"retry-after": "1"}) from None

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            bot = self._load()
            if self._on_ready is not None:
                self._on_ready(bot)
        except Exception as e:  # noqa: BLE001 - AssistantError is the user's to fix; anything else is logged
            if not isinstance(e, AssistantError):
                log.exception("loading the models failed")
            self.state, self.error = "failed", first_line(e)
            if self._on_failed is not None:
                self._on_failed(e)
            return
        self.bot, self.load_s = bot, time.perf_counter() - t0
        if self.state == "loading":
            self.state = "ready"
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.cancel.is_set():  # its client left while it waited
                continue
            self._current = job
            job.run(self.bot)
            self._current = None
