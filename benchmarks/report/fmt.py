"""Number and table formatting for the report: one place, so every block prints figures the same way."""

from __future__ import annotations

import math
from collections.abc import Iterable

MINUS = "−"  # the doc's minus sign in signed percentages


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def f(x: float | None, digits: int = 1) -> str:
    """Fixed decimals; a missing value prints as '–' (never as 0)."""
    return "–" if missing(x) else f"{x:.{digits}f}"


def g(x: float | None, sig: int = 4) -> str:
    """Significant digits, trailing zeros kept (0.01280, 1.0123): J/token and ratios."""
    if missing(x):
        return "–"
    decimals = sig - 1 - math.floor(math.log10(abs(x))) if x else sig - 1
    return f"{x:.{max(0, decimals)}f}"


def pct(x: float | None, digits: int = 2, signed: bool = False) -> str:
    """A fraction as a percentage: 0.0047 -> '0.47 %'; signed: '+3.3 %' / '−1.4 %'."""
    if missing(x):
        return "–"
    text = f"{abs(x) * 100:.{digits}f} %"
    if signed:
        return ("+" if x >= 0 else MINUS) + text
    return ("-" if x < 0 else "") + text


def span(lo: float, hi: float, fmt=f, *args) -> str:
    """'lo–hi' with one format."""
    return f"{fmt(lo, *args)}–{fmt(hi, *args)}"


def table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)
