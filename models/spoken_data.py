"""Spoken training questions: the Sort-of-CLEVR questions synthesized by eSpeak NG in the
tuning voices (never an evaluation voice), with noise, and transcribed as the application hears
them (:func:`make_spoken`), plus the pieces the spoken evaluation shares (voice specs, the
eSpeak factory, noisy speech)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from models.audio_format import SAMPLE_RATE
from models.train_data import question_strings

# ------------------------------------------------------------------------------ spoken questions

SPOKEN_RATES = (140, 175, 200)
SPOKEN_PITCHES = (35, 50, 70)
SPOKEN_SNR_DB = (10.0, 30.0)
SPOKEN_CONTEXT = "scene"
"""The recognition context the application uses for a question about a scene picture
(``Assistant.recognition_context``): spoken training data is recognized the same way."""


def voice_spec(voice) -> tuple[str, int | None, int | None]:
    """(eSpeak voice name, rate or None, pitch or None) from a voice entry of
    :mod:`models.speech.voices`: a name, a (name, rate[, pitch]) tuple, or an object with
    ``voice``/``name``, ``rate`` and ``pitch`` attributes."""
    if isinstance(voice, str):
        return voice, None, None
    if isinstance(voice, (tuple, list)):
        name, *rest = voice
        return str(name), (int(rest[0]) if rest and rest[0] is not None else None), \
            (int(rest[1]) if len(rest) > 1 and rest[1] is not None else None)
    name = getattr(voice, "voice", None) or getattr(voice, "name")
    rate, pitch = getattr(voice, "rate", None), getattr(voice, "pitch", None)
    return str(name), (int(rate) if rate is not None else None), (int(pitch) if pitch is not None else None)


def check_tuning_voices(voices) -> None:
    """ValueError if any of ``voices`` is an evaluation voice (:data:`models.speech.voices.EVAL_VOICES`):
    a voice that trained the model can no longer measure it."""
    from models.speech.voices import EVAL_VOICES

    held_out = {voice_spec(v)[0] for v in EVAL_VOICES}
    clash = sorted({voice_spec(v)[0] for v in voices} & held_out)
    if clash:
        raise ValueError(f"{', '.join(clash)}: evaluation voice(s) must never make training data "
                         f"(use models.speech.voices.TUNING_VOICES)")


def espeak_factory():
    """(voice, rate, pitch) -> an eSpeak NG synthesizer, one per setting (cached)."""
    from models.speech.tts import EspeakSynthesizer

    made: dict = {}

    def get(voice: str, rate: int, pitch: int | None):
        key = (voice, rate, pitch)
        if key not in made:
            made[key] = EspeakSynthesizer(voice=voice, rate=rate, pitch=pitch)
        return made[key]

    return get


def noisy_speech(synth, text: str, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``text`` spoken by ``synth`` (anything with ``synthesize`` and ``sample_rate``), resampled
    to 16 kHz, plus white noise ``snr_db`` dB below the speech's RMS: (T,) float32 in [-1, 1]."""
    audio = _resample(np.asarray(synth.synthesize(text), np.float32), synth.sample_rate, SAMPLE_RATE)  # (T,) 16 kHz
    rms = float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    noise = rng.normal(0, (rms or 1e-3) * 10 ** (-snr_db / 20), audio.shape).astype(np.float32)
    return np.clip(audio + noise, -1, 1).astype(np.float32)


def spoken_questions(canonical_only: bool = False) -> list[str]:
    """The question strings :func:`make_spoken` speaks: every form of the six question types
    for every colour and every description request (or only the canonical forms)."""
    return [v[0] for (_kind, _c, t), v in question_strings(0).items() if t == 0 or not canonical_only]


def make_spoken(path: str | Path, *, voices=None, rates=SPOKEN_RATES, pitches=SPOKEN_PITCHES,
                snr_db=SPOKEN_SNR_DB, renditions: int = 4, canonical_only: bool = False, seed: int = 0,
                limit: int | None = None, recognizer=None, synthesizer=None, context: str | None = SPOKEN_CONTEXT,
                log=print) -> Path:
    """Synthesize the questions with eSpeak NG in the tuning voices (never an evaluation voice),
    rates and pitches (drawn from ``rates`` and ``pitches`` per rendition), add white noise at
    a random signal-to-noise ratio, and write what the
    application's default recognizer hears, as JSON::

        {"recognizer": name, "context": "scene", "voices": [...],
         "transcripts": {question: [heard per rendition]}, "settings": {question: [...]}}

    ``recognizer``: default ``load_recognizer("whisper")`` (Whisper tiny.en), asked with
    ``context="scene"`` as the application asks about a scene picture. ``voices``: default
    :data:`models.speech.voices.TUNING_VOICES` (rotating per question and rendition); an
    evaluation voice is refused. ``synthesizer``: ``(voice, rate, pitch) -> synthesizer``
    (default eSpeak NG). The last rendition of each question is kept out of training (see
    :func:`load_spoken`) for the training-time spoken check; the real spoken evaluation
    (``assistant eval --only spoken``) synthesizes with the evaluation voices instead.

    Resumable: questions already in the file are skipped, unless it was made by another
    recognizer or context (then it is made again from scratch)."""
    if voices is None:
        from models.speech.voices import TUNING_VOICES

        voices = TUNING_VOICES
    voices = list(voices)
    check_tuning_voices(voices)
    if recognizer is None:
        from models.speech.asr import load_recognizer

        recognizer = load_recognizer("whisper")
    synthesizer = synthesizer or espeak_factory()
    path = Path(path)
    name = getattr(recognizer, "name", type(recognizer).__name__)
    header = {"recognizer": name, "context": context, "voices": [voice_spec(v)[0] for v in voices]}
    done: dict = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if {k: done.get(k) for k in ("recognizer", "context")} != {k: header[k] for k in ("recognizer", "context")}:
        if done:
            log(f"{path}: made by {done.get('recognizer', 'another recognizer')}; making it again with {name}")
        done = {}
    done = {**header, "transcripts": done.get("transcripts", {}), "settings": done.get("settings", {})}
    questions = spoken_questions(canonical_only)
    if limit:
        questions = questions[:limit]
    t0 = time.time()
    for qi, q in enumerate(questions):
        if q in done["transcripts"]:
            continue
        rng = np.random.default_rng([seed, qi])
        heard, settings = [], []
        for j in range(renditions):
            voice, _rate, vpitch = voice_spec(voices[(qi + j) % len(voices)])
            rate = int(rng.choice(rates))  # every rate, not only the voice's usual one: robustness
            pitch = vpitch if vpitch is not None else int(rng.choice(pitches))
            snr = float(rng.uniform(*snr_db))
            audio = noisy_speech(synthesizer(voice, rate, pitch), q, snr, rng)  # (T,) float32, 16 kHz
            text = recognizer.transcribe(audio, context=context) if context else recognizer.transcribe(audio)
            heard.append(text.strip())
            settings.append({"voice": voice, "rate": rate, "pitch": pitch, "snr_db": round(snr, 1)})
        done["transcripts"][q] = heard
        done["settings"][q] = settings
        path.write_text(json.dumps(done, indent=1), encoding="utf-8")
        log(f"spoken {qi + 1}/{len(questions)} ({time.time() - t0:.0f} s): {q!r} -> {heard}")
    return path


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio
    import soxr

    return soxr.resample(audio, rate, target).astype(np.float32)
