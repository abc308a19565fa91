"""The cache directory rule, in one place: ``$SYNESTHESIA_CACHE_DIR``, else the platform's user
cache folder for Synesthesia (``~/.cache/synesthesia`` on Linux, via platformdirs).

It lives in ``models/`` because model code (converted weights, training features) needs it
and ``models/`` imports nothing from the application; ``assistant.paths.cache_dir`` builds on
it (and creates the folder private).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "synesthesia"
ENV = "SYNESTHESIA_CACHE_DIR"


def cache_root() -> Path:
    """Where converted weights and cached features go (not created here)."""
    return Path(os.environ.get(ENV) or platformdirs.user_cache_dir(APP)).expanduser()
