"""Built-in plugin: date, time and timers.

``/time`` (alias ``/date``) shows the local date and time; ``/timer 10m [MESSAGE]`` (alias
``/remind``) sets a timer, ``/timer`` lists them, ``/timer cancel ID`` cancels one. Requests in
words ("what time is it", "remind me in 10 minutes to check the oven") go through tools.

A timer is a daemon thread: when it fires it calls ``ctx.notify(message, "warning")`` on the
context it was set from (the TUI shows a notification; the CLI context prints a line). It only
fires while the process is running: ``assistant ask`` exits at once, so use ``chat`` or the UI.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from plugins.errors import InputError
from plugins.hookspecs import hookimpl
from plugins.types import CommandResult, ToolResult, usage_error

MAX_SECONDS = 7 * 24 * 3600

_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
    "thirty": 30, "forty": 40, "forty-five": 45, "fifty": 50, "sixty": 60, "ninety": 90,
    "a couple of": 2, "a few": 3,
}
_UNIT_RE = "|".join(sorted(_UNITS, key=len, reverse=True))
_LONG_UNIT_RE = "|".join(sorted((u for u in _UNITS if len(u) > 1), key=len, reverse=True))
_WORD_RE = "|".join(sorted((re.escape(w) for w in _NUMBER_WORDS), key=len, reverse=True))
_AND_HALF = r"(?P<andhalf{n}>\s+and\s+a\s+half)?"
_AMOUNT = re.compile(
    # "10 minutes", "1.5h", "1h30m" (digits may touch their unit)
    rf"(?<![\d.])(?P<num>\d+(?:\.\d+)?)\s*-?\s*(?P<unit>{_UNIT_RE})(?![a-z]){_AND_HALF.format(n=1)}"
    # "ten minutes", "an hour and a half" (words need a space and a spelled-out unit)
    rf"|\b(?P<word>{_WORD_RE})[\s-]+(?P<unit2>{_LONG_UNIT_RE})\b{_AND_HALF.format(n=2)}"
    # "half an hour", "half a minute"
    rf"|\bhalf\s+an?\s+(?P<unit3>{_LONG_UNIT_RE})\b",
    re.IGNORECASE,
)


def parse_duration(text: str) -> tuple[float, list[tuple[int, int]]] | None:
    """Seconds in a phrase like "10 minutes", "1h30m", "an hour and a half", "half an hour".

    Returns (seconds, spans of the matched words) or None when there is no duration.
    """
    total = 0.0
    spans: list[tuple[int, int]] = []
    for m in _AMOUNT.finditer(text):
        if m.group("num"):
            amount, unit = float(m.group("num")), m.group("unit")
        elif m.group("word"):
            amount, unit = float(_NUMBER_WORDS[m.group("word").lower()]), m.group("unit2")
        else:
            amount, unit = 0.5, m.group("unit3")
        if m.group("andhalf1") or m.group("andhalf2"):
            amount += 0.5
        total += amount * _UNITS[unit.lower()]
        spans.append(m.span())
    if not spans:
        return None
    return total, spans


def _reminder_text(text: str, spans: list[tuple[int, int]]) -> str:
    rest = text
    for start, end in sorted(spans, reverse=True):
        rest = rest[:start] + " " + rest[end:]
    rest = re.sub(r"\s+", " ", rest).strip(" ?.!")
    m = re.search(r"\b(?:to|that|about|for)\s+(.+)$", rest, re.IGNORECASE)
    message = m.group(1) if m else rest
    message = re.sub(r"^(?:remind\s+me|set\s+(?:a\s+)?timer|timer|in|for|after)\b\s*", "", message,
                     flags=re.IGNORECASE).strip(" ?.!")
    # left-overs of the request itself are not a message
    if re.fullmatch(r"(?:(?:remind|me|set|a|an|timer|start|in|for|after|please|wake|up|alarm)\s*)*",
                    message, re.IGNORECASE):
        return ""
    return message


_CLOCK_WORDS = re.compile(r"\b(?:time|date|day|today|clock|o'clock|hour|month|year|week|weekday)\b", re.I)


def describe_seconds(seconds: float) -> str:
    seconds = round(seconds, 1)
    if seconds < 60:
        return f"{seconds:g} second{'s' if seconds != 1 else ''}"
    parts = []
    whole = int(round(seconds))
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(parts)


@dataclass
class Timer:
    id: int
    message: str
    seconds: float
    due: datetime
    thread: threading.Timer = field(repr=False)
    fired: bool = False


def _deliver(ctx: Any, message: str) -> None:
    try:
        ctx.notify(message, "warning")
    except Exception:  # noqa: BLE001 - the app may be gone; the timer still says its piece
        print(message, file=sys.stderr, flush=True)


class ClockPlugin:
    """Date, time and timers. One instance per plugin host: it owns that session's timers."""

    def __init__(self, now: Callable[[], datetime] | None = None):
        self.now = now or (lambda: datetime.now().astimezone())
        self.timers: dict[int, Timer] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- the functions behind the commands and tools

    def describe_now(self) -> tuple[str, dict[str, Any]]:
        now = self.now()
        zone = now.tzname() or ""
        text = f"It is {now:%H:%M} on {now:%A}, {now.day} {now:%B %Y}" + (f" ({zone})" if zone else "") + "."
        return text, {"iso": now.isoformat(timespec="seconds"), "weekday": f"{now:%A}", "timezone": zone}

    def set_timer(self, seconds: float, message: str, ctx: Any) -> Timer:
        if seconds <= 0:
            raise InputError("a timer needs a duration above zero")
        if seconds > MAX_SECONDS:
            raise InputError(f"timers can be at most {describe_seconds(MAX_SECONDS)} long")
        with self._lock:
            timer_id = next(self._ids)
            text = f"Reminder: {message}" if message else f"Timer {timer_id} is done ({describe_seconds(seconds)})"

            def fire() -> None:
                with self._lock:
                    timer = self.timers.pop(timer_id, None)
                if timer is not None:
                    timer.fired = True
                    _deliver(ctx, text)

            thread = threading.Timer(seconds, fire)
            thread.daemon = True
            thread.name = f"synesthesia timer {timer_id}"
            timer = Timer(timer_id, message, seconds, self.now() + timedelta(seconds=seconds), thread)
            self.timers[timer_id] = timer
        thread.start()
        return timer

    def cancel(self, timer_id: int) -> Timer:
        with self._lock:
            timer = self.timers.pop(timer_id, None)
        if timer is None:
            raise InputError(f"no timer {timer_id}; pending: {self._pending_ids() or 'none'}")
        timer.thread.cancel()
        return timer

    def _pending_ids(self) -> str:
        return ", ".join(str(i) for i in sorted(self.timers))

    def close(self) -> None:
        with self._lock:
            timers, self.timers = list(self.timers.values()), {}
        for t in timers:
            t.thread.cancel()

    def _confirmation(self, timer: Timer) -> str:
        what = f" to {timer.message}" if timer.message else ""
        return (f"Timer {timer.id} set for {describe_seconds(timer.seconds)}{what}; "
                f"it goes off at {timer.due:%H:%M:%S}.")

    # -- commands

    def time_command(self, args: str, ctx: Any) -> CommandResult:
        """Show the local date and time."""
        text, data = self.describe_now()
        return CommandResult(text=text, data=data)

    def timer_command(self, args: str, ctx: Any) -> CommandResult:
        """Set a timer (/timer 10m tea), list timers (/timer), cancel one (/timer cancel 2)."""
        args = args.strip()
        if not args or args.lower() in {"list", "ls"}:
            with self._lock:
                pending = sorted(self.timers.values(), key=lambda t: t.due)
            if not pending:
                return CommandResult(text="No timers are set.", data=[])
            lines = [f"{t.id}: {t.due:%H:%M:%S}  {t.message or describe_seconds(t.seconds) + ' timer'}"
                     for t in pending]
            return CommandResult(text="\n".join(lines),
                                 data=[{"id": t.id, "due": t.due.isoformat(), "message": t.message} for t in pending])
        cancel = re.fullmatch(r"(?:cancel|stop|rm|delete)\s+(\d+)", args, re.IGNORECASE)
        if cancel:
            timer = self.cancel(int(cancel.group(1)))
            return CommandResult(text=f"Timer {timer.id} cancelled.", data={"id": timer.id})
        found = parse_duration(args)
        if found is None:
            raise usage_error("/timer DURATION [MESSAGE]   e.g. /timer 10m tea, /timer 1h30m stretch; "
                              "/timer lists, /timer cancel ID")
        seconds, spans = found
        first_end = max(end for _, end in spans)
        message = args[first_end:].strip(" ,:-") if spans[0][0] == 0 else _reminder_text(args, spans)
        message = re.sub(r"^(?:to|that|about)\s+", "", message, flags=re.IGNORECASE)
        timer = self.set_timer(seconds, message, ctx)
        return CommandResult(text=self._confirmation(timer), data={"id": timer.id, "seconds": seconds,
                                                                   "message": message})

    # -- tools

    def clock_tool(self, text: str, ctx: Any) -> ToolResult:
        now_text, data = self.describe_now()
        return ToolResult(text=now_text, data=data)

    def timer_tool(self, text: str, ctx: Any) -> ToolResult:
        found = parse_duration(text)
        if found is None:
            raise InputError("say how long, e.g. 'remind me in 10 minutes'")
        seconds, spans = found
        timer = self.set_timer(seconds, _reminder_text(text, spans), ctx)
        return ToolResult(text=self._confirmation(timer),
                          data={"id": timer.id, "seconds": seconds, "message": timer.message,
                                "due": timer.due.isoformat(timespec="seconds")})

    # -- hooks

    @hookimpl
    def register_commands(self, register):
        register(self.time_command, name="time", usage="/time", aliases=("date", "now"))
        register(self.timer_command, name="timer", usage="/timer [DURATION [MESSAGE]]",
                 aliases=("remind", "timers"))

    @hookimpl
    def register_tools(self, register):
        register(
            self.clock_tool,
            name="clock",
            description="The current local date and time.",
            examples=(
                "what time is it",
                "what's the time",
                "what is today's date",
                "what day is it today",
                "what's the date today",
                "tell me the current time",
            ),
            threshold=0.6,
            guard=lambda text: _CLOCK_WORDS.search(text) is not None,
        )
        register(
            self.timer_tool,
            name="timer",
            description="Set a timer or a reminder that goes off after a duration.",
            examples=(
                "remind me in 10 minutes to check the oven",
                "set a timer for 5 minutes",
                "start a 20 minute timer",
                "remind me in an hour to call mum",
                "wake me up in 30 seconds",
                "set an alarm for 15 minutes from now",
            ),
            guard=lambda text: parse_duration(text) is not None,
        )

