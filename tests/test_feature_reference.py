"""The vectorised features, labels and training set equal the plain pandas reference exactly."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from churnguard.config import load_config
from churnguard.dataset import FEATURE_INPUTS, arrow_column, validate_tables
from churnguard.demo import generate_demo_data
from churnguard.features import build as features
from churnguard.features import build_features, estimate_lifespan_years, kernel
from churnguard.labels import make_labels
from churnguard.population import Population
from churnguard.training.snapshots import make_training_set, snapshot_dates
from tests import reference_features

CFG = load_config()


@pytest.fixture(scope="module")
def demo_tables():
    demo = generate_demo_data(1500, seed=5)
    return validate_tables(demo.transactions, demo.tickets, demo.customers, config=CFG.data)


def _assert_same(tables, as_of, **kw):
    population = Population(kw["lifespan_years"], kw["vip_threshold"]) if kw else None
    got = build_features(tables, as_of, CFG.features, population)
    want = reference_features.build_features(tables, as_of, CFG.features, **kw)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.attrs["lifespan_years"] == want.attrs["lifespan_years"]


@pytest.mark.parametrize(("days_back", "want"), [(730, 1.0), (729, 3.0)])
def test_two_years_of_history_is_counted_in_whole_days(days_back, want):
    """Lifespan by hand: b bought 400 days before as_of and not since (annual churn 1 -> lifespan 1 year) once the
    oldest purchase (a's, at 23:00) lies on the day 730 days back; a day later it is the default 3."""
    as_of = pd.Timestamp("2024-06-30")
    tx = pd.DataFrame({"customer_id": ["a", "b"], "amount": [5.0, 7.0],
                       "timestamp": [as_of - pd.Timedelta(days=days_back, hours=-23), as_of - pd.Timedelta(days=400)]})
    tables = validate_tables(tx, None, None, config=CFG.data)
    assert estimate_lifespan_years(tables.transactions, as_of, CFG.features) == want
    assert reference_features.estimate_lifespan_years(tables.transactions, as_of, CFG.features) == want


@pytest.mark.parametrize("as_of", ["2023-01-15", "2024-03-31", "2025-06-30", "2025-12-31"])
def test_demo_features_equal_the_reference(demo_tables, as_of):
    _assert_same(demo_tables, as_of)  # lifespan estimated (a default one before two years of data)
    _assert_same(demo_tables, as_of, lifespan_years=2.5, vip_threshold=100.0)



@pytest.mark.parametrize(("block", "few_blocks"), [(64, 64), (64, 0), (16, 64), (1, 4096)])
def test_features_over_many_blocks_equal_the_reference(demo_tables, monkeypatch, block, few_blocks):
    """Purchases are aggregated per block of customer ids, the rows split by a pass per block (up to
    ``_FEW_BLOCKS`` blocks) or by one sort: small blocks put the demo's customers in tens to thousands of
    blocks, on both paths, and the result is the one-pass reference's."""
    monkeypatch.setattr(features, "_BLOCK", block)
    monkeypatch.setattr(features, "_FEW_BLOCKS", few_blocks)
    enc = features._encode(demo_tables)
    assert len(enc.block_rows) == -(-len(enc.ids) // block) > 1
    rows = np.concatenate(enc.block_rows)
    assert np.array_equal(np.sort(rows), np.arange(len(demo_tables.transactions)))
    assert all(np.all(np.diff(r) > 0) and np.all(enc.tx_id[r] // block == b) for b, r in enumerate(enc.block_rows))
    _assert_same(demo_tables, "2025-06-30")
    _assert_same(demo_tables, "2025-12-31", lifespan_years=2.5, vip_threshold=100.0)

def test_lifespan_equals_a_count_over_customer_sets(demo_tables):
    tx = demo_tables.transactions
    as_of = pd.Timestamp("2025-12-31")
    buys = tx[tx["amount"] > 0]
    age = (as_of - buys["timestamp"].dt.normalize()).dt.days
    last_year = set(buys.loc[(age >= 0) & (age < 365), "customer_id"])
    year_before = set(buys.loc[(age >= 365) & (age < 730), "customer_id"])
    churn = len(year_before - last_year) / len(year_before)
    assert estimate_lifespan_years(tx, as_of, CFG.features) == pytest.approx(min(1 / churn, 10.0), rel=1e-12)
    assert estimate_lifespan_years(tx, as_of, CFG.features) == reference_features.estimate_lifespan_years(
        tx, as_of, CFG.features)


def test_training_set_equals_features_merged_with_labels(demo_tables):
    dates = snapshot_dates(demo_tables.transactions["timestamp"].min(), demo_tables.last_date(), CFG.labels,
                           CFG.snapshots)[-3:]
    got = make_training_set(demo_tables, features=CFG.features, labels=CFG.labels, snapshots=CFG.snapshots,
                            dates=dates)
    want = pd.concat(
        [reference_features.build_features(demo_tables, d, CFG.features).merge(
            make_labels(demo_tables.transactions, d, CFG.labels.horizon_days, CFG.labels.lookback_days)
            .drop(columns="as_of"), on="customer_id", how="inner", validate="one_to_one") for d in dates],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(got, want, check_exact=True)


START = pd.Timestamp("2022-01-01")
AS_OF = pd.Timestamp("2024-06-30")
_row = st.tuples(
    st.sampled_from(["a", "b", "c", "dd", "e"]),
    st.integers(0, 900).map(lambda d: d * 24),  # whole days: many rows share a timestamp
    st.integers(0, 23),
    st.floats(-50, 500, allow_nan=False).map(lambda x: round(x, 2)).filter(lambda x: x != 0),
    st.one_of(st.none(), st.sampled_from(["o1", "o2", "o3", "order-4", "x"])),  # shared and missing order ids
)
_ticket = st.tuples(
    st.sampled_from(["a", "b", "c", "dd", "e"]),
    st.integers(0, 950 * 24),
    st.one_of(st.none(), st.integers(0, 24 * 20)),
    st.one_of(st.none(), st.integers(0, 24 * 30)),
    st.one_of(st.none(), st.integers(1, 5)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_row, min_size=1, max_size=60), st.lists(_ticket, max_size=15), st.booleans(), st.booleans())
def test_random_histories_equal_the_reference(rows, tickets, with_order_ids, with_customers):
    tx = pd.DataFrame(rows, columns=["customer_id", "hours", "jitter", "amount", "order_id"])
    tx["timestamp"] = START + pd.to_timedelta(tx.pop("hours") + tx.pop("jitter") % 2, unit="h")
    if not with_order_ids:
        tx = tx.drop(columns="order_id")
    tk = pd.DataFrame(tickets, columns=["customer_id", "hours", "reply", "resolve", "csat"])
    tk["opened_at"] = START + pd.to_timedelta(tk.pop("hours"), unit="h")
    tk["first_response_at"] = tk["opened_at"] + pd.to_timedelta(tk.pop("reply"), unit="h")
    tk["resolved_at"] = tk["opened_at"] + pd.to_timedelta(tk.pop("resolve"), unit="h")
    tk["csat"] = tk["csat"].astype("float64")
    tk = tk[tk["customer_id"].isin(set(tx["customer_id"]))]
    cu = None
    if with_customers:
        cu = pd.DataFrame({"customer_id": ["a", "b", "zz"], "signup_date": ["2021-05-01", None, "2024-01-01"],
                           "nps": [9, 4, None], "tier": ["gold", None, "silver"]})
    tables = validate_tables(tx, tk if len(tk) else None, cu, config=CFG.data)
    for as_of in (AS_OF, START + pd.Timedelta(days=30)):
        _assert_same(tables, as_of)


def test_row_hashes_are_equal_for_equal_rows():
    values = pd.Series(["O1", "O22", None, "O1", "", "a-much-longer-order-id", "O22"], dtype="str")
    h = features._hashes({"o": arrow_column(values), "c": np.array([1, 2, 3, 1, 5, 6, 2])})
    assert h[0] == h[3]
    assert h[1] == h[6]
    assert len(set(h[[0, 1, 2, 4, 5]].tolist())) == 5
    sliced = features._hashes({"o": arrow_column(values.iloc[1:3]), "c": np.array([2, 3])})
    assert sliced.tolist() == [h[1], h[2]]  # a sliced Arrow array


def test_hash_collisions_fall_back_to_the_actual_keys(demo_tables, monkeypatch):
    """Ids and order keys are grouped by hash, then checked: with a hash that makes nearly every key collide,
    the features are still exactly the reference's."""
    real = features._hashes
    monkeypatch.setattr(features, "_hashes", lambda columns: real(columns) % np.uint64(7))
    _assert_same(demo_tables, "2025-06-30")
    ids, positions = features._encode_ids([pd.Series(["b", "a", "c", "a"], dtype="str"),
                                           pd.Series(["c", "d"], dtype="str")])
    assert ids.tolist() == ["a", "b", "c", "d"]
    assert [p.tolist() for p in positions] == [[1, 0, 2, 0], [2, 3]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40), min_size=1, max_size=30))
def test_run_std_is_pandas_grouped_std_to_the_bit(runs):
    values = np.array([v for run in runs for v in run])
    sizes = np.array([len(run) for run in runs])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    want = pd.Series(values).groupby(np.repeat(np.arange(len(runs)), sizes), sort=False).std().to_numpy()
    np.testing.assert_array_equal(kernel.run_std(values, starts, sizes), want)


_MANY = [(i * 7 % 10, (i * 7919 % 1000) / 7.0 - 60.0) for i in range(kernel._FEW_VALUES + 100)]  # arrays' path


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 9), st.floats(-1e6, 1e6, allow_nan=False)), max_size=600))
@example(_MANY)
@example([(0, 1.0627551447832957), (0, 1.0627551447832957), (0, 48575.0), (0, 1e6)])  # pandas: 1 ulp off
def test_grouped_means_extremes_and_windows(rows):
    """Per-customer means on plain floats (up to ``_FEW_VALUES`` values) equal the arrays' path to the bit and
    pandas' grouped mean to a rounding; extremes equal pandas' exactly; window counts and sums equal
    :meth:`Groups.sum` of each window's rows to the bit."""
    pos = np.array([p for p, _ in rows], dtype=np.intp)
    values = np.array([v for _, v in rows], dtype="float64")
    g, by, index = kernel.Groups(10), pd.Series(values).groupby(pos), pd.RangeIndex(10)
    mean = g.mean(pos, values)
    with mock.patch.object(kernel, "_FEW_VALUES", -1):  # every length through the arrays' path
        np.testing.assert_array_equal(mean, g.mean(pos, values))
    np.testing.assert_allclose(mean, by.mean().reindex(index).to_numpy(), rtol=1e-15)
    for how in ("min", "max"):
        np.testing.assert_array_equal(g.extreme(pos, values, how), by.agg(how).reindex(index).to_numpy())
    age = np.abs(values) % 400
    windows = (30, 90, 365)
    counts, sums = g.windows(pos, age, windows), g.windows(pos, age, windows, values)
    for k, w in enumerate(windows):
        np.testing.assert_array_equal(counts[k], g.sum(pos[age < w]))
        np.testing.assert_array_equal(sums[k], g.sum(pos[age < w], values[age < w]))


def test_ids_split_over_many_chunks_keep_one_sorted_index():
    """The ids are encoded in two halves of their Arrow chunks, whose dictionaries are then unified."""
    parts = [["b", "a"], ["a", "c"], ["d", "c"], ["b", "e"], ["a"]]
    tx = pd.concat([pd.Series(p, dtype="str") for p in parts], ignore_index=True)
    assert arrow_column(tx).num_chunks == len(parts)
    more = pd.Series(["e", "f"], dtype="str")
    ids, positions = features._encode_ids([tx, more])
    assert ids.tolist() == ["a", "b", "c", "d", "e", "f"]
    assert [p.tolist() for p in positions] == [[1, 0, 0, 2, 3, 2, 1, 4, 0], [4, 5]]


def test_features_read_only_their_declared_input_columns(demo_tables):
    """``dataset.FEATURE_INPUTS`` is what scoring reads: the features of tables cut down to those columns
    equal the features of the whole tables."""
    cut = validate_tables(*(None if frame is None else frame[frame.columns.intersection(list(cols or frame.columns))]
                            for frame, cols in ((demo_tables.transactions, FEATURE_INPUTS["transactions"]),
                                                (demo_tables.tickets, FEATURE_INPUTS["tickets"]),
                                                (demo_tables.customers, FEATURE_INPUTS["customers"]))),
                          config=CFG.data)
    assert "channel" in demo_tables.transactions
    assert "channel" not in cut.transactions
    for as_of in ("2024-03-31", "2025-12-31"):
        pd.testing.assert_frame_equal(build_features(cut, as_of, CFG.features),
                                      build_features(demo_tables, as_of, CFG.features), check_exact=True)
