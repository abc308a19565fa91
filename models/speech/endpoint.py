"""End of turn: does a (partial) transcript read as a finished request?

The microphone path ends a turn after a long silence (``voice.end_silence_ms``), or after a
short one (``voice.quick_end_ms``) when the transcript of what was said so far already reads
as complete. Whisper punctuates, so "What is the capital of France?" ends with a question
mark; "What is the capital of" does not, and neither does a sentence that ends on a word
that needs a continuation ("and", "the", "of", "um"). These rules were written by hand, not
fitted to any recordings.
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


_STARTERS = frozenset(
    """what who whom whose where when why how which is are was were do does did can could will would
    should shall may might tell give show read describe set start stop remind play find list open
    explain summarise summarize translate count name define say""".split()
)


def looks_complete(text: str) -> bool:
    """True when ``text`` ends like a finished request.

    With final punctuation: at least one word and no dangling last word. Without it (Whisper
    sometimes leaves a short command bare: "Tell me a joke"): at least three words, starting
    like a question or a command, with no dangling last word."""
    text = (text or "").strip()
    if not text or text.endswith("...") or text.endswith("…"):
        return False
    words = re.findall(r"[A-Za-z0-9']+", text.lower())
    if not words or words[-1] in _DANGLING:
        return False
    if _FINAL.search(text):
        return True
    return len(words) >= 3 and words[0] in _STARTERS
