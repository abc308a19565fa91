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
    args = parse(["say", "Hi there.", "--voice", "en-us+f3", "--rate", "140", "-o", str(out)], fake_bot)
    assert args.handler(args) == 0 and out.exists()
    args = parse(["say", "Hi.", "--voice", "xx-nope", "-o", str(out)], fake_bot)
    with pytest.raises(InputError, match="no voice"):
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
