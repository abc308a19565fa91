"""Turning what a user hands us into clean tensors' raw material, or one clear error.

* :func:`load_image`: a path or PIL image -> an RGB PIL image of bounded size.
* :func:`load_audio`: a path or ``(array, sample_rate)`` -> float32 mono 16 kHz samples.
* :func:`check_text`: a message -> a valid UTF-8 string of bounded length.

Every failure is an :class:`~assistant.errors.InputError` whose message names the file (or
argument) and the problem, e.g. ``photo.png: not an image (truncated or corrupt data)``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from assistant.errors import InputError
from models.audio_format import SAMPLE_RATE  # every audio input is resampled to it

MAX_TEXT_CHARS = 20_000
"""Longer messages are refused (the generator's context holds about 2,000 tokens anyway)."""
MAX_IMAGE_SIDE = 1024
"""Images are shrunk so that their longer side is at most this (the encoders use 224)."""

ImageInput = Union[str, os.PathLike, Image.Image]
AudioInput = Union[str, os.PathLike, tuple]


def _check_file(path: Path, kind: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not {kind} file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")


# ----------------------------------------------------------------------------- images


def load_image(src: ImageInput, *, max_pixels: int = 100_000_000) -> Image.Image:
    """Open and normalise an image: RGB, EXIF-rotated, alpha flattened on white, longer side <= 1024."""
    if isinstance(src, Image.Image):
        name = getattr(src, "filename", "") or "image"
        try:
            return _normalise(src, name)
        except (OSError, ValueError) as e:
            raise InputError(f"{name}: unusable image ({e})") from e
    path = Path(src).expanduser()
    _check_file(path, "an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise InputError(
                        f"{path}: image is {w}x{h} pixels, over the {max_pixels:,}-pixel limit "
                        "(possible decompression bomb)"
                    )
                im.draft("RGB", (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))  # JPEG: decode at reduced scale
                im.load()
                return _normalise(im, str(path))
        except InputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InputError(f"{path}: image too large, possible decompression bomb ({e})") from e
        except UnidentifiedImageError as e:
            raise InputError(f"{path}: not an image PIL can read (wrong extension or corrupt data)") from e
        except (OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{path}: corrupt or truncated image ({e})") from e
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit


def _normalise(im: Image.Image, name: str) -> Image.Image:
    if im.width < 1 or im.height < 1:
        raise InputError(f"{name}: image has no pixels")
    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        im = Image.fromarray(arr.astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "RGB" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    im = im.convert("RGB")
    if max(im.size) > MAX_IMAGE_SIDE:
        im = im.copy()
        im.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE), Image.Resampling.LANCZOS)
    return im


# ----------------------------------------------------------------------------- audio


def load_audio(src: AudioInput, *, max_seconds: float = 1800.0) -> np.ndarray:
    """Decode (soundfile), mix to mono and resample (soxr) to 16 kHz float32 in [-1, 1].

    Files are read in blocks and resampled as a stream, so memory stays bounded by the
    output (16 kHz float32: 3.8 MB a minute) whatever the source format or rate.
    """
    import soundfile as sf
    import soxr

    if isinstance(src, tuple):
        if len(src) != 2:
            raise InputError("audio: expected (samples, sample_rate)")
        samples, rate = src
        return _array_to_mono16k(np.asarray(samples), rate, "audio array", max_seconds)

    path = Path(src).expanduser()
    _check_file(path, "an audio")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError, TypeError) as e:
        raise InputError(f"{path}: not an audio file soundfile can read (wav, flac, ogg, mp3)") from e
    if info.samplerate <= 0 or info.channels <= 0:
        raise InputError(f"{path}: audio header is invalid")
    duration = info.frames / info.samplerate if info.frames > 0 else 0.0
    if duration > max_seconds:
        raise InputError(
            f"{path}: recording is {duration / 60:.1f} minutes; the limit is {max_seconds / 60:.0f} minutes"
        )
    resampler = soxr.ResampleStream(info.samplerate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    # Preallocate the 16 kHz output and fill it block by block: peak memory is the output
    # plus one 10-second block, whatever the length, channels or rate of the source.
    audio = np.empty(int(info.frames * SAMPLE_RATE / info.samplerate) + SAMPLE_RATE, np.float32)
    filled = 0
    try:
        for chunk in sf.blocks(str(path), blocksize=info.samplerate * 10, dtype="float32", always_2d=True):
            out = resampler.resample_chunk(chunk.mean(axis=1, dtype=np.float32))
            if filled + len(out) > len(audio):  # header undercounted the frames
                audio = np.concatenate([audio[:filled], np.empty(len(out) + SAMPLE_RATE * 10, np.float32)])
            audio[filled:filled + len(out)] = out
            filled += len(out)
        tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        audio = np.concatenate([audio[:filled], tail]) if len(tail) else audio[:filled]
    except (RuntimeError, sf.LibsndfileError) as e:
        raise InputError(f"{path}: corrupt audio data ({e})") from e
    if audio.size == 0:
        raise InputError(f"{path}: audio file holds no samples")
    return _finish(audio, str(path))


def _array_to_mono16k(samples: np.ndarray, rate, name: str, max_seconds: float) -> np.ndarray:
    import soxr

    try:
        rate = int(rate)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name}: sample rate {rate!r} is not a number") from e
    if rate < 1000 or rate > 384_000:
        raise InputError(f"{name}: sample rate {rate} Hz is out of range (1 kHz to 384 kHz)")
    if samples.ndim == 2:
        # (samples, channels) as soundfile returns it; accept (channels, samples) too.
        if samples.shape[0] <= 8 < samples.shape[1]:
            samples = samples.T
        samples = samples.astype(np.float32) if samples.dtype.kind == "f" else samples
        samples = _to_float(samples, name).mean(axis=1)
    elif samples.ndim == 1:
        samples = _to_float(samples, name)
    else:
        raise InputError(f"{name}: expected a 1-D or 2-D array of samples, got shape {samples.shape}")
    if samples.size == 0:
        raise InputError(f"{name}: no samples")
    if samples.size / rate > max_seconds:
        raise InputError(f"{name}: {samples.size / rate / 60:.1f} minutes; the limit is {max_seconds / 60:.0f} minutes")
    if rate != SAMPLE_RATE:
        samples = soxr.resample(samples, rate, SAMPLE_RATE, quality="HQ")
    return _finish(samples.astype(np.float32), name)


def _to_float(samples: np.ndarray, name: str) -> np.ndarray:
    kind = samples.dtype.kind
    if kind == "f":
        return samples.astype(np.float32)
    if kind == "i":
        return samples.astype(np.float32) / float(2 ** (8 * samples.dtype.itemsize - 1))
    if kind == "u":
        half = float(2 ** (8 * samples.dtype.itemsize - 1))
        return (samples.astype(np.float32) - half) / half
    if kind == "b":
        return samples.astype(np.float32)
    raise InputError(f"{name}: samples of type {samples.dtype} are not audio")


def _finish(audio: np.ndarray, name: str) -> np.ndarray:
    if not np.all(np.isfinite(audio)):
        raise InputError(f"{name}: audio holds NaN or infinite samples")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:  # float files may exceed full scale; bring them back without changing shape
        audio = audio / peak
    return np.ascontiguousarray(audio, dtype=np.float32)


# ----------------------------------------------------------------------------- text


def check_text(text: str | bytes, *, name: str = "message", max_chars: int = MAX_TEXT_CHARS) -> str:
    """A message as valid UTF-8 text of at most ``max_chars`` characters."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{name}: not valid UTF-8 (byte {e.start}: {text[e.start:e.start + 1]!r})") from e
    if not isinstance(text, str):
        raise InputError(f"{name}: expected text, got {type(text).__name__}")
    try:
        text.encode("utf-8")  # argv with undecodable bytes arrives as lone surrogates
    except UnicodeEncodeError as e:
        raise InputError(f"{name}: not valid UTF-8 (character {e.start})") from e
    text = text.replace("\x00", "")
    if len(text) > max_chars:
        raise InputError(f"{name}: {len(text):,} characters; the limit is {max_chars:,} (attach long files with /read)")
    return text
