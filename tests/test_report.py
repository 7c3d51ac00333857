"""Retention KPIs on a hand-worked six-customer fixture, the HTML report and the files it writes.

The fixture, 2023-10-15 .. 2024-04-30 (2024 is a leap year: February has 29 days). Orders:

    f: F1 10 on 2023-10-15 (only purchase)
    a: A1 100 on 01-05, A2 50 on 02-10, A3 60 on 03-15, A4 30 on 03-25
    b: B1 40 on 01-20, B2 30 on 02-05, refund R1 -10 on 02-20
    c: C1 20 on 01-10, C2 10 on 03-28 (comes back)
    d: D1 80 on 02-15, D2 40 on 03-01 as two lines (25 + 15) of one order
    e: E1 200 on 03-20, E2 50 on 04-30 (the last day of the data)

With active_days=30 a customer is active on day t if they bought in [t - 29, t]:
    active 01-31 (window 01-02..01-31): a, b, c          -> S(Feb) = 3
    active 02-29 (window 01-31..02-29): a, b, d          -> E(Feb) = S(Mar) = 3 (c's 01-10 is too old)
    active 03-31 (window 03-02..03-31): a, c, e          -> E(Mar) = S(Apr) = 3 (d's 03-01 is 30 days ago)
    active 04-30 (window 04-01..04-30): e                -> E(Apr) = 1
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.config import DataConfig, FeatureConfig
from churnguard.dataset import validate_tables
from churnguard.demo import generate_demo_data
from churnguard.features import build_features
from churnguard.reporting.kpis import (
    STAGES,
    build_report,
    churn_rate,
    net_promoter_score,
    retention_rate,
    write_report,
)

ROWS = [  # customer, day, amount, order id
    ("f", "2023-10-15", 10, "F1"),
    ("a", "2024-01-05", 100, "A1"), ("a", "2024-02-10", 50, "A2"), ("a", "2024-03-15", 60, "A3"),
    ("a", "2024-03-25", 30, "A4"),
    ("b", "2024-01-20", 40, "B1"), ("b", "2024-02-05", 30, "B2"), ("b", "2024-02-20", -10, "R1"),
    ("c", "2024-01-10", 20, "C1"), ("c", "2024-03-28", 10, "C2"),
    ("d", "2024-02-15", 80, "D1"), ("d", "2024-03-01", 25, "D2"), ("d", "2024-03-01", 15, "D2"),
    ("e", "2024-03-20", 200, "E1"), ("e", "2024-04-30", 50, "E2"),
]
TICKETS = [  # customer, opened, first response, resolved, csat
    ("a", "2024-01-31 22:00", "2024-02-01 10:00", "2024-02-02 09:00", "1"),  # 12 h, resolved Feb
    ("a", "2024-02-03 09:00", "2024-02-03 11:00", "2024-02-04 09:00", "5"),  # 2 h, resolved Feb
    ("b", "2024-02-20 10:00", "2024-02-21 14:00", "2024-03-02 09:00", "2"),  # 28 h, resolved Mar
    ("d", "2024-02-28 08:00", "2024-02-28 14:00", "2024-02-29 09:00", "4"),  # 6 h, resolved Feb
    ("c", "2024-03-05 09:00", None, None, None),  # never answered
    ("e", "2024-03-21 12:00", "2024-03-21 12:30", "2024-03-22 09:00", "3"),  # 0.5 h, resolved Mar
]
NPS = {"a": "10", "b": "9", "c": "9", "d": "3", "e": "", "f": "7"}


def _tables(tickets: bool = True, customers: bool = True):
    tx = pd.DataFrame(ROWS, columns=["customer_id", "timestamp", "amount", "order_id"]).astype(str)
    tk = pd.DataFrame(TICKETS, columns=["customer_id", "opened_at", "first_response_at", "resolved_at", "csat"])
    cu = pd.DataFrame({"customer_id": list(NPS), "nps": list(NPS.values())})
    return validate_tables(tx, tk if tickets else None, cu if customers else None, config=DataConfig())


@pytest.fixture(scope="module")
def monthly():
    return build_report(_tables(), active_days=30)


def test_worked_example_of_the_retention_rate():
    assert retention_rate(start=150, end=200, new=80) == 80.0  # (200 - 80) / 150 = 0.8
    assert churn_rate(start=150, lost=30) == 20.0
    assert math.isnan(retention_rate(0, 5, 5))
    assert math.isnan(churn_rate(0, 0))


def test_periods_cover_the_data_and_flag_missing_history(monthly):
    k = monthly.kpis
    assert k.index.tolist() == ["2023-10", "2023-11", "2023-12", "2024-01", "2024-02", "2024-03", "2024-04"]
    # History is complete once the data (from 10-15) reach 30 days before the start: Nov 1 - 30 d = Oct 2 no,
    # Dec 1 - 30 d = Nov 1 yes.
    assert k["complete_history"].tolist() == [False, False, True, True, True, True, True]
    assert k["complete_period"].all()  # the data end on 04-30, the last day of April
    assert k.loc["2024-02", "period_end"] == pd.Timestamp("2024-02-29")


def test_customer_counts(monthly):
    k = monthly.kpis[["customers_start", "customers_end", "new_customers", "lost_customers",
                      "reactivated_customers"]]
    assert k.loc["2024-01"].tolist() == [0, 3, 3, 0, 0]  # no one active on 12-31; a, b, c are new
    assert k.loc["2024-02"].tolist() == [3, 3, 1, 1, 0]  # S a,b,c; E a,b,d; new d; lost c
    assert k.loc["2024-03"].tolist() == [3, 3, 1, 2, 1]  # S a,b,d; E a,c,e; new e; lost b,d; c is back
    assert k.loc["2024-04"].tolist() == [3, 1, 0, 2, 0]  # S a,c,e; E e; lost a, c
    # E = S - lost + N + reactivated in every period
    assert (k.iloc[:, 1] == k.iloc[:, 0] - k.iloc[:, 3] + k.iloc[:, 2] + k.iloc[:, 4]).all()


def test_retention_and_churn_rates(monthly):
    k = monthly.kpis
    assert k.loc["2024-02", "retention_rate"] == pytest.approx(200 / 3)  # (3 - 1) / 3
    assert k.loc["2024-02", "churn_rate"] == pytest.approx(100 / 3)  # 1 / 3
    assert k.loc["2024-03", "retention_rate"] == pytest.approx(200 / 3)  # (3 - 1) / 3, c's return counts
    assert k.loc["2024-03", "churn_rate"] == pytest.approx(200 / 3)  # 2 / 3
    assert k.loc["2024-04", "retention_rate"] == pytest.approx(100 / 3)  # (1 - 0) / 3
    assert math.isnan(k.loc["2024-01", "retention_rate"])  # S = 0: undefined, not 0 or infinite
    assert math.isnan(k.loc["2024-01", "churn_rate"])


def test_revenue_orders_and_value(monthly):
    k = monthly.kpis
    # Feb: 50 + 30 - 10 (refund) + 80 = 150 over orders A2, B2, D1 by a, b, d
    assert k.loc["2024-02", ["revenue", "orders", "buying_customers"]].tolist() == [150, 3, 3]
    assert k.loc["2024-02", "avg_purchase_value"] == pytest.approx(50)  # 150 / 3
    assert k.loc["2024-02", "purchase_frequency"] == pytest.approx(1)  # 3 / 3
    assert k.loc["2024-02", "arpu"] == pytest.approx(50)  # 150 / E 3
    # Mar: 60 + 30 + 25 + 15 + 200 + 10 = 340 over A3, A4, D2 (two lines, one order), E1, C2 by a, d, e, c
    assert k.loc["2024-03", ["revenue", "orders", "buying_customers"]].tolist() == [340, 5, 4]
    assert k.loc["2024-03", "avg_purchase_value"] == pytest.approx(68)  # 340 / 5
    assert k.loc["2024-03", "purchase_frequency"] == pytest.approx(1.25)  # 5 / 4
    assert k.loc["2024-03", "arpu"] == pytest.approx(340 / 3)  # E = 3
    # Nov: no transactions at all
    assert k.loc["2023-11", ["revenue", "orders", "buying_customers"]].tolist() == [0, 0, 0]
    assert math.isnan(k.loc["2023-11", "avg_purchase_value"])
    assert math.isnan(k.loc["2023-11", "arpu"])  # no one active at the end of November (f's 10-15 > 30 d)


def test_lifespan_and_cltv(monthly):
    k = monthly.kpis
    # Feb: churn 1/3 a month = 12 / 3 = 4 a year -> lifespan 1/4 year;
    # CLTV = 50 (APV) x 1 (orders per buyer per month) x 12 (months a year) x 0.25 = 150
    assert k.loc["2024-02", "lifespan_years"] == pytest.approx(0.25)
    assert k.loc["2024-02", "cltv"] == pytest.approx(150)
    # Mar: churn 2/3 -> 8 a year -> 0.125 years; CLTV = 68 x 1.25 x 12 x 0.125 = 127.5
    assert k.loc["2024-03", "lifespan_years"] == pytest.approx(0.125)
    assert k.loc["2024-03", "cltv"] == pytest.approx(127.5)


def test_lifespan_is_capped_when_no_one_churns():
    # Quarters, active_days=90: E(Q1) on 03-31 (window 01-02..03-31) = a, b, c, d, e; on 04-30 (window
    # 02-01..04-30) still all five (b's 02-05 is in), so no one is lost in Q2: lifespan = the cap.
    k = build_report(_tables(), period="quarter", active_days=90, max_lifespan_years=7.0).kpis
    assert k.loc["2024Q2", "lifespan_years"] == 7.0
    assert k.loc["2024Q2", "cltv"] == pytest.approx(50 * 1 * 4 * 7.0)  # E2 alone: APV 50, 1 order per buyer


def test_quarters():
    k = build_report(_tables(), period="quarter", active_days=90).kpis
    assert k.index.tolist() == ["2023Q4", "2024Q1", "2024Q2"]
    # Q1: S on 12-31 (window 10-03..12-31) = f; E = a, b, c, d, e, all new; f lost.
    q1 = k.loc["2024Q1"]
    assert q1[["customers_start", "customers_end", "new_customers", "lost_customers"]].tolist() == [1, 5, 5, 1]
    assert q1["retention_rate"] == 0.0  # (5 - 5) / 1
    assert q1["churn_rate"] == 100.0  # 1 / 1
    assert q1["revenue"] == 650  # Jan 160 + Feb 150 + Mar 340
    assert q1["orders"] == 11  # 3 + 3 + 5
    assert q1["buying_customers"] == 5
    assert q1["lifespan_years"] == pytest.approx(0.25)  # 1 / (1.0 x 4 quarters)
    assert q1["cltv"] == pytest.approx(650 / 11 * 11 / 5 * 4 * 0.25)  # = 130
    # Q2 ends on the last data day, 04-30; a history of 90 days before the start exists only for Q2
    # (04-01 - 90 d = 01-02, after 10-15; 01-01 - 90 d = 10-03, before it).
    assert k["complete_period"].tolist() == [True, True, False]
    assert k.loc["2024Q2", "period_end"] == pd.Timestamp("2024-04-30")
    assert k["complete_history"].tolist() == [False, False, True]


def test_a_period_cut_short_by_the_data_ends_on_the_last_data_day():
    rows = [r for r in ROWS if r[3] != "E2"]  # the data now end with C2 on 03-28
    tx = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "order_id"]).astype(str)
    k = build_report(validate_tables(tx, config=DataConfig()), active_days=30).kpis
    assert k.index[-1] == "2024-03"
    assert not k.loc["2024-03", "complete_period"]
    assert k.loc["2024-03", "period_end"] == pd.Timestamp("2024-03-28")
    # E on 03-28 (window 02-28..03-28): a, c, d (03-01 is now 27 days ago), e
    assert k.loc["2024-03", "customers_end"] == 4


def test_the_headline_is_the_last_complete_period_and_names_a_partial_one():
    rows = [r for r in ROWS if r[3] != "E2"]  # the data end on 03-28: March is partial
    tx = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "order_id"]).astype(str)
    report = build_report(validate_tables(tx, config=DataConfig()), active_days=30)
    feb = report.kpis.loc["2024-02"]
    assert report.summary() == (f"6 months, latest complete 2024-02: CRR {feb['retention_rate']:.1f}%, churn rate "
                                f"{feb['churn_rate']:.1f}%, ARPU {feb['arpu']:,.2f}; 2024-03 is partial (28 days "
                                "of data), not the headline")
    assert report.summary() in report.to_html()
    complete = build_report(_tables(), active_days=30)  # ends 04-30: April is complete
    assert complete.summary().startswith("7 months, latest complete 2024-04:")
    assert "partial" not in complete.summary()


def test_without_order_ids_the_purchase_rows_of_one_timestamp_are_one_order():
    tx = pd.DataFrame(ROWS, columns=["customer_id", "timestamp", "amount", "order_id"]).astype(str)
    k = build_report(validate_tables(tx.drop(columns="order_id"), config=DataConfig()), active_days=30).kpis
    assert k.loc["2024-03", "orders"] == 5  # D2's two lines share their timestamp: one order, as for the features
    assert k.loc["2024-02", "orders"] == 3  # the refund row is never an order


def test_an_order_over_two_days_counts_once_on_its_oldest_day_as_in_the_features():
    rows = [("a", "2024-01-01", "10", "A1"), ("a", "2024-04-05", "5", "A1"),  # a late line of January's order
            ("b", "2024-04-01", "20", "B1")]
    tables = validate_tables(pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "order_id"]),
                             config=DataConfig())
    report = build_report(tables)
    assert report.kpis["orders"].tolist() == [1, 0, 0, 1]  # A1 counts in January, its oldest line's month
    assert report.kpis["buying_customers"].tolist() == [1, 0, 0, 1]
    assert report.kpis["revenue"].tolist() == [10.0, 0.0, 0.0, 25.0]  # revenue stays by line
    # on 2024-04-05 a's last order is 95 days old (at risk), as the features' recency says
    features = build_features(tables, "2024-04-05", FeatureConfig()).set_index("customer_id")
    assert features.loc["a", "recency_days"] == 95
    assert report.lifecycle.loc["2024-04"].to_dict() == {"new": 1, "active": 0, "at_risk": 1, "lapsing": 0,
                                                         "lost": 0}


def test_a_single_day_of_data_still_renders():
    tx = pd.DataFrame({"customer_id": ["a", "b"], "timestamp": ["2024-05-02"] * 2, "amount": ["5", "7"]})
    report = build_report(validate_tables(tx, config=DataConfig()))
    assert report.kpis.index.tolist() == ["2024-05"]
    assert report.kpis.loc["2024-05", ["customers_end", "new_customers", "revenue"]].tolist() == [2, 2, 12]
    assert report.to_html().count("data:image/png;base64,") == 4


def test_revenue_concentration(monthly):
    k = monthly.kpis["top25_revenue_share"]
    # Feb net per buyer: a 50, b 30 - 10 = 20, d 80; top ceil(3 / 4) = 1 buyer: d 80 / 150
    assert k["2024-02"] == pytest.approx(80 / 150 * 100)
    # Mar: a 90, c 10, d 40, e 200; top ceil(4 / 4) = 1: e 200 / 340
    assert k["2024-03"] == pytest.approx(200 / 340 * 100)
    assert k["2024-04"] == pytest.approx(100)  # a single buyer
    assert math.isnan(k["2023-11"])


def test_nps_is_overall(monthly):
    # answers 10, 9, 9, 3, 7 (e did not answer): promoters 3/5 = 60%, detractors 1/5 = 20% -> 40
    assert monthly.nps == pytest.approx(40)
    assert monthly.nps_answers == 5
    assert net_promoter_score(pd.Series([np.nan])) is None
    assert build_report(_tables(customers=False), active_days=30).nps is None


def test_csat_and_first_response(monthly):
    k = monthly.kpis
    # resolved in Feb with an answer: 1, 5, 4 -> 2 of 3 are 4-5
    assert k.loc["2024-02", "csat"] == pytest.approx(200 / 3)
    assert k.loc["2024-02", "csat_answers"] == 3
    assert k.loc["2024-03", "csat"] == 0.0  # 2 and 3
    assert math.isnan(k.loc["2024-01", "csat"])  # nothing resolved in January
    # opened in Feb and answered: 2 h, 28 h, 6 h -> median 6; Jan: 12 h; Mar: 0.5 h (c's ticket unanswered)
    assert k["median_first_response_hours"][["2024-01", "2024-02", "2024-03"]].tolist() == [12, 6, 0.5]
    no_tickets = build_report(_tables(tickets=False), active_days=30).kpis
    assert "csat" not in no_tickets
    assert "median_first_response_hours" not in no_tickets


def test_lifecycle_stages(monthly):
    assert monthly.lifecycle.columns.tolist() == list(STAGES)
    # 02-29, active_days=30: a, b, d bought in the window and first bought 55, 40, 14 days ago -> new;
    # c (last 01-10, 50 days ago) and f are beyond the 30-day window -> lost.
    assert monthly.lifecycle.loc["2024-02"].tolist() == [3, 0, 0, 0, 2]
    active = monthly.lifecycle[["new", "active", "at_risk", "lapsing"]].sum(axis=1)
    assert (active == monthly.kpis["customers_end"]).all()
    # active_days=365 on 04-30: first purchases d 02-15 (75 days ago) and e 03-20 (41) are new; a (last 36 days
    # ago, first 116), b (85, 101), c (33, 111) active; f (10-15, 198 days ago) lapsing.
    yearly = build_report(_tables(), active_days=365).lifecycle
    assert yearly.loc["2024-04"].tolist() == [2, 3, 0, 1, 0]
    # On 03-31 every first purchase is at most 86 days old (a, 01-05) -> 5 new; f 168 days ago: at risk.
    assert yearly.loc["2024-03"].tolist() == [5, 0, 1, 0, 0]
    # active_days=190 on 04-30: f's 198 days are beyond the window -> lost.
    assert build_report(_tables(), active_days=190).lifecycle.loc["2024-04"].tolist() == [2, 3, 0, 0, 1]


def test_cohort_matrix(monthly):
    c = monthly.cohorts
    assert c.index.tolist() == ["2023-10", "2024-01", "2024-02", "2024-03"]
    assert c["customers"].tolist() == [1, 3, 1, 1]
    nan = np.nan
    expected = np.array([
        [100, 0, 0, 0, 0, 0, 0],  # f: Oct only; Nov..Apr are in the data
        [100, 200 / 3, 200 / 3, 0, nan, nan, nan],  # a, b, c; Feb a, b; Mar a, c; Apr none
        [100, 100, 0, nan, nan, nan, nan],  # d: Feb, Mar
        [100, 100, nan, nan, nan, nan, nan],  # e: Mar, Apr
    ])
    np.testing.assert_allclose(c.drop(columns="customers").to_numpy(dtype=float), expected)
    assert c.columns.tolist() == ["customers", *range(7)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefg"), st.integers(0, 420)), min_size=1, max_size=40),
       st.sampled_from(["month", "quarter"]), st.sampled_from([1, 30, 90, 365]))
def test_counts_stages_and_cohorts_follow_their_definitions(purchases, period, active_days):
    """On random purchase days, every period's customer counts, lifecycle stages and the cohort matrix are the
    definitions counted customer by customer: the last and first purchase on or before each day."""
    from churnguard.lifecycle import lifecycle_stage

    start = pd.Timestamp("2023-01-01")
    tx = pd.DataFrame({"customer_id": [c for c, _ in purchases],
                       "timestamp": [str((start + pd.Timedelta(days=d)).date()) for _, d in purchases],
                       "amount": "5", "order_id": [f"o{i}" for i in range(len(purchases))]})
    report = build_report(validate_tables(tx, config=DataConfig()), period=period, active_days=active_days)
    days = {c: sorted({d for c2, d in purchases if c2 == c}) for c, _ in purchases}
    last_day = max(d for _, d in purchases)

    def last_by(c, day):
        return max((d for d in days[c] if d <= day), default=None)

    k = report.kpis
    for label, row in k.iterrows():
        s = (row["period_start"] - start).days
        e = (row["period_end"] - start).days
        active_s = {c for c in days if last_by(c, s - 1) is not None and s - 1 - last_by(c, s - 1) < active_days}
        active_e = {c for c in days if last_by(c, e) is not None and e - last_by(c, e) < active_days}
        new = {c for c in days if s <= days[c][0] <= e}
        assert [row["customers_start"], row["customers_end"], row["new_customers"], row["lost_customers"],
                row["reactivated_customers"]] == [len(active_s), len(active_e), len(new), len(active_s - active_e),
                                                  len(active_e - active_s - new)], label
        known = [c for c in days if days[c][0] <= e]
        stages = lifecycle_stage(np.array([e - last_by(c, e) for c in known], dtype=float),
                                 np.array([e - days[c][0] for c in known], dtype=float), active_days).tolist()
        assert report.lifecycle.loc[label].tolist() == [stages.count(name) for name in STAGES], label
    month = {c: [(start + pd.Timedelta(days=d)).to_period("M") for d in ds] for c, ds in days.items()}
    cohorts = report.cohorts
    for label, row in cohorts.iterrows():
        members = [c for c in days if str(month[c][0]) == label]
        assert row["customers"] == len(members)
        for offset in cohorts.columns[1:]:
            when = pd.Period(label, "M") + offset
            if when > (start + pd.Timedelta(days=last_day)).to_period("M"):
                assert np.isnan(row[offset])
            else:
                bought = sum(when in month[c] for c in members)
                assert row[offset] == pytest.approx(bought / len(members) * 100)


def test_html_is_one_self_contained_file(monthly):
    page = build_report(_tables(), active_days=30, extra_sections={"Drift": "<p>psi 0.12</p>"}).to_html()
    assert page.count('<img alt="') == 4
    assert page.count('src="data:image/png;base64,') == 4
    assert "http://" not in page
    assert "https://" not in page
    assert "<link" not in page
    assert "<script" not in page
    assert "<h2>Drift</h2><p>psi 0.12</p>" in page
    assert "+40.0 (5 answers, overall)" in page


def test_write_report_writes_atomically(monthly, tmp_path):
    out = tmp_path / "report"
    paths = write_report(monthly, out)
    assert sorted(p.name for p in out.iterdir()) == ["cohorts.csv", "kpis.csv", "lifecycle.csv", "report.html"]
    assert paths["report"] == out / "report.html"
    kpis = pd.read_csv(paths["kpis"])
    assert kpis["period"].tolist()[-1] == "2024-04"
    assert kpis.loc[kpis["period"] == "2024-02", "revenue"].item() == 150
    cohorts = pd.read_csv(paths["cohorts"])
    assert cohorts.columns.tolist()[:3] == ["cohort", "customers", "0"]
    write_report(monthly, out)  # overwriting leaves no temporary files either
    assert len(list(out.iterdir())) == 4


def test_the_csv_tables_are_written_for_reading(monthly, tmp_path):
    """Numbers to 2 decimals, as the report shows them (avg_purchase_value read 65.82746223564955)."""
    paths = write_report(monthly, tmp_path / "report")
    for name in ("kpis", "lifecycle", "cohorts"):
        text = paths[name].read_text()
        assert not re.search(r"\.\d{3,}", text), (name, text)
    kpis = pd.read_csv(paths["kpis"]).set_index("period")
    assert kpis.loc["2024-02", "revenue"] == 150
    want = monthly.kpis.reset_index().set_index("period")["avg_purchase_value"]
    pd.testing.assert_series_equal(kpis["avg_purchase_value"], want.round(2), check_names=False, check_index=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="period"):
        build_report(_tables(), period="week")
    with pytest.raises(ValueError, match="active_days"):
        build_report(_tables(), active_days=0)
    refunds = pd.DataFrame({"customer_id": ["a"], "timestamp": ["2024-01-01"], "amount": ["-5"]})
    with pytest.raises(ValueError, match="no purchases"):
        build_report(validate_tables(refunds, config=DataConfig()))


def test_smoke_on_demo_data():
    demo = generate_demo_data(800, seed=1)
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=DataConfig())
    report = build_report(tables)
    k = report.kpis
    assert len(k) == 36  # 2023-01 .. 2025-12
    assert not k["complete_history"].iloc[:12].any()
    assert k["complete_history"].iloc[13:].all()
    done = k[k["complete_history"]]
    assert done["retention_rate"].between(0, 100).all()
    assert done["churn_rate"].between(0, 100).all()
    assert (k["customers_end"] == k["customers_start"] - k["lost_customers"] + k["new_customers"]
            + k["reactivated_customers"]).all()
    assert (report.lifecycle.drop(columns="lost").sum(axis=1) == k["customers_end"]).all()
    assert (report.cohorts[0] == 100).all()
    assert report.nps is not None
    assert -100 <= report.nps <= 100
    assert k["csat"].notna().any()
    assert k["median_first_response_hours"].notna().any()
    assert build_report(tables, period="quarter").kpis.shape[0] == 12
    assert report.to_html().count("data:image/png;base64,") == 4


def _figures(report):
    from churnguard.reporting.kpis import _Canvas, _cohort_chart, _rate_chart, _revenue_chart

    k = report.kpis
    canvas = _Canvas(np.arange(len(k)), k.index.tolist(), np.flatnonzero(~k["complete_period"].to_numpy()))
    figures = [chart(report, canvas) for chart in (_rate_chart, _revenue_chart, _cohort_chart)]
    for fig in figures:
        fig.canvas.draw()
    return figures


def test_the_charts_say_what_they_lack_and_write_amounts_as_people_read_them():
    """One day of data: the rate chart was an empty frame scaled -0.04..0.04, the cohort chart's months ran
    -0.4 .. 0.4; amounts of 1e12 had their axis scaled by a "1e12" above it."""
    tx = pd.DataFrame({"customer_id": ["a", "b"], "timestamp": ["2024-05-02"] * 2, "amount": ["1e12", "7"]})
    rate, revenue, cohort = _figures(build_report(validate_tables(tx, config=DataConfig())))
    assert [t.get_text() for t in rate.axes[0].texts] == [
        "no rate yet: no period starts with customers\n(a rate needs a period after the first)"]
    assert list(rate.axes[0].get_yticks()) == []
    labels = [t.get_text() for t in revenue.axes[0].get_yticklabels()]
    assert "1,000,000,000,000" in labels
    assert revenue.axes[0].yaxis.get_offset_text().get_text() == ""  # no scale factor above the axis
    assert all(float(t.replace("\u2212", "-")) == int(float(t.replace("\u2212", "-")))
               for t in (x.get_text() for x in cohort.axes[0].get_xticklabels()))


def test_plain_numbers_have_separators_and_at_most_two_decimals():
    from churnguard._charts import plain_number

    assert [plain_number(v) for v in (1234567.0, 2.5, 0.125, 0.0, -0.001, 70000.0)] == [
        "1,234,567", "2.5", "0.12", "0", "0", "70,000"]
