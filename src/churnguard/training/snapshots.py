"""Training set assembly: point-in-time features joined to labels at many rolling snapshots.

Snapshots are spaced ``cadence_days`` apart, newest first, ending at the last day whose label window is
complete (``last_date - horizon_days``). Every row carries its ``as_of``; which snapshots a model learns from
is :mod:`churnguard.training.procedure`'s. When the data is too short for the configured schedule to leave
room for a backtest, :func:`fit_schedule` adapts it (a shorter minimum history, a denser cadence).

When the snapshots hold more rows than a training run should keep in memory (``snapshots.max_train_rows``),
:func:`sample_sizes` shares the row budget between snapshots in proportion to their populations, and each
snapshot keeps a seeded random sample of its customers (:func:`make_training_set`'s ``max_rows``). The
populations are counted from the labels alone, before any feature is built, so no snapshot is ever held whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._text import plural
from churnguard.features.build import _build, _encode, _known, to_day
from churnguard.labels import _active_and_churned

if TYPE_CHECKING:
    from churnguard.config import FeatureConfig, LabelConfig, SnapshotConfig
    from churnguard.dataset import Tables

__all__ = ["fit_schedule", "has_backtest", "make_training_set", "sample_sizes", "snapshot_dates"]

logger = logging.getLogger(__name__)


def snapshot_dates(
    first_date: pd.Timestamp,
    last_date: pd.Timestamp,
    labels: LabelConfig,
    snapshots: SnapshotConfig,
) -> list[pd.Timestamp]:
    """Snapshot days, oldest first, whose label windows end on or before ``last_date`` and that have
    ``min_history_days`` of data before them.

    Raises:
        ValueError: ``last_date`` (the training day, as_of) is before ``first_date`` (the first purchase), or no
            day has both, with the longest horizon the data allows.
    """
    first_date, last_date = to_day(first_date), to_day(last_date)
    if last_date < first_date:
        raise ValueError(f"as_of {last_date.date()} is before the first purchase in the data ({first_date.date()}): "
                         "there is no history to learn from; pick a later as_of")
    newest = last_date - pd.Timedelta(days=labels.horizon_days)
    earliest = first_date + pd.Timedelta(days=snapshots.min_history_days)
    dates = [newest - pd.Timedelta(days=k * snapshots.cadence_days) for k in range(snapshots.max_snapshots)]
    dates = sorted(d for d in dates if d >= earliest)
    if not dates:
        span = (last_date - first_date).days
        most = span - snapshots.min_history_days
        advice = (f"train with --horizon-days {most} or less (labels.horizon_days), or provide more history"
                  if most > 0 else "provide more history")
        raise ValueError(
            f"the data covers {first_date.date()} to {last_date.date()} ({plural(span, 'day')}): too short to learn "
            f"anything, since a snapshot needs {snapshots.min_history_days:,} days of history before it and its "
            f"{labels.horizon_days:,}-day outcome window after it; {advice}"
        )
    return dates


def has_backtest(first_date: pd.Timestamp, last_date: pd.Timestamp, labels: LabelConfig,
                 snapshots: SnapshotConfig) -> bool:
    """Whether the training procedure can be run as of ``last_date - horizon`` as it runs as of ``last_date``:
    at least 3 snapshots by then, the newest of them later than the outcome window of another."""
    backtest_day = to_day(last_date) - pd.Timedelta(days=labels.horizon_days)
    try:
        dates = snapshot_dates(first_date, backtest_day, labels, snapshots)
    except ValueError:
        return False
    return len(dates) >= 3 and dates[0] + pd.Timedelta(days=labels.horizon_days) <= dates[-1]


def fit_schedule(first_date: pd.Timestamp, last_date: pd.Timestamp, labels: LabelConfig,
                 snapshots: SnapshotConfig) -> SnapshotConfig:
    """The snapshot schedule for data from ``first_date`` to ``last_date``: the configured one when it leaves
    room for a backtest, else one adapted to the data.

    Adapting tries the histories ``min_history_days``, 30 days less, ... down to ``shortest_history_days``
    (longest first) and for each the cadences ``cadence_days``, halved, ... down to ``densest_cadence_days``
    (sparsest first), with ``max_snapshots`` scaled so that the snapshots may cover as many days as
    configured. It takes the first schedule that leaves room for a backtest (:func:`has_backtest`), else the
    first that gives at least 3 snapshots, else the shortest history at the densest cadence.

    Raises:
        ValueError: not even that schedule has a labelled snapshot (:func:`snapshot_dates`).
    """
    if has_backtest(first_date, last_date, labels, snapshots):
        return snapshots
    span = snapshots.max_snapshots * snapshots.cadence_days  # days the configured snapshots may cover
    schedules = [snapshots.model_copy(update={"min_history_days": m, "cadence_days": c, "max_snapshots": span // c})
                 for m in _histories(snapshots) for c in _cadences(snapshots)]
    for schedule in schedules:
        if has_backtest(first_date, last_date, labels, schedule):
            return schedule
    for schedule in schedules:
        try:
            if len(snapshot_dates(first_date, last_date, labels, schedule)) >= 3:
                return schedule
        except ValueError:
            continue
    snapshot_dates(first_date, last_date, labels, schedules[-1])  # raises when it has no snapshot
    return schedules[-1]


def _histories(snapshots: SnapshotConfig) -> list[int]:
    """``min_history_days``, then 30 days less at a time, down to ``shortest_history_days``."""
    days = [snapshots.min_history_days]
    while days[-1] - 30 >= snapshots.shortest_history_days:
        days.append(days[-1] - 30)
    return days if days[-1] <= snapshots.shortest_history_days else [*days, snapshots.shortest_history_days]


def _cadences(snapshots: SnapshotConfig) -> list[int]:
    """``cadence_days``, then halved, down to ``densest_cadence_days``."""
    days = [snapshots.cadence_days]
    while days[-1] // 2 >= snapshots.densest_cadence_days:
        days.append(days[-1] // 2)
    return days


def sample_sizes(counts: Mapping[pd.Timestamp, int], max_rows: int | None) -> dict[pd.Timestamp, int]:
    """Rows to keep from each snapshot so that they total at most ``max_rows``, each in proportion to its size.

    Every count is kept when they add up to ``max_rows`` or less (or ``max_rows`` is None). Otherwise each
    snapshot gets its share ``n * max_rows / total`` rounded down, and the rows left over go one each to the
    snapshots with the largest remainders (the older snapshot first on a tie), so the sizes add up to exactly
    ``max_rows``. E.g. counts 300, 100, 100 with ``max_rows`` 250 give 150, 50, 50.
    """
    total = sum(counts.values())
    if max_rows is None or total <= max_rows:
        return dict(counts)
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    share = {day: n * max_rows / total for day, n in counts.items()}
    keep = {day: int(x) for day, x in share.items()}
    left = max_rows - sum(keep.values())
    for day in sorted(share, key=lambda d: (keep[d] - share[d], d))[:left]:
        keep[day] += 1
    return keep


def _sample_positions(n: int, k: int, seed: int, as_of: pd.Timestamp) -> np.ndarray:
    """``k`` of the positions ``0..n-1``, sorted, drawn by a generator seeded with ``seed`` and the day, so a
    snapshot's sample does not depend on which other snapshots are built."""
    rng = np.random.default_rng([seed, as_of.toordinal()])
    return np.sort(rng.choice(n, size=k, replace=False))


class _Snapshots:
    """Labelled snapshot rows from one integer encoding of the tables, reused for every snapshot."""

    def __init__(self, tables: Tables, features: FeatureConfig, labels: LabelConfig, last: pd.Timestamp,
                 enrich: Callable[[pd.DataFrame, pd.Timestamp], pd.DataFrame] | None = None) -> None:
        self.encoded = _encode(tables)
        self.features, self.labels, self.last, self.enrich = features, labels, last, enrich

    def _check(self, as_of: pd.Timestamp) -> None:
        if as_of + pd.Timedelta(days=self.labels.horizon_days) > self.last:
            raise ValueError(f"snapshot {as_of.date()}: its label window ends after the last usable day "
                             f"{self.last.date()}")

    def features_at(self, as_of: pd.Timestamp) -> pd.DataFrame:
        """``build_features(tables, as_of, features)`` of every known customer, without labels."""
        return _build(self.encoded, as_of, self.features)

    def population(self, as_of: pd.Timestamp) -> int:
        """How many labelled rows :meth:`rows` gives for ``as_of`` (from the labels only: cheap)."""
        self._check(as_of)
        active, _ = _active_and_churned(self.encoded, as_of, self.labels.horizon_days, self.labels.lookback_days)
        return int(np.count_nonzero(active[_known(self.encoded, as_of)]))

    def rows(self, as_of: pd.Timestamp, keep: int | None = None, seed: int = 0) -> pd.DataFrame:
        """Features and ``churned`` of the labelled population at ``as_of``; a seeded sample of ``keep``
        of them when ``keep`` is smaller than the population."""
        self._check(as_of)
        x = _build(self.encoded, as_of, self.features)
        if self.enrich is not None:
            x = self.enrich(x, as_of)  # on every known customer, before the population is selected
        # make_labels' population and outcome, matched to the feature rows by position: every labelled
        # customer bought by as_of, so is known then and has a feature row.
        active, churned = _active_and_churned(self.encoded, as_of, self.labels.horizon_days,
                                              self.labels.lookback_days)
        known = _known(self.encoded, as_of)
        labelled = active[known]
        outcome = churned[known][labelled].astype("int8")
        if keep is not None and keep < len(outcome):
            at = _sample_positions(len(outcome), keep, seed, as_of)
            rows = x.iloc[np.flatnonzero(labelled)[at]].reset_index(drop=True)
            logger.info("snapshot %s: %d of %d customers (sampled), churn rate %.3f", as_of.date(), keep,
                        len(outcome), outcome[at].mean())
            outcome = outcome[at]
        else:
            rows = x[labelled].reset_index(drop=True)
            logger.info("snapshot %s: %d customers, churn rate %.3f", as_of.date(), len(rows), outcome.mean())
        rows["churned"] = outcome
        return rows


def make_training_set(
    tables: Tables,
    *,
    features: FeatureConfig,
    labels: LabelConfig,
    snapshots: SnapshotConfig,
    last_date: str | pd.Timestamp | None = None,
    dates: Iterable[pd.Timestamp] | None = None,
    max_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Features and ``churned`` labels for the active population at each snapshot, oldest first.

    Args:
        tables: validated inputs.
        features, labels, snapshots: the config parts for each step.
        last_date: the last day whose data may be used (default: the last transaction day). Nothing after
            it is read, for features or labels.
        dates: explicit snapshot days (default: :func:`snapshot_dates`).
        max_rows: keep at most this many rows in all: each snapshot a seeded sample of its customers, sized
            by :func:`sample_sizes` (default: every row; ``snapshots.max_train_rows`` is applied by the
            training run to its training snapshots only).
        seed: the sample's seed; the same seed, data and dates give the same rows.
    """
    last = to_day(last_date) if last_date is not None else tables.last_date()
    if dates is None:
        dates = snapshot_dates(tables.transactions["timestamp"].min(), last, labels, snapshots)
    dates = [to_day(d) for d in dates]
    built = _Snapshots(tables, features, labels, last)  # customer ids as integers once, for every snapshot
    keep = sample_sizes({d: built.population(d) for d in dates}, max_rows) if max_rows is not None else {}
    return pd.concat([built.rows(as_of, keep.get(as_of), seed) for as_of in dates], ignore_index=True)
