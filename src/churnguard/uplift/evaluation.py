"""The uplift scorecard: does ranking by predicted uplift find the customers contact keeps?

Customers are ranked by a score (highest first). After the top ``k``, the *Qini curve* counts the incremental
buyers: buyers among the contacted minus buyers among the control scaled to as many customers,
``Y_t(k) - Y_c(k) N_t(k) / N_c(k)``; the *uplift curve* is ``(Y_t(k) / N_t(k) - Y_c(k) / N_c(k)) k``. Both are
divided by the number of customers ``N``. The **Qini coefficient** is the mean gap between the Qini curve and
the straight line from 0 to its end (what a random order gives on average): > 0 when the ranking puts the
customers contact keeps first. **AUUC** is the mean of the uplift curve. A random ranking is measured too: the
mean over :data:`RANDOM_DRAWS` seeded shuffles.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from churnguard.reporting.monitoring import chart_axes, save_chart

__all__ = ["RANDOM_DRAWS", "auuc", "decile_table", "plot_deciles", "plot_qini", "qini_coefficient", "qini_curve",
           "ranking_card"]

RANDOM_DRAWS = 10


def _cumulative(score: np.ndarray, treated: np.ndarray, bought: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cumulative contacted, control, buyers among each, down the ranking by ``score`` (ties in row order)."""
    order = np.argsort(-np.asarray(score, dtype="float64"), kind="stable")
    t, y = np.asarray(treated, dtype=bool)[order], np.asarray(bought, dtype=bool)[order]
    return np.cumsum(t), np.cumsum(~t), np.cumsum(t & y), np.cumsum(~t & y)


def qini_curve(score: np.ndarray, treated: np.ndarray, bought: np.ndarray) -> np.ndarray:
    """Incremental buyers after each of the top ``k = 1..N`` customers, divided by ``N``."""
    nt, nc, yt, yc = _cumulative(score, treated, bought)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = yt - np.where(nc > 0, yc * nt / nc, 0.0)
    return q / len(q)


def qini_coefficient(score: np.ndarray, treated: np.ndarray, bought: np.ndarray) -> float:
    """Mean gap between the Qini curve and the straight line to its end (0 for a random order on average)."""
    q = qini_curve(score, treated, bought)
    if len(q) == 0:
        return float("nan")
    line = np.arange(1, len(q) + 1) / len(q) * q[-1]
    return float(np.mean(q - line))


def auuc(score: np.ndarray, treated: np.ndarray, bought: np.ndarray) -> float:
    """Mean of the uplift curve ``(Y_t/N_t - Y_c/N_c) k / N`` (points without both groups count 0)."""
    nt, nc, yt, yc = _cumulative(score, treated, bought)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where((nt > 0) & (nc > 0), yt / nt - yc / nc, 0.0) * np.arange(1, len(nt) + 1)
    return float(np.mean(u / len(nt))) if len(nt) else float("nan")


def ranking_card(scores: Mapping[str, np.ndarray], treated: np.ndarray, bought: np.ndarray, *, seed: int = 0
                 ) -> dict[str, dict[str, float]]:
    """``qini`` and ``auuc`` of each named ranking, and of ``random`` (mean over seeded shuffles)."""
    cards = {name: {"qini": qini_coefficient(s, treated, bought), "auuc": auuc(s, treated, bought)}
             for name, s in scores.items()}
    rng = np.random.default_rng(seed)
    draws = [rng.uniform(size=len(treated)) for _ in range(RANDOM_DRAWS)]
    cards["random"] = {"qini": float(np.mean([qini_coefficient(d, treated, bought) for d in draws])),
                       "auuc": float(np.mean([auuc(d, treated, bought) for d in draws]))}
    return cards


def decile_table(predicted: np.ndarray, treated: np.ndarray, bought: np.ndarray) -> pd.DataFrame:
    """Per decile of predicted uplift (1 = the highest tenth): customers contacted and held out, the share who
    bought in each group, the observed uplift (their difference) and the mean predicted uplift."""
    predicted = np.asarray(predicted, dtype="float64")
    rank = np.argsort(np.argsort(-predicted, kind="stable"), kind="stable")
    frame = pd.DataFrame({"decile": rank * 10 // max(len(predicted), 1) + 1, "treated": np.asarray(treated, bool),
                          "bought": np.asarray(bought, bool), "predicted": predicted})
    rows = []
    for d, g in frame.groupby("decile", sort=True):
        t, c = g[g["treated"]], g[~g["treated"]]
        rt, rc = (t["bought"].mean() if len(t) else np.nan), (c["bought"].mean() if len(c) else np.nan)
        rows.append({"decile": int(d), "n_contacted": len(t), "n_control": len(c), "bought_contacted": rt,
                     "bought_control": rc, "observed_uplift": rt - rc, "predicted_uplift": g["predicted"].mean()})
    return pd.DataFrame(rows)


def plot_deciles(table: pd.DataFrame, path: str | Path) -> Path:
    """Bars of the observed uplift per decile of predicted uplift, the mean prediction as dots."""
    fig, ax = chart_axes()
    x = table["decile"].to_numpy()
    ax.bar(x, table["observed_uplift"], color="#4c72b0", label="observed (contacted - control)")
    ax.plot(x, table["predicted_uplift"], "o-", color="#dd8452", label="predicted (mean)")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xlabel("decile of predicted uplift (1 = highest)")
    ax.set_ylabel("change in the share who bought")
    ax.legend()
    return save_chart(fig, path)


def plot_qini(scores: Mapping[str, np.ndarray], treated: np.ndarray, bought: np.ndarray, path: str | Path) -> Path:
    """The Qini curve of each named ranking, and the random line."""
    fig, ax = chart_axes()
    for name, s in scores.items():
        q = qini_curve(s, treated, bought)
        ax.plot(np.arange(1, len(q) + 1) / len(q), q, label=name)
    if scores:
        end = qini_curve(next(iter(scores.values())), treated, bought)[-1]
        ax.plot([0, 1], [0, end], "--", color="grey", label="random")
    ax.set_xlabel("share of customers contacted, best first")
    ax.set_ylabel("incremental buyers / customers")
    ax.legend()
    return save_chart(fig, path)
