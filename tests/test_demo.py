"""The demo world: reproducible, valid under the data contract, and with the churn drivers it promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.config import DataConfig
from churnguard.dataset import load_tables, validate_tables
from churnguard.demo import generate_demo_data, write_demo_data


@pytest.fixture(scope="module")
def demo():
    return generate_demo_data(600, seed=11)


def test_same_seed_same_data_and_other_seed_differs(demo):
    again = generate_demo_data(600, seed=11)
    for name in ("transactions", "tickets", "customers"):
        pd.testing.assert_frame_equal(getattr(demo, name), getattr(again, name))
    assert not generate_demo_data(600, seed=12).transactions.equals(demo.transactions)


def test_tables_follow_the_contract(demo):
    t = validate_tables(demo.transactions, demo.tickets, demo.customers, config=DataConfig())
    assert t.rejects.empty
    assert len(t.transactions) == len(demo.transactions)
    assert demo.customers["customer_id"].is_unique
    assert set(demo.tickets["customer_id"]) <= set(demo.customers["customer_id"])


def test_values_are_plausible(demo):
    tx, tk, cu = demo.transactions, demo.tickets, demo.customers
    assert (tx["amount"] != 0).all()
    assert 0 < (tx["amount"] < 0).mean() < 0.1  # a few refunds
    assert tx["timestamp"].between("2023-01-01", "2026-01-01").all()
    assert tk["opened_at"].between("2023-01-01", "2026-01-01").all()
    answered = tk["first_response_at"].notna()
    assert (tk.loc[answered, "first_response_at"] >= tk.loc[answered, "opened_at"]).all()
    resolved = tk["resolved_at"].notna()
    assert (tk.loc[resolved, "resolved_at"] >= tk.loc[resolved, "opened_at"]).all()
    assert tk["csat"].dropna().between(1, 5).all()
    assert tk.loc[~resolved, "csat"].isna().all()  # surveys only after resolution
    assert cu["nps"].dropna().between(0, 10).all()
    first = tx.groupby("customer_id")["timestamp"].min()
    signup = cu.set_index("customer_id")["signup_date"].reindex(first.index)
    assert (signup <= first).all()
    orders = tx[tx["amount"] > 0].groupby("customer_id").size()
    assert 3 <= orders.median() <= 20


def test_bad_support_raises_churn():
    d = generate_demo_data(6000, seed=1)
    tx, tk = d.transactions, d.tickets
    # Customers active in H1 2025; did they buy at all in the last 6 months of the period?
    active = set(tx.loc[tx["timestamp"].between("2025-01-01", "2025-06-30"), "customer_id"])
    later = set(tx.loc[(tx["timestamp"] >= "2025-07-01") & (tx["amount"] > 0), "customer_id"])
    h1 = tk[tk["opened_at"].between("2025-01-01", "2025-06-30")]
    slow = (h1["first_response_at"] - h1["opened_at"]) > pd.Timedelta(hours=24)
    bad = set(h1.loc[slow | h1["first_response_at"].isna() | h1["resolved_at"].isna(), "customer_id"]) & active
    rest = active - bad
    lost_bad = np.mean([c not in later for c in bad])
    lost_rest = np.mean([c not in later for c in rest])
    assert len(bad) > 50
    assert lost_bad > lost_rest + 0.05


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_write_round_trip(demo, tmp_path, fmt):
    paths = write_demo_data(demo, tmp_path, fmt=fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.{fmt}" for n in paths)  # no temp files
    t = load_tables(paths["transactions"], paths["tickets"], paths["customers"], config=DataConfig())
    assert len(t.transactions) == len(demo.transactions)
    assert len(t.tickets) == len(demo.tickets)
    with pytest.raises(ValueError, match="csv or parquet"):
        write_demo_data(demo, tmp_path, fmt="xlsx")
