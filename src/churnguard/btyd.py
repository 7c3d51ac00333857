"""BG/NBD "buy till you die" model (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way").

While alive, a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha); after each repeat
purchase they drop out for good with probability p ~ Beta(a, b). From each customer's repeat-purchase count
``x``, time of the last purchase ``t_x`` and length of observation ``T`` (all measured from the first
purchase, in one time unit: churnguard uses weeks) the model gives P(alive) and the expected number of
purchases in the next ``t``. Fitted by maximum likelihood with scipy; identical histories can be compressed
into one row with an integer weight, which makes a million customers cheap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

__all__ = ["BGNBDParams", "bgnbd_log_likelihood", "expected_purchases", "fit_bgnbd", "prob_alive", "simulate_bgnbd"]


@dataclass(frozen=True)
class BGNBDParams:
    """Gamma(r, alpha) purchase rates and Beta(a, b) dropout probabilities."""

    r: float
    alpha: float
    a: float
    b: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _arrays(frequency, recency, T) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, tx, t = (np.asarray(v, dtype="float64") for v in (frequency, recency, T))
    if not (x.shape == tx.shape == t.shape):
        raise ValueError("frequency, recency and T must have the same length")
    if x.size == 0:
        raise ValueError("no customers given")
    if np.isnan(x).any() or np.isnan(tx).any() or np.isnan(t).any():
        raise ValueError("frequency, recency and T must not contain NaN")
    if (x < 0).any() or (tx < 0).any() or (t < 0).any():
        raise ValueError("frequency, recency and T must be non-negative")
    if (tx > t + 1e-9).any():
        raise ValueError(f"recency exceeds T for {int((tx > t + 1e-9).sum())} customers: the last purchase cannot "
                         "come after the end of observation")
    if ((x == 0) & (tx != 0)).any():
        raise ValueError("customers with frequency 0 must have recency 0")
    return x, tx, t


def _ll(r: float, alpha: float, a: float, b: float, x, tx, t) -> np.ndarray:
    """Per-customer log-likelihood, eq. 6 of the paper, in log space."""
    ln_a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    ln_a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    ln_a3 = -(r + x) * np.log(alpha + t)
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + tx), -np.inf)
    return ln_a1 + ln_a2 + np.logaddexp(ln_a3, ln_a4)


def bgnbd_log_likelihood(params: BGNBDParams, frequency, recency, T) -> np.ndarray:
    """Log-likelihood of each customer's (x, t_x, T) under ``params``."""
    x, tx, t = _arrays(frequency, recency, T)
    return _ll(params.r, params.alpha, params.a, params.b, x, tx, t)


def fit_bgnbd(frequency, recency, T, *, penalizer: float = 0.0, weights=None) -> BGNBDParams:
    """Maximum-likelihood parameters.

    Args:
        frequency: repeat purchases (purchase periods - 1) per customer.
        recency: time from first to last purchase.
        T: time from first purchase to the cut-off, same unit as ``recency``.
        penalizer: L2 penalty on the parameters (as in lifetimes), for small or degenerate samples.
        weights: how many customers share each row (compress identical histories to fit large populations).
    """
    x, tx, t = _arrays(frequency, recency, T)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype="float64")
    if w.shape != x.shape or (w < 0).any():
        raise ValueError("weights must be non-negative and one per customer")
    total = w.sum()

    def objective(log_params: np.ndarray) -> float:
        params = np.exp(log_params)
        ll = _ll(*params, x, tx, t)
        value = -(w * ll).sum() / total + penalizer * (params**2).sum()
        return float(value) if np.isfinite(value) else 1e100

    start = np.log([1.0, max(float(np.average(t, weights=w)), 1e-3) / 10, 1.0, 1.0])
    best = None
    for method in ("L-BFGS-B", "Nelder-Mead"):
        res = minimize(objective, start, method=method, options={"maxiter": 5000})
        if best is None or res.fun < best.fun:
            best = res
        start = best.x
    r, alpha, a, b = np.exp(best.x)
    return BGNBDParams(float(r), float(alpha), float(a), float(b))


def prob_alive(params: BGNBDParams, frequency, recency, T) -> np.ndarray:
    """P(still alive | x, t_x, T); 1 for customers who have not bought again (they cannot have dropped out)."""
    x, tx, t = _arrays(frequency, recency, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_odds = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(alpha + t) - np.log(alpha + tx))
        out = 1.0 / (1.0 + np.exp(log_odds))
    return np.where(x > 0, out, 1.0)


def expected_purchases(params: BGNBDParams, t: float, frequency, recency, T) -> np.ndarray:
    """Expected purchases in ``(T, T + t]`` given the history (eq. 10 of the paper)."""
    x, tx, big_t = _arrays(frequency, recency, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + big_t + t)
    ln_ratio = (r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + t))
    hyp = hyp2f1(r + x, b + x, a + b + x - 1, z)
    numer = (a + b + x - 1) / (a - 1) * (1 - np.exp(ln_ratio) * hyp)
    with np.errstate(divide="ignore", over="ignore"):
        odds = np.where(
            x > 0,
            a / np.maximum(b + x - 1, 1e-300) * np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + tx))),
            0.0,
        )
    out = numer / (1 + odds)
    return np.clip(np.nan_to_num(out, nan=0.0, posinf=0.0), 0.0, None)


def simulate_bgnbd(params: BGNBDParams, T, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (frequency, recency) for customers observed for ``T`` after their first purchase."""
    big_t = np.asarray(T, dtype="float64")
    n = big_t.size
    lam = rng.gamma(params.r, 1 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    now = np.zeros(n)
    x = np.zeros(n)
    tx = np.zeros(n)
    active = np.ones(n, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        now[idx] += rng.exponential(1 / lam[idx])
        bought = now[idx] <= big_t[idx]
        b_idx = idx[bought]
        x[b_idx] += 1
        tx[b_idx] = now[b_idx]
        active[idx[~bought]] = False
        active[b_idx[rng.uniform(size=b_idx.size) < p[b_idx]]] = False  # drops out after this purchase
    return x, tx
