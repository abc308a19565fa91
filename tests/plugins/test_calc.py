"""The built-in calculator: safe arithmetic through /calc and the calculator tool."""

from __future__ import annotations

import math

import pytest

from assistant.errors import InputError
from plugins.builtin import calc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("17% of 230", 39.1),
        ("17 percent of 230", 39.1),
        ("(3 + 4) * 2", 14),
        ("2^10", 1024),
        ("2 to the power of 10", 1024),
        ("10 % 3", 1),
        ("200 * 15%", 30),
        ("1,000,000 / 4", 250000),
        ("3 plus 5 times 2", 13),
        ("1500 divided by 12", 125),
        ("square root of 144", 12),
        ("sqrt(2) * sqrt(2)", 2.0),
        ("5!", 120),
        ("7 x 6", 42),
        ("-3 ** 2", -9),
        ("pi * 2", math.tau),
        ("log(8, 2)", 3.0),
        ("max(3, 9, 4)", 9),
        ("7 // 2", 3),
    ],
)
def test_evaluates_arithmetic(text, expected):
    assert calc.evaluate(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("__import__('os').system('echo hi')", "not allowed"), ("__import__('os')", "unknown function '__import__'"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("(1).__class__", "not allowed"),
        ("[1, 2, 3]", "not allowed"),
        ("'a' * 3", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("1 / 0", "division by zero"),
        ("9 ** 9 ** 9", "too large"),
        ("factorial(100000)", "too large"),
        ("sqrt(-1)", "math error"),
        ("10 ** 400.0", "too large"),
        ("1 +", "not an arithmetic expression"),
        ("1" * 400, "longer than"),
    ],
)
def test_refuses_anything_but_arithmetic(text, problem):
    with pytest.raises(InputError, match=problem):
        calc.evaluate(text)


def test_never_calls_eval(monkeypatch):
    import builtins

    def forbidden(*a, **k):
        raise AssertionError("eval/exec must not be used")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert calc.evaluate("6 * 7") == 42


def test_calc_command(host, ctx):
    result = host.run_command("/calc 17% of 230", ctx)
    assert result.text == "17% of 230 = 39.1"
    assert result.data["result"] == pytest.approx(39.1)
    assert host.run_command("/calc 2**100", ctx).text.endswith("= 1267650600228229401496703205376")


def test_calc_command_errors_are_input_errors(host, ctx):
    with pytest.raises(InputError, match="usage: /calc"):
        host.run_command("/calc", ctx)
    with pytest.raises(InputError, match="division by zero"):
        host.run_command("/calc 1/0", ctx)


@pytest.mark.parametrize(
    ("request_text", "expression"),
    [
        ("what is 17% of 230", "17% of 230"),
        ("What's 45 times 12?", "45 times 12"),
        ("could you calculate (2+3)*4 please", "(2+3)*4"),
        ("how much is 1500 divided by 12?", "1500 divided by 12"),
    ],
)
def test_extracts_calculation_from_request(request_text, expression):
    assert calc.extract(request_text) == expression


@pytest.mark.parametrize(
    "request_text",
    ["what is the capital of France?", "what is 5", "I have 3 cats", "what's the time", "what is love"],
)
def test_no_calculation_in_other_requests(request_text):
    assert calc.extract(request_text) is None


def test_calculator_tool_result(host, ctx):
    result = host.run_tool("calculator", "what is 17% of 230?", ctx)
    assert result.ok and result.tool == "calculator"
    assert result.text == "17% of 230 = 39.1"
    assert result.data["result"] == pytest.approx(39.1)


def test_calculator_tool_reports_math_problems(host, ctx):
    result = host.run_tool("calculator", "what is 5 divided by 0", ctx)
    assert result is not None and not result.ok
    assert "division by zero" in result.text
