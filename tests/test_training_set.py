"""Training set assembly: the row cap shares its budget between snapshots and samples each one reproducibly."""

from __future__ import annotations

import pandas as pd
import pytest

from churnguard.config import SnapshotConfig
from churnguard.dataset import validate_tables
from churnguard.demo import generate_demo_data
from churnguard.training.snapshots import make_training_set, sample_sizes

D1, D2, D3 = pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-31"), pd.Timestamp("2024-03-01")


def test_sample_sizes_by_hand():
    # Under the cap, or with no cap, every row is kept.
    assert sample_sizes({D1: 300, D2: 100}, 400) == {D1: 300, D2: 100}
    assert sample_sizes({D1: 300, D2: 100}, None) == {D1: 300, D2: 100}
    # 500 rows, cap 250: each snapshot keeps half.
    assert sample_sizes({D1: 300, D2: 100, D3: 100}, 250) == {D1: 150, D2: 50, D3: 50}
    # Shares 3.5, 2.1, 1.4 -> floors 3, 2, 1 (6 rows); the one left goes to the largest remainder (0.5).
    assert sample_sizes({D1: 5, D2: 3, D3: 2}, 7) == {D1: 4, D2: 2, D3: 1}
    # Equal remainders: the older snapshot first.
    assert sample_sizes({D1: 1, D2: 1, D3: 1}, 2) == {D1: 1, D2: 1, D3: 0}


@pytest.fixture(scope="module")
def world(config):
    demo = generate_demo_data(600, seed=11)
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=config.data)
    snaps = SnapshotConfig(max_snapshots=6)
    full = make_training_set(tables, features=config.features, labels=config.labels, snapshots=snaps)
    return tables, snaps, full


def test_row_cap_samples_each_snapshot_in_proportion(config, world):
    tables, snaps, full = world
    cap = len(full) // 3
    kw = {"features": config.features, "labels": config.labels, "snapshots": snaps, "max_rows": cap}
    sampled = make_training_set(tables, **kw, seed=7)
    assert len(sampled) == cap
    counts, kept = full["as_of"].value_counts(), sampled["as_of"].value_counts()
    assert set(kept.index) == set(counts.index)  # every snapshot is represented
    assert (abs(kept - counts * cap / len(full)) < 1).all()  # ... with its share of the rows
    assert not sampled.duplicated(["customer_id", "as_of"]).any()
    # The sampled rows are the full set's rows, unchanged, in the same order.
    pd.testing.assert_frame_equal(sampled, full.merge(sampled[["customer_id", "as_of"]]), check_like=False)
    # Reproducible with the seed; another seed draws other customers.
    pd.testing.assert_frame_equal(make_training_set(tables, **kw, seed=7), sampled)
    other = make_training_set(tables, **kw, seed=8)
    assert len(other) == cap
    assert not other["customer_id"].equals(sampled["customer_id"])


def test_row_cap_above_the_rows_keeps_everything(config, world):
    tables, snaps, full = world
    again = make_training_set(tables, features=config.features, labels=config.labels, snapshots=snaps,
                              max_rows=len(full), seed=7)
    pd.testing.assert_frame_equal(again, full)
