"""The level correction: each snapshot's churn level, forecast at today, chosen on the backtest, applied as one
shift of the log-odds that never changes the order of the customers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.config import ModelConfig
from churnguard.model._modelcore import Calibrator, logit
from churnguard.training.level import choose_level, level_candidates, level_offset, snapshot_offsets
from churnguard.training.procedure import Plan, _Fold, fit_procedure, season_days, with_level


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_level_offset_moves_the_mean_probability_to_the_churn_rate():
    p = np.array([0.1, 0.2, 0.3, 0.4])  # mean 0.25
    y = np.array([1, 1, 0, 0])  # churn rate 0.5
    s = level_offset(p, y)
    assert s > 0
    assert np.mean(_sigmoid(logit(p) + s)) == pytest.approx(0.5, abs=1e-9)
    # A constant probability: the offset is the difference of the log-odds, log(1/1) - log(0.25/0.75) = log 3.
    assert level_offset(np.full(4, 0.25), y) == pytest.approx(np.log(3), abs=1e-8)


def _offsets(values: list[float], first: str = "2024-01-01", cadence: int = 30, rows: int = 1000) -> pd.DataFrame:
    days = pd.DatetimeIndex([pd.Timestamp(first) + pd.Timedelta(days=cadence * k) for k in range(len(values))],
                            name="day")
    return pd.DataFrame({"offset": values, "rows": rows}, index=days)


def test_a_rate_rising_by_a_known_step_per_snapshot_is_recovered_by_the_trend():
    # Every snapshot's calibrated probability is 0.3 and its churn rate's log-odds rise by 0.1 per 30 days:
    # the offsets are 0.0, 0.1, ..., 0.7 (snapshot k's is 0.1 k, up to the rates' rounding to whole customers).
    n, step, days = 20_000, 0.1, [pd.Timestamp("2024-01-01") + pd.Timedelta(days=30 * k) for k in range(8)]
    p = np.full(n * 8, 0.3)
    y = np.concatenate([np.arange(n) < round(n * _sigmoid(logit(0.3) + step * k)) for k in range(8)]).astype(float)
    offsets = snapshot_offsets(p, y, np.repeat(np.array(days, dtype="datetime64[ns]"), n))
    assert offsets["offset"].to_numpy() == pytest.approx(step * np.arange(8), abs=2e-4)
    today = days[-1] + pd.Timedelta(days=90)  # 3 steps after the newest snapshot: 0.7 + 0.3
    levels = level_candidates(offsets, today)
    assert levels["trend"] == pytest.approx(1.0, abs=1e-3)
    assert levels["newest"] == pytest.approx(0.7, abs=2e-4)
    assert levels["none"] == 0.0
    assert "season" not in levels  # 210 days of snapshots: no year back


def test_the_season_correction_is_the_level_of_the_snapshots_on_todays_date_in_earlier_years():
    # Snapshots every 30 days from 2023-01-01, plus 2023-12-31 and 2024-12-31 (today's date a year and two
    # years before 2025-12-31), whose offsets are 0.4 (1,000 rows) and 0.7 (3,000 rows).
    offsets = _offsets([0.0] * 30)
    season = (pd.Timestamp("2023-12-31"), pd.Timestamp("2024-12-31"))
    offsets = pd.concat([offsets, pd.DataFrame({"offset": [0.4, 0.7], "rows": [1000, 3000]},
                                               index=pd.DatetimeIndex(season, name="day"))]).sort_index()
    levels = level_candidates(offsets, pd.Timestamp("2025-12-31"), season)
    assert levels["season"] == pytest.approx((0.4 * 1000 + 0.7 * 3000) / 4000)
    assert "season" not in level_candidates(offsets, pd.Timestamp("2025-12-31"))  # no such snapshot


def test_season_days_are_todays_date_in_earlier_years_within_the_snapshots():
    grid = [pd.Timestamp("2023-11-12") + pd.Timedelta(days=30 * k) for k in range(24)]  # .. 2025-10-02
    assert season_days(pd.Timestamp("2025-12-31"), grid) == (pd.Timestamp("2023-12-31"), pd.Timestamp("2024-12-31"))
    assert season_days(pd.Timestamp("2025-10-02"), grid) == (pd.Timestamp("2024-10-02"),)  # 2023-10-02 is older
    assert season_days(pd.Timestamp("2024-03-31"), grid[:3]) == ()  # less than a year of snapshots


def test_choose_level_keeps_none_unless_a_correction_lowers_the_ece():
    y = np.array([0, 0, 1, 1, 1, 1, 0, 1, 1, 1])  # churn rate 0.7
    low = np.full(10, 0.5)
    chosen, eces = choose_level(y, {"none": low, "newest": np.full(10, 0.7), "trend": np.full(10, 0.9)})
    assert chosen == "newest"
    assert eces == pytest.approx({"none": 0.2, "newest": 0.0, "trend": 0.2})
    assert choose_level(y, {"none": low, "newest": low.copy()})[0] == "none"  # a tie: no correction


@settings(max_examples=80, deadline=None)
@given(raw=st.lists(st.integers(1, 999), min_size=2, max_size=60), shift=st.floats(-4, 4),
       kind=st.sampled_from(["sigmoid", "isotonic"]))
def test_the_shift_never_changes_the_order_of_customers(raw, shift, kind):
    r = np.array(raw, dtype="float64") / 1000
    base = Calibrator(kind, x=(0.1, 0.5, 0.9), y=(0.2, 0.2, 0.7), coef=1.3, intercept=-0.4)
    before = base.probability(r)
    after = Calibrator(kind, base.x, base.y, base.coef, base.intercept, shift).probability(r)
    i, j = np.triu_indices(len(r), 1)
    # Each pair of customers keeps its order, and ties (isotonic steps) stay tied: no new ties, none broken,
    # short of float64's 0.0 and 1.0.
    inside = (after[i] > 0) & (after[i] < 1) & (after[j] > 0) & (after[j] < 1)
    assert (np.sign(after[i] - after[j]) == np.sign(before[i] - before[j]))[inside].all()
    if shift > 0:  # a higher level for everyone (up to the rounding of the log-odds and back)
        assert (after >= before - 1e-12).all()


def test_a_calibrator_without_a_shift_reads_as_zero_and_round_trips_with_one():
    calibrator = Calibrator("sigmoid", coef=1.2, intercept=-0.3, shift=0.25)
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator
    old = {k: v for k, v in calibrator.to_dict().items() if k != "shift"}
    assert Calibrator.from_dict(old).shift == 0.0


def _world(days: list[pd.Timestamp], customers: int, level, seed: int) -> pd.DataFrame:
    """Snapshot rows of one feature ``x``: churn log-odds 1.5 x - 1 + level(k) at snapshot k."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, day in enumerate(days):
        x = rng.normal(size=customers)
        churned = (rng.random(customers) < _sigmoid(1.5 * x - 1 + level(k))).astype("int8")
        frames.append(pd.DataFrame({"customer_id": [f"c{i}" for i in range(customers)], "as_of": day, "x": x,
                                    "churned": churned}))
    return pd.concat(frames, ignore_index=True)


def test_the_procedure_recovers_a_base_rate_rising_by_a_known_step_and_keeps_the_order():
    # 8 snapshots 30 days apart; the churn log-odds rise by 0.15 per snapshot. Today is 90 days after the
    # newest one: the level there is 3 steps (0.45) above the newest snapshot's.
    step, days = 0.15, [pd.Timestamp("2024-01-01") + pd.Timedelta(days=30 * k) for k in range(8)]
    rows = _world(days, 3000, lambda k: step * k, seed=1)
    mc = ModelConfig().model_copy(update={"params": {"num_leaves": 4, "learning_rate": 0.1, "min_data_in_leaf": 50},
                                          "num_boost_round": 60})
    plan = Plan(days[-1] + pd.Timedelta(days=90), tuple(days), tuple(days[:5]), days[-1])
    fit = fit_procedure(_Fold(rows, mc), plan, mc)
    offsets = fit.offsets["offset"].to_numpy()
    assert np.polyfit(np.arange(8), offsets, 1)[0] == pytest.approx(step, abs=0.04)  # the rise per snapshot
    assert fit.levels["trend"] - fit.levels["newest"] == pytest.approx(3 * step, abs=0.15)

    today = _world([plan.today], 20_000, lambda _k: step * 11, seed=2)  # 11 steps after the first snapshot
    plain = fit.model.predict_proba(today)
    corrected = with_level(fit, "trend").predict_proba(today)
    rate = today["churned"].mean()
    assert abs(plain.mean() - rate) > 0.05  # the calibration's level is that of the snapshots' middle
    assert corrected.mean() == pytest.approx(rate, abs=0.02)
    assert (np.argsort(corrected, kind="stable") == np.argsort(plain, kind="stable")).all()
