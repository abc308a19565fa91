"""Audio devices: PortAudio lookup, the stream factory protocol, sounddevice streams.

All device access goes through a *stream factory* (:class:`SounddeviceStreams` by default)::

    factory.open_input(samplerate, blocksize, device, callback, on_error)  # callback((n,) float32 block)
    factory.open_output(samplerate, blocksize, device, callback)  # callback(n) -> (n,) float32

Each returns a stream with ``start()``, ``stop()`` and ``close()``; ``open_input`` also takes
``on_error(line)``, called when the microphone dies after it started (unplugged). Without PortAudio
(``import sounddevice`` raises OSError) or without a device, opening raises
:class:`~assistant.errors.DeviceError` with one line saying what to install or pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from assistant.errors import DeviceError
from models.audio_format import FRAME, SAMPLE_RATE  # noqa: F401 - the devices' block size and rate

_PORTAUDIO_HINT = (
    "no audio devices: the PortAudio library is missing "
    "(install it: sudo apt-get install libportaudio2, or brew install portaudio); "
    "files still work: --audio FILE for input, -o/--speak FILE for output"
)


def sounddevice():
    """The sounddevice module, or DeviceError with what to install."""
    try:
        import sounddevice as sd
    except OSError as e:  # raised by the import itself when libportaudio is absent
        raise DeviceError(_PORTAUDIO_HINT) from e
    except ImportError as e:
        raise DeviceError("no audio devices: the sounddevice package is missing (pip install sounddevice)") from e
    return sd


# ----------------------------------------------------------------------------- devices


@dataclass
class AudioDevice:
    index: int
    name: str
    inputs: int
    outputs: int
    default_rate: float
    default_input: bool = False
    default_output: bool = False
    hostapi: str = ""


def list_devices(sd: Any = None) -> list[AudioDevice]:
    """Every PortAudio device (raises DeviceError without PortAudio)."""
    sd = sd or sounddevice()
    try:
        devices = sd.query_devices()
        default_in, default_out = (list(sd.default.device) + [-1, -1])[:2]
        apis = [a["name"] for a in sd.query_hostapis()]
    except Exception as e:  # PortAudioError
        raise DeviceError(f"cannot list audio devices: {e}") from e
    out = []
    for i, d in enumerate(devices):
        api = d.get("hostapi", 0)
        out.append(AudioDevice(
            index=i, name=str(d["name"]), inputs=int(d["max_input_channels"]), outputs=int(d["max_output_channels"]),
            default_rate=float(d["default_samplerate"]), default_input=(i == default_in), default_output=(i == default_out),
            hostapi=apis[api] if isinstance(api, int) and 0 <= api < len(apis) else "",
        ))
    return out


def resolve_device(spec: str | int | None, kind: str, devices: list[AudioDevice] | None = None) -> int | None:
    """A device chosen by index or (part of its) name -> its index; None stays the system default.

    ``kind`` is "input" or "output". Raises DeviceError naming the choices when nothing or more
    than one device matches.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return None
    devices = list_devices() if devices is None else devices
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        for d in usable:
            if d.index == index:
                return index
        raise DeviceError(f"{kind} device {index}: no such {kind} device (see `assistant devices`)")
    matches = [d for d in usable if d.name.lower() == text.lower()] or [d for d in usable if text.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0].index
    names = ", ".join(f"{d.index}: {d.name}" for d in (matches or usable)) or "none"
    if not matches:
        raise DeviceError(f"{kind} device {text!r}: not found; {kind} devices are {names}")
    raise DeviceError(f"{kind} device {text!r} is ambiguous: {names}; give the index")


# ----------------------------------------------------------------------------- streams


class Stream(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class StreamFactory(Protocol):
    """Opens device streams. ``on_error(line)`` reports an input stream that died after it
    started (a microphone unplugged mid-utterance); the factory calls it at most once."""

    def open_input(self, samplerate: int, blocksize: int, device: int | str | None,
                   callback: Callable[[np.ndarray], None],
                   on_error: Callable[[str], None] | None = None) -> Stream: ...

    def open_output(self, samplerate: int, blocksize: int, device: int | str | None,
                    callback: Callable[[int], np.ndarray]) -> Stream: ...


class _WatchedStream:
    """A sounddevice stream that reports its own end, unless we ended it (stop/close)."""

    def __init__(self, open_stream: Callable[..., Any], on_error: Callable[[str], None] | None, what: str) -> None:
        self.ending = False
        self.on_error, self.what = on_error, what
        self.stream = open_stream(finished_callback=self._finished)

    def _finished(self) -> None:  # PortAudio's thread: the stream became inactive
        if not self.ending and self.on_error is not None:
            self.on_error(f"the {self.what} stopped delivering audio (unplugged?)")

    def start(self) -> None:
        self.stream.start()

    def stop(self) -> None:
        self.ending = True
        self.stream.stop()

    def close(self) -> None:
        self.ending = True
        self.stream.close()


class SounddeviceStreams:
    """Real devices through sounddevice/PortAudio (mono float32)."""

    def __init__(self) -> None:
        self.sd = sounddevice()

    def _device(self, device, kind: str):
        if device is None or isinstance(device, int):
            return device
        return resolve_device(device, kind, list_devices(self.sd))

    def open_input(self, samplerate, blocksize, device, callback, on_error=None):
        def cb(indata, frames, _time, _status):  # indata: (frames, 1) float32; an overflow only drops audio
            callback(indata[:, 0].copy())

        def open_stream(**kw):
            return self.sd.InputStream(samplerate=samplerate, blocksize=blocksize, channels=1, dtype="float32",
                                       device=self._device(device, "input"), callback=cb, **kw)

        try:
            return _WatchedStream(open_stream, on_error, "microphone")
        except DeviceError:
            raise
        except Exception as e:  # sd.PortAudioError, ValueError for bad devices
            raise DeviceError(f"cannot open the microphone ({e}); pick one with --device (see `assistant devices`)") from e

    def open_output(self, samplerate, blocksize, device, callback):
        def cb(outdata, frames, _time, _status):  # outdata: (frames, 1) float32
            outdata[:, 0] = callback(frames)

        try:
            return self.sd.OutputStream(samplerate=samplerate, blocksize=blocksize, channels=1, dtype="float32",
                                        device=self._device(device, "output"), callback=cb)
        except DeviceError:
            raise
        except Exception as e:
            raise DeviceError(f"cannot open the speaker ({e}); pick one with --output-device (see `assistant devices`)") from e


def close_stream(stream: Stream | None) -> None:
    """Stop and close ``stream`` (None: nothing to do)."""
    if stream is not None:
        try:
            stream.stop()
        finally:
            stream.close()


def stream_factory(streams: StreamFactory | None) -> StreamFactory:
    """``streams``, or the real devices when None (raises DeviceError without PortAudio)."""
    return streams if streams is not None else SounddeviceStreams()
