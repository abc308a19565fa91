"""The voice subcommands, with a stand-in assistant (no generator is loaded)."""

import argparse
import types

import numpy as np
import pytest
import soundfile as sf

from assistant import voice_cli
from assistant.config import Settings
from assistant.errors import DeviceError, InputError


def parse(argv, bot):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config")
    parser = argparse.ArgumentParser(prog="assistant")
    sub = parser.add_subparsers(dest="command")
    voice_cli.add_commands(sub, [common])
    args = parser.parse_args(argv)
    args.load_bot = lambda: bot
    return args


@pytest.fixture
def fake_bot(synth):
    return types.SimpleNamespace(settings=Settings(), synthesizer=synth)


def test_say_writes_a_wav(fake_bot, tmp_path, capsys):
    out = tmp_path / "out.wav"
    args = parse(["say", "Hello **world**. See https://example.com.", "-o", str(out)], fake_bot)
    assert args.handler(args) == 0
    data, rate = sf.read(out, dtype="float32")
    assert rate == 22050 and 1.0 < len(data) / rate < 6.0 and np.abs(data).max() > 0.05
    assert "out.wav" in capsys.readouterr().out


def test_say_with_other_voice_and_bad_voice(fake_bot, tmp_path):
    out = tmp_path / "f.wav"
    args = parse(["say", "Hi there.", "--engine", "espeak", "--voice", "en-us+f3", "--rate", "140", "-o", str(out)], fake_bot)
    assert args.handler(args) == 0 and out.exists()
    args = parse(["say", "Hi.", "--engine", "espeak", "--voice", "xx-nope", "-o", str(out)], fake_bot)
    with pytest.raises(InputError, match="no voice"):
        args.handler(args)


@pytest.mark.parametrize("rate", ["0", "-50", "900"])
def test_say_refuses_a_rate_out_of_range_zero_included(fake_bot, tmp_path, rate):
    args = parse(["say", "Hi.", "--engine", "espeak", "--rate", rate, "-o", str(tmp_path / "x.wav")], fake_bot)
    with pytest.raises(InputError, match=f"speaking rate {rate} is out of range"):
        args.handler(args)
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("argv, message", [(["--seconds", "0"], "--seconds 0: give a positive number"),
                                           (["--seconds", "nan"], "--seconds nan: give a positive number"),
                                           (["--end-silence-ms", "-5"], "--end-silence-ms -5 is out of range"),
                                           (["--end-silence-ms", "99999"], "--end-silence-ms 99999 is out of range")])
def test_listen_refuses_bad_numbers_before_looking_for_a_microphone(fake_bot, argv, message, monkeypatch):
    import assistant.voice

    monkeypatch.setattr(assistant.voice, "sounddevice", lambda: pytest.fail("looked for a microphone first"))
    args = parse(["listen", *argv], fake_bot)
    with pytest.raises(InputError, match=message):
        args.handler(args)


def test_say_nothing_speakable_and_bad_output_name(fake_bot, tmp_path):
    args = parse(["say", "***", "-o", str(tmp_path / "x.wav")], fake_bot)
    with pytest.raises(InputError, match="nothing speakable"):
        args.handler(args)
    args = parse(["say", "Hello.", "-o", str(tmp_path / "x.notaformat")], fake_bot)
    with pytest.raises(InputError, match="cannot write audio"):
        args.handler(args)


def test_devices_without_portaudio_is_a_device_error(fake_bot, no_portaudio):
    args = parse(["devices"], fake_bot)
    with pytest.raises(DeviceError, match="libportaudio2"):
        args.handler(args)
    args = parse(["listen"], fake_bot)
    with pytest.raises(DeviceError, match="libportaudio2"):
        args.handler(args)


def test_devices_lists_inputs_and_outputs(fake_bot, monkeypatch, capsys):
    from assistant import voice

    monkeypatch.setattr(voice, "list_devices", lambda: [
        voice.AudioDevice(0, "Built-in Mic", 1, 0, 48000.0, default_input=True),
        voice.AudioDevice(1, "Speakers", 0, 2, 48000.0, default_output=True),
    ])
    args = parse(["devices"], fake_bot)
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "inputs:" in out and "*  0  Built-in Mic" in out and "*  1  Speakers" in out


# ------------------------------------------------------------------ talk, through the real entry point


@pytest.fixture
def no_models(monkeypatch):
    """`assistant talk` must say what is missing before loading any model."""
    from assistant import cli

    monkeypatch.setattr(cli, "_loader", lambda args: lambda progress=None: pytest.fail("the models were loaded"))


def test_talk_without_portaudio_says_why_in_one_line(no_portaudio, no_models, capsys):
    from assistant.cli import main

    assert main(["talk"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "cannot listen" in err and "libportaudio2" in err
    assert "files still work: assistant ask --audio Q.wav --speak R.wav" in err


def test_talk_without_a_microphone_says_why(monkeypatch, no_models, capsys):
    from assistant import voice
    from assistant.cli import main

    monkeypatch.setattr(voice, "list_devices", lambda: [voice.AudioDevice(1, "Speakers", 0, 2, 48000.0)])
    assert main(["talk", "--no-barge-in"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("assistant talk: cannot listen: no microphone") and "assistant ask --audio" in err


def test_talk_answers_aloud_until_ctrl_c(monkeypatch, capsys, say16):
    import _thread
    import threading
    import time

    from assistant import cli

    from .conftest import pad
    from .fakes import FakeBot, FakeRecognizer, LiveStreams

    streams = LiveStreams(speed=4.0)
    bot = FakeBot("The capital of France is Paris.", recognizer=FakeRecognizer("What is the capital of France?"))
    monkeypatch.setattr(voice_cli, "_talk_streams", lambda: streams)
    monkeypatch.setattr(cli, "_loader", lambda args: lambda progress=None: bot)

    import signal

    from assistant.voice.talk import TalkLoop

    loops: list = []
    start = TalkLoop.start
    monkeypatch.setattr(TalkLoop, "start", lambda self: (loops.append(self), start(self))[1])
    # A terminal's Ctrl-C reaches Python's default handler; whatever handler an earlier test
    # or library left behind, this test presses Ctrl-C as a user's terminal delivers it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    delivered = threading.Event()

    def user() -> None:
        try:
            deadline = time.monotonic() + 30
            streams.input_started.wait(30)
            streams.say(pad(say16("What is the capital of France?"), 0.3, 1.5))
            played = int(0.19 * 16000)  # the tone synthesizer says each sentence for 0.2 s
            while np.count_nonzero(streams.speaker_audio()) < played and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.5)
        finally:
            _thread.interrupt_main()  # Ctrl-C, whatever happened
            if loops and not loops[0]._stopping.wait(10):
                loops[0].stop()  # never hang the suite: end the loop, and fail below
            else:
                delivered.set()

    person = threading.Thread(target=user, daemon=True)
    person.start()
    try:
        with streams:
            assert cli.main(["talk", "--timings"]) == 0
    finally:
        signal.signal(signal.SIGINT, previous)
    person.join(15)
    assert delivered.is_set(), f"Ctrl-C did not end the loop (SIGINT handler before the test: {previous})"
    out = capsys.readouterr()
    assert "you> What is the capital of France?\nbot> The capital of France is Paris." in out.out
    assert bot.synthesizer.said == ["The capital of France is Paris."]
    assert "total" in out.err and "Traceback" not in out.err
    assert streams.input.closed
