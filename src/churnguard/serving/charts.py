"""Charts for the pages, drawn on the server as inline SVG: no script, no asset, readable at any width.

Each function takes plain numbers and returns the ``<svg>`` markup (text escaped), with a title for screen
readers; the pages put the same numbers in a table beside it.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd

__all__ = ["curve_chart", "monthly_purchases", "purchases_chart", "uplift_chart"]

_W, _H, _LEFT, _BOTTOM, _TOP, _RIGHT = 640, 220, 56, 28, 12, 28  # _RIGHT: room for half a month label


def _svg(title: str, body: str, height: int = _H) -> str:
    return (f'<svg class="chart" viewBox="0 0 {_W} {height}" role="img" aria-label="{escape(title)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>')


def _text(x: float, y: float, text: str, anchor: str = "middle", cls: str = "tick") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" class="{cls}">{escape(text)}</text>'


def _axis_and_grid(plot_h: float, label) -> list[str]:
    """The x axis, and grid lines at 0, half and the top of the y range, each with ``label(fraction)``."""
    parts = [f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - _RIGHT}" y2="{_TOP + plot_h}" class="axis"/>']
    for frac in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - frac)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" class="grid"/>')
        parts.append(_text(_LEFT - 6, y + 4, label(frac), "end"))
    return parts


def monthly_purchases(purchases: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Spend and orders per calendar month, ``month, amount, orders``, every month from the first purchase to
    the later of the last purchase and ``as_of`` (months without a purchase as 0)."""
    stamps = pd.to_datetime(purchases["timestamp"])
    if stamps.empty:
        return pd.DataFrame({"month": pd.PeriodIndex([], freq="M"), "amount": [], "orders": []})
    months = stamps.dt.to_period("M")
    grouped = pd.DataFrame({"month": months, "amount": pd.to_numeric(purchases["amount"]).to_numpy()}).groupby(
        "month")["amount"].agg(["sum", "count"])
    span = pd.period_range(months.min(), max(months.max(), pd.Timestamp(as_of).to_period("M")), freq="M")
    grouped = grouped.reindex(span, fill_value=0)
    return pd.DataFrame({"month": span, "amount": grouped["sum"].to_numpy("float64"),
                         "orders": grouped["count"].to_numpy("int64")})


def _nice_top(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    step = 10 ** math.floor(math.log10(value))
    return next(m * step for m in (1, 2, 2.5, 5, 10) if m * step >= value)


def purchases_chart(months: pd.DataFrame, as_of: pd.Timestamp) -> str:
    """Bars of spend per month, with a dashed line at the scoring day (the months after it in a lighter
    colour: what the customer did after they were scored)."""
    n = len(months)
    top = _nice_top(float(months["amount"].max()) if n else 0.0)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(n, 1)
    parts = _axis_and_grid(plot_h, lambda frac: f"{top * frac:,.0f}")
    every = max(1, math.ceil(n / 8))
    scored_month = pd.Timestamp(as_of).to_period("M")
    for i, row in enumerate(months.itertuples()):
        h = plot_h * row.amount / top
        x = _LEFT + i * slot
        parts.append(f'<rect x="{x + slot * 0.15:.1f}" y="{_TOP + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{h:.1f}" class="bar{" after" if row.month > scored_month else ""}"><title>{escape(str(row.month))}: {row.amount:,.2f} in '
                     f'{row.orders} order(s)</title></rect>')
        if i % every == 0:
            parts.append(_text(x + slot / 2, _H - 8, str(row.month)))
    if n:
        first = months["month"].iloc[0].start_time
        span_days = (months["month"].iloc[-1].end_time - first).days + 1
        x = _LEFT + plot_w * min(1.0, ((pd.Timestamp(as_of) - first).days + 1) / span_days)
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_TOP + plot_h}" class="marker"/>')
        parts.append(_text(x - 4, _TOP + 10, "scored", "end", "marker-label"))
    return _svg(f"Spend per month up to {pd.Timestamp(as_of).date()}", "".join(parts))


def curve_chart(points: list[tuple[int, float]]) -> str:
    """The churn curve: probability of no purchase within each horizon (days), 0 to 1."""
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    days = [d for d, _ in points]
    hi = max(days) if days else 1

    def xy(d: float, p: float) -> tuple[float, float]:
        return _LEFT + plot_w * d / hi, _TOP + plot_h * (1 - p)

    parts = _axis_and_grid(plot_h, lambda frac: f"{frac:.0%}")
    known = [(d, p) for d, p in points if not math.isnan(p)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(d, p) for d, p in known))
    parts.append(f'<polyline points="{line}" class="curve"/>')
    for d, p in known:
        x, y = xy(d, p)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" class="dot"><title>{d} days: {p:.1%}</title>'
                     f'</circle>')
        parts.append(_text(x, _H - 8, f"{d} d"))
    return _svg("Churn probability by horizon", "".join(parts))


def uplift_chart(actions: list[str], uplift: np.ndarray, low: np.ndarray, high: np.ndarray,
                 confidence_label: str) -> str:
    """Uplift (retention of contacted minus control) per action as a dot with its interval, and the zero line."""
    row_h = 30
    label_w = min(260, 16 + 8 * max((len(a) for a in actions), default=4))  # about 8 units per character
    height = _TOP + row_h * len(actions) + _BOTTOM
    finite = [v for v in (*low, *high, *uplift, 0.0) if np.isfinite(v)]
    lo, hi = min(finite), max(finite)
    pad = max(0.02, (hi - lo) * 0.08)
    lo, hi = lo - pad, hi + pad
    plot_w = _W - label_w - _RIGHT

    def x(v: float) -> float:
        return label_w + plot_w * (v - lo) / (hi - lo)

    parts = [f'<line x1="{x(0):.1f}" y1="{_TOP}" x2="{x(0):.1f}" y2="{height - _BOTTOM}" class="axis"/>']
    for v in (lo + pad, 0.0, hi - pad):
        parts.append(_text(x(v), height - 8, f"{v:+.0%}"))
    for i, (name, u, a, b) in enumerate(zip(actions, uplift, low, high, strict=True)):
        y = _TOP + row_h * i + row_h / 2
        parts.append(_text(label_w - 8, y + 4, name.replace("_", " "), "end", "label"))
        if np.isfinite(a) and np.isfinite(b):
            parts.append(f'<line x1="{x(a):.1f}" y1="{y:.1f}" x2="{x(b):.1f}" y2="{y:.1f}" class="interval"/>')
        if np.isfinite(u):
            parts.append(f'<circle cx="{x(u):.1f}" cy="{y:.1f}" r="5" class="dot"><title>{escape(name)}: '
                         f'{u:+.1%} ({a:+.1%} to {b:+.1%})</title></circle>')
    return _svg(f"Uplift per action with {confidence_label} intervals", "".join(parts), height)
