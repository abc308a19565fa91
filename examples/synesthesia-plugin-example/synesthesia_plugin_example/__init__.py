"""Unit conversion for Synesthesia: a ``/convert`` command and a ``unit_converter`` tool.

Both hooks receive a ``register`` callback; the command and the tool share one parser.
"""

from __future__ import annotations

import re

from plugins.errors import InputError
from plugins import CommandResult, ToolResult, hookimpl

__version__ = "0.1.0"
SYNESTHESIA_PLUGIN_API = 1  # the plugin contract this package was written for (docs/PLUGINS.md)

# unit name -> (dimension, factor to the base unit); temperatures are handled apart.
UNITS: dict[str, tuple[str, float]] = {}


def _add(dimension: str, factor: float, *names: str) -> None:
    for name in names:
        UNITS[name] = (dimension, factor)


_add("length", 1.0, "m", "meter", "meters", "metre", "metres")
_add("length", 1000.0, "km", "kilometer", "kilometers", "kilometre", "kilometres")
_add("length", 0.01, "cm", "centimeter", "centimeters", "centimetre", "centimetres")
_add("length", 0.001, "mm", "millimeter", "millimeters", "millimetre", "millimetres")
_add("length", 1609.344, "mi", "mile", "miles")
_add("length", 0.3048, "ft", "foot", "feet")
_add("length", 0.0254, "in", "inch", "inches")
_add("length", 0.9144, "yd", "yard", "yards")
_add("mass", 1.0, "kg", "kilogram", "kilograms", "kilo", "kilos")
_add("mass", 0.001, "g", "gram", "grams")
_add("mass", 0.45359237, "lb", "lbs", "pound", "pounds")
_add("mass", 0.028349523125, "oz", "ounce", "ounces")
_add("volume", 1.0, "l", "liter", "liters", "litre", "litres")
_add("volume", 0.001, "ml", "milliliter", "milliliters", "millilitre", "millilitres")
_add("volume", 3.785411784, "gal", "gallon", "gallons")
_add("temperature", 1.0, "c", "°c", "celsius", "degrees celsius")
_add("temperature", 1.0, "f", "°f", "fahrenheit", "degrees fahrenheit")
_add("temperature", 1.0, "k", "kelvin", "kelvins")

_UNIT = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
_REQUEST = re.compile(
    rf"(?P<value>-?\d+(?:\.\d+)?)\s*(?P<src>{_UNIT})\b.*?\b(?:to|in|into|as)\s+(?P<dst>{_UNIT})\b"
    rf"|(?:how\s+many|how\s+much)\s+(?P<dst2>{_UNIT})\b.*?(?P<value2>-?\d+(?:\.\d+)?)\s*(?P<src2>{_UNIT})\b",
    re.IGNORECASE,
)


def _to_kelvin(value: float, unit: str) -> float:
    unit = unit.lstrip("°")[0]
    return {"c": value + 273.15, "f": (value - 32) * 5 / 9 + 273.15, "k": value}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    unit = unit.lstrip("°")[0]
    return {"c": value - 273.15, "f": (value - 273.15) * 9 / 5 + 32, "k": value}[unit]


def parse(text: str) -> tuple[float, str, str] | None:
    """(value, from-unit, to-unit) found in a request, or None."""
    m = _REQUEST.search(text)
    if not m:
        return None
    if m.group("value") is not None:
        return float(m.group("value")), m.group("src"), m.group("dst")
    return float(m.group("value2")), m.group("src2"), m.group("dst2")


def convert(value: float, src: str, dst: str) -> float:
    src, dst = src.lower(), dst.lower()
    (dim_a, fa), (dim_b, fb) = UNITS[src], UNITS[dst]
    if dim_a != dim_b:
        raise InputError(f"cannot convert {dim_a} ({src}) to {dim_b} ({dst})")
    if dim_a == "temperature":
        return _from_kelvin(_to_kelvin(value, src), dst)
    return value * fa / fb


def _answer(text: str) -> tuple[str, dict]:
    found = parse(text)
    if found is None:
        raise InputError("say what to convert, e.g. /convert 5 km to mi")
    value, src, dst = found
    result = convert(value, src, dst)
    shown = f"{result:.4g}" if abs(result) < 1e6 else f"{result:.6g}"
    return f"{value:g} {src} = {shown} {dst}", {"value": value, "from": src, "to": dst, "result": result}


def convert_command(args: str, ctx) -> CommandResult:
    """Convert between units: /convert 5 km to mi, /convert 70 F to C."""
    text, data = _answer(args)
    return CommandResult(text=text, data=data)


def unit_tool(text: str, ctx) -> ToolResult:
    answer, data = _answer(text)
    return ToolResult(text=answer, data=data)


@hookimpl
def register_commands(register):
    register(convert_command, name="convert", usage="/convert VALUE UNIT to UNIT")


@hookimpl
def register_tools(register):
    register(
        unit_tool,
        name="unit_converter",
        description="Convert lengths, masses, volumes and temperatures between units.",
        examples=(
            "how many miles is 10 km",
            "convert 30 celsius to fahrenheit",
            "what is 5 pounds in kilograms",
            "how many feet are in 3 meters",
            "2 gallons in liters",
        ),
        guard=lambda text: parse(text) is not None,
    )
