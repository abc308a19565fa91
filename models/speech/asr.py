"""Speech recognition: which engines there are and how one is loaded.

``load_recognizer(engine="whisper", ...)`` returns an object with

* ``name`` (str), e.g. ``"whisper:tiny.en"`` or ``"pocketsphinx (domain LM)"``;
* ``transcribe(audio, context=None) -> str`` where ``audio`` is float32 mono 16 kHz, shape ``(T,)``;
* ``stream(context=None)``: recognition while the user speaks (see :mod:`models.speech.base`).

Engines (each in its own module):

* ``whisper`` (default): Whisper through faster-whisper, :mod:`models.speech.whisper`; tiny.en
  ships in a pip package, other sizes are pulled on request;
* ``pocketsphinx``: pocketsphinx with a domain language model, :mod:`models.speech.sphinx`
  (``pocketsphinx-domain`` and ``pocketsphinx-generic`` for comparison);
* anything a plugin registers (:mod:`models.speech.engines`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from models.speech.base import SAMPLE_RATE, Recognizer, Segmenting, check_audio
from models.speech.sphinx import PocketsphinxRecognizer, PocketsphinxStream, build_domain_arpa
from models.speech.whisper import WHISPER_SIZES, WhisperRecognizer, WhisperStream, pull_whisper, whisper_weights

__all__ = [
    "Recognizer", "Segmenting", "check_audio", "SAMPLE_RATE", "PocketsphinxRecognizer", "PocketsphinxStream",
    "build_domain_arpa", "WhisperRecognizer", "WhisperStream", "WHISPER_SIZES", "load_recognizer",
    "pull_whisper", "whisper_weights",
]


def load_recognizer(
    engine: str = "whisper",
    *,
    whisper_model: str = "tiny.en",
    whisper_dir: str | os.PathLike | None = None,
    language: str = "en",
    extra_phrases: Iterable[str] = (),
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    engines=None,
) -> Recognizer:
    """A built-in recognizer (or one from ``engines``, a :class:`~models.speech.engines.SpeechEngines`).

    ``engine``: "whisper" (or "whisper:SIZE"), "pocketsphinx", "pocketsphinx-domain",
    "pocketsphinx-generic", "auto" (= whisper) or a registered name. ``cache_dir`` keeps the
    pocketsphinx domain model and the record of verified weight hashes between runs.
    """
    from models.speech.engines import builtin_engines

    registry = engines if engines is not None else builtin_engines()
    return registry.recognizer(engine, model=whisper_model, whisper_dir=whisper_dir, language=language,
                               extra_phrases=list(extra_phrases), cache_dir=cache_dir, device=device)
