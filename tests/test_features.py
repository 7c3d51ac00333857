"""Hand-worked feature values on the tiny fixture, and the time boundaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from churnguard.dataset import validate_tables
from churnguard.features import build_features, estimate_lifespan_years

AS_OF = "2024-01-31"


@pytest.fixture
def feats(tiny_tables, config):
    return build_features(tiny_tables, AS_OF, config.features).set_index("customer_id")


def test_one_row_per_known_customer(feats):
    # a, b bought by as_of; c and d are listed and signed up by then; c's purchase is after as_of.
    assert list(feats.index) == ["a", "b", "c", "d"]
    assert (feats["as_of"] == pd.Timestamp(AS_OF)).all()


def test_recency_frequency_value(feats):
    a, b = feats.loc["a"], feats.loc["b"]
    assert a["recency_days"] == 20  # last purchase 01-11, as_of 01-31
    assert b["recency_days"] == 25  # last purchase 01-06
    assert a["n_orders"] == 2
    assert a["n_purchase_days"] == 2
    assert a["gross_spend"] == 30
    assert a["net_spend"] == 25
    assert a["mean_order_value"] == 15
    assert a["max_order_value"] == 20
    assert a["refund_count"] == 1
    assert a["refund_share"] == pytest.approx(5 / 30)
    assert a["orders_30d"] == 1  # 01-11 is 20 days back; 01-01 is 30 days back, outside (as_of-30, as_of]
    assert a["orders_90d"] == 2
    assert a["spend_90d"] == 30
    assert a["gap_mean_days"] == 10
    assert b["gap_mean_days"] == 1
    assert np.isnan(a["gap_std_days"])  # one gap: spread undefined
    assert a["overdue_ratio"] == 2  # 20 days silent / usual gap 10
    assert b["overdue_ratio"] == 25
    assert np.isnan(a["trend_orders"])  # nothing in the 90 days before the last 90: ratio undefined
    # BG/NBD inputs: one repeat day, 10 days first-to-last, first purchase 30 days before as_of.
    assert (a["bg_frequency"], a["bg_recency_days"], a["bg_age_days"]) == (1, 10, 30)


def test_tenure_uses_the_earlier_of_signup_and_first_purchase(feats):
    assert feats.loc["a", "tenure_days"] == 61  # signup 2023-12-01
    assert feats.loc["c", "tenure_days"] == 16  # signup 01-15, no purchase yet


def test_customer_without_purchases_has_empty_history(feats):
    d = feats.loc["d"]
    assert d["n_orders"] == 0
    assert d["gross_spend"] == 0
    assert d["cltv"] == 0
    assert np.isnan(d["recency_days"])
    assert d["value_tier"] == "standard"


def test_cltv_and_value_tier(feats):
    # Under two years of history -> default lifespan 3 years. a: 15 x 2 orders in the last year x 3.
    assert feats.loc["a", "cltv"] == pytest.approx(90)
    assert feats.loc["b", "cltv"] == pytest.approx(30)
    # 75th percentile of [90, 30, 0, 0] is 45: only a is VIP.
    assert list(feats["value_tier"]) == ["vip", "standard", "standard", "standard"]


def test_support_features(feats):
    a, b = feats.loc["a"], feats.loc["b"]
    assert a["tickets_total"] == 1
    assert a["open_tickets"] == 0
    assert a["first_response_hours_mean"] == 26  # 01-20 10:00 -> 01-21 12:00
    assert a["resolution_hours_latest"] == 48
    assert a["slow_response_share"] == 1  # 26 h > 24 h SLA
    assert a["csat_latest"] == 2
    assert a["csat_min"] == 2
    assert a["days_since_last_ticket"] == 11
    assert a["tickets_per_order"] == 0.5
    assert b["open_tickets"] == 1
    assert np.isnan(b["first_response_hours_mean"])  # never answered
    assert b["slow_response_share"] == 1  # still waiting after 36 h at the end of as_of
    assert feats.loc["d", "tickets_total"] == 0


def test_attribute_features(feats):
    assert list(feats["loyalty_member"]) == [1, 0, 0, 1]
    assert list(feats["nps_group"].astype("object").fillna("-")) == ["promoter", "detractor", "-", "passive"]
    assert feats["attr_region"].dtype == "category"
    assert list(feats["attr_region"].astype(str)) == ["n", "s", "s", "n"]


def test_event_exactly_on_as_of_counts_and_the_day_after_does_not(config):
    tx = pd.DataFrame(
        {"customer_id": ["x", "x"], "timestamp": ["2024-03-01 23:59:59", "2024-03-02 00:00:00"], "amount": [5, 7]}
    )
    tables = validate_tables(tx, config=config.data)
    f = build_features(tables, "2024-03-01", config.features).set_index("customer_id")
    assert f.loc["x", "n_orders"] == 1
    assert f.loc["x", "gross_spend"] == 5
    assert f.loc["x", "recency_days"] == 0


def test_ticket_answered_after_as_of_counts_as_waiting(config):
    tx = pd.DataFrame({"customer_id": ["x"], "timestamp": ["2024-03-01"], "amount": [5]})
    tk = pd.DataFrame(
        {
            "customer_id": ["x"],
            "opened_at": ["2024-03-01 20:00"],
            "first_response_at": ["2024-03-02 08:00"],  # answered the next day: unknown at as_of
            "resolved_at": ["2024-03-05 08:00"],
            "csat": [1],
        }
    )
    tables = validate_tables(tx, tk, config=config.data)
    f = build_features(tables, "2024-03-01", config.features).set_index("customer_id")
    assert np.isnan(f.loc["x", "first_response_hours_mean"])
    assert np.isnan(f.loc["x", "csat_latest"])  # the survey comes with the resolution, after as_of
    assert f.loc["x", "open_tickets"] == 1
    assert f.loc["x", "slow_response_share"] == 0  # waited 4 h by the end of the day


def test_order_id_groups_line_items(config):
    tx = pd.DataFrame(
        {
            "customer_id": ["x", "x", "x"],
            "timestamp": ["2024-03-01 10:00", "2024-03-01 10:00", "2024-03-01 15:00"],
            "amount": [5, 7, 1],
            "order_id": ["o1", "o1", "o2"],
        }
    )
    tables = validate_tables(tx, config=config.data)
    f = build_features(tables, "2024-03-01", config.features).set_index("customer_id")
    assert f.loc["x", "n_orders"] == 2
    assert f.loc["x", "max_order_value"] == 12
    assert f.loc["x", "n_purchase_days"] == 1


def test_refund_count_counts_refunded_orders_not_refund_lines(config):
    # x: a cancellation C1 of two lines (-2, -3) counts once; C2 (one line) once; a refund row without an order id
    # counts by its timestamp. y: the same order id as x's C1 is y's own refund. A purchase o1 never merges with
    # a refund that shares its id (x's refund "o1"), so x has 4 refunded orders and 1 purchase.
    tx = pd.DataFrame(
        {
            "customer_id": ["x", "x", "x", "x", "x", "x", "y", "y"],
            "timestamp": ["2024-03-01 10:00", "2024-03-02 09:00", "2024-03-02 09:00", "2024-03-03 09:00",
                          "2024-03-04 09:00", "2024-03-05 09:00", "2024-03-01 10:00", "2024-03-02 09:00"],
            "amount": [50, -2, -3, -4, -1, -6, 20, -5],
            "order_id": ["o1", "C1", "C1", "C2", None, "o1", "o2", "C1"],
        }
    )
    tables = validate_tables(tx, config=config.data)
    f = build_features(tables, "2024-03-05", config.features).set_index("customer_id")
    assert f.loc["x", "refund_count"] == 4  # C1, C2, the row without an id, o1's refund
    assert f.loc["x", "n_orders"] == 1
    assert f.loc["x", "refund_share"] == pytest.approx(16 / 50)  # every refund line's amount still adds up
    assert f.loc["y", "refund_count"] == 1


def test_lifespan_from_annual_churn(config):
    # s's purchase on 2021-12-01 shows the data reaches back more than two years (730 days before as_of is
    # 2022-01-31). Year before last (days 365..729 back): p, q, r bought. In the last year only p bought:
    # churn 2/3, lifespan 1.5 years.
    tx = pd.DataFrame(
        {
            "customer_id": ["s", "p", "q", "r", "p"],
            "timestamp": ["2021-12-01", "2022-06-01", "2022-07-01", "2022-08-01", "2023-09-01"],
            "amount": [1.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    tables = validate_tables(tx, config=config.data)
    assert estimate_lifespan_years(tables.transactions, pd.Timestamp("2024-01-31"), config.features) == pytest.approx(1.5)


def test_lifespan_falls_back_without_two_years_of_history(config):
    tx = pd.DataFrame({"customer_id": ["p", "q"], "timestamp": ["2022-06-01", "2023-09-01"], "amount": [1.0, 1.0]})
    tables = validate_tables(tx, config=config.data)
    assert estimate_lifespan_years(tables.transactions, pd.Timestamp("2024-01-31"), config.features) == 3.0


def test_a_signup_after_as_of_is_unknown_at_as_of(config):
    """x bought on 03-01 as a guest and signed up on 06-01: as of 03-31 the signup has not happened, so
    days_since_signup is unknown (it was -62, a day from the future) and moving the signup to any later day
    changes no feature; tenure counts from the purchase. In the batch and over HTTP alike."""
    from datetime import date

    from churnguard.features.records import CustomerRecords, records_features
    from churnguard.population import Population

    tx = pd.DataFrame({"customer_id": ["x", "y"], "timestamp": ["2024-03-01", "2024-03-01"], "amount": [5, 7]})
    built = []
    for signup in ("2024-06-01", "2025-01-01"):
        cu = pd.DataFrame({"customer_id": ["x", "y"], "signup_date": [signup, "2024-03-31"]})
        tables = validate_tables(tx, customers=cu, config=config.data)
        built.append(build_features(tables, "2024-03-31", config.features).set_index("customer_id"))
    assert np.isnan(built[0].loc["x", "days_since_signup"])
    assert built[0].loc["y", "days_since_signup"] == 0  # signed up on as_of: known
    assert built[0].loc["x", "tenure_days"] == 30
    pd.testing.assert_frame_equal(built[0], built[1])
    records = [CustomerRecords("x", [{"timestamp": pd.Timestamp("2024-03-01").to_pydatetime(), "amount": 5.0}], [],
                               {"signup_date": "2024-06-01"})]
    known, cols = records_features(records, date(2024, 3, 31), config.features, Population(3.0, 100.0))
    assert known.tolist() == [True]
    assert np.isnan(cols["days_since_signup"][0])


@pytest.mark.parametrize("as_of", ["1600-01-01", "1677-12-31", "2262-01-01", "9999-12-31"])
def test_an_as_of_outside_the_years_of_the_data_s_dates_is_refused(tiny_tables, config, as_of):
    """Dates are nanosecond timestamps (1678-2261): as_of 1600-01-01 gave every customer their whole history
    (11 orders, no recency) and 9999-12-31 none ("no activity on or before as_of")."""
    with pytest.raises(ValueError, match=f"as_of {as_of} lies outside the years 1678-2261"):
        build_features(tiny_tables, as_of, config.features)
    assert len(build_features(tiny_tables, "1678-01-01", config.features)) == 0


def test_customers_table_without_signup_dates(config):
    tx = pd.DataFrame({"customer_id": ["x"], "timestamp": ["2024-03-01"], "amount": [5]})
    cu = pd.DataFrame({"customer_id": ["x", "y"], "nps": [9, 2]})
    tables = validate_tables(tx, customers=cu, config=config.data)
    f = build_features(tables, "2024-03-01", config.features).set_index("customer_id")
    assert list(f.index) == ["x", "y"]
    assert f.loc["y", "n_orders"] == 0
    assert f.loc["x", "tenure_days"] == 0


@given(st.lists(st.integers(-2**40, 2**40), max_size=60), st.integers(1, 3))
def test_distinct_gives_the_sorted_distinct_values(values, repeat):
    from churnguard.features.kernel import distinct

    arr = np.array(values * repeat, dtype=np.int64)
    out = distinct(arr)
    assert out.dtype == np.int64
    assert out.tolist() == sorted(set(values))


def test_partial_then_finished_features_are_the_built_ones(tiny_tables, config):
    """The two steps a partitioned build takes apart (the features that need no population state, then the
    rest) give ``build_features``, with the population learned from the tables or given."""
    import pickle

    from churnguard.features.build import finish_features, partial_features
    from churnguard.population import Population

    partial = partial_features(tiny_tables, AS_OF, config.features, count_lifespan=True)
    assert partial.lifespan is not None
    whole = build_features(tiny_tables, AS_OF, config.features)
    pd.testing.assert_frame_equal(finish_features(partial, config.features), whole, check_exact=True)
    given = Population.from_dict(whole.attrs["population"])
    kept = pickle.loads(pickle.dumps(partial))  # as the partitioned build keeps it between its passes
    pd.testing.assert_frame_equal(finish_features(kept, config.features, given),
                                  build_features(tiny_tables, AS_OF, config.features, given), check_exact=True)


@given(st.lists(st.integers(0, 2**64 - 1) | st.sampled_from([0, 7, 2**63, 2**64 - 1]), max_size=60))
def test_repeated_order_keys_are_those_occurring_more_than_once(keys):
    """The order keys that group an order's lines: a key is repeated where pandas calls it duplicated."""
    from churnguard.features.build import _repeated

    key = np.array(keys, dtype=np.uint64)
    assert _repeated(key).tolist() == pd.Series(key).duplicated(keep=False).tolist()


@pytest.mark.parametrize("copied", [0, 3, 500, 20_000])
def test_repeated_order_keys_looked_up_among_few_repeats_or_by_their_order(copied):
    """Keys with no repeat, a few repeated values (looked up among them) and many (by the keys' order), some
    repeated three times and more: a key is repeated where pandas calls it duplicated."""
    from churnguard.features import build
    from churnguard.features.build import _repeated

    rng = np.random.default_rng(copied)
    key = rng.integers(0, 2**64 - 1, 60_000, dtype=np.uint64, endpoint=True)
    key[rng.integers(0, len(key), copied)] = key[rng.integers(0, 50, copied)]
    later = int(pd.Series(key).duplicated().sum())  # the repeats beyond each value's first
    assert (later <= len(key) // build._FEW_REPEATED) == (copied <= 500)
    assert _repeated(key).tolist() == pd.Series(key).duplicated(keep=False).tolist()
