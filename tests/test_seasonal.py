"""The purchases' seasonal Pareto/NBD (``churnguard.training.seasonal``): its inputs by hand, and on a
simulated shop whose season and parameters are known, the season recovered and the chance of no purchase
calibrated on what the simulation did next."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.config import load_config
from churnguard.dataset import validate_tables
from churnguard.demo import generate_demo_data
from churnguard.features import build_features
from churnguard.features.kernel import day_numbers
from churnguard.training.evaluation import expected_calibration_error
from churnguard.training.level import PurchaseDays
from churnguard.training.seasonal import Histories, SeasonalParetoNBD, fit_seasonal_pnbd, purchase_histories


def _day(iso: str) -> int:
    return int(day_numbers(np.datetime64(iso)))


def test_histories_by_hand():
    # Customer 0 bought on 5 and 20 January and 2 March (two repeat days: January and March); customer 1 once.
    days = PurchaseDays.of(np.array([0, 1, 0, 0, 0]), np.array([_day(d) for d in (
        "2024-01-20", "2024-02-10", "2024-01-05", "2024-03-02", "2024-01-20")]), pd.Timestamp("2024-03-31"))
    h, months = purchase_histories(days)
    assert h.first.tolist() == [_day("2024-01-05"), _day("2024-02-10")]
    assert h.last.tolist() == [_day("2024-03-02"), _day("2024-02-10")]
    assert h.repeats.tolist() == [2.0, 0.0]
    assert months.tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_histories_from_features_are_those_of_the_purchase_days():
    data = generate_demo_data(300, seed=11, start="2024-01-01", end="2024-12-31")
    config = load_config()
    tables = validate_tables(data.transactions, data.tickets, data.customers, config=config.data)
    today = pd.Timestamp("2024-12-31")
    feats = build_features(tables, today, config.features)
    feats = feats[feats["bg_frequency"].notna()].sort_values("customer_id")
    bought = data.transactions[data.transactions["amount"] > 0].sort_values("customer_id")
    codes, ids = pd.factorize(bought["customer_id"], sort=True)
    h, _ = purchase_histories(PurchaseDays.of(codes, day_numbers(bought["timestamp"].to_numpy()), today))
    mine = Histories.of_features(feats, today)
    assert list(ids) == feats["customer_id"].tolist()
    np.testing.assert_array_equal(mine.first, h.first)
    np.testing.assert_array_equal(mine.last, h.last)
    np.testing.assert_array_equal(mine.repeats, h.repeats)


SEASON = np.array([0.9, 0.85, 0.95, 1.0, 1.0, 0.85, 0.75, 0.8, 1.0, 1.05, 1.35, 1.6])


def _simulate(n: int, start: str, days: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seasonal Pareto/NBD shop, day by day: customers join over the first year with a purchase, then buy
    at ``lam * season`` a month and leave at ``mu * season`` a month. Returns customer, day number, and each
    customer's join day."""
    rng = np.random.default_rng(seed)
    lam, mu = rng.gamma(1.5, 1 / 2.0, n), rng.gamma(2.0, 1 / 40.0, n)
    joined = rng.integers(0, 365, n)
    first = _day(start)
    month = (np.arange(first, first + days).astype("datetime64[D]").astype("datetime64[M]").astype(int) % 12)
    alive = np.ones(n, dtype=bool)
    who, when = [np.arange(n)], [first + joined]
    for d in range(days):
        on = alive & (joined < d)
        rate = SEASON[month[d]] * 12 / 365.25
        buys = on & (rng.uniform(size=n) < lam * rate)
        who.append(np.flatnonzero(buys))
        when.append(np.full(buys.sum(), first + d))
        alive &= ~(on & (rng.uniform(size=n) < mu * rate))
    return np.concatenate(who), np.concatenate(when), first + joined


@pytest.fixture(scope="module")
def shop():
    customer, day, _ = _simulate(2500, "2022-01-01", 730 + 182, seed=5)
    today = pd.Timestamp("2023-12-31")
    later = day > _day("2023-12-31")
    bought_after = np.unique(customer[later])
    purchases = PurchaseDays.of(customer, day, today)
    return purchases, bought_after, today


def test_the_season_is_recovered_and_no_purchase_is_calibrated(shop):
    purchases, bought_after, today = shop
    fitted = fit_seasonal_pnbd(purchases)
    assert np.abs(np.array(fitted.season) - SEASON / SEASON.mean()).max() < 0.08  # 0.043 when written
    assert np.mean(fitted.season) == pytest.approx(1.0)
    h, _ = purchase_histories(purchases)
    customers = np.unique(purchases.customer)
    quiet = (~np.isin(customers, bought_after)).astype(float)
    p = fitted.no_purchase(h, today, 182)
    flat = fit_seasonal_pnbd(purchases, season=np.ones(12)).no_purchase(h, today, 182)
    assert ((p > 0) & (p < 1)).all()
    assert expected_calibration_error(quiet, p) < 0.03  # 0.020 when written
    assert abs(p.mean() - quiet.mean()) < 0.03  # 0.596 against 0.615
    # January to June is the quiet half of the year: a flat season expects more purchases in it than there are.
    assert flat.mean() < p.mean()
    assert expected_calibration_error(quiet, flat) > 0.04  # 0.066


def test_a_longer_silence_means_a_higher_chance_of_no_purchase():
    model = SeasonalParetoNBD(1.5, 2.0, 2.0, 40.0, tuple(SEASON / SEASON.mean()))
    first = np.full(5, _day("2023-01-10"))
    last = np.array([_day(d) for d in ("2023-12-30", "2023-11-01", "2023-08-01", "2023-04-01", "2023-01-10")])
    p = model.no_purchase(Histories(first, last, np.array([4.0, 4.0, 4.0, 4.0, 0.0])), pd.Timestamp("2023-12-31"), 90)
    assert (np.diff(p[:4]) > 0).all()
    assert ((p > 0) & (p < 1)).all()


def test_the_same_sample_and_fit_whatever_the_customer_codes(shop):
    # The Dask engine codes customers per partition: the fit must not depend on the codes.
    purchases, _, today = shop
    recoded = np.random.default_rng(0).permutation(int(purchases.customer.max()) + 1)[purchases.customer]
    again = PurchaseDays.of(recoded, purchases.day, today)
    assert fit_seasonal_pnbd(again, sample=800) == fit_seasonal_pnbd(purchases, sample=800)
    assert fit_seasonal_pnbd(purchases, sample=800, seed=1) != fit_seasonal_pnbd(purchases, sample=800)


def test_too_few_customers_give_no_level_and_single_purchases_fit_quietly():
    import warnings

    from churnguard.training.seasonal import MIN_CUSTOMERS, purchases_level

    rng = np.random.default_rng(3)
    n = MIN_CUSTOMERS - 1
    few = PurchaseDays.of(np.arange(n), _day("2024-01-01") + rng.integers(0, 365, n), pd.Timestamp("2024-12-31"))
    assert purchases_level(few) is None
    once = PurchaseDays.of(np.arange(n + 1), _day("2024-01-01") + rng.integers(0, 365, n + 1),
                           pd.Timestamp("2024-12-31"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warning reaches the user's screen
        level = purchases_level(once)
        p = None if level is None else level.no_purchase(purchase_histories(once)[0], pd.Timestamp("2024-12-31"), 182)
    # nobody came back: whatever the fit, no customer is expected to buy again
    assert p is None or (p > 0.99).all()


def test_the_level_sentence_says_why_a_short_history_keeps_the_calibrations_level():
    from churnguard.training.evaluation import level_sentence

    s = {"evaluation": "grouped_cv", "level_correction": "none", "as_of": "2024-12-31", "level_backtest_ece": {},
         "level_purchases_min_customers": 1_000}
    assert level_sentence(s) == (
        "level_correction: none (no backtest to choose one on: the churn level of the period after 2024-12-31 is "
        "the calibration's; the purchases' seasonal model, which would set it, needs 1,000 customers with a "
        "purchase or more and a fit that converges: not here)")
    assert "seasonal" not in level_sentence({**s, "evaluation": "backtest"})
