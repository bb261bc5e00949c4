"""Numbers as people read them, for every place they are shown (CLI tables, the site, Dagster metadata): grouped
thousands instead of scientific notation (17,160 tokens/s), energy with the prefix that fits (4.6 kJ, 0.37 Wh), and
ranges in the unit of their middle value (4.6 kJ (1.1-19 kJ)). Missing values are the caller's to name
("unmeasured", "n/a"): these functions format numbers only.
"""

from __future__ import annotations

import math

DIGITS = 3
"""Significant digits shown by default: a measured figure's cycles rarely agree to more."""


def number(v: float, digits: int = DIGITS) -> str:
    """`v` with `digits` significant digits and never an exponent: 17,160; 422.5 -> 422 (3 digits); 0.0441; 0.
    Integer parts are never rounded away (17,160 stays 17,160 at 3 digits): grouped thousands read at a glance."""
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def with_unit(v: float, unit: str, digits: int = DIGITS) -> str:
    return f"{number(v, digits)} {unit}" if unit else number(v, digits)


# (from this value up, divide by, unit); the last applies below every threshold
_JOULE_PREFIXES = ((1e6, 1e6, "MJ"), (1e3, 1e3, "kJ"), (1.0, 1.0, "J"), (0.0, 1e-3, "mJ"))
_WH_PREFIXES = ((1e6, 1e6, "MWh"), (1e3, 1e3, "kWh"), (1e-2, 1.0, "Wh"), (0.0, 1e-3, "mWh"))  # 0.37 Wh stays Wh


def _prefixed(v: float, prefixes) -> tuple[float, str]:
    if v == 0:
        return next((scale, unit) for _, scale, unit in prefixes if scale == 1.0)
    for threshold, scale, unit in prefixes:
        if abs(v) >= threshold:
            return scale, unit
    return prefixes[-1][1:]


def joules(j: float, digits: int = DIGITS) -> str:
    """Energy in J with the prefix that fits: 4,600 -> '4.6 kJ', 0.5 -> '500 mJ'."""
    scale, unit = _prefixed(float(j), _JOULE_PREFIXES)
    return with_unit(float(j) / scale, unit, digits)


def watt_hours(wh: float, digits: int = DIGITS) -> str:
    """Energy in Wh with the prefix that fits: 0.37 -> '0.37 Wh', 0.00736 -> '7.36 mWh', 1,250 -> '1.25 kWh'."""
    scale, unit = _prefixed(float(wh), _WH_PREFIXES)
    return with_unit(float(wh) / scale, unit, digits)


def span(mid: float, low: float, high: float, kind: str = "number", unit: str = "", digits: int = DIGITS) -> str:
    """'mid (low-high)' with one unit, the one that fits the middle value: '4.6 kJ (1.09-19.4 kJ)'. `kind`: 'joules',
    'watt_hours' or 'number' (with `unit` appended)."""
    prefixes = {"joules": _JOULE_PREFIXES, "watt_hours": _WH_PREFIXES}.get(kind)
    scale, unit = _prefixed(float(mid), prefixes) if prefixes else (1.0, unit)
    tail = f" {unit}" if unit else ""
    lo, hi = number(low / scale, digits), number(high / scale, digits)
    return f"{number(mid / scale, digits)}{tail} ({lo}-{hi}{tail})"
