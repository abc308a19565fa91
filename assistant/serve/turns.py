"""What the worker thread runs for each kind of request, given the loaded Assistant.

A chat turn starts from a clean conversation (:func:`fresh_conversation`: no request sees
another's history, queued context or image labels), takes the request's history, system prompt and sampling
for this turn only, and streams through ``Assistant.stream`` with the request's cancel event,
the pipeline's own way to stop a reply (used when the client leaves or a stop string appears).
"""

from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from assistant.errors import InputError
from assistant.serve.conversation import ChatTurn

AUDIO_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}
PCM_RATE = 24_000
"""OpenAI's ``pcm`` format: raw 16-bit little-endian mono at 24 kHz."""


@dataclass
class ChatResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    transcript: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    tool: str | None = None

    def extra(self) -> dict:
        """What the pipeline adds beyond OpenAI's fields (the response's ``synesthesia`` key)."""
        return {"transcript": self.transcript, "evidence": self.evidence, "tool": self.tool,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


class StopText:
    """Cuts streamed text at the first stop string, holding back just enough of the tail that a
    stop string split across chunks is never sent."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.buffer = ""
        self.hit = False

    def feed(self, chunk: str) -> str:
        if self.hit:
            return ""
        self.buffer += chunk
        found = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        if found:
            out, self.buffer, self.hit = self.buffer[:min(found)], "", True
            return out
        cut = max(len(self.buffer) - self.hold, 0)
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return out

    def finish(self) -> str:
        out, self.buffer = ("" if self.hit else self.buffer), ""
        return out


def run_chat(bot, chat: ChatTurn, *, sampling: dict, stops: list[str], cancel: threading.Event,
             emit: Callable[[str], None]) -> ChatResult:
    g = bot.settings.generator
    overrides = {**sampling, "history_tokens": 0}  # the client chose the history it sent: only the budget trims it
    if chat.system is not None:
        overrides["system_prompt"] = chat.system
    # A request that asks for sampling gets it, even from an assistant set to decode greedily.
    greedy = bool(getattr(bot, "greedy", False)) and not overrides.get("temperature")
    with _temporarily(g, overrides), _temporarily(bot, {"greedy": greedy}):
        fresh_conversation(bot, chat.history)
        stopper = StopText(stops)
        sent: list[str] = []
        for piece in bot.stream(turn=chat.turn, cancel=cancel):
            out = stopper.feed(piece)
            if out:
                sent.append(out)
                emit(out)
            if stopper.hit:
                cancel.set()  # the generator stops at its next token
        tail = stopper.finish()
        if tail:
            sent.append(tail)
            emit(tail)
        reply = bot.last_reply
        if reply.command is not None:  # a slash command answered: no generator involved
            prompt_tokens = completion_tokens = 0
            finish = "stop"
        else:
            system = {"role": "system", "content": g.system_prompt}
            counted = getattr(bot.generator, "prompt_tokens", None)  # a remote generator's server counts
            prompt_tokens = counted or bot.generator.count_tokens([system] + bot.history[:-1])
            completion_tokens = int(bot.generator.generated_tokens)
            finish = "length" if bot.generator.stop_reason == "length" and not stopper.hit else "stop"
        text = "".join(sent).strip() if stopper.hit else reply.text
        result = ChatResult(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, transcript=reply.transcript,
                            evidence=reply.evidence, timings=reply.timings, tool=reply.tool)
    return result


def fresh_conversation(bot, history: list[dict]) -> None:
    """Start the request's own conversation: what ``Assistant.reset()`` clears (history, last
    reply, context a plugin queued, the last image's labels), except the generator's cached keys
    and values. ``reset()`` keeps those only for the system prompt, and a chat client resends
    its whole conversation every turn: re-reading 300 tokens of history took 4.5 s instead of
    0.3 s on the 2-core VM. The cache is reused only for an exactly equal token prefix, so it
    carries nothing of one request into another. (Wanted from the pipeline: a public
    ``reset(keep_cache=True)``; tests/serve/test_isolation.py checks this stays in step with
    ``reset()``.)"""
    bot.history = list(history)
    bot.last_reply = None
    bot._pending_context.clear()
    bot._last_labels = []


def run_transcription(bot, samples: np.ndarray) -> str:
    return bot.transcribe(samples)


def run_speech(bot, text: str, response_format: str) -> bytes:
    """Text -> audio file bytes in ``response_format`` (wav, flac or pcm)."""
    import soundfile as sf

    audio, rate = bot.speak(text)
    if response_format == "pcm":
        import soxr

        pcm = soxr.resample(audio, rate, PCM_RATE) if rate != PCM_RATE else audio
        return (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    out = io.BytesIO()
    sf.write(out, audio, rate, format=response_format.upper(), subtype="PCM_16")
    return out.getvalue()


def check_speech_format(response_format: str) -> str:
    fmt = response_format.lower()
    if fmt not in AUDIO_TYPES:
        raise InputError(f"response_format {response_format!r} is not supported here; use {', '.join(AUDIO_TYPES)}")
    return fmt


@contextlib.contextmanager
def _temporarily(section, values: dict) -> Iterator[None]:
    """Set settings fields for one turn (validated by the settings model) and put them back."""
    old = {k: getattr(section, k) for k in values}
    try:
        for k, v in values.items():
            setattr(section, k, v)
        yield
    finally:
        for k, v in old.items():
            setattr(section, k, v)
