"""Run plugin code with a time limit, so that one hung plugin cannot freeze the assistant."""

from __future__ import annotations

import threading
from concurrent.futures import Future, wait
from typing import Any, Callable


class PluginTimeout(Exception):
    """A plugin's code ran past its time limit (the thread is left behind as a daemon)."""


def call_with_timeout(fn: Callable[..., Any], args: tuple, timeout_s: float | None, label: str) -> Any:
    """Run ``fn(*args)`` in a daemon thread; raise :class:`PluginTimeout` after ``timeout_s``.

    Python cannot kill a thread: a hung plugin keeps its thread until the process exits, but
    the caller goes on. Exceptions raised by ``fn`` are re-raised here; ``SystemExit`` becomes
    a RuntimeError. ``timeout_s=None`` runs ``fn`` in the calling thread.

    The thread is a daemon one rather than a ThreadPoolExecutor's worker, whose threads the
    interpreter joins at exit: one hung plugin would keep the assistant from quitting.
    """
    if timeout_s is None:
        return _call(fn, args)
    future: Future = Future()

    def target() -> None:
        try:
            future.set_result(_call(fn, args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            future.set_exception(e)

    threading.Thread(target=target, name=f"plugin {label}", daemon=True).start()
    if not wait([future], timeout_s).done:
        raise PluginTimeout(f"{label} did not finish within {timeout_s:g} s")
    return future.result()


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    try:
        return fn(*args)
    except SystemExit as e:  # a plugin must not end the assistant
        raise RuntimeError(f"the plugin called sys.exit({e.code!r})") from None


def describe(e: BaseException) -> str:
    """A plugin's exception in one phrase: ``ValueError: bad input`` (or the type alone)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
