"""Test-wide isolation: no network, no user files, no third-party plugins."""

from __future__ import annotations

import os

import pytest

# Set before anything imports transformers / huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["SYNESTHESIA_TESTING"] = "1"  # plugin entry points off, as llm does under pytest


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Config and data go to temporary folders; the model cache is shared by the whole run."""
    base = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("SYNESTHESIA_CONFIG_DIR", str(base / "config"))
    monkeypatch.setenv("SYNESTHESIA_DATA_DIR", str(base / "data"))
    # The converted generator is expensive to make (about 30 s); keep it between runs.
    cache = os.environ.get("SYNESTHESIA_TEST_CACHE") or os.path.expanduser("~/.cache/synesthesia-tests")
    monkeypatch.setenv("SYNESTHESIA_CACHE_DIR", cache)
    for key in [k for k in os.environ if k.startswith("SYNESTHESIA_") and "__" in k]:
        monkeypatch.delenv(key)


# ---------------------------------------------------------------- real offline models (loaded once)

TEST_CACHE = os.environ.get("SYNESTHESIA_TEST_CACHE") or os.path.expanduser("~/.cache/synesthesia-tests")
# The suite's own cache, private as the app makes a new one (an older run may have left it
# 0755, and the app would warn about it on every command a test runs).
os.makedirs(TEST_CACHE, mode=0o700, exist_ok=True)
os.chmod(TEST_CACHE, 0o700)
DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(scope="session")
def generator():
    """The real SmolLM2-135M-Instruct on the default runtime (the 4-bit ONNX graph on a CPU,
    built once into the test cache)."""
    from models.generator import Generator

    return Generator.load(cache_dir=TEST_CACHE)


@pytest.fixture(scope="session")
def tiny_folder(generator, tmp_path_factory):
    """A tiny random Llama saved as a Hugging Face folder (safetensors + SmolLM2's tokenizer)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = generator.tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def image_encoder():
    """The real EfficientNet-Lite0 with ImageNet weights."""
    from models.image import ImageEncoder

    return ImageEncoder.load()


@pytest.fixture(scope="session")
def real_bot(generator, image_encoder):
    """An Assistant on the real offline stack with default settings (no plugins)."""
    from assistant.config import Settings
    from assistant.pipeline import Assistant

    settings = Settings()
    settings.generator.max_new_tokens = 96  # replies in these tests are short; keep the suite quick
    fusion, source = Assistant._load_fusion(settings, generator)
    bot = Assistant(settings, generator=generator, image_encoder=image_encoder, fusion=fusion, fusion_source=source)
    bot.greedy = True  # reproducible replies to assert on, whatever the sampling settings
    return bot


@pytest.fixture
def bot(real_bot):
    """The real assistant with a fresh conversation."""
    real_bot.reset()
    yield real_bot
    real_bot.reset()
