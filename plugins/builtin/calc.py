"""Built-in plugin: safe arithmetic. ``/calc EXPR`` and requests like "what is 17% of 230".

The expression is parsed with :mod:`ast` and walked by hand: only numbers, + - * / // % **,
parentheses, a few math functions and constants are allowed; nothing is ever ``eval``-ed.
Huge powers and factorials are refused before they are computed.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from typing import Any, Callable

from plugins.errors import InputError
from plugins.hookspecs import hookimpl
from plugins.types import CommandResult, ToolResult, usage_error

MAX_LENGTH = 300
MAX_INT_BITS = 100_000
MAX_FACTORIAL = 1000


def _log(x: float, base: float | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


def _factorial(n: Any) -> int:
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or n < 0:
        raise InputError("factorial needs a whole number ≥ 0")
    if n > MAX_FACTORIAL:
        raise InputError(f"factorial of more than {MAX_FACTORIAL} is too large")
    return math.factorial(n)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "cbrt": lambda x: math.copysign(abs(x) ** (1 / 3), x),
    "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "log": _log, "ln": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
    "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
    "min": min, "max": max, "factorial": _factorial, "hypot": math.hypot,
    "degrees": math.degrees, "radians": math.radians,
}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}

_NUM = r"\d+(?:\.\d+)?|\.\d+"
# Word forms, applied in order (longer phrases first).
_WORDS = [
    (r"\bmultiplied\s+by\b", "*"), (r"\btimes\b", "*"), (r"\bdivided\s+by\b", "/"),
    (r"\bover\b", "/"), (r"\bplus\b", "+"), (r"\bminus\b", "-"), (r"\bmod(?:ulo)?\b", "%"),
    (r"\bto\s+the\s+power\s+of\b", "**"), (r"\bto\s+the\s+power\b", "**"), (r"\bsquared\b", "**2"),
    (r"\bcubed\b", "**3"), (r"\bsquare\s+root\s+of\b", "sqrt"), (r"\bcube\s+root\s+of\b", "cbrt"),
    (r"\bthe\s+", ""),
]
_LEADING = re.compile(
    r"^(?:hey\s+|ok(?:ay)?\s+)?(?:please\s+)?(?:(?:can|could|would)\s+you\s+)?(?:please\s+)?"
    r"(?:tell\s+me\s+)?(?:what\s+is|what's|whats|what\s+are|how\s+much\s+is|calculate|compute|"
    r"evaluate|work\s+out|solve|figure\s+out)\s+",
    re.IGNORECASE,
)
_TRAILING = re.compile(r"[\s?.!=]*(?:please)?[\s?.!=]*$", re.IGNORECASE)


def normalise(text: str) -> str:
    """Turn a written calculation into Python syntax (still to be parsed safely)."""
    s = text.strip().lower()
    for a, b in (("×", "*"), ("·", "*"), ("÷", "/"), ("−", "-"), ("–", "-"), ("^", "**")):
        s = s.replace(a, b)
    if "(" not in s:
        s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # 1,000,000 -> 1000000
    for pattern, repl in _WORDS:
        s = re.sub(pattern, repl, s)
    # "17% of 230", "17 percent of 230" -> (17/100)*230
    s = re.sub(rf"({_NUM})\s*(?:%|percent|per\s+cent)\s+of\s+", r"(\1/100)*", s)
    # a percentage standing alone ("230 * 17%") -> (17/100); "10 % 3" stays modulo
    s = re.sub(rf"({_NUM})\s*(?:%|percent|per\s+cent)(?=\s*(?:$|[)+\-*/]))", r"(\1/100)", s)
    # "5 x 3" -> 5 * 3
    s = re.sub(rf"(?<=\d)\s*x\s*(?=\d|\.\d)", "*", s)
    # "sqrt 144" -> sqrt(144)
    names = "|".join(FUNCTIONS)
    s = re.sub(rf"\b({names})\s+({_NUM})", r"\1(\2)", s)
    # "5!" -> factorial(5)
    s = re.sub(rf"({_NUM})!", r"factorial(\1)", s)
    return s.strip()


def _check_power(base: Any, exp: Any) -> None:
    if isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1:
        if exp * abs(base).bit_length() > MAX_INT_BITS:
            raise InputError("that power is too large to compute")


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        value = _BINARY[type(node.op)](left, right)
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise InputError("the result is too large")
        if isinstance(value, complex):
            raise InputError("the result is not a real number")
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
            and not node.keywords and node.args):
        return FUNCTIONS[node.func.id](*[_eval(a) for a in node.args])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in FUNCTIONS:
        raise InputError(f"unknown function {node.func.id!r}; functions: {', '.join(sorted(FUNCTIONS))}")
    if isinstance(node, ast.Name):
        raise InputError(f"unknown name {node.id!r}; functions: {', '.join(sorted(FUNCTIONS))}; "
                         f"constants: {', '.join(CONSTANTS)}")
    raise InputError(f"not allowed in a calculation: {ast.unparse(node)!r}")


def parse(expression: str) -> ast.Expression:
    """Parse a (normalised) expression; InputError if it is not arithmetic."""
    if len(expression) > MAX_LENGTH:
        raise InputError(f"expression longer than {MAX_LENGTH} characters")
    try:
        return ast.parse(expression, mode="eval")
    except SyntaxError as e:
        raise InputError(f"not an arithmetic expression: {expression!r}") from e


def evaluate(text: str) -> int | float:
    """The value of a calculation written in symbols or words. Raises InputError."""
    tree = parse(normalise(text))
    try:
        value = _eval(tree)
    except ZeroDivisionError as e:
        raise InputError("division by zero") from e
    except OverflowError as e:
        raise InputError("the result is too large") from e
    except (ValueError, TypeError) as e:
        raise InputError(f"math error: {e}") from e
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise InputError("the result is not a finite number")
    return value


def format_number(value: int | float) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    if value.bit_length() > 200:
        return f"{float(value):.12g}" if value.bit_length() < 1000 else f"a {len(str(value))}-digit number"
    return str(value)


def extract(request: str) -> str | None:
    """The calculation inside a request in words, if there is one worth computing."""
    s = _LEADING.sub("", request.strip())
    s = _TRAILING.sub("", s).strip()
    if not s or not re.search(r"\d|\bpi\b", s):
        return None
    try:
        tree = parse(normalise(s))
    except InputError:
        return None
    has_operation = any(isinstance(n, (ast.BinOp, ast.Call)) for n in ast.walk(tree))
    return s if has_operation else None


def calc_command(args: str, ctx: Any) -> CommandResult:
    """Calculate an arithmetic expression: /calc 17% of 230, /calc sqrt(2)*3."""
    if not args.strip():
        raise usage_error("/calc EXPRESSION   e.g. /calc (3 + 4) * 2, /calc 17% of 230")
    value = evaluate(args)
    return CommandResult(text=f"{args.strip()} = {format_number(value)}",
                         data={"expression": args.strip(), "result": value})


def calculator_tool(text: str, ctx: Any) -> ToolResult:
    expression = extract(text) or text
    value = evaluate(expression)
    shown = format_number(value)
    return ToolResult(text=f"{expression} = {shown}", data={"expression": expression, "result": value})


@hookimpl
def register_commands(register):
    register(calc_command, name="calc", usage="/calc EXPR")


@hookimpl
def register_tools(register):
    register(
        calculator_tool,
        name="calculator",
        description="Arithmetic: percentages, + - * /, powers, square roots.",
        examples=(
            "what is 17% of 230",
            "calculate 12 * 7",
            "what's 2 to the power of 10",
            "how much is 1500 divided by 12",
            "what is the square root of 144",
            "what is 3 plus 5 times 2",
            "compute 15 percent of 80",
            "what's 45 times 12",
            "how much is 2^16",
            "what is 1234 / 7",
        ),
        # extract() is strict (it needs a parseable calculation), so the similarity bar is low.
        threshold=0.4,
        guard=lambda text: extract(text) is not None,
    )
