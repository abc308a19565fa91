"""Fixtures for the terminal UI tests: a fake assistant, a session store, a deterministic app."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from assistant.config import Settings
from assistant.storage import SessionStore
from assistant.tui.app import SynesthesiaApp
from tests.tui.fake_assistant import FakeAssistant


class NoVoice:
    """The voice bridge of a machine without audio: listening and playback are unavailable."""

    listening = False

    def __init__(self) -> None:
        self.stopped = 0

    def start_listening(self, **kw):
        from assistant.tui.voice_bridge import VoiceUnavailable

        raise VoiceUnavailable("voice is not available: no microphone in tests")

    def stop_listening(self, *, keep: bool = True) -> None:
        pass

    def begin_reply(self, bot, on_notice):
        return None

    def close(self) -> None:
        pass

    def play(self, samples, rate) -> None:
        from assistant.tui.voice_bridge import VoiceUnavailable

        raise VoiceUnavailable("no speaker in tests")

    def stop_speaking(self) -> None:
        self.stopped += 1


def add_session(store: SessionStore, title: str, *turns: tuple[str, str]):
    """A stored session with finished (question, reply) turns."""
    session = store.create_session(title)
    for question, reply in turns:
        store.record_turn(session.id, question, reply)
    return store.get_session(session.id)


@pytest.fixture
def settings() -> Settings:
    s = Settings.load()
    s.ui.image_preview = "halfblock"  # the same pixels in every terminal (no protocol query)
    return s


@pytest.fixture
def store(tmp_path) -> SessionStore:
    s = SessionStore.open(tmp_path / "data" / "sessions.db")
    yield s
    s.close()


@pytest.fixture
def bot(settings) -> FakeAssistant:
    return FakeAssistant(settings=settings)


@pytest.fixture
def make_app(settings, store, bot):
    """``make_app(bot=None, load=None)``: an app on the fake assistant, no cursor blink, no voice."""

    def make(bot_: FakeAssistant | None = None, load=None, **kw) -> SynesthesiaApp:
        the_bot = bot_ or bot
        return SynesthesiaApp(settings, load or (lambda: the_bot), store, voice=kw.pop("voice", NoVoice()),
                              cursor_blink=False, **kw)

    return make


@pytest.fixture
def picture(tmp_path) -> Path:
    """A small deterministic image: four coloured quadrants."""
    im = Image.new("RGB", (32, 24), "white")
    for (x, y), colour in {(0, 0): "red", (16, 0): "green", (0, 12): "blue", (16, 12): "yellow"}.items():
        im.paste(Image.new("RGB", (16, 12), colour), (x, y))
    path = tmp_path / "quadrants.png"
    im.save(path)
    return path


@pytest.fixture
def sound(tmp_path) -> Path:
    import numpy as np
    import soundfile

    path = tmp_path / "beep.wav"
    t = np.arange(8000) / 16000
    soundfile.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype("float32"), 16000)
    return path


async def until(pilot, condition, timeout: float = 5.0, what: str = "condition") -> None:
    """Let the app run until ``condition()`` holds."""
    import asyncio
    import time

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause()
        await asyncio.sleep(0.01)


async def wait_idle(pilot, app, timeout: float = 5.0) -> None:
    """Wait until the models are loaded (or failed), no turn is in flight and the UI caught up."""
    await until(pilot, lambda: (app.bot is not None or app.load_error) and app.job is None, timeout, "idle")
    await pilot.pause()
