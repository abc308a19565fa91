"""Images and audio sent inside a request -> files the assistant's own input checks read.

A request's media arrive as bytes (a ``data:`` URL, base64 ``input_audio``, a multipart upload).
They are written to a private temporary folder under a plain name (``image-1.png``,
``audio-1.wav``, the upload's own file name) and loaded by the same code as ``assistant ask
--image/--audio``, so the limits (decompression bombs, duration) and the one-line errors are the
CLI's: ``audio-1.wav: not an audio file soundfile can read (wav, flac, ogg, mp3)``. The folder
never outlives the request. Nothing is fetched: an ``http(s):`` or ``file:`` URL is refused.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import tempfile
from pathlib import Path
from typing import Iterator

from assistant.errors import InputError

IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/webp": ".webp",
               "image/gif": ".gif", "image/bmp": ".bmp", "image/tiff": ".tiff"}
AUDIO_FORMATS = {"wav": ".wav", "mp3": ".mp3", "flac": ".flac", "ogg": ".ogg"}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)
_SAFE_NAME = re.compile(r"[^\w.-]+")


class MediaFolder:
    """A temporary folder for one request's media; ``checked()`` turns its paths in error
    messages back into the names the client knows."""

    def __init__(self, root: Path):
        self.root = root
        self._count = {"image": 0, "audio": 0}

    def image_from_url(self, url: str, where: str) -> Path:
        """An ``image_url.url`` -> a file. Only ``data:`` URLs: the server fetches nothing."""
        match = _DATA_URL.match(url)
        if match is None:
            scheme = url.split(":", 1)[0].lower() if ":" in url[:12] else "a path"
            raise InputError(f"{where}: only data: URLs are accepted (got {scheme}); send the image inline as "
                             "data:image/png;base64,...")
        if not match.group("b64"):
            raise InputError(f"{where}: the data: URL must be base64-encoded (data:image/png;base64,...)")
        mime = (match.group("mime") or "").lower()
        if mime and not mime.startswith("image/"):
            raise InputError(f"{where}: the data: URL holds {mime}, not an image")
        data = _b64(url[match.end():], where)
        self._count["image"] += 1
        return self._write(f"image-{self._count['image']}{IMAGE_TYPES.get(mime, '.img')}", data)

    def audio_from_base64(self, data: str, fmt: str, where: str) -> Path:
        """``input_audio`` (base64 ``data`` and its ``format``) -> a file."""
        suffix = AUDIO_FORMATS.get((fmt or "").lower())
        if suffix is None:
            raise InputError(f"{where}: audio format {fmt!r} is not supported ({', '.join(AUDIO_FORMATS)})")
        self._count["audio"] += 1
        return self._write(f"audio-{self._count['audio']}{suffix}", _b64(data, f"{where}.data"))

    def upload(self, filename: str | None, data: bytes) -> Path:
        """A multipart upload, under its own (sanitised) file name."""
        name = _SAFE_NAME.sub("_", Path(filename or "").name).strip("._") or "upload.wav"
        return self._write(name, data)

    def _write(self, name: str, data: bytes) -> Path:
        path = self.root / name
        path.write_bytes(data)
        return path

    @contextlib.contextmanager
    def checked(self) -> Iterator[None]:
        """Input errors name the file as the client sent it, not our temporary path."""
        try:
            yield
        except InputError as e:
            raise InputError(str(e).replace(f"{self.root}/", "")) from e


@contextlib.contextmanager
def media_folder() -> Iterator[MediaFolder]:
    with tempfile.TemporaryDirectory(prefix="synesthesia-serve-") as root:
        yield MediaFolder(Path(root))


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise InputError(f"{where}: not valid base64 ({e})") from e
