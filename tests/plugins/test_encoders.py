"""Encoders registered by plugins are used: ``[image] model = NAME`` picks one from the same
registry that holds the built-in encoders; an unknown name is one line listing the choices."""

from __future__ import annotations

import sys
import textwrap

import pytest

from assistant.cli import main
from assistant.config import Settings
from assistant.pipeline import Assistant, load_plugin_host
from models.encoders import builtin_encoders
from tests.conftest import DATA
from tests.core.fakes import FakeGenerator

PLUGIN = '''
import torch
from plugins import hookimpl

built = []


class TeapotEncoder:
    name = "teapot"
    feature_dim = 16

    def encode(self, images, top_k=3, min_probability=0.0):
        from models.image import ImageFeatures

        return ImageFeatures(tokens=torch.zeros(len(images), 4, 16), labels=[[("teapot", 0.9)] for _ in images])


def make_teapot(device="cpu"):
    built.append(device)
    return TeapotEncoder()


@hookimpl
def register_encoders(register):
    register("teapot", make_teapot, modality="image", description="sees teapots everywhere")
    register("depth", lambda **options: object(), modality="depth")
    register("efficientnet-lite0", make_teapot, modality="image")  # taken by the built-in: skipped
'''


@pytest.fixture
def config(tmp_path):
    def write(model: str):
        folder = tmp_path / "plugins"
        folder.mkdir(exist_ok=True)
        (folder / "eyes.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
        path = tmp_path / "config.toml"
        path.write_text(f'[plugins]\nfolder = "{folder}"\n\n[image]\nmodel = "{model}"\nocr = "off"\n\n'
                        '[fusion]\nenabled = false\n', encoding="utf-8")
        return path

    return write


@pytest.fixture
def fake_generator(monkeypatch):
    """`Assistant.load` with a fake generator; the image encoder loads from the settings."""
    made: list[FakeGenerator] = []

    def load(cls, config=None, *, offline=None, plugins=True, progress=None):
        settings = config if isinstance(config, Settings) else Settings.load(config)
        made.append(FakeGenerator("It is a teapot."))
        return cls(settings, generator=made[-1], plugins=load_plugin_host(settings) if plugins else None)

    monkeypatch.setattr(Assistant, "load", classmethod(load))
    return made


def test_ask_uses_the_plugin_image_encoder_named_in_settings(config, fake_generator, capsys):
    assert main(["--config", str(config("teapot")), "ask", "what is this", "--image", f"{DATA}/cat.jpg"]) == 0
    assert sys.modules["synesthesia_user_plugins.eyes"].built == ["cpu"]
    prompt = fake_generator[0].prompts[0][-1]["content"]
    assert "shows, by an ImageNet classifier: teapot (90%)" in prompt
    out, err = capsys.readouterr()
    assert out.strip() == "It is a teapot."
    assert "plugin eyes: image encoder 'efficientnet-lite0' is already provided by built-in; skipped" in err
    assert err.count("efficientnet-lite0") == 1


def test_unknown_image_encoder_is_one_line_listing_the_choices(config, fake_generator, capsys):
    assert main(["--config", str(config("teapott")), "ask", "hi", "--image", f"{DATA}/cat.jpg"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "error" in line] == [
        "assistant: error: image.model: unknown image encoder 'teapott'; choose one of efficientnet-lite0 (built-in), "
        "teapot (plugin eyes) or a CLIP/SigLIP model id (owner/name) or folder"]
    assert "downloads are off" not in err


def test_python_api_registry_holds_builtins_and_plugin_encoders(config):
    settings = Settings.load(config("teapot"))
    bot = Assistant(settings, generator=FakeGenerator(), plugins=load_plugin_host(settings))
    assert [e.name for e in bot.encoders.encoders("image")] == ["efficientnet-lite0", "huggingface", "teapot"]
    assert [e.source for e in bot.encoders.encoders("depth")] == ["plugin eyes"]
    assert bot.image_encoder.name == "teapot"
    assert [(i.name, i.source) for i in bot.models()[:2]][1] == ("teapot", "plugin eyes: sees teapots everywhere")


def test_builtin_registry_resolves_hub_ids_and_folders(tmp_path):
    registry = builtin_encoders()
    assert registry.resolve("image", "efficientnet-lite0")[0].name == "efficientnet-lite0"
    assert registry.resolve("image", "openai/clip-vit-base-patch32") == (
        registry.resolve("image", "huggingface/x")[0], {"model": "openai/clip-vit-base-patch32"})
    assert registry.resolve("image", str(tmp_path))[1] == {"model": str(tmp_path)}
    with pytest.raises(ValueError, match="unknown image encoder 'huggingface'"):
        registry.resolve("image", "huggingface")
    with pytest.raises(ValueError, match="already provided by built-in"):
        registry.add("EfficientNet-Lite0", object, modality="image")
