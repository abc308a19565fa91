"""Speech engines: recognition (Whisper via faster-whisper; pocketsphinx), synthesis (Piper;
eSpeak NG; Coqui), voice-activity detection (Silero VAD), end-of-turn rules and text for the
ear. No terminal or app code here.

* ``load_recognizer(engine="whisper", *, whisper_model, whisper_dir, language, extra_phrases)``
  -> ``Recognizer`` with ``.name``, ``.transcribe((T,) float32 16 kHz, context=None) -> str``
  and ``.stream()`` (recognition while the user speaks).
* ``load_synthesizer(engine="piper", *, voice, rate)`` -> ``Synthesizer`` with ``.name``,
  ``.sample_rate`` and ``.synthesize(text) -> (T,) float32``.
* ``speak_text(synthesizer, markdown) -> (audio, rate)``: a whole reply, sentence by sentence.
* :mod:`models.speech.engines`: the registry of engines (built-in and from plugins).
* :mod:`models.speech.weights`: the pip packages that ship weights, checked by SHA-256.
* :mod:`models.speech.text`: ``speakable``, ``split_sentences``, ``SentenceStream``.
* :mod:`models.speech.vad`: ``SileroVAD``, ``EndOfSpeech``; :mod:`models.speech.endpoint`: ``looks_complete``.
* :mod:`models.speech.domain`: the in-domain phrases and the word error rate.

Errors are ``ValueError`` (bad argument) or ``RuntimeError`` (engine missing or failing;
``weights.WeightsError`` for a missing or damaged weight package).
"""

from __future__ import annotations

import numpy as np

from models.speech.asr import Recognizer, load_recognizer, pull_whisper, whisper_weights
from models.speech.tts import Synthesizer, load_synthesizer

__all__ = [
    "Recognizer", "Synthesizer", "load_recognizer", "load_synthesizer", "pull_whisper",
    "whisper_weights", "speak_text",
]


def speak_text(synthesizer: Synthesizer, text: str, *, gap_s: float = 0.12) -> tuple[np.ndarray, int]:
    """Markdown text -> ((T,) float32, rate): cleaned, split into sentences, synthesized in order
    with ``gap_s`` of silence between them (what a streamed reply sounds like)."""
    from models.speech.text import speakable, split_sentences

    rate = int(synthesizer.sample_rate)
    gap = np.zeros(int(gap_s * rate), np.float32)
    parts: list[np.ndarray] = []
    for sentence in split_sentences(speakable(text)):
        audio = synthesizer.synthesize(sentence)
        if audio.size:
            parts += [audio, gap]
    return (np.concatenate(parts[:-1]) if parts else np.zeros(0, np.float32)), rate
