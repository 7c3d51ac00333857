"""The purchases' own model, for a history too short for a backtest: the level of the period after today.

With less history than a backtest needs (e.g. 12 months and a 182-day horizon), every labelled snapshot's
outcome window ends by today, so the calibration learns the churn of earlier periods of the year (for a
history of 12 months, outcome windows that hold the November-December peak), and no later period is left to
choose a level correction on. The purchases themselves hold more: every customer's purchase days up to today.

:class:`SeasonalParetoNBD` models them as a Pareto/NBD on a seasonal clock: while alive, a customer buys at
rate ``lam * s(t)`` and leaves at rate ``mu * s(t)``, with ``lam ~ Gamma(r, alpha)`` and ``mu ~ Gamma(s, beta)``
across customers and ``s(t)`` one value per calendar month (mean 1). :func:`fit_seasonal_pnbd` fits the four
parameters and the season jointly by maximum likelihood on a seeded sample of the customers (the months of
their repeat purchase days enter as ``sum C_m log s_m``; the mixing is a grid of the Gamma distributions'
mid-quantiles). A customer's chance of no purchase in the horizon is then the posterior chance of "gone by
today" plus "alive today and no purchase before leaving or the horizon's end", the horizon's months taking the
fitted value of the same calendar month (:meth:`SeasonalParetoNBD.no_purchase`).

The deployed model keeps its own order of the customers and takes this model's level: its calibrator becomes
the isotonic map of its raw scores onto these probabilities over today's customers (no outcome is used). See
``benchmarks/seasonal_pnbd.py`` and ``benchmarks/README.md`` for how it does on generated worlds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from churnguard.features.kernel import day_numbers, run_starts
from churnguard.training.level import PurchaseDays

__all__ = ["GRID", "MIN_CUSTOMERS", "SAMPLE", "Histories", "SeasonalParetoNBD", "fit_seasonal_pnbd", "purchases_level"]

GRID = 16  # quantiles per Gamma distribution in the mixing grid
SAMPLE = 10_000  # customers the parameters are fitted on
MIN_CUSTOMERS = 1_000  # below, twelve months' values are mostly noise: no level from the purchases
_MONTH = 12 / 365.25  # a day in months


@dataclass(frozen=True)
class Histories:
    """Customers' purchase days (days since 1970-01-01): the first, the last and the number of repeat days."""

    first: np.ndarray
    last: np.ndarray
    repeats: np.ndarray

    @classmethod
    def of(cls, purchases: PurchaseDays) -> tuple[Histories, np.ndarray]:
        """The histories of the customers of ``purchases`` and the number of their repeat purchase days in each
        calendar month (January first)."""
        customer, day = purchases.customer, purchases.day  # sorted by customer, then day
        starts = run_starts(customer)
        ends = np.r_[starts[1:], len(customer)] - 1
        repeat = np.ones(len(day), dtype=bool)
        repeat[starts] = False
        months = np.bincount(_calendar_month(day[repeat]), minlength=12).astype(float)
        return cls(day[starts], day[ends], (ends - starts).astype(float)), months

    @classmethod
    def of_features(cls, features: pd.DataFrame, today: pd.Timestamp) -> Histories:
        """The histories of customers with a purchase from their features as of ``today`` (``bg_age_days``,
        ``recency_days``: ages of the first and newest purchase days; ``bg_frequency``: repeat days)."""
        day = int(day_numbers(np.datetime64(today.normalize())))
        return cls(day - features["bg_age_days"].to_numpy(dtype="int64"),
                   day - features["recency_days"].to_numpy(dtype="int64"), features["bg_frequency"].to_numpy(dtype=float))


def _calendar_month(days: np.ndarray) -> np.ndarray:
    """0 for January .. 11 for December, of day numbers."""
    return np.asarray(days, dtype="int64").astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12


def _clock(season: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Seasonal months elapsed from the start of a run of days (their calendar ``months``,
    :func:`_calendar_month`) to the start of each of them and of the day after the last."""
    return np.concatenate([[0.0], np.cumsum(season[months] * _MONTH)])


def _grid(r: float, alpha: float, s: float, beta: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.stats import gamma

    q = (np.arange(k) + 0.5) / k
    return gamma.ppf(q, r, scale=1 / alpha)[:, None], gamma.ppf(q, s, scale=1 / beta)[None, :]


def _log_terms(lam: np.ndarray, mu: np.ndarray, clock: np.ndarray, h: Histories, origin: int, today: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per customer and grid point, the log-likelihood of the history ending alive at the end of ``today``,
    and ending gone between the last purchase and then (Pareto/NBD on the seasonal ``clock``)."""
    first, last, now = clock[h.first - origin], clock[h.last - origin], clock[today + 1 - origin]
    total = (lam + mu)[None]
    t, tx = (now - first)[:, None, None], (last - first)[:, None, None]
    base = h.repeats[:, None, None] * np.log(lam)[None]
    alive = base - total * t
    with np.errstate(divide="ignore"):  # bought today: no time to leave, log 0
        gone = base + np.log(mu / (lam + mu))[None] - total * tx + np.log(-np.expm1(-total * (t - tx)))
    return alive, gone


@dataclass(frozen=True)
class SeasonalParetoNBD:
    """A fitted :mod:`seasonal <churnguard.training.seasonal>` Pareto/NBD: ``season`` January..December."""

    r: float
    alpha: float
    s: float
    beta: float
    season: tuple[float, ...]

    def facts(self) -> dict[str, object]:
        """For the summary and the model card."""
        return {"r": self.r, "alpha": self.alpha, "s": self.s, "beta": self.beta, "season": list(self.season)}

    def no_purchase(self, h: Histories, today: pd.Timestamp, horizon: int, grid: int = GRID) -> np.ndarray:
        """Each customer's chance of no purchase in the ``horizon`` days after ``today``."""
        today = int(day_numbers(np.datetime64(today.normalize())))
        origin = int(h.first.min()) if len(h.first) else today
        clock = _clock(np.asarray(self.season), _calendar_month(np.arange(origin, today + horizon + 2)))
        lam, mu = _grid(self.r, self.alpha, self.s, self.beta, grid)
        alive, gone = _log_terms(lam, mu, clock, h, origin, today)
        span = clock[today + horizon + 1 - origin] - clock[today + 1 - origin]
        total = lam + mu
        quiet = np.log(mu / total * -np.expm1(-total * span) + np.exp(-total * span))[None]
        gone = logsumexp(gone, axis=(1, 2))
        return np.exp(np.logaddexp(gone, logsumexp(alive + quiet, axis=(1, 2)))
                      - np.logaddexp(gone, logsumexp(alive, axis=(1, 2))))


def _season(theta: np.ndarray) -> np.ndarray:
    s = np.exp(np.r_[0.0, theta[4:]]) if len(theta) > 4 else np.ones(12)
    return s / s.mean()


def fit_seasonal_pnbd(purchases: PurchaseDays, *, sample: int = SAMPLE, seed: int = 0, grid: int = GRID,
                      season: Sequence[float] | None = None) -> SeasonalParetoNBD:
    """Maximum-likelihood :class:`SeasonalParetoNBD` of the purchase days up to ``purchases.last`` of a seeded
    sample of ``sample`` customers of ``purchases`` (all of them when fewer; the same sample whatever the
    customers' codes): first with a flat season, then with the season; with ``season`` (12 values, January
    first), that season, fixed."""
    from scipy.optimize import minimize

    h, months = Histories.of(purchases)
    # In an order of the histories themselves, not of the customer codes (which differ between engines), so
    # every engine fits the same sample; the months' counts are the whole population's, scaled to it.
    order = np.lexsort((h.repeats, h.last, h.first))
    if len(order) > sample:
        months = months * (sample / len(order))
        order = order[np.sort(np.random.default_rng(seed).choice(len(order), sample, replace=False))]
    h = Histories(h.first[order], h.last[order], h.repeats[order])
    today = int(day_numbers(np.datetime64(purchases.last.normalize())))
    origin = int(h.first.min())
    calendar = _calendar_month(np.arange(origin, today + 1))
    size = np.log(grid * grid)

    def nll(theta: np.ndarray, season: np.ndarray | None = None) -> float:
        s = _season(theta) if season is None else season
        clock = _clock(s, calendar)
        alive, gone = _log_terms(*_grid(*np.exp(theta[:4]), grid), clock, h, origin, today)
        ll = (np.logaddexp(logsumexp(alive, axis=(1, 2)), logsumexp(gone, axis=(1, 2))) - size).sum()
        return -(ll + (months * np.log(s)).sum() if season is None else ll)

    fixed = np.ones(12) if season is None else np.asarray(season, dtype=float) / np.mean(season)
    with np.errstate(all="ignore"):  # the optimiser's trial steps may leave the parameters' range
        theta = minimize(nll, np.log([1.0, 2.0, 1.0, 30.0]), args=(fixed,), method="L-BFGS-B").x
        if season is None:
            theta = minimize(nll, np.r_[theta, np.zeros(11)], method="L-BFGS-B").x
            fixed = _season(theta)
    r, alpha, s, beta = map(float, np.exp(theta[:4]))
    return SeasonalParetoNBD(r, alpha, s, beta, tuple(map(float, fixed)))


def purchases_level(purchases: PurchaseDays, *, seed: int = 0) -> SeasonalParetoNBD | None:
    """:func:`fit_seasonal_pnbd` of ``purchases`` when they hold at least ``MIN_CUSTOMERS`` customers and the
    fit is finite; None otherwise (the deployed model then keeps the calibration's level)."""
    if len(np.unique(purchases.customer)) < MIN_CUSTOMERS:
        return None
    fitted = fit_seasonal_pnbd(purchases, seed=seed)
    values = [fitted.r, fitted.alpha, fitted.s, fitted.beta, *fitted.season]
    return fitted if np.all(np.isfinite(values)) and min(values) > 0 else None
