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
