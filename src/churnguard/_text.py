"""Counts in sentences for people, written one way everywhere: ``plural(1, "customer") -> "1 customer"``."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: float, one: str, many: str | None = None) -> str:
    """``count`` (whole, with thousands separators) and the noun in the number it takes: ``"1 row"``,
    ``"1,234 rows"``, ``plural(2, "entry", "entries") -> "2 entries"``."""
    shown = f"{count:,.0f}"
    return f"{shown} {one if shown == '1' else many or one + 's'}"
