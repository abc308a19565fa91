"""One registry of speech engines: the built-in recognizers and voices, and those plugins add.

``[speech] recognizer = NAME`` and ``[speech] tts = NAME`` choose from it. The app builds a
registry with :func:`builtin_engines` and adds each engine a plugin registers
(``register_speech_engines``) with :meth:`SpeechEngines.add`; nothing else decides which
engines exist, so a plugin's engine is selected exactly like a built-in one.

An engine is a factory called with keyword options. Recognizers may take ``model``,
``whisper_dir``, ``language``, ``device``, ``extra_phrases`` and ``cache_dir``; synthesizers
``voice``, ``rate``, ``language`` and ``cache_dir``. A factory gets only the options its
signature accepts (all of them if it takes ``**options``).

``whisper:SIZE`` is the ``whisper`` engine with ``model=SIZE``; ``auto`` means ``whisper``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Literal

__all__ = ["Engine", "SpeechEngines", "builtin_engines"]

Kind = Literal["recognizer", "synthesizer"]
KINDS: tuple[str, ...] = ("recognizer", "synthesizer")


@dataclass(frozen=True)
class Engine:
    name: str
    kind: Kind
    factory: Callable[..., Any]
    description: str = ""
    source: str = "built-in"
    """'built-in' or 'plugin NAME'."""


class SpeechEngines:
    """Speech engines by kind and name."""

    def __init__(self) -> None:
        self._engines: dict[str, dict[str, Engine]] = {kind: {} for kind in KINDS}

    def add(self, name: str, factory: Callable[..., Any], *, kind: Kind, description: str = "",
            source: str = "built-in") -> Engine:
        """Register an engine; ValueError for a bad kind or a name already taken."""
        if kind not in KINDS:
            raise ValueError(f"speech engine {name!r}: kind must be 'recognizer' or 'synthesizer', not {kind!r}")
        key = name.strip().lower()
        if not key or ":" in key:
            raise ValueError(f"speech engine name {name!r}: must be non-empty and without ':'")
        taken = self._engines[kind].get(key)
        if taken is not None:
            raise ValueError(f"{kind} {name!r} is already provided by {taken.source}")
        engine = Engine(key, kind, factory, description, source)
        self._engines[kind][key] = engine
        return engine

    def names(self, kind: Kind) -> list[str]:
        return list(self._engines[kind])

    def engines(self, kind: Kind) -> list[Engine]:
        return list(self._engines[kind].values())

    def resolve(self, kind: Kind, name: str) -> tuple[Engine, dict[str, Any]]:
        """``name`` (as written in settings) -> (engine, options implied by the name)."""
        key = (name or "").strip().lower()
        implied: dict[str, Any] = {}
        if key in ("", "auto"):
            key = "whisper" if kind == "recognizer" else "piper"
        if kind == "recognizer" and key.startswith("whisper:"):
            key, implied["model"] = "whisper", name.strip().split(":", 1)[1]
        engine = self._engines[kind].get(key)
        if engine is None:
            raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(self._engines[kind]) or 'none'}")
        return engine, implied

    def build(self, kind: Kind, name: str, **options: Any) -> Any:
        """Build the engine ``name`` with the options its factory accepts."""
        engine, implied = self.resolve(kind, name)
        options.update(implied)
        return engine.factory(**_accepted(engine.factory, options))

    def recognizer(self, name: str, **options: Any) -> Any:
        return self.build("recognizer", name, **options)

    def synthesizer(self, name: str, **options: Any) -> Any:
        return self.build("synthesizer", name, **options)


def _accepted(factory: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return options
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return options
    names = {p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}
    return {k: v for k, v in options.items() if k in names}


# ----------------------------------------------------------------------------- built-ins


def _whisper(*, model: str = "tiny.en", whisper_dir=None, language: str = "en", device: str = "auto", cache_dir=None):
    from models.speech.whisper import WhisperRecognizer

    return WhisperRecognizer(model, whisper_dir=whisper_dir, language=language, device=device, stamp_dir=cache_dir)


def _pocketsphinx(mode: str) -> Callable[..., Any]:
    def build(*, language: str = "en", extra_phrases=(), cache_dir=None):
        if language.split("-")[0].lower() != "en":
            raise ValueError(f"pocketsphinx ships an English model only; language {language!r} needs Whisper")
        from models.speech.sphinx import PocketsphinxRecognizer

        return PocketsphinxRecognizer(extra_phrases=extra_phrases, mode=mode, cache_dir=cache_dir)

    return build


def _synthesizer(engine: str) -> Callable[..., Any]:
    def build(*, voice: str = "", rate: int = 175, language: str = "en", cache_dir=None):
        from models.speech.tts import load_synthesizer

        return load_synthesizer(engine, voice=voice, rate=rate, language=language, cache_dir=cache_dir)

    return build


def builtin_engines() -> SpeechEngines:
    """A registry holding the engines that ship with the assistant."""
    r = SpeechEngines()
    r.add("whisper", _whisper, kind="recognizer",
          description="Whisper via faster-whisper; tiny.en ships packaged, other sizes by `assistant models pull`")
    r.add("pocketsphinx", _pocketsphinx("combined"), kind="recognizer",
          description="pocketsphinx en-US with the assistant's domain language model")
    r.add("pocketsphinx-domain", _pocketsphinx("domain"), kind="recognizer", description="pocketsphinx, domain model only")
    r.add("pocketsphinx-generic", _pocketsphinx("generic"), kind="recognizer", description="pocketsphinx, stock model only")
    r.add("piper", _synthesizer("piper"), kind="synthesizer", description="Piper neural voice (en_US joe packaged)")
    r.add("espeak", _synthesizer("espeak"), kind="synthesizer", description="eSpeak NG (many languages, robotic)")
    r.add("coqui", _synthesizer("coqui"), kind="synthesizer", description="Coqui TTS (optional extra; downloads its models)")
    return r
