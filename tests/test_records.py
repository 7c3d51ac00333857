"""The records path (the HTTP server's input) and the table path give the same features: one kernel, two ways
of bringing the rows in. Compared column by column, exactly, on the demo world and on random histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnguard.btyd import BGNBDParams
from churnguard.config import load_config
from churnguard.dataset import validate_tables
from churnguard.demo import generate_demo_data
from churnguard.features import build_features
from churnguard.features.kernel import categorical_levels
from churnguard.features.records import CustomerRecords, records_features
from churnguard.population import Population
from tests.test_properties import AS_OF, _event, _tables, _ticket

CFG = load_config()
BG = BGNBDParams(0.6, 8.0, 0.8, 2.5)


def _records(tables, cid: str) -> CustomerRecords:
    """One customer's rows of the validated tables as the server receives them (Python values)."""
    def py(v):
        return None if pd.isna(v) else v.to_pydatetime() if isinstance(v, pd.Timestamp) else v

    tx = tables.transactions[tables.transactions["customer_id"] == cid]
    tx_rows = [{k: py(r[k]) for k in ("timestamp", "amount", "order_id") if k in tx} for _, r in tx.iterrows()]
    tickets = [] if tables.tickets is None else [
        {k: py(r[k]) for k in ("opened_at", "first_response_at", "resolved_at", "csat") if k in tables.tickets}
        for _, r in tables.tickets[tables.tickets["customer_id"] == cid].iterrows()]
    attrs = {}
    if tables.customers is not None and cid in set(tables.customers["customer_id"]):
        row = tables.customers[tables.customers["customer_id"] == cid].iloc[0]
        attrs = {k: (bool(v) if k == "loyalty_member" and not pd.isna(v) else py(v))
                 for k, v in row.items() if k != "customer_id"}
    return CustomerRecords(cid, tx_rows, tickets, attrs)


def _assert_same_features(tables, as_of, population):
    """Every customer of the tables through the records path equals its row of ``build_features``."""
    want = build_features(tables, as_of, CFG.features, population)
    ids = sorted(set(tables.transactions["customer_id"]) | (
        set() if tables.customers is None else set(tables.customers["customer_id"])))
    known, cols = records_features([_records(tables, c) for c in ids], pd.Timestamp(as_of).date(), CFG.features,
                                   population)
    assert [c for c, k in zip(ids, known, strict=True) if k] == want["customer_id"].tolist()
    levels = categorical_levels(population.attributes or {})
    for name in want.columns.drop(["customer_id", "as_of"]):
        got = cols[name]
        if name == "value_tier":
            got = np.where(got, "vip", "standard")
        elif name in levels:
            got = np.array([levels[name][c] if c >= 0 else None for c in got], dtype=object)
        expected = want[name].astype(object).where(want[name].notna(), None).to_numpy()
        got = pd.Series(got, dtype=object).where(pd.notna(pd.Series(got, dtype=object)), None).to_numpy()
        assert np.array_equal(got, expected), name  # NaN-free object arrays: compared exactly


@pytest.mark.parametrize("as_of", ["2024-03-31", "2025-12-31"])
def test_demo_customers_have_the_same_features_on_both_paths(as_of):
    demo = generate_demo_data(250, seed=11)
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=CFG.data)
    kinds = {"region": tuple(sorted(demo.customers["region"].dropna().unique()))}
    _assert_same_features(tables, as_of, Population(2.7, 150.0, BG, 90, kinds))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, min_size=1, max_size=40), st.lists(_ticket, max_size=10))
def test_random_histories_have_the_same_features_on_both_paths(events, tickets):
    _assert_same_features(_tables(events, tickets), AS_OF, Population(3.0, 40.0, BG, 90, {}))
