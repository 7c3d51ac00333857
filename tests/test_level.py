"""The level correction: each snapshot's churn level, forecast at today, chosen on the backtest, applied as one
shift of the log-odds that never changes the order of the customers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.config import ModelConfig
from churnguard.dataset import validate_tables
from churnguard.model._modelcore import Calibrator, logit
from churnguard.training.level import (
    Intensity,
    PurchaseDays,
    choose_level,
    intensity_power,
    level_candidates,
    level_offset,
    reference_day,
    snapshot_offsets,
)
from churnguard.training.procedure import (
    Fit,
    Plan,
    _Fold,
    fit_procedure,
    level_calibrator,
    season_days,
    with_level,
)
from churnguard.training.run import LocalRows


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
       kind=st.sampled_from(["sigmoid", "isotonic"]), power=st.sampled_from([1.0, 0.3, 0.8, 1.7]))
def test_the_shift_and_the_power_never_change_the_order_of_customers(raw, shift, kind, power):
    r = np.array(raw, dtype="float64") / 1000
    base = Calibrator(kind, x=(0.1, 0.5, 0.9), y=(0.2, 0.2, 0.7), coef=1.3, intercept=-0.4)
    before = base.probability(r)
    after = Calibrator(kind, base.x, base.y, base.coef, base.intercept, shift, power).probability(r)
    i, j = np.triu_indices(len(r), 1)
    # Each pair of customers keeps its order, and ties (isotonic steps) stay tied: no new ties, none broken,
    # short of float64's 0.0 and 1.0.
    inside = (after[i] > 0) & (after[i] < 1) & (after[j] > 0) & (after[j] < 1)
    assert (np.sign(after[i] - after[j]) == np.sign(before[i] - before[j]))[inside].all()
    if shift > 0 and power <= 1:  # a higher level for everyone (up to the rounding of the log-odds and back)
        assert (after >= before - 1e-12).all()


def test_a_calibrator_without_a_shift_or_power_reads_as_none_and_round_trips_with_them():
    calibrator = Calibrator("sigmoid", coef=1.2, intercept=-0.3, shift=0.25, power=0.6)
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator
    old = {k: v for k, v in calibrator.to_dict().items() if k not in ("shift", "power")}
    assert Calibrator.from_dict(old).shift == 0.0
    assert Calibrator.from_dict(old).power == 1.0
    # p ** power on the calibrated probability: 0.5 ** 0.6 for a customer the sigmoid puts at 0.5.
    half = Calibrator("sigmoid", coef=1.0, intercept=0.0, power=0.6)
    assert half.probability(np.array([0.5]))[0] == pytest.approx(0.5**0.6)


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


def _days(text: str) -> int:
    return int((pd.Timestamp(text) - pd.Timestamp("1970-01-01")).days)


def test_the_intensity_of_a_window_is_the_zero_truncated_poisson_mean_of_its_buyers():
    # Window (2024-01-01, 2024-01-31]: customer 0 bought on 3 days (twice on 2024-01-10: one purchase day),
    # customer 1 on 1 day, customer 2 only on 2024-01-01 (outside: the window is half-open) and 2024-02-05.
    # Buyers 0 and 1, 4 purchase days: mean 2, so mu / (1 - exp(-mu)) = 2, mu = 1.5936 (by bisection).
    customer = np.array([0, 0, 0, 0, 1, 2, 2])
    day = np.array([_days(d) for d in ("2024-01-02", "2024-01-10", "2024-01-10", "2024-01-31", "2024-01-15",
                                       "2024-01-01", "2024-02-05")])
    purchases = PurchaseDays.of(customer, day, pd.Timestamp("2024-03-01"))
    mu = purchases.intensity(pd.Timestamp("2024-01-01"), 30)
    assert mu / (1 - np.exp(-mu)) == pytest.approx(2.0, abs=1e-9)
    assert mu == pytest.approx(1.5936, abs=1e-4)
    assert np.isnan(purchases.intensity(pd.Timestamp("2024-02-10"), 15))  # nobody bought there
    assert np.isnan(purchases.intensity(pd.Timestamp("2024-02-10"), 60))  # ends after the last day
    # Among customer 1 only: one purchase day each, nobody bought twice: no intensity to read.
    assert np.isnan(purchases.intensity(pd.Timestamp("2024-01-01"), 30, among=np.array([1])))


def test_paired_intensities_compare_the_same_customers_in_both_windows():
    # 200 regular customers buy on every 2nd day in both Januaries (15 purchase days in 30); in the second
    # year 300 newcomers also buy, once each. Over every buyer the second January looks far less intense; over
    # the 200 who bought in both it is the same: ratio 1.
    regular = [(c, d) for c in range(200) for d in range(1, 31, 2)]
    january = [(c, d + 366) for c, d in regular] + [(200 + c, 366 + 1 + c % 30) for c in range(300)]
    cust, day = np.array([c for c, _ in regular + january]), np.array([d for _, d in regular + january])
    first, second = pd.Timestamp("2023-12-31"), pd.Timestamp("2024-12-31")
    purchases = PurchaseDays.of(cust, day + _days("2023-12-31"), pd.Timestamp("2025-03-01"))
    assert purchases.intensity(second, 30) < 0.5 * purchases.intensity(first, 30)
    a, b = purchases.paired_intensities(second, first, 30)
    assert a == b == pytest.approx(purchases.intensity(first, 30))
    assert np.isnan(PurchaseDays.of(cust[:100], day[:100], pd.Timestamp("2025-03-01")).paired_intensities(
        second, first, 30)[0])  # fewer than MIN_PAIRED customers in both


def _poisson_days(rng, customers: int, start: str, days: int, season) -> tuple[np.ndarray, np.ndarray]:
    """Purchase days of customers buying on a day with probability 0.03 times ``season(month)``."""
    calendar = pd.date_range(start, periods=days, freq="D")
    rate = 0.03 * np.array([season(d.month) for d in calendar])
    cust, at = np.nonzero(rng.random((customers, days)) < rate)
    return cust, np.array([_days(str(d.date())) for d in calendar])[at]


def test_the_intensity_power_is_the_ratio_of_the_seasons_and_reads_no_day_after_today():
    # 13 months of 4,000 customers whose rate doubles in December (2.0 against 1.0 in other months). Today is
    # 2024-12-31, the horizon 30 days: today's window a year earlier is January 2024 (1.0); with less than a
    # year of snapshots the reference is the newest, 2024-12-01, whose window is December (2.0): power 1/2.
    cust, day = _poisson_days(np.random.default_rng(3), 4000, "2024-01-01", 396,
                              lambda m: 2.0 if m == 12 else 1.0)
    today, first, newest = pd.Timestamp("2024-12-31"), pd.Timestamp("2024-01-01"), (pd.Timestamp("2024-12-01"),)
    found = intensity_power(PurchaseDays.of(cust, day, today), today, 30, newest, first)
    assert (found.reference, found.window_start) == (newest[0], pd.Timestamp("2023-12-31"))
    assert found.power == pytest.approx(0.5, abs=0.06)
    # The purchases after today (January 2025 here) change nothing.
    before = day <= _days("2024-12-31")
    assert intensity_power(PurchaseDays.of(cust[before], day[before], today), today, 30, newest, first) == found
    # Data from 2024-01-03 on: the window a year earlier starts before it: no correction.
    assert intensity_power(PurchaseDays.of(cust, day, today), today, 30, newest, pd.Timestamp("2024-01-03")) is None
    # A snapshot on today's date a year earlier is the reference: the same window, no change.
    season = (pd.Timestamp("2023-11-20"), pd.Timestamp("2023-12-31"))
    cust, day = _poisson_days(np.random.default_rng(4), 500, "2023-06-01", 600, lambda m: 1.0)
    same = intensity_power(PurchaseDays.of(cust, day, today), today, 30, season, pd.Timestamp("2023-06-01"))
    assert (same.reference, same.power) == (pd.Timestamp("2023-12-31"), 1.0)


def test_the_reference_is_the_snapshot_nearest_todays_date_in_an_earlier_year():
    days = tuple(pd.Timestamp(d) for d in ("2023-11-20", "2024-01-05", "2024-06-01"))
    assert reference_day(pd.Timestamp("2024-12-31"), days) == pd.Timestamp("2024-01-05")  # 5 days off 2023-12-31
    assert reference_day(pd.Timestamp("2024-12-10"), days) == pd.Timestamp("2023-11-20")  # 20 days off 2023-12-10
    assert reference_day(pd.Timestamp("2025-01-04"), days) == pd.Timestamp("2024-01-05")  # 1 day, not 410
    assert reference_day(pd.Timestamp("2024-12-31"), days[2:]) == pd.Timestamp("2024-06-01")  # the only one


def test_the_local_purchase_days_hold_nothing_after_the_day_asked_for(config):
    tx = pd.DataFrame({"customer_id": ["a", "a", "b", "b", "a"],
                       "timestamp": pd.to_datetime(["2024-01-05 10:00", "2024-01-05 18:00", "2024-01-07 09:00",
                                                    "2024-02-01 09:00", "2024-03-01 09:00"]),
                       "amount": [10.0, 5.0, 8.0, -8.0, 12.0]})
    tables = validate_tables(tx, config=config.data)
    source = LocalRows(tables, config, pd.Timestamp("2024-03-01"), lambda _msg: None)
    got = source.purchase_days(pd.Timestamp("2024-02-15"))
    # a bought twice on 2024-01-05 (one purchase day), b on 2024-01-07; b's refund and a's 2024-03-01 are out.
    assert sorted(zip(got.customer.tolist(), got.day.tolist(), strict=True)) == [
        (0, _days("2024-01-05")), (1, _days("2024-01-07"))]


def test_the_intensity_correction_is_applied_as_a_power_and_the_others_as_a_shift():
    base = Calibrator("sigmoid", coef=1.0, intercept=0.0)
    fit = Fit(None, 0.0, 0.0, levels={"none": 0.0, "newest": 0.4},
              intensity=Intensity(0.5, pd.Timestamp("2023-12-31"), 1.0, pd.Timestamp("2024-12-01"), 2.0))
    assert level_calibrator(base, fit, "intensity") == replace(base, power=0.5)
    assert level_calibrator(replace(base, power=0.5), fit, "newest") == replace(base, shift=0.4)
    assert level_calibrator(base, replace(fit, intensity=None), "intensity") == base  # not allowed: none


def test_the_level_sentence_says_plainly_when_no_correction_is_applied():
    from churnguard.training.evaluation import level_sentence

    said = level_sentence({"level_backtest_ece": {"none": 0.0152, "newest": 0.0275, "intensity": 0.0152},
                           "level_correction": "none", "level_shift": 0.0})
    assert said == ("level_correction: none, the calibration as fitted: no correction had a lower ECE on the "
                    "backtest (none 0.0152, newest 0.0275, intensity 0.0152)")
    shifted = level_sentence({"level_backtest_ece": {"none": 0.02, "season": 0.01}, "level_correction": "season",
                              "level_shift": 0.138})
    assert shifted.startswith("level_correction: season, a shift of +0.138 on the calibrated log-odds")
