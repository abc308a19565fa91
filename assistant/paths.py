"""Where the assistant keeps its files. Each directory can be moved with an environment variable.

Conversations, attachments and voice recordings are private, the way ssh and browsers keep
theirs: the three directories are created ``0700`` and the files stored in them ``0600``
(:func:`private_dir`, :func:`private_file`). A directory or file that already exists is left
as it is, with a one-line warning (once per process) when other users can read it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import platformdirs

from models.cache import cache_root

APP = "synesthesia"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

log = logging.getLogger("synesthesia.paths")
_warned: set[Path] = set()


def _dir(env: str, default: str) -> Path:
    return private_dir(Path(os.environ.get(env) or default).expanduser())


def private_dir(path: Path, *, warn: bool = True) -> Path:
    """``path`` as a directory only its owner may enter: created ``0700`` (parents as usual);
    an existing one is kept, with a warning (unless not ``warn``) if it is open to others -> ``path``."""
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True)
    except FileExistsError:
        if warn:
            warn_if_shared(path)
    else:
        path.chmod(PRIVATE_DIR)  # mkdir's mode is masked by the umask; chmod is not
    return path


def private_file(path: Path) -> Path:
    """Make the file at ``path`` readable and writable by its owner only -> ``path``."""
    path.chmod(PRIVATE_FILE)
    return path


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty with mode ``0600`` unless it exists (then warn if others can read
    it) -> whether it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        warn_if_shared(path)
        return False
    os.close(fd)
    private_file(path)
    return True


def warn_if_shared(path: Path) -> bool:
    """Warn in one line (once per path and process) when users other than the owner may read
    or enter ``path`` -> whether they may."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return False
    if not mode & 0o077:
        return False
    if path not in _warned:
        _warned.add(path)
        want = "700" if path.is_dir() else "600"
        log.warning("warning: %s is open to other users (mode %03o); to keep it private: chmod %s %s",
                    path, mode, want, path)
    return True


def config_dir() -> Path:
    """Settings (``config.toml``); ``SYNESTHESIA_CONFIG_DIR`` overrides."""
    return _dir("SYNESTHESIA_CONFIG_DIR", platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    """Sessions database and attachments; ``SYNESTHESIA_DATA_DIR`` overrides."""
    return _dir("SYNESTHESIA_DATA_DIR", platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    """Converted model weights (e.g. the dequantized generator); ``SYNESTHESIA_CACHE_DIR`` overrides."""
    return private_dir(cache_root())


def config_file() -> Path:
    return config_dir() / "config.toml"
