"""Where the assistant keeps its files. Each directory can be moved with an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "synesthesia"


def _dir(env: str, default: str) -> Path:
    path = Path(os.environ.get(env) or default).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """Settings (``config.toml``); ``SYNESTHESIA_CONFIG_DIR`` overrides."""
    return _dir("SYNESTHESIA_CONFIG_DIR", platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    """Sessions database and attachments; ``SYNESTHESIA_DATA_DIR`` overrides."""
    return _dir("SYNESTHESIA_DATA_DIR", platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    """Converted model weights (e.g. the dequantized generator); ``SYNESTHESIA_CACHE_DIR`` overrides."""
    return _dir("SYNESTHESIA_CACHE_DIR", platformdirs.user_cache_dir(APP))


def config_file() -> Path:
    return config_dir() / "config.toml"
