"""Watching a churn model after it ships: how scores move, whether inputs drift, and whether actions work.

Pure functions over tables (no MLflow, no clock), shared by the CLI, notebooks and tests: :func:`compare_scores`
lines up two scoring runs; :func:`reference_profile` summarises a feature at training time (a JSON-ready dict to
store with the model) and :func:`psi` / :func:`drift_table` measure later data against it; :func:`campaign_readout`
measures retention of contacted vs control customers, the uplift and the observed success rate for
``actions.yaml``. ``plot_*`` draw PNGs on a standalone matplotlib ``Figure`` (no pyplot state).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._charts import chart_axes, save_chart
from churnguard._io.files import table_suffix
from churnguard._text import plural
from churnguard.labels import bought_within
from churnguard.lifecycle import in_lookback

if TYPE_CHECKING:
    from collections.abc import Iterable

    from churnguard.sources import DbSource

__all__ = [
    "ABSENT",
    "ALL_ACTIONS",
    "MIN_GROUP",
    "READOUT_COLUMNS",
    "REFERENCE_ROWS",
    "MeasuredRates",
    "ScoreComparison",
    "as_flags",
    "campaign_readout",
    "compare_scores",
    "drift_population",
    "drift_table",
    "load_readout",
    "measured_success_rates",
    "newcombe_interval",
    "plot_drift",
    "plot_readout",
    "plot_transitions",
    "psi",
    "reference_profile",
    "scores_days",
]

ABSENT = "(absent)"  # band of a customer missing from one of the two runs
MIN_GROUP = 30  # contacted and control customers each, below which an effect is not judged
ALL_ACTIONS = "(all)"  # the overall row of a campaign read-out
_DEFAULT_BOUNDS = {"high": 0.6, "medium": 0.3, "low": 0.0}  # band order when a band is not seen in the data
_UNRANKED = ("lost", "never_bought", "no_history")  # bands without a probability (no_history: older files)
_CHANGE_COLUMNS = ["customer_id", "old_probability", "new_probability", "delta", "old_band", "new_band", "status"]
_TRUE = ["true", "t", "yes", "y", "1", "1.0"]


@dataclass(frozen=True)
class ScoreComparison:
    """Two scoring runs side by side. Every table is sorted deterministically (ties by ``customer_id``).

    Attributes:
        changes: one row per customer in either run: ``customer_id, old_probability, new_probability, delta,
            old_band, new_band, status`` (``both``, ``only_old``, ``only_new``; bands of a missing customer
            are ``(absent)``, ``delta`` is NaN unless both runs gave a probability).
        risers / fallers: the customers whose probability rose / fell most (largest change first).
        transitions: customer counts, rows = old band, columns = new band, riskiest band first, then the
            bands without a probability (``lost`` and ``never_bought`` when seen, ``no_history`` of older
            files) and ``(absent)``.
        new_high_risk: customers ``high`` in the new run but not in the old one (or absent from it).
    """

    changes: pd.DataFrame
    risers: pd.DataFrame
    fallers: pd.DataFrame
    transitions: pd.DataFrame
    new_high_risk: pd.DataFrame

    def summary(self) -> str:
        """A few printable lines: who is in which run, the mean change and the main band moves."""
        status, delta, t = self.changes["status"].value_counts(), self.changes["delta"].dropna(), self.transitions
        cells, k = t.to_numpy(), int((~t.index.isin([*_UNRANKED, ABSENT])).sum())  # bands with a risk order
        moves = sorted((-int(cells[i, j]), i, j) for i in range(len(t)) for j in range(len(t))
                       if i != j and cells[i, j] > 0)[:5]
        mean = f"{delta.mean():+.4f} over {plural(len(delta), 'customer')} scored twice" if len(delta) else "n/a"
        riskier, safer = int(np.tril(cells[:k, :k], -1).sum()), int(np.triu(cells[:k, :k], 1).sum())
        lines = [
            (f"customers: {status.get('both', 0):,} in both runs, {status.get('only_old', 0):,} only in the old, "
             f"{status.get('only_new', 0):,} only in the new"),
            *([] if status.get("both", 0) else [("note: no customer is in both runs: are the ids written the same "
                                                 "way in both files?")]),
            f"mean churn probability change: {mean}",
            f"band unchanged: {int(np.trace(cells[:-1, :-1])):,}, to a riskier band: {riskier:,}, to a safer: {safer:,}",
            "most common moves: " + (", ".join(f"{t.index[i]} -> {t.columns[j]}: {-c:,}" for c, i, j in moves)
                                     or "none"),
            f"newly high risk: {len(self.new_high_risk):,}",
        ]
        for name, frame in ((f"largest rises ({len(self.risers)})", self.risers),
                            (f"largest falls ({len(self.fallers)})", self.fallers)):
            if len(frame):
                lines.append(f"{name}:")
                lines.extend(f"  {row.customer_id}: {row.old_probability:.3f} -> {row.new_probability:.3f} "
                             f"({row.delta:+.3f}), {row.old_band} -> {row.new_band}"
                             for row in frame.itertuples())
        return "\n".join(lines)


def _run(scores: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = sorted({"customer_id", "churn_probability", "risk_band"} - set(scores.columns))
    if missing:
        raise ValueError(f"the {name} scores lack column(s) {', '.join(missing)}")
    if scores.empty:  # a header alone: every customer of the other run would read as gone or new
        raise ValueError(f"the {name} scores have no rows (a header only): nothing to compare")
    dup = scores["customer_id"].duplicated()
    if dup.any():
        raise ValueError(f"the {name} scores list {int(dup.sum())} customer(s) twice, "
                         f"e.g. {scores.loc[dup, 'customer_id'].iloc[0]!r}")
    return pd.DataFrame({"customer_id": scores["customer_id"].to_numpy(),
                         f"{name}_probability": pd.to_numeric(scores["churn_probability"]).astype("float64").to_numpy(),
                         f"{name}_band": scores["risk_band"].astype("object").to_numpy()})


def _check_order(old: pd.DataFrame, new: pd.DataFrame) -> None:
    """ValueError when the old scores' latest ``as_of`` is after the new scores' (where both have the column): the
    risers would read as fallers and the newly high risk as the ones that left it."""
    if "as_of" not in old or "as_of" not in new:
        return
    days = [pd.to_datetime(scores["as_of"], errors="coerce").max() for scores in (old, new)]
    if not any(pd.isna(days)) and days[0] > days[1]:
        raise ValueError(f"the old scores are as of {days[0].date()}, after the new ones ({days[1].date()}): give the "
                         "earlier scores file first")


def _band_levels(changes: pd.DataFrame) -> list[str]:
    """Bands riskiest first (by the lowest probability seen in each band), then ``lost`` and ``never_bought``
    when seen, ``no_history``, ``(absent)``."""
    seen = pd.concat([changes[[f"{r}_band", f"{r}_probability"]].set_axis(["band", "p"], axis=1) for r in ("old", "new")])
    rank = {**_DEFAULT_BOUNDS, **seen.dropna().groupby("band")["p"].min().to_dict()}
    bands = (set(rank) | set(seen["band"])) - {*_UNRANKED, ABSENT}
    unranked = [b for b in _UNRANKED[:-1] if b in set(seen["band"])]
    return [*sorted(bands, key=lambda b: (-rank.get(b, -1.0), str(b))), *unranked, "no_history", ABSENT]


def compare_scores(old: pd.DataFrame, new: pd.DataFrame, *, top: int = 20) -> ScoreComparison:
    """Compare two scoring runs (e.g. last month's and this month's scores files) customer by customer.

    Args:
        old, new: scores with at least ``customer_id, churn_probability, risk_band``; read from CSV is fine.
        top: how many risers and fallers to keep.

    Raises:
        ValueError: a required column is missing, a run has no rows or lists a customer twice, or the old run is
            as of a later day than the new one (the files given the wrong way round).
    """
    _check_order(old, new)
    merged = _run(old, "old").merge(_run(new, "new"), on="customer_id", how="outer", indicator=True)
    merged["status"] = merged.pop("_merge").map({"both": "both", "left_only": "only_old", "right_only": "only_new"})
    merged[["old_band", "new_band"]] = merged[["old_band", "new_band"]].fillna(ABSENT)
    merged["delta"] = merged["new_probability"] - merged["old_probability"]
    changes = merged[_CHANGE_COLUMNS].astype({"status": "object"})
    changes = changes.sort_values("customer_id", kind="stable").reset_index(drop=True)

    def ranked(rows: pd.DataFrame, by: list[str], ascending: list[bool]) -> pd.DataFrame:
        return rows.sort_values(by, ascending=ascending, kind="stable").reset_index(drop=True)

    risers = ranked(changes[changes["delta"] > 0], ["delta", "customer_id"], [False, True]).head(top)
    fallers = ranked(changes[changes["delta"] < 0], ["delta", "customer_id"], [True, True]).head(top)
    fresh = changes[(changes["new_band"] == "high") & (changes["old_band"] != "high")]
    new_high = ranked(fresh, ["new_probability", "customer_id"], [False, True])
    levels = _band_levels(changes)
    transitions = pd.crosstab(pd.Categorical(changes["old_band"], levels), pd.Categorical(changes["new_band"], levels),
                              dropna=False, rownames=["old_band"], colnames=["new_band"]).astype("int64")
    return ScoreComparison(changes, risers, fallers, transitions, new_high)


def _as_float(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values).to_numpy(dtype="float64", na_value=np.nan)


def _as_text(values: pd.Series) -> pd.Series:
    return values[values.notna()].astype("object").map(str)


def _bin_counts(edges: list[float], x: np.ndarray) -> np.ndarray:
    """Counts per bin ``(edges[i-1], edges[i]]``; the outer bins are open-ended, NaN is left out."""
    x = x[~np.isnan(x)]
    return np.bincount(np.searchsorted(np.asarray(edges, dtype="float64"), x, side="left"), minlength=len(edges) + 1)


def reference_profile(values: pd.Series, *, bins: int = 10, max_categories: int = 50) -> dict:
    """Summarise one feature's reference (training) distribution for later drift checks with :func:`psi`.

    Numbers get up to ``bins`` quantile bins: ``edges`` are the inner cut points (duplicates from heavy ties
    merged), bin i is ``(edges[i-1], edges[i]]`` and the outer bins are open-ended so later values outside
    the reference range still land somewhere. Text, categorical and boolean data get the share of each of
    the ``max_categories`` most frequent values plus ``other``. Every profile has ``missing``, the share of
    missing values, which :func:`psi` treats as a bin of its own. Shares are of all ``n`` rows, so together
    they sum to 1. The result holds only str, int, float and lists/dicts of them: ``json.dumps`` stores it.

    Raises:
        ValueError: no values or ``bins`` < 1.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    n = len(values)
    if n == 0:
        raise ValueError("cannot profile an empty reference sample")
    if pd.api.types.is_bool_dtype(values.dtype) or not pd.api.types.is_numeric_dtype(values.dtype):
        text = _as_text(values)
        ordered = sorted(text.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
        kept = dict(ordered[:max_categories])
        return {"kind": "categorical", "n": n, "missing": (n - len(text)) / n,
                "categories": {str(k): int(c) / n for k, c in kept.items()},
                "other": (len(text) - sum(kept.values())) / n}
    x = _as_float(values)
    finite = x[np.isfinite(x)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])).tolist() if finite.size else []
    return {"kind": "numeric", "n": n, "missing": int(np.isnan(x).sum()) / n, "edges": [float(e) for e in edges],
            "proportions": (_bin_counts(edges, x) / n).tolist(),
            "min": float(finite.min()) if finite.size else None, "max": float(finite.max()) if finite.size else None}


REFERENCE_ROWS = 200_000  # at most this many customers profiled for the drift reference


def drift_population(features: pd.DataFrame, lookback_days: int, *, limit: int = REFERENCE_ROWS,
                     seed: int = 0) -> pd.DataFrame:
    """The customers a model's drift reference describes: those with a purchase in the ``lookback_days`` up to
    the features' day (the population the model learns from and scores), as scoring's drift sample selects
    them; a seeded sample of ``limit`` of them when there are more.

    The reference is taken on the model's own "today", so a model checked on the day it was trained shows no
    drift, and later checks measure how the customers changed since: with a reference one horizon older, the
    customers' ages alone (``bg_age_days``, ``tenure_days``) grow by the horizon and raise alarms that no
    retraining can clear."""
    rows = features[in_lookback(features["recency_days"], lookback_days)]
    return rows.sample(n=limit, random_state=seed) if len(rows) > limit else rows


def psi(profile: dict, values: pd.Series, *, floor: float = 1e-4) -> float:
    """Population stability index of ``values`` against a :func:`reference_profile`.

    PSI = sum over bins of (a - e) * ln(a / e), with ``a`` the share of ``values`` and ``e`` the reference
    share per bin; the missing values are one more bin, unseen categories fall into ``other``. Shares below
    ``floor`` are raised to it so an empty bin gives a large but finite term. Rule of thumb: < 0.1 stable,
    0.1-0.2 a moderate shift, >= 0.2 a real shift worth a look (or a retrain).

    Raises:
        ValueError: ``values`` is empty, or holds text where the profile expects numbers.
    """
    n = len(values)
    if n == 0:
        raise ValueError("cannot compute the PSI of an empty sample")
    if profile["kind"] == "categorical":
        text = _as_text(values)
        counts = text.value_counts()
        seen = [int(counts.get(c, 0)) for c in profile["categories"]]
        actual = [*seen, len(text) - sum(seen), n - len(text)]
        expected = [*profile["categories"].values(), profile["other"], profile["missing"]]
    else:
        x = _as_float(values)
        actual = [*_bin_counts(profile["edges"], x), int(np.isnan(x).sum())]
        expected = [*profile["proportions"], profile["missing"]]
    a = np.maximum(np.asarray(actual, dtype="float64") / n, floor)
    e = np.maximum(np.asarray(expected, dtype="float64"), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_table(profiles: dict[str, dict], frame: pd.DataFrame, *, threshold: float = 0.2,
                moderate: float = 0.1) -> pd.DataFrame:
    """PSI of every profiled feature in ``frame``: ``feature, psi, level``, worst first.

    ``level`` is ``stable`` (psi < ``moderate``), ``moderate``, ``shift`` (psi >= ``threshold``) or
    ``missing`` for a profiled feature absent from ``frame`` (psi NaN, listed first: a feature the model
    needs has disappeared, which is worse than any drift). Ties are broken by feature name.
    """
    def level(value: float) -> str:
        return "shift" if value >= threshold else "moderate" if value >= moderate else "stable"

    values = {f: psi(p, frame[f]) if f in frame.columns else math.nan for f, p in profiles.items()}
    rows = [(f, v, "missing" if f not in frame.columns else level(v)) for f, v in values.items()]
    out = pd.DataFrame(rows, columns=["feature", "psi", "level"]).astype({"psi": "float64"})
    return out.sort_values(["psi", "feature"], ascending=[False, True], na_position="first",
                           kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class DriftCheck:
    """PSI of today's features and score against the model's training reference.

    Attributes:
        table: :func:`drift_table`'s rows; None when the model file holds no training reference.
        threshold: the PSI from which a feature counts as shifted.
        reference_day: the model's training day (ISO date), whose customers the reference describes.
    """

    table: pd.DataFrame | None
    threshold: float = 0.2
    reference_day: str | None = None

    @property
    def shifted(self) -> pd.DataFrame:
        """The rows of the features that shifted or are missing."""
        if self.table is None:
            return pd.DataFrame(columns=["feature", "psi", "level"])
        return self.table[self.table["level"].isin(["shift", "missing"])]

    def write(self, path: str | Path) -> str | None:
        """Write the table to ``path`` and describe it in one line (None without a training reference)."""
        from churnguard._io.write import write_table

        if self.table is None:
            return None
        write_table(self.table, path)
        shifted = self.shifted
        if shifted.empty:
            return f"drift: no PSI at or above {self.threshold} -> {path}"
        listed = ", ".join(f"{r.feature} ({'missing' if r.level == 'missing' else f'{r.psi:.2f}'})"
                           for r in shifted.head(8).itertuples())
        return f"warning: data drift against the training data, {len(shifted)} of {len(self.table)}: {listed} -> {path}"

    def to_html(self) -> str:
        """The report's section: the PSI table with how to read it, or why there is none."""
        if self.table is None:
            return "<p>This model file holds no training reference for drift checks.</p>"
        rows = "".join(
            f"<tr><td>{html.escape(str(r.feature))}</td><td>{'' if r.psi != r.psi else f'{r.psi:.3f}'}</td>"
            f"<td>{html.escape(str(r.level))}</td></tr>"
            for r in self.table.itertuples()
        )
        reference = f"its training day, {self.reference_day}" if self.reference_day else "its training day"
        return ("<p>Population stability index of each feature and of the score: today's customers against the "
                f"model's on {html.escape(reference)} (those with a purchase in the lookback window), under 0.1 "
                "stable, 0.1-0.2 moderate, from 0.2 a shift worth a retrain. Data that end on the training day "
                "give 0 everywhere.</p>"
                f"<table><tr><th>feature</th><th>PSI</th><th>level</th></tr>{rows}</table>")


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def _wilson(x, n, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of x successes out of n (NaN where n = 0), vectorised."""
    x, n = np.asarray(x, dtype="float64"), np.asarray(n, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        p, denom = x / n, 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def newcombe_interval(x1: int, n1: int, x2: int, n2: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for p1 - p2, from the two Wilson intervals.

    Unlike the Wald interval it stays inside [-1, 1] and keeps its coverage for small groups and rates
    near 0 or 1, which retention rates often are. NaN bounds when a group is empty.
    """
    z = _z(confidence)
    (l1, u1), (l2, u2) = _wilson(x1, n1, z), _wilson(x2, n2, z)
    p1, p2 = (x1 / n1 if n1 else math.nan), (x2 / n2 if n2 else math.nan)
    d = p1 - p2
    return float(d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)), float(d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def as_flags(values: pd.Series) -> np.ndarray:
    """Yes/no cells as booleans: true, t, yes, y, 1 (any case, spaces around) are True; anything else False."""
    return values.astype("string").str.strip().str.lower().isin(_TRUE).to_numpy(dtype=bool)


def _readout_row(action: str, g: pd.DataFrame, *, last_day: pd.Timestamp, horizon: pd.Timedelta,
                 confidence: float, min_group: int) -> dict:
    contacted, control = g.loc[~g["control"], "retained"], g.loc[g["control"], "retained"]
    n1, x1, n0, x0 = len(contacted), int(contacted.sum()), len(control), int(control.sum())
    r1, r0 = (x1 / n1 if n1 else math.nan), (x0 / n0 if n0 else math.nan)
    lo, hi = newcombe_interval(x1, n1, x0, n0, confidence=confidence)
    end = g["as_of"].max() + horizon
    complete = bool(pd.notna(last_day) and last_day >= end)
    notes = [] if complete else [f"outcome window incomplete: data end before {end.date()}"]
    if not min(n1, n0):
        notes.append(f"no {'control' if n0 == 0 else 'contacted'} customers (contacted {n1:,}, control {n0:,}): "
                     "nothing to compare with")
    elif min(n1, n0) < min_group:
        notes.append(f"too few customers to judge (contacted {n1:,}, control {n0:,}; need {min_group:,} each)")
    return {"action": action, "n_contacted": n1, "n_control": n0, "retained_contacted": x1, "retained_control": x0,
            "retention_contacted": r1, "retention_control": r0, "uplift": r1 - r0, "ci_low": lo, "ci_high": hi,
            "observed_success_rate": float(np.clip((r1 - r0) / (1 - r0), 0, 1)) if r0 < 1 else math.nan,
            "window_complete": complete, "small_group": min(n1, n0) < min_group, "note": "; ".join(notes)}


def scores_days(as_of: pd.Series, source: str = "the scores'") -> pd.Series:
    """A scores table's ``as_of`` column as timestamps (``YYYY-MM-DD``, as ``score`` writes it). ValueError
    naming ``source`` (e.g. a file name) for days written otherwise, such as a spreadsheet's ``6/30/2025``."""
    days = pd.to_datetime(as_of, format="ISO8601", errors="coerce")
    if (unread := as_of.notna() & days.isna()).any():
        examples = ", ".join(map(repr, as_of[unread].astype(str).unique()[:3]))
        raise ValueError(f"{source} column 'as_of' has {int(unread.sum()):,} day(s) not written YYYY-MM-DD as "
                         f"score writes them, e.g. {examples} (a spreadsheet rewrites days when it saves a copy): "
                         "use the scores file score wrote")
    return days


def campaign_readout(scores: pd.DataFrame, transactions: pd.DataFrame, *, horizon_days: int = 90,
                     confidence: float = 0.95, min_group: int = MIN_GROUP) -> pd.DataFrame:
    """What a past campaign achieved: retention of contacted vs held-out control customers, per action.

    Only ``selected`` customers count: ``contacted`` = selected and not ``control_group``, ``control`` =
    selected but held out. A customer is *retained* when they bought (``amount > 0``) on a day in
    ``(as_of, as_of + horizon_days]``, ``as_of`` taken from their scores row. One row per action (sorted),
    then ``(all)``, with ``n_contacted, n_control, retained_*, retention_contacted, retention_control``,
    ``uplift`` = retention_contacted - retention_control and its Newcombe interval ``ci_low, ci_high``.

    ``observed_success_rate`` = uplift / (1 - retention_control), clipped to [0, 1]: of the contacted
    customers who would have churned without the contact (the control group's churn rate), the share the
    action kept. That is the ``success_rate`` of ``configs/actions.yaml`` (NaN if the control kept everyone).
    Trust it only when ``window_complete`` (the transactions reach ``as_of + horizon_days``) and not
    ``small_group`` (fewer than ``min_group`` customers in either group); ``note`` says why not.

    Raises:
        ValueError: a required column is missing, nobody was selected, or a bad horizon or confidence.
    """
    missing = sorted({"customer_id", "as_of", "action", "selected", "control_group"} - set(scores.columns))
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    if missing:
        raise ValueError(f"the scores lack column(s) {', '.join(missing)}")
    picked = scores[as_flags(scores["selected"])]
    if picked.empty:
        raise ValueError("nobody was selected in these scores: there is no campaign to read out")
    frame = pd.DataFrame({"customer_id": picked["customer_id"].astype(str).to_numpy(),
                          "as_of": scores_days(picked["as_of"]).dt.normalize().to_numpy(),
                          "action": picked["action"].astype("object").fillna("(none)").astype(str).to_numpy(),
                          "control": as_flags(picked["control_group"])})
    stamps = pd.to_datetime(transactions["timestamp"], format="ISO8601")
    if stamps.dt.tz is not None:  # validated tables are naive UTC, like the scores' as_of
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    tx = pd.DataFrame({"customer_id": transactions["customer_id"].astype(str).to_numpy(), "timestamp": stamps.to_numpy(),
                       "amount": pd.to_numeric(transactions["amount"]).to_numpy()})
    horizon = pd.Timedelta(days=horizon_days)
    last_day = stamps.max().normalize() if len(stamps) else pd.NaT
    first_as_of = frame["as_of"].min()
    if pd.isna(last_day) or last_day <= first_as_of:
        ends = "hold no rows" if pd.isna(last_day) else f"end on {last_day.date()}"
        raise ValueError(f"the outcome window has not started: the scores are as of {first_as_of.date()} and the "
                         f"transactions {ends}; read the campaign out after {(first_as_of + horizon).date()} "
                         "(as_of + horizon), with the transactions up to then")
    frame["retained"] = bought_within(tx, frame["customer_id"], frame["as_of"], horizon_days)
    opts = {"last_day": last_day, "horizon": horizon, "confidence": confidence, "min_group": min_group}
    rows = [_readout_row(str(a), g, **opts) for a, g in frame.groupby("action", sort=True)]
    return pd.DataFrame([*rows, _readout_row(ALL_ACTIONS, frame, **opts)])


READOUT_COLUMNS = ("action", "n_contacted", "n_control", "retention_contacted", "retention_control", "uplift",
                   "ci_low", "ci_high")


def load_readout(source: Path | DbSource) -> pd.DataFrame:
    """A read-out table written by ``churnguard campaign-readout`` (CSV, Parquet or a database table).

    Raises:
        ValueError: the file is missing or empty, or a read-out column is missing.
    """
    from churnguard.sources import DbSource, read_source

    if isinstance(source, DbSource):
        table = read_source(source)
    elif not Path(source).is_file():
        raise ValueError(f"{source}: read-out file not found")
    elif table_suffix(Path(source)) == ".csv":
        try:
            table = pd.read_csv(source, keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError:  # 0 bytes: pandas' message names no file
            raise ValueError(f"{source}: the read-out file is empty") from None
    else:
        table = pd.read_parquet(source)
    missing = [c for c in READOUT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: not a campaign read-out: no column(s) {', '.join(missing)}")
    return table


@dataclass(frozen=True)
class MeasuredRates:
    """The success rates a read-out measured, per action, and the actions it could not judge with why."""

    rates: dict[str, float]
    not_used: dict[str, str]
    source: str = "the read-out"
    unknown: tuple[str, ...] = ()  # actions of the read-out that the playbook does not have

    def lines(self) -> list[str]:
        """The rates in words: which actions got a measured rate, then each one that keeps the playbook's
        and why, then the read-out's actions the playbook does not have."""
        rates = ", ".join(f"{a} {r:.0%}" for a, r in sorted(self.rates.items())) or "none it could judge"
        return [f"success rates measured by campaign-readout ({self.source}): {rates}",
                *(f"  {a}: the playbook's; {why}" for a, why in sorted(self.not_used.items())),
                *([f"  not actions of the playbook, so not used: {', '.join(self.unknown)}"] if self.unknown else [])]


def measured_success_rates(readout: pd.DataFrame, source: str = "the read-out",
                           actions: Iterable[str] | None = None) -> MeasuredRates:
    """Each action's ``observed_success_rate`` from a read-out (read from ``source``), where it can be trusted:
    the outcome window was complete and both groups had enough customers (the read-out's ``window_complete``
    and ``small_group``); the other actions are listed with the read-out's note. With ``actions`` (the
    playbook's), the read-out's other actions are listed apart (a renamed action's rate would be lost unsaid)."""
    rates, not_used, unknown = {}, {}, []
    known = None if actions is None else set(actions)
    for row in readout.to_dict("records"):
        action, rate = str(row["action"]), row.get("observed_success_rate")
        if action == ALL_ACTIONS:
            continue
        if known is not None and action not in known:
            unknown.append(action)
        elif not _truthy(row.get("window_complete", True)) or _truthy(row.get("small_group", False)):
            not_used[action] = str(row.get("note") or "not judged")
        elif rate is None or not np.isfinite(float(rate)):
            not_used[action] = "no success rate (the control group kept everyone)"
        else:
            rates[action] = float(rate)
    return MeasuredRates(rates, not_used, source, tuple(sorted(unknown)))


def _truthy(value: object) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0", "yes", "t")


def plot_transitions(comparison: ScoreComparison, path: str | Path) -> Path:
    """Heatmap of the band transition matrix, each cell labelled with its customer count."""
    t = comparison.transitions
    fig, ax = chart_axes()
    image = ax.imshow(t.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(t.columns)), labels=list(t.columns), rotation=30, ha="right")
    ax.set_yticks(range(len(t.index)), labels=list(t.index))
    for (i, j), count in np.ndenumerate(t.to_numpy()):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > t.to_numpy().max() / 2 else "black")
    ax.set(xlabel="band in the new run", ylabel="band in the old run", title="Risk band transitions")
    fig.colorbar(image, ax=ax, label="customers")
    return save_chart(fig, path)


def plot_drift(table: pd.DataFrame, path: str | Path, *, threshold: float = 0.2) -> Path:
    """Horizontal PSI bars per feature (worst on top) with the shift threshold; missing features marked."""
    rows = table.iloc[::-1]
    colours = {"stable": "tab:green", "moderate": "tab:orange", "shift": "tab:red", "missing": "grey"}
    fig, ax = chart_axes(height=max(3.0, 0.3 * len(rows) + 1.5))
    ax.barh(range(len(rows)), rows["psi"].fillna(0).to_numpy(), color=[colours[v] for v in rows["level"]])
    ax.set_yticks(range(len(rows)), labels=[f"{f} (missing)" if lvl == "missing" else str(f)
                                            for f, lvl in zip(rows["feature"], rows["level"], strict=True)])
    ax.axvline(threshold, color="red", linestyle="--", label=f"shift threshold {threshold:g}")
    ax.set(xlabel="population stability index", title="Feature drift against the training reference")
    ax.legend(loc="lower right")
    return save_chart(fig, path)


def plot_readout(readout: pd.DataFrame, path: str | Path, *, confidence: float = 0.95) -> Path:
    """Retention of contacted vs control customers per action, with Wilson intervals as error bars."""
    z, x = _z(confidence), np.arange(len(readout))
    fig, ax = chart_axes(width=max(6.4, 1.1 * len(readout) + 2))
    for offset, group in ((-0.2, "contacted"), (0.2, "control")):
        rate = readout[f"retention_{group}"].to_numpy(dtype="float64")
        lo, hi = _wilson(readout[f"retained_{group}"], readout[f"n_{group}"], z)
        err = np.clip(np.nan_to_num(np.vstack([rate - lo, hi - rate])), 0, None)  # rounding can dip below 0
        ax.bar(x + offset, np.nan_to_num(rate), 0.4, yerr=err, capsize=3, label=group)
    ax.set_xticks(x, labels=list(readout["action"]), rotation=20, ha="right")
    ax.set(ylim=(0, 1.05), ylabel="share retained in the horizon",
           title=f"Retention, contacted vs control ({confidence:.0%} intervals)")
    ax.legend()
    return save_chart(fig, path)
