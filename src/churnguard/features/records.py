"""Features of a few customers given as plain records (the HTTP server's input), through the same kernel.

A customer is a :class:`CustomerRecords`: transaction, ticket and event dicts, and the customers-table
attributes.
Records read like the rows of the contract tables after validation: timestamps naive UTC, an ``order_id``
that is blank counts as missing. Attributes stand for the customer's row in the customers table: a customer
without any is not listed there. Validation is the caller's job (the server's request models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from churnguard.dataset.contract import _FALSE, _TRUE
from churnguard.features import kernel as k
from churnguard.features.engagement import EventArrays, channel_codes, engagement_features, event_type_codes

if TYPE_CHECKING:
    from churnguard.config import FeatureConfig
    from churnguard.population import Population

__all__ = ["CustomerRecords", "records_features"]

_TIMES = ("opened_at", "first_response_at", "resolved_at")


@dataclass(frozen=True)
class CustomerRecords:
    """One customer's raw history."""

    customer_id: str
    transactions: Sequence[Mapping[str, Any]] = ()
    tickets: Sequence[Mapping[str, Any]] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: Sequence[Mapping[str, Any]] | None = None  # None: no events table; () a customer without events


_EPOCH = date(1970, 1, 1).toordinal()
_EPOCH_TIME, _MICROSECOND = datetime.combine(date(1970, 1, 1), time()), timedelta(microseconds=1)  # naive UTC
_NAT = np.iinfo(np.int64).min  # NaT as int64


def _times(values: list) -> np.ndarray:
    """Naive datetimes (None: NaT) as datetime64[us], counted in whole microseconds from 1970 in Python (numpy
    converts datetime objects several times slower)."""
    return np.array([_NAT if v is None else (v - _EPOCH_TIME) // _MICROSECOND for v in values],
                    dtype=np.int64).view("datetime64[us]")


def _order_groups(pos: np.ndarray, keys: list) -> np.ndarray:
    """The label shared by rows (all purchases, or all refunds) of one customer with the same order key, -1 for
    a row that is an order of its own (as ``churnguard.features.build`` labels them)."""
    group = np.full(len(keys), -1, dtype=np.int64)
    pairs = list(zip(pos.tolist(), keys, strict=True))
    if len(set(pairs)) == len(pairs):  # every row an order of its own
        return group
    seen: dict[tuple, list[int]] = {}
    for row, key in enumerate(pairs):
        seen.setdefault(key, []).append(row)
    for label, rows in enumerate(r for r in seen.values() if len(r) > 1):
        group[rows] = label
    return group


def _order_keys(rows: list[Mapping[str, Any]]) -> list:
    """Each row's order key: its ``order_id`` without surrounding blanks, or without one the timestamp."""
    return [(None if (oid := row.get("order_id")) is None else str(oid).strip()) or row["timestamp"] for row in rows]


def records_features(customers: Sequence[CustomerRecords], as_of: date, cfg: FeatureConfig,
                     population: Population) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which customers are known at ``as_of`` (a transaction or ticket on or before it, or listed and signed
    up by then) and the kernel's feature columns of those, in the order given.

    Returns:
        A boolean mask over ``customers`` and the feature columns of the known ones (categoricals as codes
        into :func:`churnguard.features.kernel.categorical_levels` of ``population.attributes``).
    """
    end = datetime.combine(as_of, time()) + timedelta(days=1)  # the instant cut-off: end of the as_of day
    ordinal = as_of.toordinal()
    day = ordinal - _EPOCH  # as_of's day number (kernel.day_numbers)
    each_tx = [[t for t in c.transactions if t["timestamp"] < end] for c in customers]  # per customer
    tk = [(i, t) for i, c in enumerate(customers) for t in c.tickets if t["opened_at"] < end]
    listed = [bool(c.attributes) and ((signup := c.attributes.get("signup_date")) is None or _as_datetime(signup) < end)
              for c in customers]  # in the customers table, signed up by then
    ticketed = {i for i, _ in tk}
    known = np.array([kept or bool(each_tx[i]) or i in ticketed for i, kept in enumerate(listed)], dtype=bool)
    where = np.cumsum(known) - 1
    n = int(known.sum())
    tx = [t for rows in each_tx for t in rows]
    tx_pos = np.repeat(where, [len(rows) for rows in each_tx])  # each transaction's customer (a known one)
    amounts = [float(t["amount"]) for t in tx]
    amount = np.array(amounts, dtype="float64")
    # days from each transaction's calendar day (kernel.day_numbers) to as_of's
    age = np.array([ordinal - t["timestamp"].toordinal() for t in tx], dtype="float64")
    buy, refund = amount > 0, amount < 0
    keys = _order_keys([t for t, a in zip(tx, amounts, strict=True) if a > 0])
    orders = k.order_values(tx_pos[buy], age[buy], amount[buy], _order_groups(tx_pos[buy], keys))
    refund_keys = _order_keys([t for t, a in zip(tx, amounts, strict=True) if a < 0])
    refunds = (tx_pos[refund], -amount[refund], _order_groups(tx_pos[refund], refund_keys))
    purchase = k.purchase_features(n, orders, refunds, cfg)
    support = _support(tk, where, day, end, n, cfg)
    attrs = _attributes([c for c, kept in zip(customers, known, strict=True) if kept], day, population)
    engagement = _engagement(customers, known, where, day, end, n, purchase["recency_days"], cfg)
    cols = k.combine(purchase, support, attrs, population=population, month=as_of.month, cfg=cfg,
                     engagement=engagement)
    return known, cols


def _engagement(customers: Sequence[CustomerRecords], known: np.ndarray, where: np.ndarray, day: int,
                end: datetime, n: int, recency: np.ndarray, cfg: FeatureConfig) -> dict | None:
    """The engagement features of the known customers' events before ``end``: None when no customer has an
    events list (no events table), unknown (NaN) for the customers without one."""
    if all(c.events is None for c in customers):
        return None
    ev = [(where[i], e) for i, c in enumerate(customers) if known[i] for e in c.events or () if e["timestamp"] < end]
    times = _times([e["timestamp"] for _, e in ev]).astype("datetime64[ns]")
    session_ids = [_session_key(e.get("session_id")) for _, e in ev]
    lookup: dict[str, int] = {}
    session = np.array([-1 if s is None else lookup.setdefault(s, len(lookup)) for s in session_ids], dtype=np.int64)
    arrays = EventArrays(
        np.array([p for p, _ in ev], dtype=np.intp), (day - k.day_numbers(times)).astype("float64"),
        times.view("int64"), event_type_codes(np.array([e["event_type"] for _, e in ev], dtype=object)),
        np.array([np.nan if e.get("duration_seconds") is None else float(e["duration_seconds"]) for _, e in ev],
                 dtype="float64"),
        channel_codes(np.array([e.get("channel") for _, e in ev], dtype=object)), session)
    f = engagement_features(n, arrays, recency, cfg)
    unknown = np.array([c.events is None for c, kept in zip(customers, known, strict=True) if kept], dtype=bool)
    for values in f.values():  # a customer sent without events has them unknown, whoever is scored along
        values[unknown] = np.nan
    return f


def _session_key(value: Any) -> str | None:
    text = None if value is None else str(value).strip()
    return text or None


def _support(tk: list, where: np.ndarray, day: int, end: datetime, n: int, cfg: FeatureConfig) -> dict:
    pos = where[np.array([i for i, _ in tk], dtype=np.intp)]
    times = {name: _times([t.get(name) for _, t in tk]) for name in _TIMES}
    times["csat"] = np.array([np.nan if t.get("csat") is None else float(t["csat"]) for _, t in tk], dtype="float64")
    age = (day - k.day_numbers(times["opened_at"])).astype("float64")
    return k.support_features(n, pos, age, times, np.datetime64(end, "us"), cfg)


def _attributes(customers: list[CustomerRecords], day: int, population: Population) -> dict | None:
    names = {name for c in customers for name in c.attributes}
    if not names:
        return None
    column = {name: [c.attributes.get(name) for c in customers] for name in names}
    known = {}
    if "loyalty_member" in column:
        known["loyalty_member"] = np.array([_flag(v) for v in column["loyalty_member"]], dtype="float64")
    for name in ("loyalty_points", "nps"):
        if name in column:
            known[name] = k.as_numbers(np.array(column[name], dtype=object))
    if "signup_date" in column:
        known["signup_date"] = _times([None if v is None else _as_datetime(v) for v in column["signup_date"]])
    kinds = population.attributes or {}
    free = {name: np.array(column[name], dtype=object) for name in kinds if name in column}
    return k.attribute_features(known, free, kinds, day)


def _flag(value: Any) -> float:
    """1.0 / 0.0 / NaN, reading text as the data contract does (yes/no, true/false, 1/0)."""
    if value is None:
        return np.nan
    text = str(value).strip().lower()
    return 1.0 if text in _TRUE else 0.0 if text in _FALSE else np.nan


def _as_datetime(value: Any) -> datetime:
    """A date or timestamp (or ISO text) as a naive UTC datetime, as the data contract stores them."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time()) if isinstance(value, date) else datetime.fromisoformat(str(value).strip())
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
