"""A seeded synthetic retail world for the demo, the tests and benchmarks.

The world is simulated month by month for all customers at once (numpy arrays; the only Python loop is
over months):

* **Customers** join over the period: 30% are existing customers who signed up before it starts (so there
  is history from day one), the rest sign up in later months with fewer new customers as time goes on.
  New customers buy in the month they sign up. Each has a purchase rate (gamma, very heterogeneous), a
  typical basket (lognormal), a favourite category and channel, a brand attitude (the NPS they would give;
  40% answer the survey) and, for 30%, a loyalty membership that means more orders and less churn.
* **Orders** per month are Poisson with a seasonal factor (November/December peak, summer dip), on a
  random day of the month at a realistic time of day (stores open 9-21, online peaks in the evening).
  A few percent of orders (more for apparel and electronics) are refunded, fully or partly, days later as
  a separate negative row with its own ``R...`` id.
* **Support tickets** come more often in months with orders, by email, chat or phone. First response takes
  hours to days by email (longer at the seasonal peak), minutes in chat and almost nothing by phone; some
  tickets are never answered or never resolved. CSAT (only for resolved tickets, when the customer answers
  the survey) falls with a slow first response, a slow resolution and a poor brand attitude.
* **Churn**: at the end of every month, each active customer stops buying for good with a monthly hazard
  that is four times higher in the month of a bad support experience (first response over 24 h or never,
  never resolved, or CSAT <= 2) and the three after it, higher in the first three months after signup,
  lower for loyalty members and NPS promoters, higher for detractors. Churned customers neither buy nor open
  tickets. After a bad experience customers also buy less for a while, a visible slow-down before leaving.
* **Events** (drawn from their own random stream, so the other tables are the same with or without them):
  web visits (a ``visit`` with the session's duration, page views minutes apart, no session id: the gap rule
  finds the sessions) and app sessions (with a ``session_id``), some with an item added to the cart, more for
  customers who buy more; two marketing emails a month, opened and clicked at each customer's own rate. Most
  customers drift before they leave: their visits and email opens fall over the two months before the month
  they churn in, so engagement leads the last purchase; after churning they barely visit or open at all.

With ``campaign=True`` the world also holds two past retention campaigns with a control group whose true effects
differ between customers (``churnguard.demo_campaign``).

The customers table is a static snapshot of attributes: nothing in it is derived from later behaviour, so
a model trained on earlier cut-offs cannot read churn off it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard._io.files import atomic_path, atomic_write_text
from churnguard._io.write import write_table

__all__ = ["DemoData", "generate_demo_data", "generate_online_retail", "write_demo_data", "write_online_retail"]

logger = logging.getLogger(__name__)

_CATEGORIES = np.array(["apparel", "home", "beauty", "electronics", "grocery", "toys"])
_CATEGORY_P = np.array([0.28, 0.18, 0.16, 0.10, 0.18, 0.10])
_REFUND_P = np.array([0.08, 0.03, 0.02, 0.05, 0.01, 0.03])  # per order, by category
_ORDER_CHANNELS = np.array(["web", "store", "app"])
_ORDER_CHANNEL_P = np.array([0.45, 0.35, 0.20])
_TICKET_CHANNELS = np.array(["email", "chat", "phone"])
_TICKET_CHANNEL_P = np.array([0.45, 0.35, 0.20])
_RESPONSE_MEDIAN_H = np.array([8.0, 0.05, 0.02])  # email: hours to days; chat: minutes; phone: at once
_RESPONSE_SIGMA = np.array([1.2, 1.0, 0.8])
_RESOLVE_MEDIAN_H = np.array([20.0, 1.5, 3.0])  # after the first response
_UNANSWERED_P = np.array([0.04, 0.01, 0.0])
_REGIONS = np.array(["north", "south", "east", "west"])
_REGION_P = np.array([0.3, 0.25, 0.25, 0.2])
_SEASON = np.array([0.9, 0.85, 0.95, 1.0, 1.0, 0.85, 0.75, 0.8, 1.0, 1.05, 1.35, 1.6])  # January..December
_HOUR_P = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.5, 3, 3.2, 3.4,
                    3.8, 3.6, 3.4, 3.4, 3.6, 4, 4.6, 5.2, 5.4, 4.6, 3.2, 1.8])  # online orders by hour
_HOUR_P = _HOUR_P / _HOUR_P.sum()
_DAY_S = 86_400
_NAT = np.iinfo(np.int64).min
_NEVER = 1 << 20  # the churn month of a customer who never churns
_DRIFT = np.array([0.15, 0.3, 0.55])  # engagement in the churn month and the two before, for drifting customers
_EVENT_TYPES = np.array(["visit", "app_session", "page_view", "cart_add", "email_sent", "email_open", "email_click"])
_EVENT_CHANNELS = np.array(["web", "app", "email"])


@dataclass(frozen=True)
class DemoData:
    """The input tables of the data contract, in contract column names and types (``events``: None when not
    generated); with a campaign also the campaigns table and its truth (``churnguard.demo_campaign``)."""

    transactions: pd.DataFrame
    tickets: pd.DataFrame
    customers: pd.DataFrame
    events: pd.DataFrame | None = None
    campaigns: pd.DataFrame | None = None
    campaign_truth: pd.DataFrame | None = None


def _take(values: np.ndarray | pa.Array, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values[codes]`` as a pandas ``str`` array, built in Arrow (fast for tens of millions of rows)."""
    values = values if isinstance(values, pa.Array) else pa.array(values, pa.large_string())
    return pd.array(pc.take(values, pa.array(codes)), dtype="str")


def _ids(prefix: str, n: int) -> pa.Array:
    """Ids ``prefix`` + zero-padded 1..n (at least 7 digits), e.g. ``C0000001``."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1)), pa.large_string()), max(7, len(str(n))), "0")
    sep = pa.scalar("", pa.large_string())
    return pc.binary_join_element_wise(pa.scalar(prefix, pa.large_string()), digits, sep)


def _datetimes(seconds: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Seconds since the epoch -> ``datetime64[ns]``; NaT where ``valid`` is False."""
    ns = seconds.astype(np.int64) * 1_000_000_000
    if valid is not None:
        ns = np.where(valid, ns, _NAT)
    return ns.view("datetime64[ns]")


def _moments(rng: np.random.Generator, day_lo: np.ndarray, day_hi: np.ndarray, hour: np.ndarray
             ) -> np.ndarray:
    """Epoch seconds: a random day in ``[day_lo, day_hi)`` (epoch days), at ``hour`` and a random minute."""
    day = day_lo + np.floor(rng.uniform(size=day_lo.size) * (day_hi - day_lo)).astype(np.int64)
    return day * _DAY_S + hour.astype(np.int64) * 3600 + rng.integers(0, 3600, day_lo.size)


def generate_demo_data(
    n_customers: int = 2000, *, seed: int = 0, start: str = "2023-01-01", end: str = "2025-12-31",
    churn_scale: float = 1.0, events: bool = False, campaign: bool = False,
) -> DemoData:
    """Simulate ``n_customers`` customers from ``start`` to ``end`` (both days inclusive).

    Args:
        n_customers: number of customers in the customers table.
        seed: random seed; the same seed (and arguments) gives identical tables.
        start: first day of the period (transactions and tickets fall on or after it).
        end: last day of the period.
        churn_scale: multiplies every customer's monthly churn hazard (1.0: the demo's world).
        events: also generate the events table (off by default: it is the largest table and costs most of
            the time).
        campaign: also simulate two past campaigns with a control group (``churnguard.demo_campaign``).

    Returns:
        The transactions, tickets, customers and events tables (see the module docstring for the world).

    Raises:
        ValueError: ``n_customers`` below 1, ``seed`` negative, ``end`` before ``start`` or ``churn_scale`` not
            positive.
    """
    start_day, end_day = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    if seed < 0:  # numpy's words, "expected non-negative integer", name no seed
        raise ValueError(f"the seed must be a whole number >= 0, got {seed}")
    if end_day < start_day:
        raise ValueError(f"end {end!r} is before start {start!r}")
    if not churn_scale > 0:
        raise ValueError(f"churn_scale must be positive, got {churn_scale}")
    began = time.perf_counter()
    rng = np.random.default_rng(seed)
    cal = _Calendar.of(start_day, end_day)
    people = _People.draw(rng, n_customers, cal, churn_scale)
    order_parts, ticket_parts, churn_month = _simulate(rng, people, cal)
    end_s = int(cal.hi[-1]) * _DAY_S
    first_lo = np.maximum(people.signup_day, cal.lo[0])  # first possible day of activity: none before signup
    customer_ids = _ids("C", n_customers)
    cust, month = (np.concatenate(parts) for parts in zip(*order_parts, strict=True))
    transactions = _transactions(rng, customer_ids, cust, month, cal, people, first_lo, end_s)
    tickets = _tickets(rng, customer_ids, ticket_parts, cal, first_lo, end_s)
    customers = _customers(rng, customer_ids, people)
    ev = _events(np.random.default_rng([seed, 1]), customer_ids, people, cal, churn_month, first_lo, end_s) \
        if events else None
    logger.info("demo data: %d customers, %d transactions, %d tickets, %d events in %.1fs", n_customers,
                len(transactions), len(tickets), 0 if ev is None else len(ev), time.perf_counter() - began)
    if campaign:
        from churnguard.demo_campaign import simulate_campaigns

        try:
            world = simulate_campaigns(transactions, tickets, seed=seed)
        except ValueError as exc:  # a period too short, or nobody to contact
            logger.warning("demo data without a campaign: %s", exc)
        else:
            return DemoData(world.transactions, tickets, customers, events=ev, campaigns=world.campaigns,
                            campaign_truth=world.truth)
    return DemoData(transactions, tickets, customers, events=ev)


@dataclass(frozen=True)
class _Calendar:
    """The months of the period: month m covers epoch days [lo[m], hi[m]); ``season`` scales its orders."""

    lo: np.ndarray
    hi: np.ndarray
    calendar_month: np.ndarray
    season: np.ndarray

    @classmethod
    def of(cls, start_day: pd.Timestamp, end_day: pd.Timestamp) -> _Calendar:
        periods = pd.period_range(start_day, end_day, freq="M")
        epoch = pd.Timestamp("1970-01-01")
        lo = np.maximum((periods.start_time - epoch).days.to_numpy(np.int64), (start_day - epoch).days)
        hi = np.minimum((periods.end_time.normalize() - epoch).days.to_numpy(np.int64), (end_day - epoch).days) + 1
        calendar_month = periods.month.to_numpy()
        season = _SEASON[calendar_month - 1] * (hi - lo) / periods.days_in_month.to_numpy()  # partial months
        return cls(lo, hi, calendar_month, season)


@dataclass(frozen=True)
class _People:
    """Who the customers are: when they signed up, how loyal and satisfied, how much and what they buy."""

    existing: np.ndarray
    signup_month: np.ndarray
    signup_day: np.ndarray
    loyal: np.ndarray
    nps: np.ndarray
    rate: np.ndarray  # orders per month
    basket: np.ndarray
    fav_category: np.ndarray
    fav_channel: np.ndarray
    base_hazard: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int, cal: _Calendar, churn_scale: float = 1.0) -> _People:
        lo, hi, n_months = cal.lo, cal.hi, len(cal.lo)
        existing = rng.uniform(size=n) < 0.3
        join_p = np.exp(-np.arange(n_months) / 18.0)
        signup_month = np.where(existing, 0, rng.choice(n_months, n, p=join_p / join_p.sum()))
        joined = lo[signup_month] + np.floor(rng.uniform(size=n) * (hi - lo)[signup_month]).astype(np.int64)
        signup_day = np.where(existing, lo[0] - rng.integers(1, 731, n), joined)
        loyal = rng.uniform(size=n) < 0.3
        nps = np.clip(np.round(rng.normal(7.5, 2.0, n)), 0, 10)
        rate = rng.gamma(1.5, 0.35, n) * np.where(loyal, 1.3, 1.0) * (1 + 0.04 * (nps - 7.5))
        basket = rng.lognormal(np.log(45.0), 0.5, n)
        fav_category = rng.choice(len(_CATEGORIES), n, p=_CATEGORY_P)
        fav_channel = rng.choice(len(_ORDER_CHANNELS), n, p=_ORDER_CHANNEL_P)
        base_hazard = (0.018 * churn_scale * np.where(loyal, 0.55, 1.0)
                       * np.select([nps >= 9, nps <= 6], [0.6, 1.6], 1.0))
        return cls(existing, signup_month, signup_day, loyal, nps, rate, basket, fav_category, fav_channel,
                   base_hazard)


def _simulate(rng: np.random.Generator, people: _People, cal: _Calendar
              ) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, ...]], np.ndarray]:
    """Month by month: each live customer's orders and support tickets, and who churns (the month each customer
    churned in, ``_NEVER`` for those who did not); a bad support experience puts a customer off buying and
    raises their churn hazard for three months."""
    n = len(people.rate)
    alive = np.ones(n, dtype=bool)
    churn_month = np.full(n, _NEVER)
    last_bad = np.full(n, -99)  # month of the latest bad support experience
    order_parts: list[tuple[np.ndarray, np.ndarray]] = []
    ticket_parts: list[tuple[np.ndarray, ...]] = []
    for m in range(len(cal.lo)):
        active = alive & (people.signup_month <= m)
        put_off = np.where(m - last_bad <= 3, 0.7, 1.0)  # buying less after a bad support experience
        k = rng.poisson(people.rate * cal.season[m] * put_off) * active
        first = active & ~people.existing & (people.signup_month == m)
        k = np.where(first, np.maximum(k, 1), k)  # first order at signup
        who = np.flatnonzero(k)
        order_parts.append((np.repeat(who, k[who]), np.full(int(k.sum()), m, dtype=np.int16)))
        tickets, bad = _month_tickets(rng, rng.poisson(0.02 + 0.08 * k) * active, m, cal, people.nps)
        last_bad[bad] = m
        ticket_parts.append(tickets)
        new = cal.lo[m] - people.signup_day < 91
        hazard = people.base_hazard * np.where(m - last_bad <= 3, 4.0, 1.0) * np.where(new, 1.5, 1.0)
        quits = active & (rng.uniform(size=n) < hazard * (cal.hi[m] - cal.lo[m]) / 30.4)
        churn_month[quits] = m
        alive &= ~quits
    return order_parts, ticket_parts, churn_month


def _month_tickets(rng: np.random.Generator, nt: np.ndarray, m: int, cal: _Calendar, nps: np.ndarray
                   ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Month ``m``'s tickets (``nt`` per customer): channel, response and resolution hours, whether answered
    and resolved, CSAT; and the customers who had a bad experience (slow, unanswered, unresolved or CSAT <= 2)."""
    cust = np.repeat(np.flatnonzero(nt), nt[nt > 0])
    channel = rng.choice(3, cust.size, p=_TICKET_CHANNEL_P)
    load = np.where(channel == 0, _SEASON[cal.calendar_month[m] - 1] ** 1.5, 1.0)  # email backlog at peak
    response_h = rng.lognormal(np.log(_RESPONSE_MEDIAN_H[channel] * load), _RESPONSE_SIGMA[channel])
    resolve_h = response_h + rng.lognormal(np.log(_RESOLVE_MEDIAN_H[channel]), 1.2)
    slow = response_h > 24
    unanswered = rng.uniform(size=cust.size) < _UNANSWERED_P[channel]
    unresolved = unanswered | (rng.uniform(size=cust.size) < 0.03 + 0.12 * slow)
    csat = np.clip(np.round(4.6 - 1.2 * slow - 0.8 * (resolve_h > 72) + 0.12 * (nps[cust] - 7.5)
                            + rng.normal(0, 0.8, cust.size)), 1, 5)
    bad = slow | unanswered | unresolved | (csat <= 2)
    return ((cust, np.full(cust.size, m, dtype=np.int16), channel, response_h, resolve_h, unanswered, unresolved,
             csat), cust[bad])


def _customers(rng: np.random.Generator, customer_ids: pa.Array, people: _People) -> pd.DataFrame:
    """The customers table: signup date, loyalty membership and points, NPS answer (40% answered), region."""
    n = len(people.rate)
    points = people.rate * people.basket * 12 * rng.gamma(2.0, 0.5, n)  # a static status, not realised spend
    return pd.DataFrame({
        "customer_id": pd.array(customer_ids, dtype="str"),
        "signup_date": _datetimes(people.signup_day * _DAY_S),
        "loyalty_member": people.loyal,
        "loyalty_points": np.where(people.loyal, np.round(points), 0).astype(np.int64),
        "nps": np.where(rng.uniform(size=n) < 0.4, people.nps, np.nan),
        "region": _take(_REGIONS, rng.choice(len(_REGIONS), n, p=_REGION_P)),
    })


def _transactions(rng: np.random.Generator, customer_ids: pa.Array, cust: np.ndarray, month: np.ndarray,
                  cal: _Calendar, people: _People, first_lo: np.ndarray, end_s: int) -> pd.DataFrame:
    """Orders (one row each, customer ``cust`` in month ``month``) plus later refund rows of a few of them."""
    n = cust.size
    channel = np.where(rng.uniform(size=n) < 0.7, people.fav_channel[cust],
                       rng.choice(len(_ORDER_CHANNELS), n, p=_ORDER_CHANNEL_P))
    hour = np.where(channel == 1, rng.integers(9, 21, n), rng.choice(24, n, p=_HOUR_P))  # stores open 9-21
    ts = _moments(rng, np.maximum(first_lo[cust], cal.lo[month]), cal.hi[month], hour)
    category = np.where(rng.uniform(size=n) < 0.6, people.fav_category[cust],
                        rng.choice(len(_CATEGORIES), n, p=_CATEGORY_P))
    november = cal.calendar_month[month] == 11
    discounted = rng.uniform(size=n) < np.where(november, 0.55, 0.25)
    discount = np.where(discounted, rng.choice([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5], n), 0.0)
    quantity = 1 + rng.poisson(0.8, n)
    amount = np.round(people.basket[cust] * np.sqrt(quantity) * rng.lognormal(0, 0.3, n) * (1 - discount), 2)
    amount = np.maximum(amount, 0.5)

    refunded = np.flatnonzero(rng.uniform(size=n) < _REFUND_P[category])
    refund_ts = ts[refunded] + np.round((1 + rng.gamma(2.0, 5.0, refunded.size)) * _DAY_S).astype(np.int64)
    full = rng.uniform(size=refunded.size) < 0.55
    share = np.where(full, 1.0, rng.uniform(0.2, 0.8, refunded.size))
    keep = refund_ts < end_s  # refunds after the end of the period are not in the data yet
    refunded, refund_ts, full, share = refunded[keep], refund_ts[keep], full[keep], share[keep]
    refund_qty = np.where(full, quantity[refunded], np.maximum(1, np.round(quantity[refunded] * share)))

    rows = np.concatenate([np.arange(n), refunded])
    order_ids = pa.concat_arrays([_ids("O", n), _ids("R", refunded.size)])
    return pd.DataFrame({
        "customer_id": _take(customer_ids, cust[rows]),
        "timestamp": _datetimes(np.concatenate([ts, refund_ts])),
        "amount": np.concatenate([amount, -np.maximum(np.round(amount[refunded] * share, 2), 0.01)]),
        "order_id": pd.array(order_ids, dtype="str"),
        "quantity": np.concatenate([quantity, -refund_qty]).astype(np.int64),
        "category": _take(_CATEGORIES, category[rows]),
        "channel": _take(_ORDER_CHANNELS, channel[rows]),
        "discount": discount[rows],
    })


def _tickets(rng: np.random.Generator, customer_ids: pa.Array, parts: list[tuple[np.ndarray, ...]], cal: _Calendar,
             first_lo: np.ndarray, end_s: int) -> pd.DataFrame:
    """Ticket rows with open, first-response and resolution times; NaT where that has not happened (yet)."""
    cust, month, channel, response_h, resolve_h, unanswered, unresolved, csat = (
        np.concatenate(p) for p in zip(*parts, strict=True)
    )
    n = cust.size
    hour = np.where(channel == 0, rng.choice(24, n, p=_HOUR_P), rng.integers(8, 22, n))  # chat/phone 8-22
    opened = _moments(rng, np.maximum(first_lo[cust], cal.lo[month]), cal.hi[month], hour)
    first = opened + np.round(response_h * 3600).astype(np.int64)
    resolved = opened + np.round(resolve_h * 3600).astype(np.int64)
    answered = ~unanswered & (first < end_s)
    closed = ~unresolved & answered & (resolved < end_s)
    return pd.DataFrame({
        "ticket_id": pd.array(_ids("T", n), dtype="str"),
        "customer_id": _take(customer_ids, cust),
        "opened_at": _datetimes(opened),
        "first_response_at": _datetimes(first, answered),
        "resolved_at": _datetimes(resolved, closed),
        "channel": _take(_TICKET_CHANNELS, channel),
        "csat": np.where(closed & (rng.uniform(size=n) < 0.45), csat, np.nan),
    })


def _engagement(people: _People, churn_month: np.ndarray, drifts: np.ndarray, m: int) -> np.ndarray:
    """Each customer's engagement in month ``m``: 1 while buying, falling over the churn month and the two
    before for the ``drifts`` customers, 0.05 after churning, 0 before signing up."""
    lead = churn_month - m
    level = np.where(lead < 0, 0.05, 1.0)
    close = drifts & (lead >= 0) & (lead < len(_DRIFT))
    level[close] = _DRIFT[lead[close]]
    return level * (people.signup_month <= m)


def _events(rng: np.random.Generator, customer_ids: pa.Array, people: _People, cal: _Calendar,
            churn_month: np.ndarray, first_lo: np.ndarray, end_s: int) -> pd.DataFrame:
    """The events table: site and app sessions and marketing emails, month by month (see the module
    docstring), only before the end of the period."""
    n = len(people.rate)
    drifts = rng.uniform(size=n) < 0.7
    visit_rate = (0.4 + 1.5 * people.rate) * rng.gamma(2.0, 0.5, n)
    open_p = rng.beta(3.0, 4.0, n)
    sessions, emails = [], []
    for m in range(len(cal.lo)):
        level = _engagement(people, churn_month, drifts, m)
        k = rng.poisson(visit_rate * level * cal.season[m])
        who = np.repeat(np.arange(n), k)
        sessions.append((who, np.full(who.size, m, dtype=np.int16)))
        listed = np.repeat(np.arange(n), 2 * (people.signup_month <= m))  # two emails a month to everyone signed up
        emails.append((listed, np.full(listed.size, m, dtype=np.int16),
                       rng.uniform(size=listed.size) < open_p[listed] * level[listed]))
    parts = [_session_rows(rng, *(np.concatenate(p) for p in zip(*sessions, strict=True)), people, cal, first_lo),
             _email_rows(rng, *(np.concatenate(p) for p in zip(*emails, strict=True)), cal, first_lo)]
    cust, ts, kind, duration, channel, session = (np.concatenate(c) for c in zip(*parts, strict=True))
    keep = ts < end_s
    session = session[keep]
    ids = pc.take(_ids("A", max(int(session.max(initial=0)) + 1, 1)), pa.array(session, mask=session < 0))
    return pd.DataFrame({
        "customer_id": _take(customer_ids, cust[keep]),
        "timestamp": _datetimes(ts[keep]),
        "event_type": _take(_EVENT_TYPES, kind[keep]),
        "duration_seconds": duration[keep],
        "channel": _take(_EVENT_CHANNELS, channel[keep]),
        "session_id": pd.array(ids, dtype="str"),
    })


def _session_rows(rng: np.random.Generator, cust: np.ndarray, month: np.ndarray, people: _People, cal: _Calendar,
                  first_lo: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each session's rows: its start (``visit`` on the web, ``app_session`` in the app, with the session's
    duration), page views a few minutes apart and, for some, an item added to the cart; app sessions carry a
    session id."""
    n = cust.size
    app = rng.uniform(size=n) < np.where(people.fav_channel[cust] == 2, 0.8, 0.15)
    start = _moments(rng, np.maximum(first_lo[cust], cal.lo[month]), cal.hi[month], rng.choice(24, n, p=_HOUR_P))
    duration = np.round(rng.lognormal(np.log(240.0), 0.8, n))
    views = rng.poisson(1.0, n)
    at = np.repeat(np.arange(n), views)
    step = np.arange(at.size) - np.repeat(np.cumsum(views) - views, views) + 1  # 1.. within each session
    view_ts = start[at] + step * rng.integers(30, 600, n)[at]
    cart = np.flatnonzero(rng.uniform(size=n) < 0.15)
    rows = np.concatenate([np.arange(n), at, cart])
    kind = np.concatenate([app.astype(np.int8), np.full(at.size, 2, np.int8), np.full(cart.size, 3, np.int8)])
    return (cust[rows], np.concatenate([start, view_ts, start[cart] + (duration[cart] // 2).astype(np.int64)]),
            kind, np.concatenate([duration, np.full(at.size + cart.size, np.nan)]), app[rows].astype(np.int8),
            np.where(app, np.arange(n), -1)[rows])


def _email_rows(rng: np.random.Generator, cust: np.ndarray, month: np.ndarray, opened: np.ndarray, cal: _Calendar,
                first_lo: np.ndarray) -> tuple[np.ndarray, ...]:
    """Marketing emails sent in the morning, opened hours later by some, clicked by a third of those."""
    n = cust.size
    sent = _moments(rng, np.maximum(first_lo[cust], cal.lo[month]), cal.hi[month], rng.integers(8, 11, n))
    opens = np.flatnonzero(opened)
    open_ts = sent[opens] + np.round(rng.lognormal(np.log(6 * 3600.0), 1.0, opens.size)).astype(np.int64)
    clicks = opens[rng.uniform(size=opens.size) < 0.3]
    click_ts = open_ts[np.isin(opens, clicks)] + rng.integers(5, 300, clicks.size)
    rows = np.concatenate([np.arange(n), opens, clicks])
    kind = np.repeat(np.array([4, 5, 6], dtype=np.int8), [n, opens.size, clicks.size])
    return (cust[rows], np.concatenate([sent, open_ts, click_ts]), kind, np.full(rows.size, np.nan),
            np.full(rows.size, 2, dtype=np.int8), np.full(rows.size, -1, dtype=np.int64))


def write_demo_data(data: DemoData, out_dir: str | Path, fmt: str = "csv") -> dict[str, Path]:
    """Write ``transactions``, ``tickets``, ``customers``, and ``events``, ``campaigns`` and ``campaign_truth``
    when the world has them, as ``<name>.<fmt>`` into ``out_dir``, each atomically.

    Args:
        data: the tables to write.
        out_dir: target directory, created if missing.
        fmt: ``"csv"`` or ``"parquet"``.

    Returns:
        Table name -> path of the written file.

    Raises:
        ValueError: unknown ``fmt``.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    return {name: write_table(getattr(data, name), Path(out_dir) / f"{name}.{fmt}")  # makes out_dir if missing
            for name in ("transactions", "tickets", "customers", "events", "campaigns", "campaign_truth")
            if getattr(data, name) is not None}


# -- the same world as a line-item shop export, shaped like the public "Online Retail" data set ---------------

_PRODUCTS = (  # stock code, description, unit price
    ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 2.55), ("71053", "WHITE METAL LANTERN", 3.39),
    ("84406B", "CREAM CUPID HEARTS COAT HANGER", 2.75), ("22633", "HAND WARMER UNION JACK", 1.85),
    ("21730", "GLASS STAR FROSTED T-LIGHT HOLDER", 4.25), ("22752", "SET 7 BABUSHKA NESTING BOXES", 7.65),
    ("21754", "HOME BUILDING BLOCK WORD", 5.95), ("84879", "ASSORTED COLOUR BIRD ORNAMENT", 1.69),
    ("22960", "JAM MAKING SET WITH JARS", 4.25), ("21156", "CRÈME BRÛLÉE RAMEKIN SET", 12.75),
)
_FEES = (("POST", "POSTAGE", 18.0, 0.12), ("M", "Manual", 2.5, 0.01), ("BANK CHARGES", "Bank Charges", 15.0, 0.004))
_COUNTRIES = np.array(["United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands"])
_COUNTRY_P = np.array([0.86, 0.04, 0.04, 0.03, 0.015, 0.015])
RETAIL_CONFIG = """\
# Reads an "Online Retail"-shaped export (one row per invoice line) as it comes:
#   churnguard train -t online_retail.csv -c online_retail.yaml
data:
  encoding: latin-1            # the export is not UTF-8
  columns:
    transactions:
      customer_id: CustomerID  # 12346.0 is read as 12346
      timestamp: InvoiceDate   # 12/1/2010 8:26, month first
      order_id: InvoiceNo      # C536379: a cancellation (negative Quantity), counted as a refund
      quantity: Quantity
      unit_price: UnitPrice    # amount = Quantity x UnitPrice
  exclude:                     # no purchases: left out, and counted in the log
    transactions:
      StockCode: [POST, DOT, M, D, C2, B, BANK CHARGES, AMAZONFEE, CRUK]   # B: bad debt adjustments
      CustomerID: [""]         # lines without a customer (guests)
labels:
  horizon_days: 90
"""


def generate_online_retail(n_customers: int = 300, *, seed: int = 0, start: str = "2009-12-01",
                           end: str = "2011-12-09") -> pd.DataFrame:
    """The demo world's purchases and refunds (:func:`generate_demo_data`) as a line-item export in the shape
    of the public "Online Retail" data set: InvoiceNo, StockCode, Description, Quantity, InvoiceDate
    (``12/1/2010 8:26``), UnitPrice, CustomerID (a float, ``17850.0``) and Country, every column as text.

    Each order becomes one invoice of 1-6 product lines worth about the order's amount; a refund becomes a
    cancellation invoice (``C`` + its number) of 1-2 lines with negative quantities. About 10% of the invoices have no
    customer (guest orders), 12% carry a postage line (StockCode POST), a few a manual (M) or bank charge line.
    """
    tx = generate_demo_data(n_customers, seed=seed, start=start, end=end).transactions
    tx = tx.sort_values("timestamp", kind="stable", ignore_index=True)
    rng = np.random.default_rng([seed, 1])
    n, amount = len(tx), tx["amount"].to_numpy()
    refund = amount < 0
    number = (489434 + np.arange(n)).astype(str)
    invoice = np.where(refund, np.char.add("C", number), number)
    customer = (12345 + tx["customer_id"].str.slice(1).astype("int64")).astype(str).to_numpy(dtype=object) + ".0"
    customer[~refund & (rng.uniform(size=n) < 0.1)] = ""
    country = rng.choice(len(_COUNTRIES), n_customers + 1, p=_COUNTRY_P)[
        tx["customer_id"].str.slice(1).astype("int64").to_numpy()]
    lines = np.where(refund, rng.integers(1, 3, n), rng.integers(1, 7, n))
    row = np.repeat(np.arange(n), lines)
    product = rng.integers(0, len(_PRODUCTS), row.size)
    price = np.array([p for _, _, p in _PRODUCTS])[product]
    qty = np.maximum(1, np.round(np.abs(amount[row]) / lines[row] / price)).astype(np.int64)
    frame = {"row": row, "code": np.array([c for c, _, _ in _PRODUCTS], dtype=object)[product],
             "text": np.array([d for _, d, _ in _PRODUCTS], dtype=object)[product],
             "qty": np.where(refund[row], -qty, qty), "price": price}
    parts = [pd.DataFrame(frame)]
    for code, text, fee, share in _FEES:
        on = np.flatnonzero(~refund & (rng.uniform(size=n) < share))
        parts.append(pd.DataFrame({"row": on, "code": code, "text": text, "qty": 1, "price": fee}))
    lines_df = pd.concat(parts, ignore_index=True).sort_values("row", kind="stable", ignore_index=True)
    r = lines_df["row"].to_numpy()
    ts = tx["timestamp"].iloc[r].dt
    return pd.DataFrame({
        "InvoiceNo": invoice[r], "StockCode": lines_df["code"], "Description": lines_df["text"],
        "Quantity": lines_df["qty"].astype(str),
        "InvoiceDate": (ts.month.astype(str) + "/" + ts.day.astype(str) + "/" + ts.year.astype(str) + " "
                        + ts.hour.astype(str) + ":" + ts.minute.astype(str).str.zfill(2)).to_numpy(),
        "UnitPrice": lines_df["price"].map("{:g}".format), "CustomerID": customer[r],
        "Country": _COUNTRIES[country[r]],
    })


def write_online_retail(export: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``online_retail.csv`` (Latin-1, as such exports often are) and ``online_retail.yaml``, the config
    that reads it (:data:`RETAIL_CONFIG`), into ``out_dir``; each atomically. Returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "online_retail.csv") as tmp:
        export.to_csv(tmp, index=False, encoding="latin-1")
    return {"export": out / "online_retail.csv", "config": atomic_write_text(out / "online_retail.yaml", RETAIL_CONFIG)}
