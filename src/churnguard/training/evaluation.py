"""The scorecard a churn model is judged by on a held-out snapshot, against the baselines, its model card, and
the charts logged with each run.

Pure functions. The plot functions draw on a standalone matplotlib ``Figure`` (no pyplot state, so nothing
leaks between runs or tests), write a PNG and import matplotlib only when called.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnguard._charts import chart_axes, save_chart

__all__ = [
    "METRICS", "baseline_calibrators", "baseline_probabilities", "baseline_scores", "compare_to_baselines",
    "expected_calibration_error",
    "holdout_scorecards", "lift_and_capture", "model_card", "plot_calibration", "plot_feature_importance",
    "plot_lift_gain", "plot_score_distribution", "plot_training_curve", "scorecard", "scorecard_markdown",
    "scorecard_table",
]

METRICS: tuple[str, ...] = (
    "roc_auc", "pr_auc", "brier", "log_loss", "ece",
    "lift_at_10", "capture_at_10", "lift_at_20", "capture_at_20", "n", "positive_rate",
)
_LOWER_IS_BETTER = frozenset({"brier", "log_loss", "ece"})
_NOT_COMPARABLE = frozenset({"n", "positive_rate"})
_EPS = 1e-15


def _validate(y_true, y_score, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Coerce to float arrays and reject what would make a metric silently wrong."""
    y = np.asarray(y_true, dtype="float64").ravel()
    s = np.asarray(y_score, dtype="float64").ravel()
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} values but the scores have {len(s)}")
    if len(y) == 0:
        raise ValueError("no customers to score")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must contain only 0 (stayed) and 1 (churned)")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} scores are NaN")
    if probabilities and (s.min() < 0 or s.max() > 1):
        raise ValueError(f"probabilities must lie in [0, 1]; got {s.min():.3g} .. {s.max():.3g}")
    return y, s


def _reliability(y: np.ndarray, p: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty equal-width bin on [0, 1]: count, mean predicted probability, observed churn rate."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)  # p == 1.0 belongs to the last bin
    counts = np.bincount(bins, minlength=n_bins)
    keep = counts > 0
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)[keep]
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)[keep]
    return counts[keep], sum_p / counts[keep], sum_y / counts[keep]


def expected_calibration_error(y_true, y_prob, *, n_bins: int = 10) -> float:
    """Expected calibration error: how far predicted probabilities are from observed churn rates.

    Retention budgets are planned from the probabilities themselves, so a well-ranked but miscalibrated model
    still misleads. Equal-width bins on [0, 1]; the mean of |observed rate - mean probability| over non-empty
    bins, weighted by bin size.

    Args:
        y_true: 0/1 outcomes.
        y_prob: predicted churn probabilities in [0, 1].
        n_bins: number of equal-width bins.

    Returns:
        The ECE in [0, 1]; 0 means perfectly calibrated at this binning.
    """
    y, p = _validate(y_true, y_prob, probabilities=True)
    counts, mean_p, rate = _reliability(y, p, n_bins)
    return float(np.sum(counts * np.abs(rate - mean_p)) / len(y))


def lift_and_capture(y_true, y_score, fraction: float) -> tuple[float, float]:
    """What contacting the top ``fraction`` of customers by score buys, versus contacting at random.

    The group is the first ``ceil(fraction * n)`` customers after a stable descending sort, so tied scores
    keep their row order and the result is deterministic.

    Args:
        y_true: 0/1 outcomes.
        y_score: any score where higher means more likely to churn.
        fraction: share of customers contacted, in (0, 1].

    Returns:
        ``(lift, capture)``: churn rate in the group / overall churn rate, and the share of all churners in the
        group. Both are NaN when there are no churners.
    """
    y, s = _validate(y_true, y_score)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, math.ceil(fraction * len(y) - 1e-9))  # tolerance: 0.07 * 100 == 7.000000000000001
    total = y.sum()
    if total == 0:
        return float("nan"), float("nan")
    top = y[np.argsort(-s, kind="stable")[:k]]
    return float(top.mean() / y.mean()), float(top.sum() / total)


def scorecard(y_true, y_prob, *, top_fractions: Sequence[float] = (0.1, 0.2), n_bins: int = 10) -> dict[str, float]:
    """Every number a churn model is judged by on one held-out snapshot.

    Args:
        y_true: 0/1 outcomes; both classes must be present.
        y_prob: predicted churn probabilities in [0, 1].
        top_fractions: contact shares for ``lift_at_<pct>`` / ``capture_at_<pct>``.
        n_bins: bins for the ECE.

    Returns:
        The metrics keyed as in ``METRICS`` (in that order for the default fractions).

    Raises:
        ValueError: lengths differ, y_true is not 0/1 or has a single class, or probabilities are NaN or
            outside [0, 1].
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y, p = _validate(y_true, y_prob, probabilities=True)
    if len(np.unique(y)) < 2:
        raise ValueError(f"all {len(y)} customers have the same outcome ({int(y[0])}): AUC is undefined")
    card = {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, _EPS, 1 - _EPS), labels=[0, 1])),
        "ece": expected_calibration_error(y, p, n_bins=n_bins),
    }
    for fraction in top_fractions:
        pct = f"{fraction * 100:g}".replace(".", "_")
        card[f"lift_at_{pct}"], card[f"capture_at_{pct}"] = lift_and_capture(y, p, fraction)
    card["n"] = float(len(y))
    card["positive_rate"] = float(y.mean())
    return card


def compare_to_baselines(
    scorecards: Mapping[str, Mapping[str, float]], *, primary: str = "model", metric: str = "roc_auc"
) -> tuple[bool, str]:
    """Whether ``primary`` strictly beats every baseline on ``metric``, with a plain-language verdict.

    A model that cannot beat a one-line heuristic is not worth deploying, so this sentence goes into the
    model card. On failure it names the strongest baseline. Lower is better for brier, log_loss and ece;
    higher for the rest.

    Returns:
        ``(beats_all, sentence)``, e.g. ``(False, "The model does NOT beat the baseline 'recency' on roc_auc
        (0.712 vs 0.731).")``.
    """
    if primary not in scorecards:
        raise ValueError(f"no scorecard named {primary!r}; have {sorted(scorecards)}")
    if metric in _NOT_COMPARABLE:
        raise ValueError(f"{metric!r} describes the data, not the model; pick a quality metric")
    lower = metric in _LOWER_IS_BETTER
    mine = scorecards[primary][metric]
    others = {name: card[metric] for name, card in scorecards.items() if name != primary}
    if not others:
        return True, f"The {primary} has no baselines to beat on {metric} ({mine:.3f})."
    best_name = (min if lower else max)(others, key=others.__getitem__)
    best = others[best_name]
    if (mine < best) if lower else (mine > best):
        listed = ", ".join(f"{name!r} {value:.3f}" for name, value in others.items())
        return True, f"The {primary} beats every baseline on {metric} ({mine:.3f} vs {listed})."
    return False, f"The {primary} does NOT beat the baseline {best_name!r} on {metric} ({mine:.3f} vs {best:.3f})."


def scorecard_table(scorecards: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Metrics as rows (``METRICS`` order, then any extra keys), models and baselines as columns."""
    table = pd.DataFrame({name: pd.Series(card, dtype="float64") for name, card in scorecards.items()})
    order = [m for m in METRICS if m in table.index] + [m for m in table.index if m not in METRICS]
    return table.reindex(order)


def scorecard_markdown(scorecards: Mapping[str, Mapping[str, float]]) -> str:
    """The scorecard as a GitHub-markdown table: 3 decimals, except ``n`` which is a count."""
    table = scorecard_table(scorecards)
    lines = ["| metric | " + " | ".join(map(str, table.columns)) + " |", "|---|" + "---:|" * len(table.columns)]
    for metric, row in table.iterrows():
        cells = (f"{v:.0f}" if metric == "n" and np.isfinite(v) else f"{v:.3f}" for v in row)
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)



# -- baselines and the model card ----------------------------------------------------------------------------


def baseline_scores(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Higher = more likely to churn; a customer without a score counts as the likeliest. Recency: days since
    the last purchase. BG/NBD: fewer expected purchases."""
    scores = {"recency": frame["recency_days"].to_numpy(dtype="float64"),
              "bgnbd": -frame["bg_expected_purchases"].to_numpy(dtype="float64")}
    return {name: np.nan_to_num(score, nan=np.nanmax(score)) for name, score in scores.items()}


def baseline_probabilities(frame: pd.DataFrame, calibrators: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each baseline's probabilities: its score through its calibrator (fitted by :func:`holdout_scorecards`)."""
    return {name: calibrators[name](score) for name, score in baseline_scores(frame).items()}


def baseline_calibrators(frame: pd.DataFrame) -> dict[str, Any]:
    """Each baseline's calibrator (isotonic: their scores are days or counts, not probabilities), fitted on
    ``frame``'s outcomes."""
    from churnguard.model.calibration import fit_calibrator

    y = frame["churned"].to_numpy()
    return {name: fit_calibrator("isotonic", score, y) for name, score in baseline_scores(frame).items()}


def holdout_scorecards(model: Any, valid: pd.DataFrame, test: pd.DataFrame
                       ) -> tuple[dict[str, dict[str, float]], dict[str, Any], dict[str, np.ndarray]]:
    """Scorecards of the model and the baselines on the test snapshot, the baselines calibrated on the
    validation snapshot; also the baselines' calibrators and every scorer's probabilities."""
    calibrators = baseline_calibrators(valid)
    probs = {"model": model.predict_proba(test), **baseline_probabilities(test, calibrators)}
    y_test = test["churned"].to_numpy()
    return {name: scorecard(y_test, p) for name, p in probs.items()}, calibrators, probs


def model_card(summary: Mapping[str, Any], scorecards: Mapping[str, Mapping[str, float]], verdict: str,
               promotion: str | None = None) -> str:
    """The training run in Markdown for people: data, label, the deployed model's snapshots, how its trees and
    calibration and level correction were chosen, the backtest's scorecard, the verdict and (when given) the
    registry decision."""
    from churnguard import __version__

    s = summary
    deployed = s["deployed_snapshots"]
    sampling = []
    if s.get("train_sampled"):
        sampling.append(f"- training rows sampled: {s['train_rows']:,} of {s['train_rows_available']:,} "
                        f"({s['train_sample_fraction']:.1%} of each snapshot's customers besides the newest, seed "
                        f"{s['train_sample_seed']}; snapshots.max_train_rows = {s['max_train_rows']:,})")
    return "\n".join(
        [
            "# churnguard model card",
            "",
            f"- package version: {__version__}",
            f"- data: {s['data_first_day']} to {s['as_of']}, {s['transactions']:,} transactions, {s['customers']:,} customers",
            f"- label: no purchase in the {s['horizon_days']} days after each snapshot",
            (f"- deployed_snapshots: {len(deployed)}, {deployed[0]} to {deployed[-1]} (the newest labelled one) "
             f"({s['train_rows']:,} rows, churn rate {s['train_churn_rate']:.3f})"),
            *sampling,
            *([f"- schedule: {schedule_sentence(s)}"] if s.get("schedule_adapted") else []),
            f"- trees: {s['best_iteration']}, {tuning_sentence(s)}, then refitted on every snapshot above",
            (f"- calibration: {s['calibration']}, fitted on cross-fitted scores (each customer scored by a model "
             f"that never saw them) of the snapshots {', '.join(s['calibration_snapshots'])} (Brier "
             f"{s['calibration_brier_raw']:.4f} before, {s['calibration_brier']:.4f} after)"),
            *([f"- {level_sentence(s)}"] if "level_correction" in s else []),
            *([f"- {support_sentence(s)}"] if s.get("beyond_support_share") else []),
            f"- {evaluation_sentence(s)}",
            "",
            f"## Scorecard ({evaluation_title(s)})",
            "",
            scorecard_markdown(scorecards),
            "",
            verdict,
            "",
            *([] if promotion is None else ["## Registry", "", promotion, ""]),
        ]
    )

def level_sentence(s: Mapping[str, Any]) -> str:
    """The level correction of a run (:mod:`churnguard.training.level`): which, how much and why, from its
    summary."""
    eces = s.get("level_backtest_ece") or {}
    if s.get("level_correction") == "purchases":
        season = " ".join(f"{v:.2f}" for v in s["level_purchases"]["season"])
        return ("level_correction: purchases (no backtest to choose one on): the probabilities keep the model's "
                "ranking of the customers and take their overall level from a model of the purchase days themselves "
                f"(a Pareto/NBD up to {s['as_of']} whose clock follows the season in the data, January..December: "
                f"{season}) for the {s['horizon_days']} days after it; the cross-validation's scorecard does not "
                "include it")
    if not eces:
        found = s.get("level_intensity") or {}
        unchecked = (f"; the intensity correction, a power of {found['power']:.3f} ({intensity_phrase(found)}), "
                     "is not applied: no later period is left to check it on" if found else "")
        if s.get("evaluation") == "grouped_cv":
            unchecked += (f"; the purchases' seasonal model, which would set it, needs "
                          f"{s['level_purchases_min_customers']:,} customers "
                          "with a purchase or more and a fit that converges: not here")
        return ("level_correction: none (no backtest to choose one on: the churn level of the period after "
                f"{s['as_of']} is the calibration's{unchecked})")
    tried = ", ".join(f"{name} {ece:.4f}" for name, ece in eces.items())
    name = s["level_correction"]
    if name == "intensity":
        how = f"every calibrated probability raised to the power {s.get('level_power', 1.0):.3f}"
        how += f" ({intensity_phrase(s.get('level_intensity') or {})})"
    elif name == "none":
        return (f"level_correction: none, the calibration as fitted: no correction had a lower ECE on the "
                f"backtest ({tried})")
    else:
        how = f"a shift of {s['level_shift']:+.3f} on the calibrated log-odds of every customer"
    checked = s.get("level_backtest_intensity") or {}
    note = ("; the backtest read the intensity correction from its outcome window as measured, since its window "
            "a year earlier is before the data" if checked.get("measured") else "")
    return (f"level_correction: {name}, {how} (their order unchanged), chosen on the backtest, whose ECE was "
            f"{tried}{note}")


def support_sentence(s: Mapping[str, Any]) -> str:
    """Today's customers silent longer than any customer the model learned from, from a run's summary
    (:func:`churnguard.training.run.support_facts`); for a run whose ``beyond_support_share`` is above 0."""
    given = ("get the probability of the purchases' seasonal model instead, which follows their own buying rhythm "
             "and silence (the trees would give them that of the longest silence they learned from)"
             if s.get("level_correction") == "purchases" else
             "get the probability of the longest silence it learned from, likely too low for them")
    return (f"support: the model learned from customers silent up to {s['support_days']} days (the history before "
            f"its newest snapshot); {s['beyond_support_share']:.1%} of today's customers have been silent longer "
            f"and {given}. With "
            f"{s['lookback_days'] + s['horizon_days']} days of history (labels.lookback_days + horizon_days) it "
            "learns from every silence of the lookback window")


def intensity_phrase(facts: Mapping[str, Any]) -> str:
    """The ``intensity`` correction's two windows, from :meth:`~churnguard.training.level.Intensity.facts`."""
    if not facts:
        return "no window a year earlier in the data: no change"
    return (f"purchase intensity {facts['window_rate']:.3f} in the outcome window a year earlier, from "
            f"{facts['window_start']}, over {facts['reference_rate']:.3f} in that of the snapshot "
            f"{facts['reference_snapshot']}")


def tuning_sentence(s: Mapping[str, Any]) -> str:
    """How a run's number of trees was chosen, from its summary."""
    if s["tune_train_snapshots"]:
        return (f"chosen by early stopping on {s['tune_snapshot']} with a model of the snapshots up to "
                f"{s['tune_train_snapshots'][-1]}")
    return ("chosen by early stopping on a third of the customers (all their snapshots) with a model of the "
            "others' (no snapshot's outcome window ends by the newest snapshot)")


def schedule_sentence(s: Mapping[str, Any]) -> str:
    """The snapshot schedule of a run whose data was too short for the configured one, from its summary."""
    return (f"a snapshot every {s['cadence_days']} days from {s['min_history_days']} days of history on, "
            "adapted to the data: too short for the configured snapshots.cadence_days and min_history_days "
            "to leave room for a backtest")


def evaluation_title(s: Mapping[str, Any]) -> str:
    """What a run's scorecard is, in a few words, from its summary."""
    if s["evaluation"] == "grouped_cv":
        return f"cross-validation grouped by customer, on {s['grouped_cv_as_of']}"
    return f"backtest as of {s['backtest_as_of']}"


def evaluation_sentence(s: Mapping[str, Any]) -> str:
    """How a run's scorecard was made, from its summary."""
    if s["evaluation"] == "grouped_cv":
        return (f"evaluation: cross-validation grouped by customer, since the data leaves no later period to "
                f"test on: the {s['grouped_cv_rows']:,} customers of {s['grouped_cv_as_of']} (churn rate "
                f"{s['grouped_cv_churn_rate']:.3f}) in {s['grouped_cv_folds']} groups, each scored by the same "
                "procedure run on the other groups' rows of every snapshot. It measures how well the model "
                "ranks customers it never saw, not how it ages")
    return (f"backtest_as_of: {s['backtest_as_of']}: the same procedure run with only the data up to that day "
            f"(snapshots {s['backtest_snapshots'][0]} to {s['backtest_snapshots'][-1]}), scored on that day's "
            f"{s['backtest_rows']:,} customers against what they did next (churn rate "
            f"{s['backtest_churn_rate']:.3f})")


# -- charts -----------------------------------------------------------------------------------------------


def plot_calibration(y_true, probs_by_name: Mapping[str, np.ndarray], path, *, n_bins: int = 10) -> Path:
    """Reliability diagram: observed churn rate vs mean predicted probability per bin, one line per model."""
    fig, ax = chart_axes()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, probs in probs_by_name.items():
        y, p = _validate(y_true, probs, probabilities=True)
        _, mean_p, rate = _reliability(y, p, n_bins)
        ece = expected_calibration_error(y, p, n_bins=n_bins)
        ax.plot(mean_p, rate, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="mean predicted churn probability", ylabel="observed churn rate",
           title="Calibration (reliability diagram)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return save_chart(fig, path)


def plot_lift_gain(y_true, scores_by_name: Mapping[str, np.ndarray], path) -> Path:
    """Cumulative gain: share of churners reached vs share of customers contacted, best-scored first."""
    fig, ax = chart_axes()
    for name, scores in scores_by_name.items():
        y, s = _validate(y_true, scores)
        gained = np.cumsum(y[np.argsort(-s, kind="stable")]) / max(y.sum(), 1.0)
        ax.plot(np.linspace(0, 1, len(y) + 1), np.concatenate([[0.0], gained]), label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    ax.set(xlabel="share of customers contacted", ylabel="share of churners reached",
           title="Cumulative gain", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return save_chart(fig, path)


def plot_score_distribution(y_true, y_prob, path) -> Path:
    """Density histograms of predicted churn probability for churners and non-churners (overlap = confusion)."""
    y, p = _validate(y_true, y_prob, probabilities=True)
    fig, ax = chart_axes()
    bins = np.linspace(0, 1, 31)
    for mask, label in ((y == 0, f"stayed (n={int((y == 0).sum())})"), (y == 1, f"churned (n={int(y.sum())})")):
        if mask.any():
            ax.hist(p[mask], bins=bins, density=True, alpha=0.55, label=label)
    ax.set(xlabel="predicted churn probability", ylabel="density", title="Score distribution by outcome")
    ax.legend()
    return save_chart(fig, path)


def plot_feature_importance(names: Sequence[str], gains: np.ndarray, path, *, top: int = 25) -> Path:
    """Horizontal bars of the ``top`` features by total gain, largest at the top."""
    if len(names) != len(gains):
        raise ValueError(f"{len(names)} feature names but {len(gains)} gains")
    ranked = pd.Series(np.asarray(gains, dtype="float64"), index=list(names)).sort_values(
        ascending=False, kind="stable").head(top)
    fig, ax = chart_axes(7.5, max(3.0, 0.28 * len(ranked) + 1.2))
    ax.barh(ranked.index[::-1], ranked.to_numpy()[::-1], label="total gain")
    ax.set(xlabel="total gain", ylabel="feature", title=f"Feature importance (top {len(ranked)} by gain)")
    ax.legend(loc="lower right")
    return save_chart(fig, path)


def plot_training_curve(evals: Mapping[str, Sequence[float]], path, *, metric_name: str = "binary_logloss") -> Path:
    """LightGBM eval history per dataset, with the best round of the last non-train dataset marked.

    The best round is the minimum, or the maximum for metrics where higher is better (auc, map, ndcg, ...).
    """
    fig, ax = chart_axes()
    for name, values in evals.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=name)
    non_empty = [name for name in evals if len(evals[name])]
    monitored = [name for name in non_empty if name not in ("train", "training")] or non_empty
    if monitored:
        values = np.asarray(evals[monitored[-1]], dtype="float64")
        higher = metric_name.split("@")[0] in {"auc", "average_precision", "map", "ndcg"}
        best = int(np.nanargmax(values) if higher else np.nanargmin(values))
        ax.plot(best + 1, values[best], marker="o", color="black", linestyle="none",
                label=f"best round {best + 1} ({values[best]:.4f})")
        ax.axvline(best + 1, linestyle=":", color="grey")
    ax.set(xlabel="boosting round", ylabel=metric_name, title=f"Training curve ({metric_name})")
    ax.legend()
    return save_chart(fig, path)
