"""The training procedure's backtest on a hand-built world whose answer is known, and the drift reference of a
freshly trained model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.config import load_config
from churnguard.dataset import validate_tables
from churnguard.training.run import run_training

pytestmark = pytest.mark.slow

START, TODAY = pd.Timestamp("2023-01-01"), pd.Timestamp("2024-12-31")


def _world() -> pd.DataFrame:
    """240 weekly buyers (never churn) and 240 who buy exactly every 120 days, two per phase 0..119.

    A 120-day buyer last seen r days before a snapshot buys next 120 - r days after it: within the 90-day
    horizon exactly when r >= 30. So on any snapshot day every one of the 480 customers bought within the
    365-day lookback, and the churners are the 60 rhythm buyers with r < 30: churn rate 60 / 480 = 0.125, a
    function of the features (rhythm and recency) that a model can learn exactly.
    """
    rows = []
    for i in range(240):
        days = np.arange(i % 7, (TODAY - START).days + 1, 7)
        rows += [(f"w{i:03d}", d) for d in days]
    for i in range(240):
        days = np.arange(i // 2, (TODAY - START).days + 1, 120)
        rows += [(f"r{i:03d}", d) for d in days]
    tx = pd.DataFrame(rows, columns=["customer_id", "day"])
    return pd.DataFrame({"customer_id": tx["customer_id"],
                         "timestamp": (START + pd.to_timedelta(tx["day"], unit="D")).dt.strftime("%Y-%m-%d 12:00"),
                         "amount": 20.0})


def test_backtest_scores_the_day_one_horizon_back_against_what_happened(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config().with_overrides(
        snapshots={"max_snapshots": 12},
        model={"params": {"objective": "binary", "min_child_samples": 5, "learning_rate": 0.2, "verbose": -1},
               "monotone_constraints": {}},  # here a longer silence lowers the risk of the 120-day buyers
        tracking={"tracking_uri": f"sqlite:///{tmp_path / 'ml.db'}"},
    )
    tables = validate_tables(_world(), config=cfg.data)
    result = run_training(tables, cfg, model_out=tmp_path / "m.zip")
    s, card = result.summary, result.scorecards["model"]
    # Today 2024-12-31, horizon 90: the deployed model learns up to 2024-10-02, the backtest scores that day
    # with a model of the snapshots up to 2024-07-04 (tuned on it, trained up to 2024-04-05).
    assert s["deployed_snapshots"][-1] == "2024-10-02"
    assert s["deployed_snapshots"][0] == "2023-11-07"  # 11 cadences of 30 days earlier
    assert s["backtest_as_of"] == "2024-10-02"
    assert s["backtest_snapshots"][-1] == s["backtest_tune_snapshot"] == "2024-07-04"
    assert s["rows_by_snapshot"]["2024-10-02"]["rows"] == 480
    assert (card["n"], card["positive_rate"]) == (480, 0.125)
    assert card["roc_auc"] == 1.0
    # Recency alone ranks the rhythm buyers backwards: the recent ones are those who will not buy in time.
    assert result.scorecards["recency"]["roc_auc"] < 0.9
    assert result.beats_baselines


def test_a_fresh_model_sees_no_drift_on_its_training_day(trained):
    from churnguard.config import load_playbook
    from churnguard.scoring import drift_check, score_tables

    model, tables = trained["result"].model, trained["tables"]
    today = pd.Timestamp(model.info.training_window["as_of"])
    psi = {}
    for day in (today, today - pd.Timedelta(days=180)):
        sample = score_tables(model, tables, day, load_playbook(), control_fraction=0.0).drift_sample
        table = drift_check(model, sample).table.set_index("feature")["psi"]
        psi[day] = table
    # Scored on the day it was trained, the customers are those the reference describes.
    assert psi[today][["bg_age_days", "tenure_days"]].max() < 0.1
    assert psi[today].max() < 0.1
    # Half a year earlier the same customers were younger: the check does see a real shift.
    assert psi[today - pd.Timedelta(days=180)]["bg_age_days"] >= 0.2
