"""What the assistant expects to hear: the in-domain text its speech recognizer is adapted to.

The phrases come from three places:

* the assistant's own commands and common requests to a multimodal assistant;
* Sort-of-CLEVR questions (the visual-reasoning task the fusion core is trained on), every
  colour and shape combination: "What is the shape of the red object?", "Is the blue object
  on the left or right of the image?", "How many objects have the same shape as the green
  object?", ...;
* phrases the caller adds (plugin example phrases, command names), through
  ``extra_phrases``.

:func:`domain_corpus` returns normalised sentences (lower case, words only) from which
:mod:`models.speech.asr` builds a trigram language model. :func:`normalise` is the same
normalisation the word error rate uses, so "What's 2 + 2?" and "what's two plus two" agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from models.clevr import COLOURS, SHAPES

__all__ = ["clevr_questions", "assistant_phrases", "domain_corpus", "normalise", "word_errors", "word_error_rate"]


COMMANDS = (
    "help", "quit", "exit", "stop", "cancel", "clear", "new chat", "reset", "retry", "undo",
    "settings", "models", "devices", "history", "search history", "save", "export",
    "speak replies", "stop speaking", "be quiet", "start listening", "stop listening",
    "attach an image", "attach a file", "read this file", "open the settings",
    "show the models", "list the devices", "turn on voice", "turn off voice", "louder", "slower",
    "faster", "repeat that", "say that again", "yes", "no", "thank you", "thanks", "okay", "hello",
    "good morning", "good night", "goodbye",
)

REQUESTS = (
    "what is in this image", "what is in this picture", "describe this image",
    "describe the picture", "what do you see", "what can you see in the photo",
    "what animal is this", "what color is the car", "how many people are in the picture",
    "is there a cat in the image", "is this a dog or a cat", "what does the sign say",
    "transcribe this audio", "what did they say", "summarize the recording",
    "summarize this file", "read the text in the image", "what is this object",
    "what is the capital of france", "what is the capital of germany", "what time is it",
    "what is the date today", "what is the weather like today", "tell me a joke",
    "tell me a story", "who are you", "what can you do", "how are you", "what is your name",
    "can you help me", "explain this to me", "explain it more simply", "give me an example",
    "translate this into french", "write a short poem", "write a python function",
    "how do i write a for loop in python", "what does this code do", "fix this error",
    "what is the meaning of this word", "how do you spell necessary", "define photosynthesis",
    "what is two plus two", "what is ten times five", "convert ten miles to kilometers",
    "set a timer for five minutes", "remind me to call my mother", "who wrote hamlet",
    "who was albert einstein", "how far is the moon", "how tall is mount everest",
    "what is machine learning", "what is a neural network", "tell me more",
    "can you say that again", "please speak more slowly", "i did not understand",
    "what do you mean", "that is wrong", "that is right", "go on", "continue",
)


def clevr_questions() -> list[str]:
    """Every Sort-of-CLEVR question form, for every colour (and shape where it appears)."""
    out: list[str] = []
    for c in COLOURS:
        obj = f"the {c} object"
        out += [
            f"what is the shape of {obj}",
            f"what shape is {obj}",
            f"is {obj} on the left or right of the image",
            f"is {obj} on the left or the right of the image",
            f"is {obj} on the top or bottom of the image",
            f"is {obj} at the top or the bottom of the image",
            f"is {obj} a circle or a square",
            f"what is the shape of the object that is closest to {obj}",
            f"what is the shape of the object closest to {obj}",
            f"what is the shape of the object that is furthest from {obj}",
            f"what is the shape of the object furthest from {obj}",
            f"what is the color of the object closest to {obj}",
            f"what is the color of the object furthest from {obj}",
            f"how many objects have the same shape as {obj}",
            f"how many objects have the same color as {obj}",
            f"where is {obj}",
            f"is there a {c} object",
        ]
        for s in SHAPES:
            out += [f"is there a {c} {s}", f"where is the {c} {s}", f"how many {s}s are there"]
    out += [
        "how many objects are there", "how many objects are in the image", "how many circles are there",
        "how many squares are there", "what colors are the objects", "which object is on the left",
        "which object is closest to the center", "what is the shape of the object in the middle",
    ]
    return out


def assistant_phrases() -> list[str]:
    return list(COMMANDS) + list(REQUESTS)


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _number(rest))
    if n < 1_000_000:
        rest = n % 1000
        return _number(n // 1000) + " thousand" + ("" if rest == 0 else " " + _number(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


_SPOKEN = {"+": " plus ", "=": " equals ", "%": " percent ", "&": " and ", "@": " at "}


def normalise(text: str) -> str:
    """Lower case words only: digits spelled out, punctuation gone, apostrophes kept in words."""
    text = text.lower().replace("’", "'")
    for sym, word in _SPOKEN.items():
        text = text.replace(sym, word)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"\d+", lambda m: " " + _number(int(m.group(0))) + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def domain_corpus(extra_phrases: Iterable[str] = ()) -> list[str]:
    """Normalised in-domain sentences (duplicates removed, order kept)."""
    seen: dict[str, None] = {}
    for phrase in [*assistant_phrases(), *clevr_questions(), *extra_phrases]:
        norm = normalise(str(phrase))
        if norm:
            seen.setdefault(norm, None)
    return list(seen)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words) after :func:`normalise`: substitutions + deletions + insertions
    of the word alignment jiwer finds."""
    import jiwer  # here, not at the top: speech recognition imports this module, scoring is rarer

    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:  # nothing to hear: every word heard is an insertion
        return len(hyp.split()), 0
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref.split())


def word_error_rate(pairs: Iterable[tuple[str, str]]) -> float:
    """Corpus WER over (reference, hypothesis) pairs: total edits / total reference words."""
    edits = words = 0
    for ref, hyp in pairs:
        e, n = word_errors(ref, hyp)
        edits, words = edits + e, words + n
    return edits / max(words, 1)
