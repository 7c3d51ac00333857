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

The model's prediction half (:class:`SeasonalParetoNBD`, its no-purchase chance) is in
``churnguard.model._modelcore``, which the model file's readers share; this module fits it.

The deployed model keeps its own order of the customers and takes this model's level: its calibrator becomes
the isotonic map of its raw scores onto these probabilities over today's customers (no outcome is used). The
customers silent longer than any the model learned from get this model's probability itself
(:class:`~churnguard.model._modelcore.BeyondSupport`): trees give them that of the longest silence they saw. See
``benchmarks/seasonal_pnbd.py`` and ``benchmarks/HISTORY.md`` for how it does on generated worlds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp

from churnguard.features.kernel import run_starts
from churnguard.model._modelcore import (
    GRID,
    Histories,
    SeasonalParetoNBD,
    calendar_month,
    clock_origin,
    day_number,
    gamma_grid,
    log_terms,
    seasonal_clock,
)
from churnguard.training.level import PurchaseDays

__all__ = ["GRID", "MIN_CUSTOMERS", "SAMPLE", "Histories", "SeasonalParetoNBD", "fit_seasonal_pnbd",
           "purchase_histories", "purchases_level"]

SAMPLE = 10_000  # customers the parameters are fitted on
MIN_CUSTOMERS = 1_000  # below, twelve months' values are mostly noise: no level from the purchases


def purchase_histories(purchases: PurchaseDays) -> tuple[Histories, np.ndarray]:
    """The histories of the customers of ``purchases`` and the number of their repeat purchase days in each
    calendar month (January first)."""
    customer, day = purchases.customer, purchases.day  # sorted by customer, then day
    starts = run_starts(customer)
    ends = np.r_[starts[1:], len(customer)] - 1
    repeat = np.ones(len(day), dtype=bool)
    repeat[starts] = False
    months = np.bincount(calendar_month(day[repeat]), minlength=12).astype(float)
    return Histories(day[starts], day[ends], (ends - starts).astype(float)), months


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

    h, months = purchase_histories(purchases)
    # In an order of the histories themselves, not of the customer codes (which differ between engines), so
    # every engine fits the same sample; the months' counts are the whole population's, scaled to it.
    order = np.lexsort((h.repeats, h.last, h.first))
    if len(order) > sample:
        months = months * (sample / len(order))
        order = order[np.sort(np.random.default_rng(seed).choice(len(order), sample, replace=False))]
    h = Histories(h.first[order], h.last[order], h.repeats[order])
    today = day_number(purchases.last)
    origin = clock_origin(h.first)
    calendar = calendar_month(np.arange(origin, today + 1))
    size = np.log(grid * grid)

    def nll(theta: np.ndarray, season: np.ndarray | None = None) -> float:
        s = _season(theta) if season is None else season
        clock = seasonal_clock(s, calendar)
        alive, gone = log_terms(*gamma_grid(*np.exp(theta[:4]), grid), clock, h, origin, today)
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
