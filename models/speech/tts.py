"""Speech synthesis engines behind one interface.

``load_synthesizer(engine, voice=..., rate=...)`` returns an object with

* ``name`` (str): engine and voice, shown to the user;
* ``sample_rate`` (int);
* ``synthesize(text) -> np.ndarray``: float32 mono samples in [-1, 1], shape ``(T,)``.

Engines:

* ``espeak`` (default): eSpeak NG from the ``espeakng-loader`` wheel (library and voice data
  inside, no system package), driven with ctypes in synchronous mode. 22,050 Hz.
* ``coqui``: Coqui TTS (``pip install synesthesia[coqui]``); imported only when asked for. Its
  models download on first use, so it needs network the first time.
* ``piper``: Piper (``pip install piper-tts``) with a voice ``.onnx`` file given as ``voice``.

Errors are ``ValueError`` (bad argument, e.g. unknown voice) or ``RuntimeError`` (engine not
installed or broken); both carry a one-line message saying what to do.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

__all__ = ["Synthesizer", "EspeakSynthesizer", "CoquiSynthesizer", "PiperSynthesizer", "load_synthesizer", "espeak_voices"]

ENGINES = ("espeak", "coqui", "piper")


class Synthesizer:
    """The interface every engine implements."""

    name: str = "synthesizer"
    sample_rate: int = 22050

    def synthesize(self, text: str) -> np.ndarray:  # -> (T,) float32
        raise NotImplementedError


# ----------------------------------------------------------------------------- eSpeak NG

# espeak-ng's C API (speak_lib.h): constants we use.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakRATE, _espeakVOLUME, _espeakPITCH = 1, 2, 3
_espeakCHARS_UTF8 = 1
_POS_CHARACTER = 1
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _EspeakVoice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class _Espeak:
    """The process-wide eSpeak NG library (it keeps global state, so one lock guards it)."""

    _instance: "_Espeak | None" = None
    _create_lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise RuntimeError("eSpeak NG is missing: pip install espeakng-loader") from e
        try:
            self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as e:
            raise RuntimeError(f"cannot load the eSpeak NG library from espeakng-loader: {e}") from e
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_EspeakVoice))
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise with data at {data}")
        self.sample_rate = int(rate)
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._stop = False
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "_Espeak":
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav, n, _events) -> int:
        if n > 0 and wav:
            # (n,) int16 copied out of eSpeak's buffer
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 1 if self._stop else 0

    def voices(self) -> list[tuple[str, str]]:
        """(identifier, name) of every installed voice."""
        out = []
        with self.lock:
            arr = self.lib.espeak_ListVoices(None)
            i = 0
            while arr[i]:
                v = arr[i].contents
                out.append((v.identifier.decode(errors="replace"), v.name.decode(errors="replace")))
                i += 1
        return out

    def synth(self, text: str, voice: str, rate: int, pitch: int | None) -> np.ndarray:
        data = text.encode("utf-8") + b"\0"
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise ValueError(f"eSpeak NG has no voice {voice!r} (try en-us, en-gb, en-us+f3; see espeak_voices())")
            self.lib.espeak_SetParameter(_espeakRATE, int(rate), 0)
            if pitch is not None:
                self.lib.espeak_SetParameter(_espeakPITCH, int(pitch), 0)
            self._chunks = []
            self._stop = False
            err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _espeakCHARS_UTF8, None, None)
            if err != _EE_OK:
                raise RuntimeError(f"eSpeak NG failed to synthesize (error {err})")
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if not chunks:
            return np.zeros(0, np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0)  # (T,)


def espeak_voices() -> list[tuple[str, str]]:
    """(identifier, name) pairs of the eSpeak NG voices, e.g. ('gmw/en-US', 'English_(America)')."""
    return _Espeak.get().voices()


class EspeakSynthesizer(Synthesizer):
    """eSpeak NG: small, fast, robotic; the offline default.

    ``voice`` is an eSpeak voice name, optionally with a variant: ``en-us``, ``en-gb``,
    ``en-us+f3`` (female), ``en-us+m3``. ``rate`` is words per minute (80-450).
    """

    def __init__(self, voice: str = "en-us", rate: int = 175, pitch: int | None = None) -> None:
        if not 60 <= int(rate) <= 450:
            raise ValueError(f"speaking rate {rate} is out of range (60-450 words per minute)")
        self._engine = _Espeak.get()
        self.voice, self.rate, self.pitch = voice, int(rate), pitch
        self.sample_rate = self._engine.sample_rate
        self.name = f"espeak-ng ({voice}, {self.rate} wpm)"
        self._engine.synth("", voice, self.rate, pitch)  # checks the voice now, not at the first reply

    def synthesize(self, text: str) -> np.ndarray:
        """text -> (T,) float32 at ``sample_rate``; empty text gives an empty array."""
        if not text or not text.strip():
            return np.zeros(0, np.float32)
        return self._engine.synth(text, self.voice, self.rate, self.pitch)


# ----------------------------------------------------------------------------- optional engines


class CoquiSynthesizer(Synthesizer):
    """Coqui TTS (``coqui-tts``); ``voice`` is a Coqui model name."""

    DEFAULT_MODEL = "tts_models/en/ljspeech/vits"

    def __init__(self, voice: str | None = None, rate: int = 175) -> None:
        try:
            from TTS.api import TTS  # imported only here: torch-heavy and optional
        except ImportError as e:
            raise RuntimeError("Coqui TTS is not installed: pip install 'synesthesia[coqui]' (coqui-tts)") from e
        model = voice if voice and "/" in voice else self.DEFAULT_MODEL
        try:
            self._tts = TTS(model_name=model, progress_bar=False)
        except Exception as e:  # network errors, missing files: Coqui raises many kinds
            raise RuntimeError(f"Coqui TTS could not load {model} (its models download on first use): {e}") from e
        self.speed = max(0.5, min(2.0, rate / 175))
        self.sample_rate = int(getattr(self._tts.synthesizer, "output_sample_rate", 22050))
        self.name = f"coqui ({model})"

    def synthesize(self, text: str) -> np.ndarray:  # -> (T,) float32
        if not text.strip():
            return np.zeros(0, np.float32)
        wav = self._tts.tts(text=text, speed=self.speed)
        return np.asarray(wav, dtype=np.float32).reshape(-1)


class PiperSynthesizer(Synthesizer):
    """Piper (``piper-tts``); ``voice`` is the path of a Piper voice ``.onnx`` (its .json beside it)."""

    def __init__(self, voice: str, rate: int = 175) -> None:
        try:
            from piper import PiperVoice
        except ImportError as e:
            raise RuntimeError("Piper is not installed: pip install piper-tts, and name a voice .onnx file") from e
        path = Path(voice).expanduser()
        if path.suffix != ".onnx" or not path.is_file():
            raise ValueError(f"{voice}: Piper needs the path of a voice .onnx file (download one from the Piper voices page)")
        self._voice = PiperVoice.load(str(path))
        self.sample_rate = int(self._voice.config.sample_rate)
        self.length_scale = max(0.5, min(2.0, 175 / rate))
        self.name = f"piper ({path.stem})"

    def synthesize(self, text: str) -> np.ndarray:  # -> (T,) float32
        if not text.strip():
            return np.zeros(0, np.float32)
        parts = []
        for chunk in self._voice.synthesize(text):  # piper-tts >= 1.3: AudioChunk objects
            parts.append(np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1))
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def load_synthesizer(engine: str = "espeak", *, voice: str = "en-us", rate: int = 175) -> Synthesizer:
    """Build the named engine ('espeak', 'coqui', 'piper'); see the module docstring."""
    engine = (engine or "espeak").lower()
    if engine in ("espeak", "espeak-ng", "espeakng"):
        return EspeakSynthesizer(voice or "en-us", rate)
    if engine == "coqui":
        return CoquiSynthesizer(voice if voice and "/" in voice else None, rate)
    if engine == "piper":
        return PiperSynthesizer(voice, rate)
    raise ValueError(f"unknown speech synthesis engine {engine!r}; choose one of {', '.join(ENGINES)}")
