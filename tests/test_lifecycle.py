"""Lifecycle stages: one definition (``churnguard.scoring.rules``) for the retention report and for scoring.

The hand fixture, as_of 2024-06-30 (2024 is a leap year). "k days ago" is the day as_of - k:

    n0      one purchase on 06-30 (0 days ago)                        -> new
    n89     one purchase on 04-02 (89 days ago)                       -> new
    a89     purchases 04-01 (90 days ago) and 04-02 (89 days ago)     -> active (first purchase 90 days ago)
    r90     purchases 2023-01-01 and 04-01 (90 days ago)              -> at_risk
    r179    purchases 2023-01-01 and 01-03 (179 days ago)             -> at_risk
    l180    purchases 2023-01-01 and 01-02 (180 days ago)             -> lapsing
    l364    purchases 2023-01-01 and 2023-07-02 (364 days ago)        -> lapsing
    x365    purchases 2023-01-01 and 2023-07-01 (365 days ago)        -> lost
    never   listed in the customers file, no purchase                 -> never_bought
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.config import load_config, load_playbook
from churnguard.dataset import validate_tables
from churnguard.reporting.kpis import STAGES, build_report
from churnguard.scoring import score_tables
from churnguard.scoring.rules import LIFECYCLE_STAGES, in_population, lifecycle_stage

AS_OF = "2024-06-30"
PURCHASES = {
    "n0": ["2024-06-30"], "n89": ["2024-04-02"], "a89": ["2024-04-01", "2024-04-02"],
    "r90": ["2023-01-01", "2024-04-01"], "r179": ["2023-01-01", "2024-01-03"], "l180": ["2023-01-01", "2024-01-02"],
    "l364": ["2023-01-01", "2023-07-02"], "x365": ["2023-01-01", "2023-07-01"],
}
EXPECTED = {"n0": "new", "n89": "new", "a89": "active", "r90": "at_risk", "r179": "at_risk", "l180": "lapsing",
            "l364": "lapsing", "x365": "lost", "never": "never_bought"}


def test_stages_at_their_day_boundaries():
    # days since last purchase, days since first purchase -> stage (activity window 365 days)
    cases = [
        (0, 0, "new"), (89, 89, "new"), (89, 90, "active"), (0, 500, "active"), (90, 90, "at_risk"),
        (179, 400, "at_risk"), (180, 400, "lapsing"), (364, 400, "lapsing"), (365, 400, "lost"),
        (2000, 3000, "lost"), (np.nan, np.nan, "never_bought"), (np.inf, -5, "never_bought"),
    ]
    last, first, want = zip(*cases, strict=True)
    assert lifecycle_stage(np.array(last), np.array(first), 365).tolist() == list(want)
    assert in_population(np.array(want, dtype=object)).tolist() == [w not in ("lost", "never_bought") for w in want]


def test_windows_are_cut_at_the_activity_window():
    last, first = np.array([30, 59, 59, 60, 185, 189, 190]), np.array([50, 100, 59, 100, 400, 400, 400])
    # 60 days: new (first < 90), active, new, lost; beyond: lost
    assert lifecycle_stage(last, first, 60).tolist() == ["new", "active", "new", "lost", "lost", "lost", "lost"]
    # 190 days: at_risk ends at 179, lapsing 180..189, lost from 190
    assert lifecycle_stage(last, first, 190).tolist() == ["new", "active", "new", "active", "lapsing", "lapsing",
                                                          "lost"]


def test_stage_of_one_customer():
    assert lifecycle_stage(np.array([120.0]), np.array([700.0]), 365).tolist() == ["at_risk"]
    assert lifecycle_stage(np.zeros(0), np.zeros(0), 365).tolist() == []


def _hand_tables():
    rows = [(cid, f"{day} 10:00", "30", f"{cid}-{i}") for cid, days in PURCHASES.items() for i, day in enumerate(days)]
    tx = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "order_id"])
    cu = pd.DataFrame({"customer_id": [*PURCHASES, "never"], "signup_date": "2022-06-01"})
    return validate_tables(tx, None, cu, config=load_config().data)


def test_the_report_counts_the_hand_stages():
    lifecycle = build_report(_hand_tables(), active_days=365).lifecycle
    want = pd.Series(EXPECTED).value_counts()
    assert lifecycle.loc["2024-06"].tolist() == [int(want.get(s, 0)) for s in STAGES]  # [2, 1, 2, 2, 1]


@pytest.mark.slow
def test_scoring_gives_each_hand_customer_the_report_stage(model):
    result = score_tables(model, _hand_tables(), AS_OF, load_playbook(), control_fraction=0.0)
    got = result.scores.set_index("customer_id")
    assert got["lifecycle_stage"].to_dict() == EXPECTED
    out = got.loc[["x365", "never"]]
    assert out["churn_probability"].isna().all()
    assert out[["risk_band", "action"]].to_numpy().tolist() == [["lost", "win_back_lost"],
                                                                 ["never_bought", "first_purchase_nudge"]]
    assert out["reason_1"].tolist() == [
        ("no churn probability: last purchase 365 days ago, and the model scores customers who bought in the last "
         "365 days"),
        "no churn probability: no purchase yet",
    ]
    inside = got.drop(index=["x365", "never"])
    assert inside["churn_probability"].between(0, 1).all()
    assert inside["risk_band"].isin(["high", "medium", "low"]).all()
    summary = result.summary("s.csv")
    assert "no probability (no purchase in the model's lookback): lost 1, never_bought 1" in summary


@pytest.mark.slow
def test_report_and_scoring_count_the_same_stages_on_demo_data(trained, model):
    """Every stage count of the report's June 2025 row equals the scores' as of 2025-06-30; every customer with a
    purchase in the 365 days up to it has a probability, every other scored customer none."""
    tables = trained["tables"]
    scores = score_tables(model, tables, "2025-06-30", load_playbook(), control_fraction=0.0).scores
    report = build_report(tables, active_days=365).lifecycle.loc["2025-06"]
    counts = scores["lifecycle_stage"].value_counts()
    assert set(counts.index) <= set(LIFECYCLE_STAGES)
    assert [int(counts.get(s, 0)) for s in STAGES] == report.tolist()
    assert counts["lost"] > 0
    assert counts["new"] > 0
    tx = tables.transactions
    day = tx["timestamp"].dt.normalize()
    recent = (tx["amount"] > 0) & (day > pd.Timestamp("2024-06-30")) & (day <= pd.Timestamp("2025-06-30"))
    buyers = set(tx.loc[recent, "customer_id"])
    has_probability = scores["churn_probability"].notna()
    assert set(scores.loc[has_probability, "customer_id"]) == buyers
    outside = scores.loc[~has_probability]
    assert (outside["risk_band"] == outside["lifecycle_stage"]).all()
    assert outside["lifecycle_stage"].isin(["lost", "never_bought"]).all()
    assert (outside["reason_1"].str.startswith("no churn probability: ")).all()
