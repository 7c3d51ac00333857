"""The scorecard a churn model is judged by on a held-out snapshot, and the charts logged with each run.

Pure functions. The plot functions draw on a standalone matplotlib ``Figure`` (no pyplot state) and write a PNG.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "METRICS",
    "compare_to_baselines",
    "expected_calibration_error",
    "lift_and_capture",
    "plot_calibration",
    "plot_feature_importance",
    "plot_lift_gain",
    "plot_score_distribution",
    "plot_training_curve",
    "scorecard",
    "scorecard_markdown",
    "scorecard_table",
]

METRICS = (
    "roc_auc", "pr_auc", "brier", "log_loss", "ece",
    "lift_at_10", "capture_at_10", "lift_at_20", "capture_at_20", "n", "positive_rate",
)
_LOWER_IS_BETTER = {"brier", "log_loss", "ece"}


def _check(y_true, y_prob) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype="float64")
    p = np.asarray(y_prob, dtype="float64")
    if y.shape != p.shape:
        raise ValueError(f"y_true has {len(y)} values but the scores have {len(p)}")
    if len(y) == 0:
        raise ValueError("no customers to score")
    if np.isnan(p).any():
        raise ValueError(f"{int(np.isnan(p).sum())} scores are NaN")
    return y, p


def expected_calibration_error(y_true, y_prob, *, n_bins: int = 10) -> float:
    """Equal-width bins on [0, 1]; the size-weighted mean of |observed rate - mean predicted| per bin."""
    y, p = _check(y_true, y_prob)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, weights=y, minlength=n_bins) - np.bincount(bins, weights=p, minlength=n_bins))
    return float(gap[counts > 0].sum() / len(y))


def lift_and_capture(y_true, y_score, fraction: float) -> tuple[float, float]:
    """Contact the top ``ceil(fraction * n)`` customers by score (stable sort, earlier rows win ties).

    Returns lift (churn rate in that group / overall rate) and capture (share of all churners in it).
    """
    y, s = _check(y_true, y_score)
    k = math.ceil(fraction * len(y))
    top = np.argsort(-s, kind="stable")[:k]
    total = y.sum()
    if total == 0:
        return float("nan"), float("nan")
    return float(y[top].mean() / y.mean()), float(y[top].sum() / total)


def scorecard(y_true, y_prob, *, top_fractions=(0.1, 0.2), n_bins: int = 10) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, log loss, ECE, lift and capture at the top fractions, n and churn rate."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y, p = _check(y_true, y_prob)
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"probabilities must lie in [0, 1]; got {p.min():.3g} .. {p.max():.3g}")
    if len(np.unique(y)) < 2:
        raise ValueError(f"all {len(y)} customers have the same outcome ({int(y[0])}): AUC is undefined")
    out = {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "ece": expected_calibration_error(y, p, n_bins=n_bins),
    }
    for f in top_fractions:
        lift, capture = lift_and_capture(y, p, f)
        pct = round(f * 100)
        out[f"lift_at_{pct}"], out[f"capture_at_{pct}"] = lift, capture
    out["n"] = float(len(y))
    out["positive_rate"] = float(y.mean())
    return out


def compare_to_baselines(
    scorecards: dict[str, dict[str, float]], *, primary: str = "model", metric: str = "roc_auc"
) -> tuple[bool, str]:
    """Whether ``primary`` beats every other entry on ``metric``, and a sentence saying so plainly."""
    lower = metric in _LOWER_IS_BETTER
    mine = scorecards[primary][metric]
    losers = [
        (name, card[metric])
        for name, card in scorecards.items()
        if name != primary and ((card[metric] <= mine) if lower else (card[metric] >= mine))
    ]
    if losers:
        name, value = losers[0]
        return False, (
            f"The {primary} does NOT beat the baseline {name!r} on {metric} ({mine:.3f} vs {value:.3f}): "
            "prefer the simpler baseline until it does."
        )
    others = ", ".join(f"{n} {c[metric]:.3f}" for n, c in scorecards.items() if n != primary)
    return True, f"The {primary} beats every baseline on {metric} ({mine:.3f} vs {others})."


def scorecard_table(scorecards: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Metrics as rows (in ``METRICS`` order), models and baselines as columns."""
    table = pd.DataFrame(scorecards)
    return table.reindex([m for m in METRICS if m in table.index])


def scorecard_markdown(scorecards: dict[str, dict[str, float]]) -> str:
    """The scorecard as a GitHub-markdown table with 3 decimals."""
    table = scorecard_table(scorecards)
    lines = ["| metric | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for metric, row in table.iterrows():
        lines.append(f"| {metric} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


# -- charts -----------------------------------------------------------------------------------------------


def _figure(width: float = 6.4, height: float = 4.8):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def plot_calibration(y_true, probs_by_name: dict[str, np.ndarray], path, *, n_bins: int = 10) -> Path:
    """Reliability diagram: observed churn rate against mean predicted probability per bin."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    y = np.asarray(y_true, dtype="float64")
    for name, p in probs_by_name.items():
        p = np.asarray(p, dtype="float64")
        bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
        counts = np.bincount(bins, minlength=n_bins)
        keep = counts > 0
        mean_p = np.bincount(bins, weights=p, minlength=n_bins)[keep] / counts[keep]
        rate = np.bincount(bins, weights=y, minlength=n_bins)[keep] / counts[keep]
        ax.plot(mean_p, rate, marker="o", label=name)
    ax.set(xlabel="mean predicted churn probability", ylabel="observed churn rate", title="Calibration",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend()
    return _save(fig, path)


def plot_lift_gain(y_true, scores_by_name: dict[str, np.ndarray], path) -> Path:
    """Cumulative gain: share of churners reached against share of customers contacted, best-scored first."""
    fig = _figure()
    ax = fig.add_subplot()
    y = np.asarray(y_true, dtype="float64")
    share = np.arange(1, len(y) + 1) / len(y)
    for name, s in scores_by_name.items():
        order = np.argsort(-np.asarray(s, dtype="float64"), kind="stable")
        ax.plot(share, np.cumsum(y[order]) / max(y.sum(), 1), label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    ax.set(xlabel="share of customers contacted", ylabel="share of churners reached", title="Cumulative gain")
    ax.legend()
    return _save(fig, path)


def plot_score_distribution(y_true, y_prob, path) -> Path:
    """Histogram of predicted churn probability for customers who churned and who stayed."""
    fig = _figure()
    ax = fig.add_subplot()
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(y_prob, dtype="float64")
    bins = np.linspace(0, 1, 31)
    ax.hist(p[~y], bins=bins, alpha=0.6, label="stayed")
    ax.hist(p[y], bins=bins, alpha=0.6, label="churned")
    ax.set(xlabel="predicted churn probability", ylabel="customers", title="Score distribution")
    ax.legend()
    return _save(fig, path)


def plot_feature_importance(names: list[str], gains, path, *, top: int = 25) -> Path:
    """Horizontal bars of the features with the most total gain."""
    s = pd.Series(np.asarray(gains, dtype="float64"), index=names).sort_values(ascending=False).head(top)[::-1]
    fig = _figure(7.5, max(3.0, 0.28 * len(s) + 1))
    ax = fig.add_subplot()
    ax.barh(s.index, s.to_numpy())
    ax.set(xlabel="total gain", title=f"Feature importance (top {len(s)})")
    return _save(fig, path)


def plot_training_curve(evals: dict[str, list[float]], path, *, metric_name: str = "binary_logloss") -> Path:
    """Metric per boosting round for each dataset, with the best validation round marked."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, values in evals.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    if evals.get("valid"):
        best = int(np.argmin(evals["valid"]))
        ax.axvline(best + 1, linestyle=":", color="grey", label=f"best round {best + 1}")
    ax.set(xlabel="boosting round", ylabel=metric_name, title="Training curve")
    ax.legend()
    return _save(fig, path)
