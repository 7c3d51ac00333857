"""BG/NBD "buy till you die" model (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way").

While alive, a customer buys as a Poisson process with rate ``lambda ~ Gamma(shape=r, rate=alpha)``; after
each *repeat* purchase they drop out for good with probability ``p ~ Beta(a, b)``. A customer's history is
``x`` (repeat purchases), ``t_x`` (time from the first to the last purchase) and ``T`` (time from the first
purchase to the cut-off), all in one time unit (churnguard uses weeks); ``alpha`` is in that unit too, so
``r / alpha`` is the mean purchase rate per unit. From the fitted model we derive P(alive) and the expected
number of purchases in the next ``t`` units, used as churn features. Everything is vectorised numpy in log
space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from churnguard._text import plural

__all__ = ["BGNBDParams", "bgnbd_log_likelihood", "expected_purchases", "expected_purchases_and_alive", "fit_bgnbd",
           "prob_alive", "simulate_bgnbd"]

_LOG_BOUND = 15.0  # fitted parameters are kept in [e^-15, e^15] so degenerate samples cannot run off to inf
_NUDGE = 1e-5  # half-width of the band around the removable singularities a = 1 and a + b + x = 1 of eq. 10


@dataclass(frozen=True)
class BGNBDParams:
    """BG/NBD parameters: purchase rates ~ Gamma(r, alpha) (``alpha`` in time units), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        if not all(np.isfinite(v) and v > 0 for v in asdict(self).values()):
            raise ValueError(f"BG/NBD parameters must be positive and finite, got {asdict(self)}")

    def to_dict(self) -> dict[str, float]:
        """Plain floats, e.g. for JSON metadata; ``BGNBDParams(**d)`` round-trips."""
        return {k: float(v) for k, v in asdict(self).items()}


def _history(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> tuple[np.ndarray, ...]:
    """Validate (x, t_x, T) and broadcast them to float arrays; raise ValueError naming the problem."""
    arrays = [np.asarray(v, dtype="float64") for v in (frequency, recency, T)]
    try:
        x, tx, t = np.broadcast_arrays(*arrays)
    except ValueError:
        raise ValueError(f"frequency, recency and T must have the same length, got shapes "
                         f"{[a.shape for a in arrays]}") from None
    if x.size == 0:
        raise ValueError("no customers given: frequency, recency and T are empty")
    for name, v in (("frequency", x), ("recency", tx), ("T", t)):
        if not np.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if (v < 0).any():
            raise ValueError(f"{name} must be non-negative ({plural(int((v < 0).sum()), 'negative value')})")
    if (x != np.round(x)).any():
        raise ValueError("frequency must be a whole number of repeat purchases")
    if (bad := tx > t).any():
        raise ValueError(f"recency exceeds T for {plural(int(bad.sum()), 'customer')}: the last purchase cannot come "
                         "after the cut-off")
    if (bad := (x == 0) & (tx != 0)).any():
        raise ValueError(f"customers with frequency 0 must have recency 0 ({int(bad.sum())} do not)")
    return x, tx, t


def _ll_terms(r: float, alpha: float, a: float, b: float, x: np.ndarray, tx: np.ndarray, t: np.ndarray,
              grad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-customer log-likelihood (eq. 6) and optionally its gradient w.r.t. (log r, log alpha, log a, log b).

    ``L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
    + [x > 0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))``, written as
    ``A1 + A2 + log(exp(A3) + exp(A4))`` with ``B(a+1, b+x-1)/B(a, b+x) = a / (b+x-1)`` folded into A4.
    """
    from scipy.special import digamma, gammaln  # imported when used: scipy costs 0.14 s to import

    rep = x > 0
    bx1 = np.where(rep, b + x - 1, 1.0)  # b + x - 1 > 0 whenever x >= 1; placeholder avoids log(<0) at x = 0
    log_tx, log_t = np.log(alpha + tx), np.log(alpha + t)
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * log_t
    a4 = np.where(rep, np.log(a) - np.log(bx1) - (r + x) * log_tx, -np.inf)
    a34 = np.logaddexp(a3, a4)
    ll = a1 + a2 + a34
    if not grad:
        return ll, None
    w3, w4 = np.exp(a3 - a34), np.exp(a4 - a34)  # shares of the two terms, w3 + w4 = 1
    d_ab = digamma(a + b) - digamma(a + b + x)
    jac = np.stack([
        r * (digamma(r + x) - digamma(r) + np.log(alpha) - w3 * log_t - w4 * log_tx),
        alpha * (r / alpha - (r + x) * (w3 / (alpha + t) + w4 / (alpha + tx))),
        a * (d_ab + w4 / a),
        b * (d_ab + digamma(b + x) - digamma(b) - w4 / bx1),
    ])
    return ll, jac


def bgnbd_log_likelihood(params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike,
                         T: ArrayLike) -> np.ndarray:
    """Log-likelihood of each customer's history (eq. 6 of the paper); the model's fit criterion."""
    x, tx, t = _history(frequency, recency, T)
    return _ll_terms(params.r, params.alpha, params.a, params.b, x, tx, t)[0]


def _compress(x: np.ndarray, tx: np.ndarray, t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge identical (x, t_x, T) rows: the unique rows (3, k) and their weights, normalised to sum to 1."""
    order = np.lexsort((t, tx, x))
    rows = np.stack([x, tx, t])[:, order]
    first = np.r_[True, (np.diff(rows, axis=1) != 0).any(axis=0)]
    group = np.cumsum(first) - 1
    weights = np.bincount(group, weights=w[order])
    return rows[:, first], weights / weights.sum()


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, *, penalizer: float = 0.0,
              weights: ArrayLike | None = None) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters.

    Minimises ``-sum(w * LL) / sum(w) + penalizer * (r² + alpha² + a² + b²)`` (the ``lifetimes`` objective)
    over log-parameters with L-BFGS-B and the analytic gradient, falling back to Nelder-Mead if L-BFGS-B
    stops early. Identical (x, t_x, T) rows are merged into weighted unique rows first, so a population of
    a million customers costs only as much as its distinct histories (round t_x and T, e.g. to days, to
    exploit this).

    Args:
        frequency: repeat purchases per customer (distinct purchase periods - 1).
        recency: time from the first to the last purchase (0 when ``frequency`` is 0).
        T: time from the first purchase to the cut-off, same unit as ``recency``.
        penalizer: L2 penalty on the parameters, to stabilise small or degenerate samples.
        weights: non-negative count of customers behind each row (default 1 each).

    Raises:
        ValueError: on empty, NaN, negative or inconsistent histories, or bad weights / penalizer.
    """
    x, tx, t = (v.ravel() for v in _history(frequency, recency, T))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype="float64").ravel()
    if w.shape != x.shape or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be one finite non-negative count per customer, not all zero")
    if not (np.isfinite(penalizer) and penalizer >= 0):
        raise ValueError(f"penalizer must be a non-negative number, got {penalizer!r}")
    (x, tx, t), w = _compress(x, tx, t, w)
    from scipy.optimize import minimize  # imported where fitted: scoring and the features never need it

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        params = np.exp(log_params)
        ll, jac = _ll_terms(*params, x, tx, t, grad=True)
        value = -(w @ ll) + penalizer * (params**2).sum()
        if not np.isfinite(value):
            return 1e300, np.zeros(4)
        return float(value), -(jac @ w) + 2 * penalizer * params**2

    mean_rate = max(float(w @ x) / max(float(w @ t), 1e-9), 1e-6)  # repeat purchases per unit of time
    start = np.log([1.0, 1.0 / mean_rate, 1.0, 1.0])
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 4
    res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"gtol": 1e-8, "ftol": 1e-13, "maxiter": 1000})
    if not res.success:
        nm = minimize(lambda p: objective(p)[0], res.x, method="Nelder-Mead", bounds=bounds,
                      options={"xatol": 1e-8, "fatol": 1e-12, "maxiter": 4000})
        res = nm if nm.fun < res.fun else res
    if not np.isfinite(res.fun) or res.fun >= 1e300:
        raise RuntimeError(f"BG/NBD fit failed: {res.message}")
    return BGNBDParams(*(float(v) for v in np.exp(res.x)))


def _log_odds_dead(r: float, alpha: float, a: float, b: float, x: np.ndarray, tx: np.ndarray,
                   t: np.ndarray) -> np.ndarray:
    """``log[a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x)]`` = log P(dead)/P(alive); -inf for x = 0."""
    rep = x > 0
    bx1 = np.where(rep, b + x - 1, 1.0)
    return np.where(rep, np.log(a) - np.log(bx1) + (r + x) * (np.log(alpha + t) - np.log(alpha + tx)), -np.inf)


def prob_alive(params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, *,
               validate: bool = True) -> np.ndarray:
    """P(alive | x, t_x, T) = 1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) (paper, eq. 13).

    Exactly 1 for customers without repeat purchases: in BG/NBD dropout only happens right after a repeat
    purchase. Computed as ``expit(-log_odds)``, so long silences give tiny probabilities, never NaN.
    ``validate=False`` skips the input checks, for float64 arrays that are valid by construction.
    """
    from scipy.special import expit  # imported when used: scipy costs 0.14 s to import

    x, tx, t = _history(frequency, recency, T) if validate else (frequency, recency, T)
    return expit(-_log_odds_dead(params.r, params.alpha, params.a, params.b, x, tx, t))


def _expected(r: float, alpha: float, a: float, b: float, t: np.ndarray, x: np.ndarray,
              big_t: np.ndarray) -> np.ndarray:
    """Eq. 10 without its P(alive) factor, away from a = 1; Euler's transform keeps 2F1 near 1 instead of letting
    it overflow for big x.

    ``((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; c; z) = (1-z)^(a-1) 2F1(c-r-x, a-1; c; z)``
    with ``c = a+b+x-1`` and ``z = t/(alpha+T+t)`` in [0, 1).
    """
    from scipy.special import hyp2f1  # imported when used: scipy costs 0.14 s to import

    c = a + b + x - 1
    z = t / (alpha + big_t + t)
    f = hyp2f1(c - r - x, a - 1, c, z)
    log_term = (a - 1) * np.log1p(-z) + np.log(np.maximum(np.abs(f), 1e-300))
    bracket = np.where(f > 0, -np.expm1(log_term), 1 + np.exp(log_term))  # 1 - (1-z)^(a-1) F, no cancellation
    return c / (a - 1) * bracket


def _bridge(f: Callable[[float], np.ndarray], value: float, centre: float) -> np.ndarray:
    """``f(value)``, linearly interpolated across ``centre ± _NUDGE`` where f has a removable 0/0 singularity."""
    if abs(value - centre) >= _NUDGE:
        return f(value)
    lo, hi = f(centre - _NUDGE), f(centre + _NUDGE)
    return lo + (hi - lo) * (value - centre + _NUDGE) / (2 * _NUDGE)


def expected_purchases(params: BGNBDParams, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike,
                       T: ArrayLike, *, validate: bool = True) -> np.ndarray:
    """Expected number of purchases in ``(T, T + t]`` given the history (paper, eq. 10).

    ``E[Y(t)] = (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]
    * P(alive)``. ``t`` is in the same unit as ``T`` and broadcasts against the customers. The singular points
    a = 1 and (for x = 0) a + b = 1 are bridged by interpolation; results are finite and non-negative.
    ``validate=False`` skips the input checks, as in :func:`prob_alive`.
    """
    return expected_purchases_and_alive(params, t, frequency, recency, T, validate=validate)[0]


def expected_purchases_and_alive(params: BGNBDParams, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike,
                                 T: ArrayLike, *, validate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """:func:`expected_purchases` and :func:`prob_alive` of the same customers, P(alive) computed once: eq. 10
    is P(alive) times the expected purchases of a customer alive at ``T``."""
    x, tx, big_t = _history(frequency, recency, T) if validate else (frequency, recency, T)
    t = np.asarray(t, dtype="float64")
    if validate and (not np.isfinite(t).all() or (t < 0).any()):
        raise ValueError("horizon t must be finite and non-negative")
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if_alive = _bridge(lambda a_: _bridge(lambda b_: _expected(r, alpha, a_, b_, t, x, big_t), b, 1 - a_), a, 1.0)
    alive = prob_alive(params, x, tx, big_t, validate=False)
    return np.maximum(if_alive * alive, 0.0), alive


def simulate_bgnbd(params: BGNBDParams, T: ArrayLike, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw (frequency, recency) for customers observed for ``T`` after their first purchase.

    Exact and loop-free: K ~ Poisson(lambda T) purchase opportunities in (0, T], the customer survives
    N ~ Geometric(p) repeat purchases (the N-th is the last), so x = min(K, N); given K, purchase times are
    K uniform order statistics on (0, T], so t_x = T * Beta(x, K - x + 1).
    """
    big_t = np.asarray(T, dtype="float64")
    lam = rng.gamma(params.r, 1 / params.alpha, big_t.shape)
    p = np.clip(rng.beta(params.a, params.b, big_t.shape), 1e-12, 1.0)
    k = rng.poisson(lam * big_t)
    x = np.minimum(k, rng.geometric(p))
    tx = np.where(x > 0, big_t * rng.beta(np.maximum(x, 1), k - x + 1), 0.0)
    return x.astype("float64"), tx
