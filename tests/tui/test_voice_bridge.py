"""The app with the real voice module (assistant.voice) on fake sound devices."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import numpy as np
import pytest

from assistant.errors import DeviceError
from tests.tui.fake_assistant import FakeAssistant
from assistant.tui.voice_bridge import VoiceBridge, VoiceUnavailable
from assistant.tui.widgets import LevelMeter, StatusBar
from tests.tui.conftest import until, wait_idle
from tests.voice.fakes import EnergyVAD

RATE = 16000


class _Stream:
    """A device stream driven by a thread, faster than real time."""

    def __init__(self, kind, samplerate, blocksize, callback, owner):
        self.kind, self.rate, self.blocksize, self.callback, self.owner = kind, samplerate, blocksize, callback, owner
        self._run = threading.Event()
        self.thread = None

    def start(self):
        self._run.set()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while self._run.is_set():
            if self.kind == "output":
                block = np.asarray(self.callback(self.blocksize), np.float32)
                with self.owner.changed:
                    self.owner.played.append(block)
                    self.owner.changed.notify_all()
            else:
                self.callback(self.owner.next_mic_block(self.blocksize))
            time.sleep(0.001 if self.kind == "output" else 0.008)  # the mic runs about 4x real time

    def stop(self):
        self._halt()

    def close(self):
        self._halt()

    def _halt(self):
        with self.owner.changed:
            self._run.clear()
            self.owner.changed.notify_all()

    @property
    def running(self) -> bool:
        return self._run.is_set()


class Devices:
    """A stream factory: a microphone playing ``mic`` (then silence) and a recording speaker."""

    def __init__(self, mic=None, *, no_mic=False, no_speaker=False):
        self.mic = np.zeros(0, np.float32) if mic is None else mic.astype(np.float32)
        self.pos = 0
        self.no_mic, self.no_speaker = no_mic, no_speaker
        self.played = []
        self.output = None
        self.changed = threading.Condition()
        """Notified at each block the speaker plays and when a stream stops."""
        self.talk = threading.Event()
        """The microphone hears silence until this is set."""

    def next_mic_block(self, n):
        block = np.zeros(n, np.float32)
        if not self.talk.is_set():
            return block
        chunk = self.mic[self.pos:self.pos + n]
        block[:len(chunk)] = chunk
        self.pos += n
        return block

    def open_input(self, samplerate, blocksize, device, callback, on_error=None):
        if self.no_mic:
            raise DeviceError("no microphone (test devices)")
        return _Stream("input", samplerate, blocksize, callback, self)

    def open_output(self, samplerate, blocksize, device, callback):
        if self.no_speaker:
            raise DeviceError("no speaker (test devices)")
        self.output = _Stream("output", samplerate, blocksize, callback, self)
        return self.output

    def speaker(self):
        with self.changed:
            return np.concatenate(self.played) if self.played else np.zeros(0, np.float32)

    def wait(self, condition, timeout: float, what: str) -> None:
        """Block until ``condition()`` holds, woken by the speaker's blocks (no polling)."""
        with self.changed:
            if not self.changed.wait_for(condition, timeout):
                raise AssertionError(f"timed out waiting for {what}")

    def wait_blocks(self, n: int, timeout: float = 5.0) -> None:
        """Let the speaker play ``n`` more blocks, or until its stream has stopped."""
        goal = len(self.played) + n
        self.wait(lambda: len(self.played) >= goal or not self.output.running, timeout, f"{n} speaker blocks")


class ToneSynth:
    sample_rate = RATE

    def __init__(self, seconds=0.2):
        self.seconds = seconds
        self.said = []

    def synthesize(self, text):
        self.said.append(text)
        return np.full(int(self.seconds * RATE), 0.25, np.float32)


class SpeakingBot(FakeAssistant):
    def __init__(self, *a, seconds=0.2, **kw):
        super().__init__(*a, **kw)
        self.synthesizer = ToneSynth(seconds)


def utterance():
    rng = np.random.default_rng(0)
    speech = (0.3 * rng.standard_normal(RATE)).astype(np.float32)  # 1 s of "speech"
    return np.concatenate([np.zeros(RATE // 4, np.float32), speech, np.zeros(2 * RATE, np.float32)])


def test_streamed_speech_output(settings):
    devices = Devices()
    bridge = VoiceBridge(settings, streams=devices)
    bot = SpeakingBot()
    notices = []
    speech = bridge.begin_reply(bot, notices.append)
    for chunk in ["Hello there. ", "How are", " you?"]:
        speech.feed(chunk)
    spoken = speech.end()
    assert bot.synthesizer.said == ["Hello there.", "How are you?"]
    assert spoken.audio.size >= 2 * 0.2 * RATE and spoken.sample_rate == RATE
    # the device thread files its last block just after
    devices.wait(lambda: sum(np.count_nonzero(b) for b in devices.played) >= 2 * 0.2 * RATE,
                 2, "the speech to reach the speaker")
    assert np.count_nonzero(devices.speaker()) == 2 * 0.2 * RATE  # all of it reached the speaker
    assert notices == []
    bridge.close()


def test_stop_speaking_silences_at_once(settings):
    devices = Devices()
    bridge = VoiceBridge(settings, streams=devices)
    bot = SpeakingBot(seconds=30)
    speech = bridge.begin_reply(bot, print)
    speech.feed("A very long sentence. And then")  # the first sentence is complete: it plays
    devices.wait(lambda: any(np.count_nonzero(b) for b in devices.played), 5, "the first sentence to play")
    start = time.monotonic()
    bridge.stop_speaking()
    spoken = speech.end()
    assert spoken.stopped and time.monotonic() - start < 2
    devices.wait_blocks(50)  # blocks already on their way
    heard = np.count_nonzero(devices.speaker())
    devices.wait_blocks(50)
    assert np.count_nonzero(devices.speaker()) == heard < 30 * RATE  # silent now, long before the end
    bridge.close()


def test_no_microphone_is_reported(settings):
    bridge = VoiceBridge(settings, streams=Devices(no_mic=True), vad=EnergyVAD())
    errors, reported = [], threading.Event()
    bridge.start_listening(lambda level: None, lambda audio: None, lambda e: (errors.append(e), reported.set()))
    assert reported.wait(5)
    assert errors == ["no microphone (test devices)"] and not bridge.listening


def test_without_the_voice_module(settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "assistant.voice", None)
    bridge = VoiceBridge(settings)
    assert "voice is not available" in bridge.unavailable_reason
    with pytest.raises(VoiceUnavailable):
        bridge.start_listening(print, print, print)
    assert bridge.begin_reply(SpeakingBot(), print) is None
    bridge.stop_speaking()  # harmless


@pytest.mark.asyncio
async def test_talk_then_hear_the_reply(make_app, settings, store):
    """ctrl+r, speak, silence ends it; the transcript is sent; the reply is spoken and saved."""
    from assistant.tui import messages as m

    devices = Devices(utterance())
    bot = SpeakingBot(["It is sunny. Enjoy it."])
    app = make_app(bot, voice=VoiceBridge(settings, streams=devices, vad=EnergyVAD()))
    seen = []
    async with app.run_test(size=(110, 36), message_hook=seen.append) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("ctrl+t")  # spoken replies on
        await pilot.press("ctrl+r")  # listen
        meter = app.query_one(LevelMeter)
        await pilot.pause()
        assert meter.display  # listening: the meter shows while the user is still silent
        devices.talk.set()
        await until(pilot, lambda: bot.calls, timeout=10, what="the spoken question")
        assert bot.calls[0][0] == "hello from the microphone"
        await until(pilot, lambda: any(isinstance(x, m.SpeakingChanged) and not x.speaking for x in seen),
                    timeout=10, what="speech to end")
        await wait_idle(pilot, app)
        assert not meter.display and not app.query_one(StatusBar).speaking
        levels = [x.level for x in seen if isinstance(x, m.VoiceLevel)]
        assert max(levels) > 0.5 and min(levels) == 0.0  # the meter followed silence and speech
        assert [x.speaking for x in seen if isinstance(x, m.SpeakingChanged)] == [True, False]
        assert bot.synthesizer.said == ["It is sunny.", "Enjoy it."]
        turn = store.turns(store.last_session().id)[0]
        assert turn.user_text == "hello from the microphone"
        assert [a.name for a in turn.inputs("audio")] == ["recording.wav"]
        assert turn.reply_audio is not None and turn.reply_audio.path.is_file()
        assert np.count_nonzero(devices.speaker()) > 0


# ------------------------------------------------------------------ hands-free talk (F5)


class TalkingBot(SpeakingBot):
    """Also hears: ``recognizer`` transcribes the utterances as ``heard``, in order."""

    def __init__(self, replies, heard, *, seconds=0.2):
        from tests.voice.fakes import FakeRecognizer

        super().__init__(replies, seconds=seconds)
        self.recognizer = FakeRecognizer(*heard)


def noise_speech(seconds=0.8, level=0.3, seed=0):
    """Loud noise (EnergyVAD calls it speech), then 1.2 s of silence."""
    noise = (level * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)
    return np.concatenate([noise, np.zeros(int(1.2 * RATE), np.float32)])


@pytest.mark.asyncio
async def test_hands_free_talk_answers_aloud_and_keeps_the_turns(make_app, settings, store):
    from tests.voice.fakes import LiveStreams

    from assistant.tui import messages as m

    streams = LiveStreams(speed=4.0)
    bot = TalkingBot(["It is sunny. Enjoy it.", "Bye now."], ["What is the weather?", "Thanks."])
    app = make_app(bot, voice=VoiceBridge(settings, streams=streams, vad=EnergyVAD()))
    seen = []
    status = lambda: app.query_one(StatusBar)  # noqa: E731
    with streams:
        async with app.run_test(size=(110, 36), message_hook=seen.append) as pilot:
            await wait_idle(pilot, app)
            await pilot.press("f5")
            await until(pilot, lambda: status().talk == "listening", timeout=10, what="hands-free on")
            assert app.query_one(LevelMeter).display and "hands-free" in str(app.query_one(LevelMeter).render())
            streams.say(noise_speech())
            await until(pilot, lambda: bot.calls, timeout=10, what="the spoken question")
            assert bot.calls[0][0] == "What is the weather?"
            talk_states = lambda: [x.state for x in seen if isinstance(x, m.TalkState)]  # noqa: E731
            await until(pilot, lambda: talk_states()[-2:] == ["speaking", "listening"], timeout=10,
                        what="the reply to be spoken, then listening again")
            await until(pilot, lambda: app.job is None, what="the turn to finish")
            turn = store.turns(store.last_session().id)[0]
            assert turn.user_text == "What is the weather?" and turn.reply_text.strip() == "It is sunny. Enjoy it."
            assert [a.name for a in turn.inputs("audio")] == ["recording.wav"]  # stored like a /listen turn
            assert turn.reply_audio is not None and bot.synthesizer.said == ["It is sunny.", "Enjoy it."]
            assert np.count_nonzero(streams.speaker_audio()) > 0
            streams.say(noise_speech(seed=1))  # it listens again
            await until(pilot, lambda: len(bot.calls) == 2, timeout=10, what="the second question")
            assert bot.calls[1][0] == "Thanks."
            await until(pilot, lambda: app.job is None and status().talk == "listening", timeout=10, what="idle")
            await pilot.press("f5")
            await pilot.pause()
            assert status().talk == "" and not app.voice.talking and not app.query_one(LevelMeter).display
            await until(pilot, lambda: streams.input.closed, timeout=10, what="the microphone to close")


@pytest.mark.asyncio
async def test_hands_free_barge_in_and_esc(make_app, settings, store):
    from tests.voice.fakes import LiveStreams

    streams = LiveStreams(speed=4.0)
    bot = TalkingBot(["One. Two. Three. Four.", "Five. Six. Seven. Eight."], ["Count.", "Stop that, count again."],
                     seconds=2.0)
    app = make_app(bot, voice=VoiceBridge(settings, streams=streams, vad=EnergyVAD()))
    status = lambda: app.query_one(StatusBar)  # noqa: E731
    with streams:
        async with app.run_test(size=(110, 36)) as pilot:
            await wait_idle(pilot, app)
            await pilot.press("f5")
            await until(pilot, lambda: status().talk == "listening", timeout=10, what="hands-free on")
            streams.say(noise_speech())
            await until(pilot, lambda: status().talk == "speaking", timeout=10, what="the reply to be spoken")
            await asyncio.sleep(0.3)  # the echo level is learned from the first 320 ms (audio time)
            streams.say(noise_speech(seconds=1.0, level=0.9, seed=3))  # the user talks over the reply
            await until(pilot, lambda: len(bot.calls) == 2, timeout=10, what="the interruption as a question")
            assert bot.calls[1][0] == "Stop that, count again."
            assert np.count_nonzero(streams.speaker_audio()) < 4 * 2.0 * RATE  # the first reply was cut short
            first = store.turns(store.last_session().id)[0]
            assert first.user_text == "Count." and first.reply_text.strip() == "One. Two. Three. Four."
            await until(pilot, lambda: status().talk == "speaking", timeout=10, what="the second reply")
            heard = np.count_nonzero(streams.speaker_audio())
            await pilot.press("escape")  # stops the reply and its speech; hands-free stays on
            await until(pilot, lambda: status().talk == "listening", timeout=10, what="listening after esc")
            assert np.count_nonzero(streams.speaker_audio()) < heard + 2.0 * RATE  # well before its end
            await until(pilot, lambda: app.job is None, what="the turn to end")
            await pilot.press("escape")  # nothing left to stop: hands-free ends
            await pilot.pause()
            assert status().talk == "" and not app.voice.talking


@pytest.mark.asyncio
async def test_hands_free_without_a_microphone_says_why(make_app, settings):
    bot = TalkingBot([], ["unused"])
    app = make_app(bot, voice=VoiceBridge(settings, streams=Devices(no_mic=True), vad=EnergyVAD()))
    async with app.run_test(size=(110, 36), notifications=True) as pilot:
        await wait_idle(pilot, app)
        await pilot.press("f5")
        await until(pilot, lambda: any("no microphone" in n.message for n in app._notifications), timeout=10,
                    what="the notice")
        await until(pilot, lambda: app.query_one(StatusBar).talk == "", what="hands-free off")
        assert not app.voice.talking
        app.query_one("#prompt").value = "/talk"  # the command says the same
        await pilot.press("enter")
        await until(pilot, lambda: sum("no microphone" in n.message for n in app._notifications) == 2, timeout=10,
                    what="the second notice")
