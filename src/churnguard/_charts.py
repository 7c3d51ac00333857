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
