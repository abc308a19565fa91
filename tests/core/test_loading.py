"""Start-up pays only for what a turn needs: through `assistant ask`, a text question loads no
image encoder, fusion core, speech engine or intent router; an image turn loads the image
side once; an audio turn the recognizer only; --speak the voice; `models` reports every slot."""

from __future__ import annotations

import json
import threading

from assistant.cli import main
from tests.conftest import DATA


def test_text_question_loads_nothing_but_the_generator(lazy_stack, capsys):
    assert main(["ask", "What is the capital of France?"]) == 0
    assert "Paris" in capsys.readouterr().out
    bot = lazy_stack.bot
    assert lazy_stack.loaded == []
    assert bot.loaded() == {"generator": True, "image": False, "fusion": False, "ocr": False, "speech-in": False,
                            "speech-out": False, "router": False}
    assert bot.plugins is not None and bot.plugins.tools  # tools are installed, yet the router stayed unloaded


def test_image_turn_loads_the_image_side_once_and_no_speech(lazy_stack, capsys):
    assert main(["ask", "What is this?", "--image", f"{DATA}/cat.jpg", "--image", f"{DATA}/coffee.jpg"]) == 0
    bot = lazy_stack.bot
    assert lazy_stack.loaded == ["image"] and lazy_stack.image_encoder.calls == 1
    assert bot.loaded()["fusion"] and not bot.loaded()["speech-in"] and not bot.loaded()["speech-out"]
    assert "tabby" in lazy_stack.generator.prompts[0][-1]["content"]


def test_audio_turn_loads_the_recognizer_only(lazy_stack, question_wav, capsys):
    assert main(["ask", "--audio", str(question_wav), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["transcript"] == ["what is this"]
    assert lazy_stack.loaded == ["recognizer"]
    assert not lazy_stack.bot.loaded()["fusion"]  # no scene bias to look for without an image


def test_speak_loads_the_voice(lazy_stack, tmp_path, capsys):
    assert main(["ask", "What is the capital of France?", "--speak", str(tmp_path / "reply.wav")]) == 0
    assert lazy_stack.loaded == ["synthesizer"] and lazy_stack.synthesizer.said
    assert (tmp_path / "reply.wav").is_file()


def test_models_reports_every_slot(lazy_stack, capsys):
    assert main(["models", "--json"]) == 0
    slots = {m["slot"]: m for m in json.loads(capsys.readouterr().out)}
    assert set(slots) == {"generator", "image", "ocr", "fusion", "speech-in", "speech-out"}
    assert slots["image"]["name"] == "fake-image" and slots["speech-in"]["name"] == "fake-asr"
    assert slots["ocr"]["name"] == "PP-OCRv4" and "rapidocr-onnxruntime" in slots["ocr"]["source"]


def test_preload_and_concurrent_first_use_load_once(lazy_stack):
    """The TUI may preload in the background while a first image turn asks for the encoder."""
    main(["ask", "hi"])
    bot = lazy_stack.bot
    threads = [threading.Thread(target=bot.preload, kwargs={"speech": True}) for _ in range(4)]
    for t in threads:
        t.start()
    _ = bot.image_encoder
    for t in threads:
        t.join()
    assert sorted(lazy_stack.loaded) == ["image", "recognizer", "synthesizer"]
    assert all(v for k, v in bot.loaded().items() if k != "router")
