"""Unit words that may follow a numeric answer, with conversion factors inside one dimension.

A unit is only used to convert when both answers carry known units of the same dimension; otherwise units are
labels and are ignored (a gold `15 cm^2` accepts a bare `15`).
"""

from __future__ import annotations

from fractions import Fraction

F = Fraction

# word -> (dimension, factor to the dimension's base unit)
_TABLE: dict[str, tuple[str, Fraction]] = {}


def _add(dim: str, factor: Fraction | int, *words: str) -> None:
    for w in words:
        _TABLE[w] = (dim, F(factor))


_add("length", F(1, 1000), "mm", "millimeter", "millimeters", "millimetre", "millimetres")
_add("length", F(1, 100), "cm", "centimeter", "centimeters", "centimetre", "centimetres")
_add("length", 1, "m", "meter", "meters", "metre", "metres")
_add("length", 1000, "km", "kilometer", "kilometers", "kilometre", "kilometres")
_add("length", F(254, 10000), "in", "inch", "inches")
_add("length", F(3048, 10000), "ft", "foot", "feet")
_add("length", F(9144, 10000), "yd", "yard", "yards")
_add("length", F(1609344, 1000), "mi", "mile", "miles")
_add("time", 1, "s", "sec", "secs", "second", "seconds")
_add("time", 60, "min", "mins", "minute", "minutes")
_add("time", 3600, "h", "hr", "hrs", "hour", "hours")
_add("time", 86400, "day", "days")
_add("time", 604800, "week", "weeks", "wk", "wks")
_add("mass", F(1, 1000), "g", "gram", "grams")
_add("mass", 1, "kg", "kilogram", "kilograms", "kilo", "kilos")
_add("mass", F(45359237, 100000000), "lb", "lbs", "pound", "pounds")
_add("mass", F(45359237, 1600000000), "oz", "ounce", "ounces")
_add("volume", F(1, 1000), "ml", "milliliter", "milliliters", "millilitre", "millilitres")
_add("volume", 1, "l", "liter", "liters", "litre", "litres")
_add("money", 1, "dollar", "dollars", "usd", "bucks")
_add("money", F(1, 100), "cent", "cents", "c")

# Words that mark an angle in degrees or a percentage rather than a unit.
DEGREE_WORDS = frozenset({"degree", "degrees", "deg"})
PERCENT_WORDS = frozenset({"percent", "pct", "percentage"})

# Two-letter (or shorter) words only count as units right after a number; longer words always do.
SHORT_UNIT_WORDS = frozenset(w for w in _TABLE if len(w) <= 2) | {"pm", "am", "sq", "cu"}


def unit_info(word: str) -> tuple[str, Fraction] | None:
    """(dimension, factor) for a known unit word, else None."""
    return _TABLE.get(word.lower())


def split_unit(unit: str) -> tuple[str, int] | None:
    """Main known unit word of a unit phrase and its power (`square feet` -> (`feet`, 2)), else None."""
    words = unit.lower().replace("^", " ^").split()
    power = 1
    known = [w for w in words if w in _TABLE]
    if "square" in words or "sq" in words or "^2" in words:
        power = 2
    if "cubic" in words or "cu" in words or "^3" in words:
        power = 3
    if len(known) != 1 or "per" in words or "/" in unit:
        return None
    return known[0], power


def convert_factor(from_unit: str, to_unit: str) -> Fraction | None:
    """Multiplier taking a value in `from_unit` to `to_unit` when both are known and compatible, else None."""
    a, b = split_unit(from_unit), split_unit(to_unit)
    if a is None or b is None or a[1] != b[1]:
        return None
    da, fa = _TABLE[a[0]]
    db, fb = _TABLE[b[0]]
    if da != db:
        return None
    return (fa / fb) ** a[1]
