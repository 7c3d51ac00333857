"""Training set assembly: point-in-time features joined to labels at many rolling snapshots.

Snapshots are spaced ``cadence_days`` apart, newest first, ending at the last day whose label window is
complete (``last_date - horizon_days``). Every row carries its ``as_of`` so that later steps split by time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import pandas as pd

from churnguard.features import _build, _encode, _known, to_day
from churnguard.labels import _active_and_churned

if TYPE_CHECKING:
    from churnguard.config import FeatureConfig, LabelConfig, SnapshotConfig
    from churnguard.dataset import Tables

__all__ = ["make_training_set", "snapshot_dates"]

logger = logging.getLogger(__name__)


def snapshot_dates(
    first_date: pd.Timestamp,
    last_date: pd.Timestamp,
    labels: LabelConfig,
    snapshots: SnapshotConfig,
) -> list[pd.Timestamp]:
    """Snapshot days, oldest first, whose label windows end on or before ``last_date``.

    Raises:
        ValueError: the data spans too little time for ``snapshots.max_snapshots`` >= 3 usable snapshots.
    """
    first_date, last_date = to_day(first_date), to_day(last_date)
    newest = last_date - pd.Timedelta(days=labels.horizon_days)
    earliest = first_date + pd.Timedelta(days=snapshots.min_history_days)
    dates = [newest - pd.Timedelta(days=k * snapshots.cadence_days) for k in range(snapshots.max_snapshots)]
    dates = sorted(d for d in dates if d >= earliest)
    if len(dates) < 3:
        need = snapshots.min_history_days + labels.horizon_days + 2 * snapshots.cadence_days
        raise ValueError(
            f"the data covers {first_date.date()} to {last_date.date()} "
            f"({(last_date - first_date).days} days); training needs at least 3 snapshots (train, validation, "
            f"test), i.e. about {need} days with min_history_days={snapshots.min_history_days}, "
            f"horizon_days={labels.horizon_days}, cadence_days={snapshots.cadence_days}"
        )
    return dates


def make_training_set(
    tables: Tables,
    *,
    features: FeatureConfig,
    labels: LabelConfig,
    snapshots: SnapshotConfig,
    last_date: str | pd.Timestamp | None = None,
    dates: Iterable[pd.Timestamp] | None = None,
    enrich: Callable[[pd.DataFrame, pd.Timestamp], pd.DataFrame] | None = None,
    on_snapshot: Callable[[pd.Timestamp], None] | None = None,
) -> pd.DataFrame:
    """Features and ``churned`` labels for the active population at each snapshot, oldest first.

    Args:
        tables: validated inputs.
        features, labels, snapshots: the config parts for each step.
        last_date: the last day whose data may be used (default: the last transaction day). Nothing after
            it is read, for features or labels.
        dates: explicit snapshot days (default: :func:`snapshot_dates`).
        enrich: called with each snapshot's features of every known customer (before the labelled population
            is selected) and its day; returns the features with more columns (e.g. BG/NBD ones).
        on_snapshot: called after each snapshot, e.g. to advance a progress bar.
    """
    last = to_day(last_date) if last_date is not None else tables.last_date()
    if dates is None:
        dates = snapshot_dates(tables.transactions["timestamp"].min(), last, labels, snapshots)
    encoded = _encode(tables)  # customer ids as integers once, for every snapshot
    frames = []
    for as_of in dates:
        as_of = to_day(as_of)
        if as_of + pd.Timedelta(days=labels.horizon_days) > last:
            raise ValueError(f"snapshot {as_of.date()}: its label window ends after the last usable day {last.date()}")
        x = _build(encoded, as_of, features)
        if enrich is not None:
            x = enrich(x, as_of)
        # make_labels' population and outcome, matched to the feature rows by position: every labelled
        # customer bought by as_of, so is known then and has a feature row.
        active, churned = _active_and_churned(encoded, as_of, labels.horizon_days, labels.lookback_days)
        known = _known(encoded, as_of)
        labelled = active[known]
        rows = x[labelled].reset_index(drop=True)
        rows["churned"] = churned[known][labelled].astype("int8")
        logger.info("snapshot %s: %d customers, churn rate %.3f", as_of.date(), len(rows), rows["churned"].mean())
        frames.append(rows)
        if on_snapshot is not None:
            on_snapshot(as_of)
    return pd.concat(frames, ignore_index=True)
