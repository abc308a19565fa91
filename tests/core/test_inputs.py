"""Bad input: each case gives an InputError naming the file and the problem, or works."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from assistant.errors import InputError
from assistant.inputs import MAX_IMAGE_SIDE, SAMPLE_RATE, check_text, load_audio, load_image


def _png(path, size=(64, 48), mode="RGB", color=(200, 30, 30)):
    Image.new(mode, size, color).save(path)
    return path


# ------------------------------------------------------------------ files in general


@pytest.mark.parametrize("loader,name", [(load_image, "x.png"), (load_audio, "x.wav")])
def test_missing_file(tmp_path, loader, name):
    with pytest.raises(InputError, match=rf"{name}: no such file"):
        loader(tmp_path / name)


@pytest.mark.parametrize("loader", [load_image, load_audio])
def test_directory(tmp_path, loader):
    with pytest.raises(InputError, match="is a directory"):
        loader(tmp_path)


@pytest.mark.parametrize("loader,name", [(load_image, "empty.png"), (load_audio, "empty.wav")])
def test_zero_bytes(tmp_path, loader, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match=rf"{name}: empty file"):
        loader(tmp_path / name)


def test_text_named_png(tmp_path):
    f = tmp_path / "notes.png"
    f.write_text("just some words\n")
    with pytest.raises(InputError, match=r"notes.png: not an image"):
        load_image(f)


def test_text_named_wav(tmp_path):
    f = tmp_path / "notes.wav"
    f.write_text("RIFF? no, just text\n" * 10)
    with pytest.raises(InputError, match=r"notes.wav: not an audio file"):
        load_audio(f)


# ------------------------------------------------------------------ images


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated_image(tmp_path, fmt, ext):
    full = tmp_path / f"full.{ext}"
    arr = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(arr).save(full, fmt)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"cut.{ext}: (corrupt or truncated|not an image)"):
        load_image(cut)


def test_decompression_bomb(tmp_path):
    # A tiny PNG whose header claims 30000 x 30000 pixels (1-bit, so the file stays small).
    f = tmp_path / "bomb.png"
    Image.new("1", (30000, 30000)).save(f, optimize=True)
    assert f.stat().st_size < 2_000_000
    with pytest.raises(InputError, match=r"bomb.png: .*(decompression bomb)"):
        load_image(f)


def test_one_pixel(tmp_path):
    im = load_image(_png(tmp_path / "dot.png", size=(1, 1)))
    assert im.size == (1, 1) and im.mode == "RGB"


def test_ten_thousand_square_is_shrunk(tmp_path):
    f = tmp_path / "huge.jpg"
    Image.new("RGB", (10000, 10000), (10, 120, 200)).save(f, quality=50)
    im = load_image(f)
    assert max(im.size) <= MAX_IMAGE_SIDE and im.mode == "RGB"
    assert im.getpixel((5, 5))[2] > 150  # still blue


@pytest.mark.parametrize("mode,color", [("CMYK", (0, 255, 255, 0)), ("P", 3), ("RGBA", (255, 0, 0, 128)),
                                        ("LA", (90, 200)), ("L", 77), ("1", 1)])
def test_modes_become_rgb(tmp_path, mode, color):
    ext = "jpg" if mode == "CMYK" else "png"
    f = tmp_path / f"m.{ext}"
    Image.new(mode, (20, 10), color).save(f)
    im = load_image(f)
    assert im.mode == "RGB" and im.size == (20, 10)


def test_alpha_is_flattened_on_white(tmp_path):
    f = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(f)
    assert load_image(f).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit(tmp_path):
    f = tmp_path / "deep.png"
    arr = np.tile(np.linspace(0, 65535, 32, dtype=np.uint16), (16, 1))
    Image.fromarray(arr).save(f)
    im = load_image(f)
    assert im.mode == "RGB"
    assert im.getpixel((0, 0))[0] < 10 and im.getpixel((31, 0))[0] > 245  # full range kept


def test_pil_image_passes_through():
    im = load_image(Image.new("P", (5, 5)))
    assert im.mode == "RGB"


# ------------------------------------------------------------------ audio


def _tone(seconds=1.0, rate=SAMPLE_RATE, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_audio_formats(tmp_path, rate, channels, subtype):
    tone = _tone(1.0, rate)
    data = np.stack([tone] * channels, axis=1) if channels == 2 else tone
    f = tmp_path / "a.wav"
    sf.write(f, data, rate, subtype=subtype)
    out = load_audio(f)
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(len(out) - SAMPLE_RATE) < 50  # one second at 16 kHz
    assert 0.4 < np.abs(out).max() <= 1.0


def test_flac_and_ogg(tmp_path):
    for ext in ("flac", "ogg"):
        f = tmp_path / f"a.{ext}"
        sf.write(f, _tone(0.5, 22050), 22050)
        assert abs(len(load_audio(f)) - SAMPLE_RATE // 2) < 200


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32, np.float64, np.uint8])
def test_audio_arrays(dtype):
    tone = _tone(0.5, 48000)
    if np.dtype(dtype).kind == "i":
        arr = (tone * np.iinfo(dtype).max).astype(dtype)
    elif np.dtype(dtype).kind == "u":
        arr = ((tone + 1) * 127.5).astype(dtype)
    else:
        arr = tone.astype(dtype)
    out = load_audio((arr, 48000))
    assert out.dtype == np.float32 and abs(len(out) - 8000) < 20 and 0.4 < np.abs(out).max() <= 1.0


def test_audio_array_channels_first():
    tone = _tone(0.25)
    out = load_audio((np.stack([tone, tone]), SAMPLE_RATE))  # (2, N)
    assert out.shape == tone.shape


def test_silence_is_valid_audio(tmp_path):
    f = tmp_path / "quiet.wav"
    sf.write(f, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    out = load_audio(f)
    assert out.shape == (SAMPLE_RATE,) and not out.any()


def test_ten_minute_recording_bounded_memory(tmp_path):
    f = tmp_path / "long.wav"
    rate = 48000
    with sf.SoundFile(f, "w", rate, 2, "PCM_16") as out:  # 10 minutes of stereo 48 kHz: 115 MB
        block = np.stack([_tone(10.0, rate)] * 2, axis=1)
        for _ in range(60):
            out.write(block)
    tracemalloc.start()
    audio = load_audio(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert abs(len(audio) / SAMPLE_RATE - 600) < 0.1
    # The output alone is 38 MB; decoding never holds the 230 MB float copy of the source.
    assert peak < 100_000_000, f"peak {peak / 1e6:.0f} MB"


def test_recording_over_limit(tmp_path):
    f = tmp_path / "long.wav"
    sf.write(f, np.zeros(8000 * 65, np.int16), 8000)
    with pytest.raises(InputError, match=r"long.wav: recording is 1.1 minutes; the limit is 1 minutes"):
        load_audio(f, max_seconds=60)


def test_nan_audio():
    with pytest.raises(InputError, match="NaN"):
        load_audio((np.full(1000, np.nan, np.float32), 16000))


def test_bad_sample_rate():
    with pytest.raises(InputError, match="sample rate"):
        load_audio((np.zeros(100, np.float32), 10))


# ------------------------------------------------------------------ text


def test_long_text():
    with pytest.raises(InputError, match=r"100,000 characters; the limit is 20,000"):
        check_text("a" * 100_000)


def test_non_utf8_bytes():
    with pytest.raises(InputError, match="not valid UTF-8"):
        check_text(b"caf\xe9 au lait")


def test_surrogates_from_argv():
    with pytest.raises(InputError, match="not valid UTF-8"):
        check_text("caf\udce9")


def test_good_text():
    assert check_text("héllo 👋".encode()) == "héllo 👋"
