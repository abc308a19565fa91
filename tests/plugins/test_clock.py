"""The built-in clock: date and time, durations, timers that fire a notification."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from assistant.errors import InputError
from plugins.builtin.clock import ClockPlugin, describe_seconds, parse_duration
from assistant.plugin_host import PluginHost
from plugins.types import BasicContext

FIXED = datetime(2026, 11, 28, 21, 3, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10 minutes", 600),
        ("remind me in 10 minutes to check the oven", 600),
        ("1h30m", 5400),
        ("an hour and a half", 5400),
        ("half an hour", 1800),
        ("2 hours and 15 minutes", 8100),
        ("90 s", 90),
        ("1.5 hours", 5400),
        ("ten minutes", 600),
        ("a 20-minute timer", 1200),
        ("in 0.2 seconds", 0.2),
    ],
)
def test_parse_duration(text, seconds):
    found = parse_duration(text)
    assert found is not None
    assert found[0] == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["I am here", "what time is it", "see you at 5", "remember when we met"])
def test_no_duration(text):
    assert parse_duration(text) is None


def test_describe_seconds():
    assert describe_seconds(5400) == "1 hour 30 minutes"
    assert describe_seconds(1) == "1 second"
    assert describe_seconds(0.5) == "0.5 seconds"


def _clock_host(clock: ClockPlugin) -> PluginHost:
    host = PluginHost(timeout_s=2)
    host.add_plugin(clock, "clock", source="builtin", version="test", trusted=True)
    return host


def test_time_command_and_tool_use_the_clock():
    host = _clock_host(ClockPlugin(now=lambda: FIXED))
    ctx = BasicContext()
    result = host.run_command("/time", ctx)
    assert result.text == "It is 21:03 on Saturday, 28 November 2026 (UTC)."
    assert result.data["iso"] == "2026-11-28T21:03:00+00:00"
    assert host.run_command("/date", ctx).text == result.text  # alias
    tool = host.run_tool("clock", "what's the date today?", ctx)
    assert tool.text == result.text and tool.data["weekday"] == "Saturday"


def test_timer_fires_a_notification_through_the_context():
    clock = ClockPlugin()
    host = _clock_host(clock)
    fired = threading.Event()
    got: list[tuple[str, str]] = []

    def on_notify(message, severity):
        got.append((message, severity))
        fired.set()

    ctx = BasicContext(on_notify=on_notify)
    result = host.run_tool("timer", "remind me in 0.2 seconds to check the oven", ctx)
    assert result.ok and result.data["message"] == "check the oven"
    assert "Timer 1 set for 0.2 seconds to check the oven" in result.text
    assert clock.timers  # pending
    assert fired.wait(5), "the timer did not fire"
    assert got == [("Reminder: check the oven", "warning")]
    assert not clock.timers


def test_timer_without_app_prints_on_stderr(capsys):
    clock = ClockPlugin()
    host = _clock_host(clock)
    host.run_command("/timer 0.1s tea", BasicContext())  # no on_notify: the CLI's stand-in
    timer = next(iter(clock.timers.values()))
    timer.thread.join(5)
    assert "Reminder: tea" in capsys.readouterr().err


def test_timer_list_and_cancel():
    clock = ClockPlugin(now=lambda: FIXED)
    host = _clock_host(clock)
    ctx = BasicContext()
    first = host.run_command("/timer 10m tea", ctx)
    assert first.text == "Timer 1 set for 10 minutes to tea; it goes off at 21:13:00."
    host.run_command("/remind 1h call mum", ctx)
    listing = host.run_command("/timer", ctx)
    assert listing.text.splitlines() == ["1: 21:13:00  tea", "2: 22:03:00  call mum"]
    assert host.run_command("/timer cancel 1", ctx).text == "Timer 1 cancelled."
    assert [t["id"] for t in host.run_command("/timers", ctx).data] == [2]
    with pytest.raises(InputError, match="no timer 7; pending: 2"):
        host.run_command("/timer cancel 7", ctx)
    host.close()
    assert clock.timers == {}


@pytest.mark.parametrize(("line", "problem"), [("/timer soon", "usage: /timer"), ("/timer 30 days", "at most")])
def test_timer_bad_input(line, problem):
    host = _clock_host(ClockPlugin())
    with pytest.raises(InputError, match=problem):
        host.run_command(line, BasicContext())
