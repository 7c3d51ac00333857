"""Labels and rolling snapshots: population, the (as_of, as_of + horizon] window, no look-ahead."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from churnguard.config import LabelConfig, SnapshotConfig
from churnguard.dataset import validate_tables
from churnguard.labels import make_labels
from churnguard.training.snapshots import make_training_set, snapshot_dates


def _tables(config, rows):
    tx = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    return validate_tables(tx, config=config.data)


def test_label_window_boundaries(config):
    # as_of 2024-03-31, horizon 10 days -> window (03-31, 04-10].
    t = _tables(
        config,
        [
            ("on_as_of", "2024-03-31 18:00", 5),  # bought on as_of only: in population, churned
            ("at_end", "2024-03-01", 5), ("at_end", "2024-04-10 23:00", 5),  # last day of window: stays
            ("after_end", "2024-03-01", 5), ("after_end", "2024-04-11", 5),  # one day too late: churned
            ("refund_only", "2024-03-01", 5), ("refund_only", "2024-04-05", -5),  # a refund is no return
            ("too_old", "2023-01-01", 5), ("too_old", "2024-04-02", 5),  # outside the 365-day lookback
            ("future", "2024-04-02", 5),  # first purchase after as_of: not in population
        ],
    )
    labels = make_labels(t.transactions, "2024-03-31", horizon_days=10, lookback_days=365).set_index("customer_id")
    assert labels["churned"].to_dict() == {"after_end": 1, "at_end": 0, "on_as_of": 1, "refund_only": 1}
    assert (labels["as_of"] == pd.Timestamp("2024-03-31")).all()


def test_lookback_boundary(config):
    # lookback 30 days before 2024-03-31 -> purchases on days (03-01, 03-31] count.
    t = _tables(config, [("in", "2024-03-02", 1), ("out", "2024-03-01", 1)])
    labels = make_labels(t.transactions, "2024-03-31", horizon_days=10, lookback_days=30)
    assert labels["customer_id"].tolist() == ["in"]


def test_snapshot_dates_end_where_labels_are_complete():
    dates = snapshot_dates(
        pd.Timestamp("2023-01-01"), pd.Timestamp("2024-12-31"),
        LabelConfig(horizon_days=90), SnapshotConfig(cadence_days=30, max_snapshots=4, min_history_days=180),
    )
    assert dates[-1] == pd.Timestamp("2024-12-31") - pd.Timedelta(days=90)
    assert [d2 - d1 for d1, d2 in itertools.pairwise(dates)] == [pd.Timedelta(days=30)] * 3


def test_snapshot_dates_too_little_history():
    # 152 days hold no day with 180 days of history before it and 90 days of outcome after it.
    with pytest.raises(ValueError, match=r"\(152 days\): too short to learn anything.*provide more history"):
        snapshot_dates(pd.Timestamp("2024-01-01"), pd.Timestamp("2024-06-01"), LabelConfig(), SnapshotConfig())


def test_training_set_rows_carry_as_of_and_never_see_past_last_date(config):
    rows = [(f"c{i}", f"2023-{m:02d}-{(i % 27) + 1:02d}", 10) for i in range(30) for m in range(1, 13, (i % 4) + 1)]
    t = _tables(config, rows)
    labels, snaps = LabelConfig(horizon_days=60), SnapshotConfig(cadence_days=30, max_snapshots=4, min_history_days=60)
    ts = make_training_set(t, features=config.features, labels=labels, snapshots=snaps)
    assert ts["as_of"].nunique() == 4
    assert ts["as_of"].max() + pd.Timedelta(days=60) <= t.last_date()
    assert not ts.duplicated(["customer_id", "as_of"]).any()
    # Cutting the data at the last usable day gives the same labels as the full data (no look-ahead).
    cut = _tables(config, [r for r in rows if pd.Timestamp(r[1]) <= t.last_date()])
    again = make_training_set(cut, features=config.features, labels=labels, snapshots=snaps)
    pd.testing.assert_frame_equal(ts, again)


def test_snapshot_dates_as_of_before_the_first_purchase():
    # a training day before the first purchase has no history at all: said so, not as "-214 days" of data
    with pytest.raises(ValueError, match=r"^as_of 2022-06-01 is before the first purchase in the data \(2023-01-01\)"):
        snapshot_dates(pd.Timestamp("2023-01-01"), pd.Timestamp("2022-06-01"), LabelConfig(), SnapshotConfig())


def test_snapshot_dates_too_short_counts_with_separators():
    # 1,095 days and a 100,000-day horizon, as every count a person reads
    with pytest.raises(ValueError, match=r"\(1,095 days\).*its 100,000-day outcome window"):
        snapshot_dates(pd.Timestamp("2023-01-01"), pd.Timestamp("2025-12-31"), LabelConfig(horizon_days=100_000),
                       SnapshotConfig())
