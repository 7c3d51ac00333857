"""The calibration keeps the model's order, and its rows are the snapshots at today's time of year."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import example, given, settings
from hypothesis import strategies as st

from churnguard.model.calibration import fit_calibrator
from churnguard.training.procedure import Plan, calibration_days


@settings(max_examples=60, deadline=None)
@example(codes=[1, 2, 410, *[1] * 16, 4227], seed=0)  # a steep fit: 1.0 reached in float64
@given(codes=st.lists(st.integers(1, 9_999), min_size=20, max_size=300), seed=st.integers(0, 2**16))
def test_sigmoid_calibration_is_strictly_increasing_where_raw_scores_differ(codes, seed):
    raw = np.array(codes, dtype="float64") / 10_000  # LightGBM probabilities, ties included
    rng = np.random.default_rng(seed)
    y = (rng.random(len(raw)) < raw).astype(float)  # outcomes that follow the scores
    y[:2] = [0.0, 1.0]  # both classes
    calibrator = fit_calibrator("sigmoid", raw, y)
    if calibrator.coef <= 0:  # the scores did not rank these few outcomes: nothing to keep
        return
    order = np.argsort(raw, kind="stable")
    r, p = raw[order], calibrator.probability(raw)[order]
    differ = np.diff(r) > 0
    # strictly increasing where the raw scores differ, short of where float64 reaches 0.0 or 1.0 (a near
    # separable sample gives a steep sigmoid: 1 - 1e-17 is 1.0)
    inside = (p[:-1] > 0) & (p[1:] < 1)
    assert (np.diff(p) >= 0).all()
    assert (np.diff(p)[differ & inside] > 0).all()
    assert (np.diff(p)[~differ] == 0).all()  # and tied only where they tie


def test_a_steep_sigmoid_reaches_0_and_1_without_overflow():
    """coef 60 on logit(1e-7) = -16.1 is exp(967) in the denominator: the probability is 0.0, no warning (the
    suite turns warnings into errors); the other end is 1.0."""
    from churnguard.model._modelcore import Calibrator

    p = Calibrator("sigmoid", coef=60.0).probability(np.array([1e-9, 0.5, 1 - 1e-9]))
    assert p.tolist() == [0.0, 0.5, 1.0]


def test_isotonic_steps_tie_customers_whose_scores_differ():
    raw = np.linspace(0.01, 0.99, 200)
    y = (np.arange(200) % 3 == 0).astype(float)  # no relation to the score: one flat step
    p = fit_calibrator("isotonic", raw, y).probability(raw)
    assert len(np.unique(p)) < 5


def _plan(today: str, first: str, n: int) -> Plan:
    days = tuple(pd.Timestamp(first) + pd.Timedelta(days=30 * i) for i in range(n))
    return Plan(pd.Timestamp(today), days, days[:1], days[-1])


def test_calibration_days_are_those_at_todays_time_of_year():
    # Snapshots every 30 days from 2024-11-06 to 2025-10-02; today 2025-12-31 (365.25 days after 2024-12-31).
    plan = _plan("2025-12-31", "2024-11-06", 12)
    # 2024-11-06 is 420 days before (55 from a year: out); 2024-12-06 390 (25: in); 2025-01-05 360 (5: in);
    # 2025-02-04 330 (35: in); 2025-03-06 300 (65: out); the later ones are less than a year before.
    assert calibration_days(plan) == tuple(pd.Timestamp(d) for d in ("2024-12-06", "2025-01-05", "2025-02-04"))
    # Two years back counts too: 2023-12-12 is 750 days before 2025-12-31 (19.5 from two years).
    longer = _plan("2025-12-31", "2023-11-12", 24)
    assert pd.Timestamp("2023-12-12") in calibration_days(longer)
    assert pd.Timestamp("2024-06-09") not in calibration_days(longer)  # half a year off


def test_less_than_a_year_of_snapshots_calibrates_on_all_of_them():
    plan = _plan("2025-12-31", "2025-04-05", 7)  # 2025-04-05 .. 2025-10-02: none a year before today
    assert calibration_days(plan) == plan.snapshots
