"""A seeded synthetic retail world for demos, tests and benchmarks.

Customers sign up over the period (a third of them before it starts, so there is history from day one),
each with their own purchase rate (gamma) and typical basket (lognormal). Month by month, every customer
still alive places a Poisson number of orders (with a November/December peak and a summer dip) and opens
support tickets in proportion to how much they buy. Tickets arrive by email, chat or phone with
channel-dependent first-response and resolution times; some are never answered or never resolved, and CSAT
falls when that happens. Customers then churn (stop buying for good) with a monthly hazard that is higher
for three months after a bad support experience (first response over 24 h, unresolved, or CSAT <= 2), lower
for loyalty members and for customers who like the brand (NPS promoters), higher for detractors. A few
percent of orders are partly or fully refunded later. The simulation loops over months, never over customers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from churnguard._io import write_table

__all__ = ["DemoData", "generate_demo_data", "write_demo_data"]

logger = logging.getLogger(__name__)

CATEGORIES = np.array(["apparel", "home", "beauty", "electronics", "grocery", "toys"])
REGIONS = np.array(["north", "south", "east", "west"])
_SEASON = {1: 0.9, 2: 0.9, 3: 1.0, 4: 1.0, 5: 1.0, 6: 0.85, 7: 0.8, 8: 0.85, 9: 1.0, 10: 1.05, 11: 1.4, 12: 1.6}
_TICKET_CHANNELS = np.array(["email", "chat", "phone"])
_RESPONSE_MEDIAN_H = np.array([14.0, 0.15, 0.05])  # email hours, chat minutes, phone fast
_RESPONSE_SIGMA = np.array([1.0, 1.0, 0.8])


@dataclass(frozen=True)
class DemoData:
    """The three input tables of the data contract."""

    transactions: pd.DataFrame
    tickets: pd.DataFrame
    customers: pd.DataFrame


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width)).astype(object)


def _random_times(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Uniform datetime64[s] between lo and hi, per row."""
    span = (hi - lo).astype("timedelta64[s]").astype("int64")
    offset = (rng.uniform(size=lo.size) * np.maximum(span, 0)).astype("int64")
    return lo.astype("datetime64[s]") + offset.astype("timedelta64[s]")


def generate_demo_data(
    n_customers: int = 2000, *, seed: int = 0, start: str = "2023-01-01", end: str = "2025-12-31"
) -> DemoData:
    """Simulate ``n_customers`` customers between ``start`` and ``end`` (inclusive); same seed, same data."""
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    rng = np.random.default_rng(seed)
    n = n_customers
    month_starts = pd.date_range(start, end, freq="MS").to_numpy().astype("datetime64[s]")
    end_ts = (pd.Timestamp(end) + pd.Timedelta(days=1)).to_datetime64().astype("datetime64[s]")
    month_ends = np.append(month_starts[1:], end_ts)
    n_months = len(month_starts)

    # Who they are.
    early = rng.uniform(size=n) < 1 / 3
    signup_month = np.where(early, 0, rng.integers(0, n_months, n))
    signup = np.where(
        early,
        month_starts[0] - rng.integers(1, 365, n).astype("timedelta64[D]"),
        _random_times(rng, month_starts[signup_month], month_ends[signup_month]),
    ).astype("datetime64[s]")
    loyalty = rng.uniform(size=n) < 0.3
    affinity = rng.normal(size=n)  # liking for the brand: drives NPS and lowers churn
    rate = rng.gamma(1.5, 0.35, n) * np.where(loyalty, 1.3, 1.0)  # orders per month
    basket = rng.lognormal(np.log(40), 0.6, n)
    alive = np.ones(n, dtype=bool)
    last_bad = np.full(n, -100)  # month index of the last bad support experience

    orders_cust, orders_month, tickets_cust, tickets_month = [], [], [], []
    ticket_bad_parts, ticket_info = [], []
    for m in range(n_months):
        active = alive & (signup_month <= m)
        season = _SEASON[int(str(month_starts[m])[5:7])]
        k = rng.poisson(rate * season) * active
        k = np.where(active & (signup_month == m) & ~early, np.maximum(k, 1), k)  # the first purchase at signup
        idx = np.flatnonzero(k)
        orders_cust.append(np.repeat(idx, k[idx]))
        orders_month.append(np.full(int(k.sum()), m))
        nt = rng.poisson(0.03 + 0.08 * k) * active
        tidx = np.repeat(np.flatnonzero(nt), nt[nt > 0])
        channel = rng.choice(3, tidx.size, p=[0.5, 0.3, 0.2])
        response_h = rng.lognormal(np.log(_RESPONSE_MEDIAN_H[channel]), _RESPONSE_SIGMA[channel])
        unanswered = rng.uniform(size=tidx.size) < 0.03
        unresolved = unanswered | (rng.uniform(size=tidx.size) < 0.05 + 0.1 * (response_h > 24))
        csat = np.clip(np.round(4.4 - 1.3 * (response_h > 24) - 1.8 * unresolved + 0.4 * affinity[tidx]
                                + rng.normal(0, 0.7, tidx.size)), 1, 5)
        bad = (response_h > 24) | unanswered | unresolved | (csat <= 2)
        last_bad[tidx[bad]] = m
        tickets_cust.append(tidx)
        tickets_month.append(np.full(tidx.size, m))
        ticket_bad_parts.append(bad)
        ticket_info.append((channel, response_h, unanswered, unresolved, csat))
        hazard = 0.03 * np.where(m - last_bad <= 3, 2.8, 1.0) * np.where(loyalty, 0.6, 1.0) * np.exp(-0.45 * affinity)
        alive &= ~(active & (rng.uniform(size=n) < np.minimum(hazard, 0.9)))

    customer_ids = _ids("C", np.arange(1, n + 1), 7)
    transactions = _transactions(rng, customer_ids, np.concatenate(orders_cust), np.concatenate(orders_month),
                                 month_starts, month_ends, signup, signup_month, basket, end_ts)
    tickets = _tickets(rng, customer_ids, np.concatenate(tickets_cust), np.concatenate(tickets_month),
                       ticket_info, month_starts, month_ends, signup, signup_month, end_ts)
    nps = np.clip(np.round(7.5 + 1.8 * affinity + rng.normal(0, 1.0, n)), 0, 10)
    customers = pd.DataFrame(
        {
            "customer_id": pd.array(customer_ids, dtype="str"),
            "signup_date": pd.to_datetime(signup).normalize(),
            "loyalty_member": loyalty,
            "loyalty_points": np.where(loyalty, rng.poisson(250, n), 0).astype("int64"),
            "nps": np.where(rng.uniform(size=n) < 0.4, nps, np.nan),
            "region": pd.array(rng.choice(REGIONS, n), dtype="str"),
        }
    )
    logger.info("demo data: %d customers, %d transactions, %d tickets", n, len(transactions), len(tickets))
    return DemoData(transactions, tickets, customers)


def _transactions(rng, customer_ids, cust, month, month_starts, month_ends, signup, signup_month, basket, end_ts):
    lo = np.maximum(signup[cust], month_starts[month])
    ts = _random_times(rng, lo, month_ends[month])
    amount = np.round(basket[cust] * rng.lognormal(0, 0.3, cust.size), 2)
    n = cust.size
    orders = pd.DataFrame(
        {
            "customer_id": customer_ids[cust],
            "timestamp": ts,
            "amount": amount,
            "order_id": _ids("O", np.arange(1, n + 1), 8),
            "quantity": 1 + rng.poisson(1.0, n),
            "category": rng.choice(CATEGORIES, n),
            "channel": rng.choice(np.array(["web", "store", "app"]), n, p=[0.5, 0.3, 0.2]),
            "discount": np.where(rng.uniform(size=n) < 0.3, np.round(rng.uniform(0.05, 0.5, n), 2), 0.0),
        }
    )
    refunded = np.flatnonzero(rng.uniform(size=n) < 0.04)
    refund_ts = ts[refunded] + (rng.uniform(1, 30, refunded.size) * 86400).astype("timedelta64[s]")
    keep = refund_ts < end_ts
    refunded, refund_ts = refunded[keep], refund_ts[keep]
    refunds = orders.iloc[refunded].copy()
    refunds["timestamp"] = refund_ts
    refunds["amount"] = -np.round(amount[refunded] * rng.choice([1.0, 0.5, 0.3], refunded.size), 2)
    refunds["order_id"] = _ids("R", np.arange(1, refunded.size + 1), 8)
    refunds["quantity"] = -refunds["quantity"]
    out = pd.concat([orders, refunds], ignore_index=True)
    out["timestamp"] = out["timestamp"].astype("datetime64[ns]")
    for c in ("customer_id", "order_id", "category", "channel"):
        out[c] = out[c].astype("str")
    return out


def _tickets(rng, customer_ids, cust, month, info, month_starts, month_ends, signup, signup_month, end_ts):
    channel, response_h, unanswered, unresolved, csat = (np.concatenate(parts) for parts in zip(*info, strict=True))
    lo = np.maximum(signup[cust], month_starts[month])
    opened = _random_times(rng, lo, month_ends[month])
    first = opened + (response_h * 3600).astype("timedelta64[s]")
    resolve_h = response_h + rng.lognormal(np.log(20), 1.0, cust.size)
    resolved = opened + (resolve_h * 3600).astype("timedelta64[s]")
    first_ok = ~unanswered & (first < end_ts)
    resolved_ok = ~unresolved & first_ok & (resolved < end_ts)
    answered_survey = resolved_ok & (rng.uniform(size=cust.size) < 0.6)
    n = cust.size
    return pd.DataFrame(
        {
            "ticket_id": pd.array(_ids("T", np.arange(1, n + 1), 8), dtype="str"),
            "customer_id": pd.array(customer_ids[cust], dtype="str"),
            "opened_at": opened.astype("datetime64[ns]"),
            "first_response_at": pd.to_datetime(np.where(first_ok, first, np.datetime64("NaT"))).astype("datetime64[ns]"),
            "resolved_at": pd.to_datetime(np.where(resolved_ok, resolved, np.datetime64("NaT"))).astype("datetime64[ns]"),
            "channel": pd.array(_TICKET_CHANNELS[channel], dtype="str"),
            "csat": np.where(answered_survey, csat, np.nan),
        }
    )


def write_demo_data(data: DemoData, out_dir: str | Path, fmt: str = "csv") -> dict[str, Path]:
    """Write transactions, tickets and customers as ``fmt`` (csv or parquet) into ``out_dir``, atomically."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"format must be csv or parquet, got {fmt!r}")
    out_dir = Path(out_dir)
    return {
        name: write_table(getattr(data, name), out_dir / f"{name}.{fmt}")
        for name in ("transactions", "tickets", "customers")
    }
