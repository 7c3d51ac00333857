"""Point-in-time customer features: ``build_features(tables, as_of, config)``.

Time is counted in calendar days. ``as_of`` is a date; an event belongs to the day it happened, and features
see only events on days ``<= as_of`` (the instant cut-off is the end of that day, ``as_of + 1 day``, used
for ticket durations). Labels (``churnguard.labels``) see the half-open window ``(as_of, as_of + horizon]``.
Nothing after ``as_of`` can reach a feature: every table is cut before any aggregate is taken, and ticket
facts that become known later (a response, a resolution, a CSAT answer) count only once they happened.

Families (one row per customer known at ``as_of``):

* recency / frequency / value: ``recency_days``, ``tenure_days``, ``n_orders``, ``n_purchase_days``,
  ``gross_spend``, ``net_spend``, ``mean_order_value``, ``max_order_value``, ``refund_count``,
  ``refund_share``, ``orders_{w}d`` / ``spend_{w}d`` for each trailing window, ``trend_orders`` /
  ``trend_spend`` (last window vs the one before), ``gap_mean_days``, ``gap_std_days``, ``overdue_ratio``
  (recency / usual gap), and the BG/NBD inputs ``bg_frequency``, ``bg_recency_days``, ``bg_age_days``;
* value: ``cltv`` = average order value x orders in the last 365 days x average lifespan (years), where the
  lifespan is ``1 / annual churn rate`` estimated from the data before ``as_of`` (share of customers who bought
  in the year before last and not in the last year), clipped to ``max_lifespan_years``, falling back to
  ``default_lifespan_years`` when there are not two years of history; ``value_tier`` = ``vip`` for the top
  quarter by CLTV (``vip_quantile``), else ``standard``;
* support (with tickets): ``tickets_{w}d``, ``tickets_total``, ``open_tickets``, first-response and resolution
  hours (mean / max / latest), ``slow_response_share`` (answered slower than ``sla_hours``, or still waiting
  longer than that), ``csat_mean`` / ``csat_latest`` / ``csat_min``, ``days_since_last_ticket``,
  ``tickets_per_order``;
* calendar: ``as_of_month`` (1-12), so the model can learn that leaving looks different before the holiday peak;
* attributes (with customers): ``loyalty_member``, ``loyalty_points``, ``nps``, ``nps_group``
  (promoter 9-10, passive 7-8, detractor 0-6), ``days_since_signup``, and other columns as ``attr_<name>``,
  numeric or categorical. Customer attributes carry no dates, so they are taken as known at ``as_of``.

Computation: customer ids are encoded once into integer positions in one sorted index (``_encode``;
``make_training_set`` reuses one encoding for all snapshots). Multi-row orders are found meanwhile by a 64-bit
hash of each purchase row's order key (polars, on all cores); rows whose hash repeats are then checked
against their actual keys, so a hash collision can never merge two orders. Every aggregate is a ``bincount`` /
``ufunc.at`` / sort over integer arrays, per block of customers on two threads (a customer's rows all in one
block, in row order). Sums run in row order and grouped means / standard deviations of non-integer values
use pandas' own algorithms, so every value equals the plain pandas implementation kept as the test oracle in
``tests/reference_features.py``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from churnguard.config import FeatureConfig
    from churnguard.dataset import Tables

__all__ = ["NPS_GROUPS", "build_features", "estimate_lifespan_years", "to_day"]

logger = logging.getLogger(__name__)

NPS_GROUPS = ("detractor", "passive", "promoter")
_DAY = pd.Timedelta(days=1)
_KNOWN_ATTRIBUTES = {"customer_id", "signup_date", "loyalty_member", "loyalty_points", "nps"}


def to_day(as_of: str | pd.Timestamp | np.datetime64) -> pd.Timestamp:
    """Normalise a cut-off to a calendar day (midnight). Raises ValueError on a bad date."""
    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"as_of must be a date like 2025-06-30, got {as_of!r}") from exc
    if ts is pd.NaT:
        raise ValueError(f"as_of must be a date like 2025-06-30, got {as_of!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


def _days(delta: pd.Series | pd.Index) -> np.ndarray:
    """Whole-or-fractional days of a timedelta series as float (NaT -> NaN)."""
    return np.asarray(delta / _DAY, dtype="float64")


def _hours(delta: pd.Series) -> np.ndarray:
    return np.asarray(delta / pd.Timedelta(hours=1), dtype="float64")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (an undefined ratio is unknown, not infinite)."""
    num, den = np.asarray(num, dtype="float64"), np.asarray(den, dtype="float64")
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _day_numbers(times: np.ndarray) -> np.ndarray:
    """Calendar day of each timestamp (days since 1970-01-01, rounded down like ``Series.dt.normalize``)."""
    times = np.asarray(times)
    unit, _ = np.datetime_data(times.dtype)
    if times.ndim == 0 or unit in ("D", "W", "M", "Y", "generic"):
        return times.astype("datetime64[D]").astype("int64")
    per_day = np.timedelta64(1, "D").astype(f"timedelta64[{unit}]").astype(np.int64)
    return times.view("int64") // per_day  # floor division: rounds down before 1970 too


# -- customer ids as integers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Encoded:
    """The input tables with every customer id replaced by its position in one sorted index of all ids.

    Strings are hashed once here; each cut-off day then works on integer arrays only. ``make_training_set``
    encodes once and builds every snapshot from the same object.
    """

    tables: Tables
    ids: pd.Index  # every customer id of the three tables, sorted
    tx_id: np.ndarray  # transaction row -> position in ids
    tk_id: np.ndarray | None
    cu_id: np.ndarray | None
    tx_time: np.ndarray  # datetime64
    tx_day: np.ndarray  # _day_numbers(tx_time)
    amount: np.ndarray
    order_group: np.ndarray  # per row: a label shared by the purchase rows of one multi-row order, else -1
    block_rows: list[np.ndarray]  # transaction rows of each block of _BLOCK ids, in row order


def _arrow(values: pd.Series) -> pa.ChunkedArray:
    """The column as an Arrow chunked array (no copy for Arrow-backed columns such as pandas' ``str``)."""
    arr = pa.array(values)
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _hashes(columns: dict[str, pa.ChunkedArray | np.ndarray]) -> np.ndarray:
    """A 64-bit hash of each row of ``columns`` (equal rows, equal hashes; nulls hash alike). Hashes only
    propose groups: every caller checks the actual values before using them.

    Integers enter as their 64-bit value; text as its length and its bytes, read straight from the Arrow
    buffers eight at a time (an unaligned ``uint64`` gather per eight bytes, over the rows whose value is that
    long), so ``""`` and a null differ. Each column's value is folded into the row's hash with splitmix64's
    finaliser, in which every input bit reaches every output bit. Rows go in blocks of 2**16, so the
    temporaries stay in cache and are reused instead of page-faulting fresh 100 MB arrays.
    """
    c1, c2, odd = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)
    masks = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.arange(64, -1, -8, dtype=np.uint64)  # masks[b]: the low b bytes
    masks[0] = 0

    def mix(x: np.ndarray) -> np.ndarray:
        x ^= x >> np.uint64(30)
        x *= c1
        x ^= x >> np.uint64(27)
        x *= c2
        x ^= x >> np.uint64(31)
        return x

    def text(chunk: pa.Array) -> np.ndarray:
        narrow = pa.types.is_string(chunk.type) or pa.types.is_binary(chunk.type)
        if not (narrow or pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type)):
            chunk = chunk.cast(pa.large_string())  # e.g. string_view or dictionary
        if len(chunk) == 0:
            return np.zeros(0, dtype=np.uint64)
        _, offsets, data = chunk.buffers()
        width = np.dtype(np.int32 if narrow else np.int64)
        bounds = np.frombuffer(offsets, dtype=width, count=len(chunk) + 1, offset=chunk.offset * width.itemsize)
        start = bounds[:-1].astype(np.int64)
        length = bounds[1:] - start
        data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
        if len(data) < 8:
            data = np.concatenate([data, np.zeros(8, dtype=np.uint8)])
        words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # the 8 bytes at each byte
        h = length.astype(np.uint64) * odd
        whole = int(length.min()) // 8  # words that every value has in full
        for k in range(0, 8 * whole, 8):
            h ^= words[start + k]
            h *= odd
        rows = slice(None)  # the rows whose value has more than k bytes (rising starts)
        for k in range(8 * whole, int(length.max()), 8):
            if not isinstance(rows, slice) or (length <= k).any():
                rows = np.flatnonzero(length > k) if isinstance(rows, slice) else rows[length[rows] > k]
            at = start[rows] + k
            last = len(data) - 8  # a word must not pass the end: the last values take the buffer's last word,
            over = int(np.searchsorted(at, last, side="right"))  # shifted down to their bytes
            word = words[np.minimum(at, last) if over < len(at) else at]
            if over < len(at):
                word[over:] >>= (at[over:] - last).astype(np.uint64) * np.uint64(8)
            word &= masks[np.minimum(length[rows] - k, 8)]
            h[rows] = (h[rows] ^ word) * odd
        if chunk.null_count:
            h[chunk.is_null().to_numpy(zero_copy_only=False)] = np.uint64(0x5555555555555555)
        return mix(h)

    n = len(next(iter(columns.values()))) if columns else 0
    out = np.empty(n, dtype=np.uint64)
    block = 1 << 16
    for first in range(0, n, block):
        row = np.zeros(min(block, n - first), dtype=np.uint64)
        for values in columns.values():
            if isinstance(values, pa.ChunkedArray):
                part = values.slice(first, len(row))
                part = np.concatenate([text(chunk) for chunk in part.chunks]) if part.num_chunks > 1 \
                    else text(part.chunk(0))
            else:
                part = np.asarray(values[first : first + len(row)]).astype(np.uint64, copy=False)
            row = mix((row * odd) ^ part)
        out[first : first + len(row)] = row
    return out


def _first_rows(codes: np.ndarray) -> np.ndarray:
    """Row of each code's first occurrence, for codes numbered in order of first occurrence (``pd.factorize``)."""
    seen = np.maximum.accumulate(codes)
    return np.flatnonzero(np.r_[True, seen[1:] > seen[:-1]])


def _dictionary_encode(chunks: list[pa.Array]) -> tuple[pa.Array, np.ndarray]:
    """Arrow's dictionary encoding of the chunks as one array: the distinct values in order of first
    occurrence, and each value's code."""
    encoded = pc.dictionary_encode(pa.chunked_array(chunks, type=pa.large_string()))
    if encoded.num_chunks == 0:
        return pa.array([], type=pa.large_string()), np.zeros(0, dtype=np.int32)
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks])
    return encoded.chunks[-1].dictionary, codes


def _encode_ids(columns: list[pd.Series]) -> tuple[pd.Index, list[np.ndarray]]:
    """Every distinct id of ``columns`` in one sorted index, and for each column its rows' positions in it.

    Arrow's ``dictionary_encode`` over all columns' chunks (codes in order of first occurrence), then the
    distinct ids are sorted.
    """
    chunks = [chunk.cast(pa.large_string()) for c in columns for chunk in _arrow(c).chunks]
    # Two halves of the chunks are encoded on two threads; the second half's codes are then mapped onto the
    # first's dictionary extended by its new ids, so codes stay numbered in order of first occurrence.
    half = int(np.searchsorted(np.cumsum([len(chunk) for chunk in chunks]), sum(map(len, chunks)) / 2)) + 1
    parts = [p for p in (chunks[:half], chunks[half:]) if p] or [[]]
    with ThreadPoolExecutor(2, thread_name_prefix="churnguard-ids") as pool:
        encoded = list(pool.map(_dictionary_encode, parts))
    dictionary, codes = encoded[0]
    if len(encoded) > 1:
        joint, more = _dictionary_encode([pa.concat_arrays([dictionary, encoded[1][0]])])
        dictionary, codes = joint, np.concatenate([codes, more[len(dictionary) :][encoded[1][1]]])
    order = pc.sort_indices(dictionary).to_numpy() if len(dictionary) else np.zeros(0, dtype=np.intp)
    rank = np.empty(len(dictionary), dtype=np.intp)
    rank[order] = np.arange(len(dictionary))
    dtype = columns[0].dtype if columns else None
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":  # straight from the dictionary
        ids = pd.Index(pd.array(dictionary.take(pa.array(order)), dtype=dtype))
    else:  # other text storage: the ids as the columns hold them, at each one's first row
        ids = pd.Index(pd.concat(columns, ignore_index=True).take(_first_rows(codes)[order]).array)
    positions, start = [], 0
    for c in columns:
        positions.append(rank[codes[start : start + len(c)]])
        start += len(c)
    return ids, positions


def _encode(tables: Tables) -> _Encoded:
    frames = [f for f in (tables.transactions, tables.tickets, tables.customers) if f is not None]
    tx = tables.transactions
    tx_time = tx["timestamp"].to_numpy()
    amount = tx["amount"].to_numpy(dtype="float64")
    # The order keys' hashes need only the raw columns: computed on another thread meanwhile.
    with ThreadPoolExecutor(2, thread_name_prefix="churnguard-encode") as pool:
        keys = pool.submit(_OrderKeys.of, tx, tx_time, amount)
        ids, positions = _encode_ids([f["customer_id"] for f in frames])
        tx_id = positions[0]
        blocks = pool.submit(_block_rows, tx_id, len(ids))
        days = _day_numbers(tx_time)
        groups = keys.result().groups(tx, tx_id)
        block_rows = blocks.result()
    tk_id = positions[1] if tables.tickets is not None else None
    cu_id = positions[-1] if tables.customers is not None else None
    return _Encoded(tables, ids, tx_id, tk_id, cu_id, tx_time, days, amount, groups, block_rows)


@dataclass(frozen=True)
class _OrderKeys:
    """The purchase rows' order keys -- ``order_id``, or without an order id the timestamp -- as 64-bit hashes,
    and which rows' hashes repeat: the only rows that can share an order, once the customer is added."""

    rows: np.ndarray  # the purchase rows
    hashed: np.ndarray  # their order ids' (or timestamps') hashes, without the customer
    repeated: np.ndarray  # of rows: the hash occurs more than once
    times: np.ndarray  # per transaction row: the timestamp (int64), part of the key where no order id is
    order_id: pa.ChunkedArray | None

    @classmethod
    def of(cls, tx: pd.DataFrame, times: np.ndarray, amount: np.ndarray) -> _OrderKeys:
        """Hashes of ``order_id`` (or the timestamp) alone: the customer is added once ids are encoded.

        The order ids are hashed one Arrow chunk at a time, so the hashing's temporary buffers stay small and
        are reused, instead of a copy of every id at once."""
        rows = np.flatnonzero(amount > 0)
        stamp = times.view("int64")
        order_id = _arrow(tx["order_id"]) if "order_id" in tx else None
        if order_id is None:
            hashed = _hashes({"timestamp": stamp})
        else:
            hashed = np.empty(len(tx), dtype=np.uint64)
            start = 0
            for chunk in order_id.chunks:
                hashed[start : start + len(chunk)] = _hashes({"order_id": pa.chunked_array([chunk])})
                start += len(chunk)
            if order_id.null_count:
                missing = np.flatnonzero(order_id.is_null().to_numpy(zero_copy_only=False))
                hashed[missing] = _hashes({"timestamp": stamp[missing]})
        hashed = hashed[rows]
        return cls(rows, hashed, _repeated(hashed), stamp, order_id)

    def _stamp(self, rows: np.ndarray) -> np.ndarray:
        """The timestamp as part of the rows' keys: 0 where an order id is."""
        if self.order_id is None:
            return self.times[rows]
        return np.where(self.order_id.take(rows).is_valid().to_numpy(zero_copy_only=False), 0, self.times[rows])

    def groups(self, tx: pd.DataFrame, cid: np.ndarray) -> np.ndarray:
        """Label the purchase rows that share an order with another row; -1 for every other row, which is
        an order of its own.

        Rows whose hash repeats are grouped by it, and the groups are checked against the actual keys
        (``cid``: the rows' customer positions), falling back to grouping by the keys themselves if two
        keys ever share a hash.
        """
        groups = np.full(len(tx), -1, dtype=np.int64)
        candidates = self.rows[self.repeated]
        if len(candidates) == 0:
            return groups
        hashed = _hashes({"customer": cid[candidates], "order": self.hashed[self.repeated]})
        repeated = _repeated(hashed)
        candidates, hashed = candidates[repeated], hashed[repeated]
        if len(candidates) == 0:
            return groups
        labels = pd.factorize(hashed)[0]
        rep = candidates[_first_rows(labels)][labels]  # each candidate's group's first row
        same = (cid[candidates] == cid[rep]) & (self._stamp(candidates) == self._stamp(rep))
        if self.order_id is not None:
            mine, theirs = self.order_id.take(candidates), self.order_id.take(rep)
            same &= pc.fill_null(pc.equal(mine, theirs), True).to_numpy(zero_copy_only=False)
            same &= pc.equal(mine.is_null(), theirs.is_null()).to_numpy(zero_copy_only=False)
        if not same.all():  # two keys share a hash: group the candidates by their actual keys
            part = tx.iloc[candidates]
            order_key = part["timestamp"].astype("object")
            if "order_id" in part:
                order_key = part["order_id"].astype("object").where(part["order_id"].notna(), order_key)
            labels = pd.DataFrame({"c": cid[candidates], "k": order_key.to_numpy()}).groupby(["c", "k"], sort=False).ngroup()
            labels = labels.to_numpy()
        shared = np.bincount(labels)[labels] > 1
        groups[candidates[shared]] = labels[shared]
        return groups


def _repeated(key: np.ndarray) -> np.ndarray:
    """True where a key occurs more than once."""
    s = np.sort(key)
    dup = s[1:][s[1:] == s[:-1]]
    return np.isin(key, dup) if len(dup) else np.zeros(len(key), dtype=bool)


class _Groups:
    """Per-customer aggregation over integer positions ``0 .. n - 1`` (in the population, or in one block of it)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def sum(self, pos: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Count (or sum of ``values``, added in row order) per customer."""
        return np.bincount(pos, weights=values, minlength=self.n).astype("float64", copy=False)

    def extreme(self, pos: np.ndarray, values: np.ndarray, how: str) -> np.ndarray:
        """min / max of values per customer; NaN where a customer has none (values hold no NaN)."""
        ufunc, start = (np.minimum, np.inf) if how == "min" else (np.maximum, -np.inf)
        out = np.full(self.n, start)
        ufunc.at(out, pos, np.asarray(values, dtype="float64"))
        out[np.bincount(pos, minlength=self.n) == 0] = np.nan
        return out

    def mean(self, pos: np.ndarray, values: pd.Series | np.ndarray) -> np.ndarray:
        """Mean of values per customer by pandas' own grouped mean; NaN where a customer has none."""
        out = np.full(self.n, np.nan)
        if len(pos):
            res = pd.Series(np.asarray(values, dtype="float64")).groupby(pos, sort=False).mean()
            out[res.index.to_numpy()] = res.to_numpy(dtype="float64")
        return out


def _run_std(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sample standard deviation of each run ``values[starts[i] : starts[i] + sizes[i]]`` (sizes > 0; NaN for
    runs of one) by pandas' grouped algorithm -- Welford's update in row order, then ``sqrt(M2 / (n - 1))`` --
    vectorised across runs: the k-th update of every run of more than k values in one step."""
    order = np.argsort(-sizes, kind="stable")
    first, n = starts[order], sizes[order]
    mean, m2 = np.zeros(len(n)), np.zeros(len(n))
    active = np.searchsorted(-n, -np.arange(int(n[0]) if len(n) else 0), side="left")  # runs longer than k
    for k, m in enumerate(active.tolist()):
        val = values[first[:m] + k]
        old = mean[:m]
        new = old + (val - old) / np.float64(k + 1)
        m2[:m] += (val - new) * (val - old)
        mean[:m] = new
    out = np.full(len(n), np.nan)
    several = n > 1
    out[several] = np.sqrt(m2[several] / (n[several] - 1).astype("float64"))
    result = np.empty(len(n))
    result[order] = out
    return result


def _known(enc: _Encoded, as_of: pd.Timestamp, kept: np.ndarray | None = None) -> np.ndarray:
    """Which of ``enc.ids`` are known at ``as_of``: a transaction or ticket on or before it, or listed and
    signed up by then (``kept``: the transaction rows on or before ``as_of``, when already at hand)."""
    cutoff = as_of + _DAY
    if kept is None:
        kept = enc.tx_time < np.datetime64(cutoff)
    known = np.zeros(len(enc.ids), dtype=bool)
    known[enc.tx_id[kept]] = True
    tables = enc.tables
    if tables.tickets is not None:
        known[enc.tk_id[(tables.tickets["opened_at"] < cutoff).to_numpy()]] = True
    if tables.customers is not None:
        cust = tables.customers
        listed = (cust["signup_date"].isna() | (cust["signup_date"] < cutoff)).to_numpy() if "signup_date" in cust else slice(None)
        known[enc.cu_id[listed]] = True
    return known


def _population(enc: _Encoded, as_of: pd.Timestamp, kept: np.ndarray) -> tuple[pd.Index, np.ndarray]:
    """Customers known at ``as_of``, sorted, and the map from positions in ``enc.ids`` to positions in it
    (-1 for those not known yet)."""
    known = _known(enc, as_of, kept)
    where = np.cumsum(known) - 1
    where[~known] = -1
    return enc.ids[known].rename("customer_id"), where


def _orders(enc: _Encoded, rows: np.ndarray, pos: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, ...]:
    """One entry per order among the purchase rows ``rows`` (in row order, with their customer positions and
    ages in days): customer position, age of its oldest line and value, in the order of each order's first row."""
    value = enc.amount[rows]
    group = enc.order_group[rows]
    multi = group >= 0
    if not multi.any():
        return pos, age, value
    # Orders of several rows: their lines' values added in row order, their age that of the oldest line.
    codes = pd.factorize(group[multi])[0]
    at = np.flatnonzero(multi)
    first = at[_first_rows(codes)]
    keep = ~multi
    keep[first] = True
    age, value = age.copy(), value.copy()
    oldest = np.full(len(first), -np.inf)
    np.maximum.at(oldest, codes, age[multi])
    age[first] = oldest
    value[first] = np.bincount(codes, weights=value[multi])
    return pos[keep], age[keep], value[keep]


def _purchase_features(enc: _Encoded, buys: tuple[np.ndarray, ...], refunds: tuple[np.ndarray, np.ndarray],
                       g: _Groups, cfg: FeatureConfig) -> dict:
    """Purchase features of ``g.n`` customers from their purchase rows ``buys`` (rows, customer positions, ages
    in days) and refund rows ``refunds`` (rows, customer positions), each in row order."""
    pos, age, value = _orders(enc, *buys)
    # Distinct purchase days per customer, sorted by (customer, age): one integer key sorts both. Ages are
    # whole days (day numbers), so the key packs them into the low bits.
    shift = int(age.max()).bit_length() if len(age) else 1
    days = np.sort((pos.astype(np.int64) << shift) | age.astype(np.int64))
    days = days[np.r_[True, days[1:] != days[:-1]]] if len(days) else days
    dpos, iage = days >> shift, days & ((1 << shift) - 1)
    dage = iage.astype("float64")
    starts = np.flatnonzero(np.r_[True, dpos[1:] != dpos[:-1]]) if len(dpos) else np.zeros(0, dtype=np.intp)
    ends = np.r_[starts[1:] - 1, len(dpos) - 1].astype(np.intp) if len(dpos) else starts
    last, first = np.full(g.n, np.nan), np.full(g.n, np.nan)
    last[dpos[starts]] = dage[starts]  # the newest purchase day's age
    first[dpos[starts]] = dage[ends]  # the oldest one's
    f: dict[str, np.ndarray] = {}
    n_orders = g.sum(pos)
    f["recency_days"] = last
    f["n_orders"] = n_orders
    f["gross_spend"] = g.sum(pos, value)
    f["mean_order_value"] = _ratio(f["gross_spend"], n_orders)
    f["max_order_value"] = g.extreme(pos, value, "max")
    rrows, rpos = refunds
    f["refund_count"] = g.sum(rpos)
    refund_amount = g.sum(rpos, -enc.amount[rrows])
    f["refund_share"] = _ratio(refund_amount, f["gross_spend"])
    f["net_spend"] = f["gross_spend"] - refund_amount
    for w in cfg.windows_days:
        inside = age < w
        f[f"orders_{w}d"] = g.sum(pos[inside])
        f[f"spend_{w}d"] = g.sum(pos[inside], value[inside])
    tw = cfg.trend_window_days
    recent, before = age < tw, (age >= tw) & (age < 2 * tw)
    f["trend_orders"] = _ratio(g.sum(pos[recent]), g.sum(pos[before]))
    f["trend_spend"] = _ratio(g.sum(pos[recent], value[recent]), g.sum(pos[before], value[before]))
    # Gaps between distinct purchase days.
    n_days = ends - starts + 1
    f["n_purchase_days"] = np.zeros(g.n)
    f["n_purchase_days"][dpos[starts]] = n_days
    # A customer's gaps are the differences within their run of days: after dropping each run's first day,
    # the runs of gaps start where the runs of days did, shifted back by one per earlier customer.
    within = np.ones(max(len(iage) - 1, 0), dtype=bool)
    within[starts[1:] - 1] = False
    gap = np.diff(dage)[within]
    gap_starts, n_gaps = starts - np.arange(len(starts)), n_days - 1
    many = n_gaps > 0
    # Gaps are whole days: their plain sum is exact, the same as the compensated sum of a grouped mean.
    gap_sum = np.add.reduceat(gap, gap_starts[many]) if len(gap) else np.zeros(0)
    f["gap_mean_days"] = np.full(g.n, np.nan)
    f["gap_mean_days"][dpos[starts[many]]] = gap_sum / n_gaps[many]
    f["gap_std_days"] = np.full(g.n, np.nan)
    f["gap_std_days"][dpos[starts[many]]] = _run_std(gap, gap_starts[many], n_gaps[many])
    f["overdue_ratio"] = _ratio(last, f["gap_mean_days"])
    # BG/NBD inputs (days): repeat purchase days, first-to-last span, first purchase to as_of.
    f["bg_frequency"] = np.where(np.isnan(first), np.nan, f["n_purchase_days"] - 1)
    f["bg_recency_days"] = first - last
    f["bg_age_days"] = first
    return f


def _lifespan_counts(pos: np.ndarray, age: np.ndarray, n: int) -> np.ndarray:
    """Customers (positions < n) who bought in the year before last, and those of them who also bought in the
    last year, from purchase rows' positions and ages in days."""
    last_year = np.bincount(pos[age < 365], minlength=n) > 0
    year_before = np.bincount(pos[(age >= 365) & (age < 730)], minlength=n) > 0
    return np.array([year_before.sum(), (year_before & last_year).sum()], dtype=np.int64)


def _lifespan(counts: np.ndarray, earliest: pd.Timestamp | None, as_of: pd.Timestamp, cfg: FeatureConfig) -> float:
    """:func:`estimate_lifespan_years` from :func:`_lifespan_counts` and the earliest purchase."""
    if earliest is None or earliest > as_of - pd.Timedelta(days=730):
        return cfg.default_lifespan_years
    n_before, n_both = (int(c) for c in counts)
    if n_before == 0:
        return cfg.default_lifespan_years
    churn = 1.0 - float(np.float64(n_both) / np.float64(n_before))
    return float(min(1 / churn, cfg.max_lifespan_years)) if churn > 0 else cfg.max_lifespan_years


def estimate_lifespan_years(tx: pd.DataFrame, as_of: pd.Timestamp, cfg: FeatureConfig) -> float:
    """Average customer lifespan = 1 / annual churn rate, from purchases on or before ``as_of`` only.

    The annual churn rate is the share of customers who bought in the year before last (days
    ``(as_of - 730, as_of - 365]``) and made no purchase in the last year ``(as_of - 365, as_of]``.
    """
    purchases = tx[(tx["amount"] > 0) & (tx["timestamp"] < as_of + _DAY)]
    if purchases.empty:
        return cfg.default_lifespan_years
    codes, uniques = pd.factorize(purchases["customer_id"])
    age = _days(as_of - purchases["timestamp"].dt.normalize())
    return _lifespan(_lifespan_counts(codes, age, len(uniques)), purchases["timestamp"].min(), as_of, cfg)


def _latest(g: _Groups, pos: np.ndarray, opened: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Value of the most recently opened ticket per customer among ``mask``; ties go to the larger value so
    the result never depends on row order."""
    pos, opened, values = pos[mask], opened[mask].view("int64"), values[mask]
    newest = np.full(g.n, np.iinfo(np.int64).min)
    np.maximum.at(newest, pos, opened)
    at_newest = opened == newest[pos]
    return g.extreme(pos[at_newest], values[at_newest], "max")


def _support_features(enc: _Encoded, where: np.ndarray, as_of: pd.Timestamp, g: _Groups, cfg: FeatureConfig) -> dict:
    cutoff = as_of + _DAY
    tickets = enc.tables.tickets
    opened_mask = (tickets["opened_at"] < cutoff).to_numpy()
    cols = [c for c in ("opened_at", "first_response_at", "resolved_at", "csat") if c in tickets]
    tk = tickets[cols][opened_mask]
    pos = where[enc.tk_id[opened_mask]]
    age = _days(as_of - tk["opened_at"].dt.normalize())
    f: dict[str, np.ndarray] = {}
    for w in cfg.ticket_windows_days:
        f[f"tickets_{w}d"] = g.sum(pos[age < w])
    f["tickets_total"] = g.sum(pos)
    f["days_since_last_ticket"] = g.extreme(pos, age, "min")
    resolved = tk["resolved_at"] < cutoff if "resolved_at" in tk else pd.Series(False, index=tk.index)
    f["open_tickets"] = g.sum(pos[~resolved.to_numpy()])
    opened = tk["opened_at"].to_numpy()
    if "first_response_at" in tk:
        answered = (tk["first_response_at"] < cutoff).to_numpy()
        hours = _hours(tk["first_response_at"] - tk["opened_at"])
        waiting = _hours(cutoff - tk["opened_at"])
        f["first_response_hours_mean"] = g.mean(pos[answered], hours[answered])
        f["first_response_hours_max"] = g.extreme(pos[answered], hours[answered], "max")
        f["first_response_hours_latest"] = _latest(g, pos, opened, hours, answered)
        slow = np.where(answered, hours > cfg.sla_hours, waiting > cfg.sla_hours)
        f["slow_response_share"] = _ratio(g.sum(pos[slow]), f["tickets_total"])
    if "resolved_at" in tk:
        res = resolved.to_numpy()
        hours = _hours(tk["resolved_at"] - tk["opened_at"])
        f["resolution_hours_mean"] = g.mean(pos[res], hours[res])
        f["resolution_hours_max"] = g.extreme(pos[res], hours[res], "max")
        f["resolution_hours_latest"] = _latest(g, pos, opened, hours, res)
    if "csat" in tk:
        # A survey answer is known once the ticket is resolved (or, without resolution times, once opened).
        known = (resolved.to_numpy() if "resolved_at" in tk else np.ones(len(tk), bool)) & tk["csat"].notna().to_numpy()
        csat = tk["csat"].to_numpy(dtype="float64")
        f["csat_mean"] = g.mean(pos[known], csat[known])
        f["csat_min"] = g.extreme(pos[known], csat[known], "min")
        f["csat_latest"] = _latest(g, pos, opened, csat, known)
    return f


def _attribute_features(enc: _Encoded, where: np.ndarray, as_of: pd.Timestamp, population: pd.Index,
                        cfg: FeatureConfig) -> pd.DataFrame:
    customers = enc.tables.customers
    row = np.full(len(population), -1, dtype=np.intp)  # each customer's row in the customers table, -1: none
    listed = where[enc.cu_id]
    row[listed[listed >= 0]] = np.flatnonzero(listed >= 0)
    cust = customers.drop(columns="customer_id").reset_index(drop=True).reindex(row)
    cust.index = population
    out = pd.DataFrame(index=population)
    if "loyalty_member" in cust:
        out["loyalty_member"] = cust["loyalty_member"].astype("float64")
    if "loyalty_points" in cust:
        out["loyalty_points"] = cust["loyalty_points"].astype("float64")
    if "nps" in cust:
        nps = cust["nps"].astype("float64")
        out["nps"] = nps
        group = pd.cut(nps, bins=[-0.5, 6.5, 8.5, 10.5], labels=list(NPS_GROUPS))
        out["nps_group"] = pd.Categorical(group, categories=list(NPS_GROUPS))
    if "signup_date" in cust:
        out["days_since_signup"] = _days(as_of - cust["signup_date"].dt.normalize())
    for col in cust.columns.difference(sorted(_KNOWN_ATTRIBUTES)):
        raw = cust[col]
        levels = raw.dropna().unique()
        # Numeric when every present value parses as a number: decided on the distinct values.
        if pd.to_numeric(pd.Series(levels, dtype=raw.dtype), errors="coerce").notna().all():
            out[f"attr_{col}"] = pd.to_numeric(raw, errors="coerce").astype("float64")
        elif len(levels) <= cfg.max_categories:
            out[f"attr_{col}"] = pd.Categorical(raw, categories=sorted(levels))
        else:
            logger.info("customers column %r has %d levels (> %d): not used", col, len(levels), cfg.max_categories)
    return out


_BLOCK = 1 << 16  # customers per block of the purchase aggregation
_FEW_BLOCKS = 64  # up to this many blocks (4M ids), rows are split by a pass per block, not by a sort


def _block_rows(tx_id: np.ndarray, n_ids: int) -> list[np.ndarray]:
    """The transaction rows of each block of ``_BLOCK`` consecutive ids, each in row order (one stable sort)."""
    n_blocks = max(-(-n_ids // _BLOCK), 1)
    key = np.uint8 if n_blocks <= 256 else np.uint16 if n_blocks <= 65536 else np.int64
    block = (tx_id >> _BLOCK.bit_length() - 1).astype(key)
    if n_blocks <= _FEW_BLOCKS:  # a pass over the 8-bit keys per block costs less than sorting them
        return [np.flatnonzero(block == b) for b in range(n_blocks)]
    order = np.argsort(block, kind="stable")  # a radix sort for 8- and 16-bit keys
    return np.split(order, np.searchsorted(block[order], np.arange(1, n_blocks)))


def _block_features(enc: _Encoded, b: int, where: np.ndarray, kept: np.ndarray, day: int, cfg: FeatureConfig,
                    count_lifespan: bool) -> tuple[dict, np.ndarray, np.datetime64 | None]:
    """Purchase features of the population's customers among ids block ``b``; when asked, also their
    :func:`_lifespan_counts` and earliest purchase (else zeros and None)."""
    known = where[b * _BLOCK : (b + 1) * _BLOCK]
    members = known[known >= 0]
    start = int(members[0]) if len(members) else 0  # population positions of a block are consecutive
    g = _Groups(len(members))
    rows = enc.block_rows[b]
    rows = rows[kept[rows]]
    amount = enc.amount[rows]
    buy, refund = rows[amount > 0], rows[amount < 0]
    buy_pos, refund_pos = where[enc.tx_id[buy]] - start, where[enc.tx_id[refund]] - start
    age = (day - enc.tx_day[buy]).astype("float64")
    f = _purchase_features(enc, (buy, buy_pos, age), (refund, refund_pos), g, cfg)
    if not count_lifespan:
        return f, np.zeros(2, dtype=np.int64), None
    earliest = enc.tx_time[buy].min() if len(buy) else None
    return f, _lifespan_counts(buy_pos, age, g.n), earliest


def _labels(which: np.ndarray, labels: tuple[str, str]) -> pd.api.extensions.ExtensionArray:
    """``labels[1]`` where ``which`` else ``labels[0]``, as a text column (built by Arrow from the two labels
    instead of a million Python strings)."""
    codes = pa.array(which.astype(np.int8))
    text = pa.DictionaryArray.from_arrays(codes, pa.array(list(labels))).cast(pa.large_string())
    return pd.array(text, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def _side_features(enc: _Encoded, where: np.ndarray, as_of: pd.Timestamp, population: pd.Index, g: _Groups,
                   cfg: FeatureConfig) -> tuple[dict | None, pd.DataFrame | None]:
    """Support features (with tickets) and attribute features (with customers), None where a table is absent."""
    tables = enc.tables
    support = _support_features(enc, where, as_of, g, cfg) if tables.tickets is not None else None
    attrs = _attribute_features(enc, where, as_of, population, cfg) if tables.customers is not None else None
    return support, attrs


def build_features(
    tables: Tables,
    as_of: str | pd.Timestamp,
    config: FeatureConfig,
    *,
    lifespan_years: float | None = None,
    vip_threshold: float | None = None,
) -> pd.DataFrame:
    """One row per customer known at ``as_of``, computed only from events on or before that day.

    Args:
        tables: validated input tables (``churnguard.dataset``).
        as_of: the cut-off day.
        config: feature windows and thresholds.
        lifespan_years: use this average lifespan for CLTV instead of estimating it from ``tables`` (scoring
            uses the value learned at training, so a single customer's CLTV does not depend on who else is
            in the request).
        vip_threshold: CLTV from which a customer is ``vip``; default: the ``vip_quantile`` of this population.

    Returns:
        A frame with ``customer_id``, ``as_of`` and the feature columns described in the module docstring,
        sorted by ``customer_id``.
    """
    return _build(_encode(tables), to_day(as_of), config, lifespan_years, vip_threshold)


def _build(enc: _Encoded, as_of: pd.Timestamp, config: FeatureConfig, lifespan_years: float | None = None,
           vip_threshold: float | None = None) -> pd.DataFrame:
    """:func:`build_features` on encoded tables (``as_of`` already a day)."""
    kept = enc.tx_time < np.datetime64(as_of + _DAY)
    population, where = _population(enc, as_of, kept)
    # Purchases are aggregated per block of customers (all of a customer's rows in one block, in row order, so
    # every value is the one a single pass gives): a block's arrays are small enough for the allocator to reuse
    # and its per-customer totals stay in cache. Blocks, and tickets and attributes, run on two threads; numpy
    # and pandas release the GIL in their array loops.
    day = _day_numbers(np.datetime64(as_of))
    count = lifespan_years is None
    with ThreadPoolExecutor(2, thread_name_prefix="churnguard-features") as pool:
        side = pool.submit(_side_features, enc, where, as_of, population, _Groups(len(population)), config)
        parts = list(pool.map(lambda b: _block_features(enc, b, where, kept, day, config, count),
                              range(len(enc.block_rows))))
        support, attrs = side.result()
    cols = {name: np.concatenate([p[0][name] for p in parts]) for name in parts[0][0]}
    if lifespan_years is not None:
        lifespan = lifespan_years
    else:
        firsts = [p[2] for p in parts if p[2] is not None]
        earliest = pd.Timestamp(min(firsts)) if firsts else None
        lifespan = _lifespan(sum(p[1] for p in parts), earliest, as_of, config)
    del parts
    aov = np.nan_to_num(cols["mean_order_value"])
    cols["cltv"] = aov * cols["orders_365d" if 365 in config.windows_days else f"orders_{max(config.windows_days)}d"] * lifespan
    if support is not None:
        support["tickets_per_order"] = _ratio(support["tickets_total"], cols["n_orders"])
        cols |= support
    data = {"customer_id": population.array, "as_of": np.full(len(population), as_of.to_datetime64()), **cols}
    if attrs is not None:
        data |= {name: attrs[name].array for name in attrs}
        if "days_since_signup" in attrs:
            data["tenure_days"] = np.fmax(cols["bg_age_days"], data["days_since_signup"])
    if "tenure_days" not in data:
        data["tenure_days"] = cols["bg_age_days"]
    threshold = vip_threshold
    if threshold is None:
        threshold = pd.Series(cols["cltv"]).quantile(config.vip_quantile) if len(population) else np.inf
    vip = (cols["cltv"] >= threshold) & (cols["cltv"] > 0)
    data["value_tier"] = _labels(vip, ("standard", "vip"))
    data["as_of_month"] = np.full(len(population), float(as_of.month))  # churn over the next months is seasonal
    features = pd.DataFrame(data, copy=False)  # the columns are this call's own arrays
    features.attrs["lifespan_years"] = lifespan
    return features
