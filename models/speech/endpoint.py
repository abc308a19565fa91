"""End of turn: does a (partial) transcript read as a finished request?

The microphone path ends a turn after a long silence (``voice.end_silence_ms``), or after a
short one (``voice.quick_end_ms``) when the transcript of what was said so far already reads
as complete. Whisper punctuates, so "What is the capital of France?" ends with a question
mark; "What is the capital of" does not, and neither does a sentence that ends on a word
that needs a continuation ("and", "the", "of", "um").
"""

from __future__ import annotations

import re

__all__ = ["looks_complete"]

_DANGLING = frozenset(
    """a an the and or but so because of to for with from in on at by about as than that which who
    whose whom where when if is are was were be been my your his her its our their this these those
    um uh er erm hmm like just very really mean please what how why""".split()
)
_FINAL = re.compile(r"[.?!]['\")\]]*$")


def looks_complete(text: str) -> bool:
    """True when ``text`` ends like a finished sentence: final punctuation, at least two words
    (or one word that is a whole request, such as "Stop."), and no dangling last word."""
    text = (text or "").strip()
    if not text or text.endswith("...") or text.endswith("…") or not _FINAL.search(text):
        return False
    words = re.findall(r"[A-Za-z0-9']+", text.lower())
    if not words:
        return False
    return words[-1] not in _DANGLING
