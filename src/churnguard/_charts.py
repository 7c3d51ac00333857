"""Standalone matplotlib figures (no pyplot state, so safe in threads and servers) written as PNG files
atomically; every chart of the report, the monitoring, the training scorecard and the uplift read-out uses them."""

from __future__ import annotations

from pathlib import Path

from churnguard._io.files import atomic_path


def chart_axes(width: float = 6.4, height: float = 4.8):
    """A standalone matplotlib ``Figure`` of ``width`` x ``height`` inches and its one axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_chart(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG to ``path``, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def plain_numbers(axis) -> None:
    """Tick labels of a matplotlib ``axis`` (``ax.yaxis``) written as a person reads amounts and counts:
    thousands separators, at most two decimals, no scale factor such as ``1e6`` above the axis."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _: plain_number(value)))


def plain_number(value: float) -> str:
    """``1234567.0`` -> ``1,234,567``, ``2.5`` -> ``2.5``, ``1e12`` -> ``1,000,000,000,000``."""
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def say_empty(ax, text: str) -> None:
    """Write ``text`` in the middle of an ``ax`` that has nothing to draw, its empty scale hidden."""
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", wrap=True, color="dimgrey")
