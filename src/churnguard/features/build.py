"""Features of tables: ``build_features(tables, as_of, config, population)``, one row per customer.

This module only moves data: it encodes the tables' customer ids and order keys as integers once, splits the
purchase rows into blocks of customers, hands each block's arrays to the feature kernel
(``churnguard.features.kernel``, where every feature is defined) on two threads, and assembles the columns into
a frame. ``make_training_set`` encodes once and builds every snapshot from the same encoding.

Customer ids are encoded into integer positions in one sorted index (``_encode``), from the codes validation
made of each table's ids (``Tables.id_codes``): only the distinct ids are read here, not every row's; a frame
changed since validation is encoded afresh. Multi-row orders are found
by a 64-bit hash of each purchase row's order key (``_hashes``, numpy over the Arrow buffers); rows whose hash repeats are then checked against their
actual keys, so a hash collision can never merge two orders. An order's key is its ``order_id``, or without one
its timestamp: the purchase rows of one customer with the same key are one order.
"""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnguard._io.codes import take_codes, text_offsets
from churnguard.dataset import arrow_column, category_codes, dictionary_codes, text_dtype
from churnguard.features import kernel as k
from churnguard.features.engagement import EventArrays, channel_codes, engagement_features, event_type_codes
from churnguard.population import Population

if TYPE_CHECKING:
    from collections.abc import Callable

    from churnguard.config import FeatureConfig
    from churnguard.dataset import IdCodes, Tables

__all__ = ["build_features", "estimate_lifespan_years", "purchase_orders", "to_day"]

logger = logging.getLogger(__name__)

_DAY = pd.Timedelta(days=1)
_day_numbers = k.day_numbers


def to_day(as_of: str | pd.Timestamp | np.datetime64) -> pd.Timestamp:
    """Normalise a cut-off to a calendar day (midnight). Raises ValueError on a bad date or one outside the years
    1678-2261 (the data's dates are nanosecond timestamps)."""
    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"as_of must be a date like 2025-06-30, got {as_of!r}") from exc
    if ts is pd.NaT:
        raise ValueError(f"as_of must be a date like 2025-06-30, got {as_of!r}")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    ts = ts.normalize()
    if not _FIRST_AS_OF <= ts <= _LAST_AS_OF:  # beyond, its comparisons with the data's nanosecond dates overflow
        raise ValueError(f"as_of {ts.date()} lies outside the years 1678-2261 that dates can take")
    return ts


_FIRST_AS_OF, _LAST_AS_OF = pd.Timestamp("1678-01-01"), pd.Timestamp("2261-12-31")


@dataclass(frozen=True)
class _Encoded:
    """The input tables with every customer id replaced by its position in one sorted index of all ids.

    Strings are hashed once here; each cut-off day then works on integer arrays only. ``make_training_set``
    encodes once and builds every snapshot from the same object.
    """

    tables: Tables
    ids: pd.Index  # every customer id of the three tables, sorted
    tx_id: np.ndarray  # transaction row -> position in ids (int32 like the other per-row integers, _ints)
    tk_id: np.ndarray | None
    cu_id: np.ndarray | None
    tx_time: np.ndarray  # datetime64
    tx_day: np.ndarray  # _day_numbers(tx_time), int32
    amount: np.ndarray
    order_group: np.ndarray  # per row: a label shared by the purchase (or refund) rows of one order, else -1
    block_rows: list[np.ndarray]  # transaction rows of each block of _BLOCK ids, in row order
    events: _Events | None = None


# customer ids per block of the engagement features: a block's arrays stay small (the engagement of a partition
# of 4.5M events: 200-205 ms of CPU in blocks of 4,096 ids, 231-255 ms in blocks of 8,192)
_EVENT_BLOCK = 1 << 12


@dataclass(frozen=True)
class _Events:
    """The events table as arrays: the customer as a code per row and each code's position in
    ``_Encoded.ids`` (``ids``; the codes are validation's, so no array of positions per row is made),
    timestamp (ns), duration in seconds (NaN: none), and event type, channel and session id as integer codes
    (event type and channel with the map from their codes to the kernel's, see :func:`_coded`);
    ``order[bounds[b] : bounds[b + 1]]`` are the rows of block ``b`` of ``_EVENT_BLOCK`` ids, in row order."""

    customer: np.ndarray
    ids: np.ndarray
    time: np.ndarray
    duration: np.ndarray
    kind: tuple[np.ndarray, np.ndarray | None]
    channel: tuple[np.ndarray, np.ndarray | None]
    session: np.ndarray
    order: np.ndarray
    bounds: np.ndarray

    @classmethod
    def of(cls, events: pd.DataFrame, customer: np.ndarray, ids: np.ndarray, n_ids: int) -> _Events:
        n = len(events)
        time = events["timestamp"].to_numpy().astype("datetime64[ns]", copy=False).view("int64")
        duration = _floats(events["duration_seconds"]) if "duration_seconds" in events else np.full(n, np.nan)
        channel = _coded(events["channel"], channel_codes) if "channel" in events else (
            np.full(n, -1, dtype=np.int8), None)
        session = _session_codes(events["session_id"]) if "session_id" in events else (
            np.full(n, -1, dtype=np.int32))
        return cls(customer, ids, time, duration, _coded(events["event_type"], event_type_codes), channel, session,
                   *_event_blocks(customer, ids, n_ids))


def _floats(values: pd.Series) -> np.ndarray:
    """A numeric column as float64, NaN where missing (a float64 column as it is, not copied)."""
    if values.dtype == np.float64:
        return values.to_numpy()
    return values.to_numpy(dtype="float64", na_value=np.nan)


_PIECE = 1 << 20  # rows of the events taken at once where a whole column's temporary would be large
# up to this many blocks, a piece's rows are grouped by a pass per block, not by a sort (9 blocks of a partition
# of 4.5M events: 23 ms by passes, 41 ms by sorts)
_FEW_EVENT_BLOCKS = 16


def _event_blocks(customer: np.ndarray, ids: np.ndarray, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows grouped by block of ``_EVENT_BLOCK`` ids (``customer``: codes, ``ids``: their positions), each
    block's rows in row order, and where each block starts. Up to ``_FEW_EVENT_BLOCKS`` blocks (a partition's),
    each block's rows are found by a pass over the block keys, a piece of rows at a time; more, a stable counting
    sort of each piece, so that no temporary spans every row. The order is int32 where the rows allow."""
    n_blocks = max(-(-n_ids // _EVENT_BLOCK), 1)
    block_of = (ids >> (_EVENT_BLOCK.bit_length() - 1)).astype(np.uint8 if n_blocks <= 256 else np.uint16)
    dtype = np.int32 if len(customer) < 2**31 else np.int64
    if n_blocks <= _FEW_EVENT_BLOCKS:  # 4 blocks at 1M customers in 32 partitions: 0.13 -> 0.045 s a partition
        found = [[] for _ in range(n_blocks)]
        for first in range(0, len(customer), _PIECE):
            block = block_of[customer[first : first + _PIECE]]
            for b in range(n_blocks):
                found[b].append((np.flatnonzero(block == b) + first).astype(dtype, copy=False))
        rows = [np.concatenate(f) if f else np.zeros(0, dtype=dtype) for f in found]
        return np.concatenate(rows), np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    counts = np.zeros(n_blocks, dtype=np.int64)
    for first in range(0, len(customer), _PIECE):
        counts += np.bincount(block_of[customer[first : first + _PIECE]], minlength=n_blocks)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    order = np.empty(len(customer), dtype=dtype)
    filled = bounds[:-1].copy()  # per block: where its next rows go
    for first in range(0, len(customer), _PIECE):
        block = block_of[customer[first : first + _PIECE]]
        rows = np.argsort(block, kind="stable")  # a radix sort of 8- or 16-bit keys
        here = np.bincount(block, minlength=n_blocks)
        start = np.repeat(filled - np.concatenate([[0], np.cumsum(here)[:-1]]), here)
        order[start + np.arange(len(rows))] = rows + first
        filled += here
    return order, bounds


def _coded(values: pd.Series, codes: Callable[[np.ndarray], np.ndarray]
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """A text column as integer codes and the map from them to ``codes`` of their values: of a categorical,
    its own codes and ``codes`` of its categories (a missing value, code -1, maps to -1); of another column,
    ``codes`` of every value and no map."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return codes(values.to_numpy(dtype=object)), None
    return values.array.codes, np.append(codes(values.cat.categories.to_numpy(dtype=object)), -1)


def _take(coded: tuple[np.ndarray, np.ndarray | None], rows: np.ndarray) -> np.ndarray:
    """The kernel's codes of a :func:`_coded` column at ``rows``."""
    codes, mapping = coded
    return codes[rows] if mapping is None else np.take(mapping, codes[rows])


def _session_codes(values: pd.Series) -> np.ndarray:
    """An integer per session id (equal ids, equal codes), -1 when missing: a categorical's own codes."""
    return values.array.codes if isinstance(values.dtype, pd.CategoricalDtype) else pd.factorize(values)[0]


def _category_ids(ids: pd.Series) -> IdCodes | None:
    """A categorical customer id column's :class:`churnguard.dataset.IdCodes` (the categories its rows use),
    for :func:`_encode_ids`; None for another column."""
    from churnguard.dataset import IdCodes

    if not isinstance(ids.dtype, pd.CategoricalDtype):
        return None
    return IdCodes(*category_codes(ids), ids.array)


_C1, _C2, _ODD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)
_LOW_BYTES = np.uint64(0xFFFFFFFFFFFFFFFF) >> np.arange(64, -1, -8, dtype=np.uint64)  # [b]: the low b bytes
_LOW_BYTES[0] = 0
_NULL_HASH = np.uint64(0x5555555555555555)


def _hashes(columns: dict[str, pa.ChunkedArray | np.ndarray]) -> np.ndarray:
    """A 64-bit hash of each row of ``columns`` (equal rows, equal hashes; nulls hash alike). Hashes only
    propose groups: every caller checks the actual values before using them.

    Integers enter as their 64-bit value; text as :func:`_text_hashes`. Each column's value is folded into the
    row's hash with splitmix64's finaliser, in which every input bit reaches every output bit. Rows go in
    blocks of 2**16, so the temporaries stay in cache and are reused instead of page-faulting fresh 100 MB
    arrays.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    out = np.empty(n, dtype=np.uint64)
    block = 1 << 16
    for first in range(0, n, block):
        row = np.zeros(min(block, n - first), dtype=np.uint64)
        for values in columns.values():
            if isinstance(values, pa.ChunkedArray):
                part = values.slice(first, len(row))
                part = np.concatenate([_text_hashes(chunk) for chunk in part.chunks]) if part.num_chunks > 1 \
                    else _text_hashes(part.chunk(0))
            else:
                part = np.asarray(values[first : first + len(row)]).astype(np.uint64, copy=False)
            row = _mix((row * _ODD) ^ part)
        out[first : first + len(row)] = row
    return out


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place."""
    x ^= x >> np.uint64(30)
    x *= _C1
    x ^= x >> np.uint64(27)
    x *= _C2
    x ^= x >> np.uint64(31)
    return x


def _text_hashes(chunk: pa.Array) -> np.ndarray:
    """A hash of each text value: its length and its bytes, read straight from the Arrow buffers eight at a
    time (an unaligned ``uint64`` gather per eight bytes, over the rows whose value is that long), so ``""``
    and a null differ."""
    narrow = pa.types.is_string(chunk.type) or pa.types.is_binary(chunk.type)
    if not (narrow or pa.types.is_large_string(chunk.type) or pa.types.is_large_binary(chunk.type)):
        chunk = chunk.cast(pa.large_string())  # e.g. string_view or dictionary
    if len(chunk) == 0:
        return np.zeros(0, dtype=np.uint64)
    data = chunk.buffers()[2]
    bounds = text_offsets(chunk)
    start = bounds[:-1].astype(np.int64)
    length = bounds[1:] - start
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, dtype=np.uint8)
    if len(data) < 8:
        data = np.concatenate([data, np.zeros(8, dtype=np.uint8)])
    words = np.ndarray((len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))  # the 8 bytes at each byte
    h = length.astype(np.uint64) * _ODD
    whole = int(length.min()) // 8  # words that every value has in full
    for j in range(0, 8 * whole, 8):
        h ^= words[start + j]
        h *= _ODD
    _fold_tails(h, words, start, length, 8 * whole)
    if chunk.null_count:
        h[chunk.is_null().to_numpy(zero_copy_only=False)] = _NULL_HASH
    return _mix(h)


def _fold_tails(h: np.ndarray, words: np.ndarray, start: np.ndarray, length: np.ndarray, offset: int) -> None:
    """Fold the words of the values from byte ``offset`` on into ``h``, over the rows still that long; a
    value's last word is masked to its own bytes."""
    rows = slice(None)  # the rows whose value has more than j bytes (rising starts)
    last = len(words) - 1  # a word must not pass the end: the last values take the buffer's last word,
    for j in range(offset, int(length.max()), 8):
        if not isinstance(rows, slice) or (length <= j).any():
            rows = np.flatnonzero(length > j) if isinstance(rows, slice) else rows[length[rows] > j]
        at = start[rows] + j
        over = int(np.searchsorted(at, last, side="right"))  # shifted down to their bytes
        word = words[np.minimum(at, last) if over < len(at) else at]
        if over < len(at):
            word[over:] >>= (at[over:] - last).astype(np.uint64) * np.uint64(8)
        word &= _LOW_BYTES[np.minimum(length[rows] - j, 8)]
        h[rows] = (h[rows] ^ word) * _ODD


def _first_rows(codes: np.ndarray) -> np.ndarray:
    """Row of each code's first occurrence, for codes numbered in order of first occurrence (``pd.factorize``)."""
    seen = np.maximum.accumulate(codes)
    return np.flatnonzero(np.r_[True, seen[1:] > seen[:-1]])


def _ints(n: int) -> type:
    """The integer type of positions among ``n`` rows or ids: int32 below 2**31, so the build's per-row arrays
    take half the memory."""
    return np.int32 if n < 2**31 else np.int64


def _sort_order(dictionary: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The positions of ``dictionary``'s values in sorted order, and each value's rank in it (int32: the rows'
    positions taken from it are one of the largest arrays the build holds, :func:`_ints`). Validation's shared
    distinct ids are sorted already, which one comparison of neighbours finds."""
    if len(dictionary) < 2 or pc.all(pc.less(dictionary.slice(0, len(dictionary) - 1), dictionary.slice(1))).as_py():
        order = np.arange(len(dictionary))
    else:
        order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(dictionary), dtype=_ints(len(dictionary)))
    rank[order] = np.arange(len(dictionary), dtype=rank.dtype)
    return order, rank


def _encode_ids(columns: list[pd.Series], known: list[IdCodes | None] | None = None
                ) -> tuple[pd.Index, list[np.ndarray]]:
    """Every distinct id of ``columns`` (no id missing) in one sorted index, and for each column its rows'
    positions in it.

    Each column's distinct ids and codes come from validation (``known``, :class:`churnguard.dataset.IdCodes`)
    or from one dictionary encoding here; the distinct ids of the columns are then encoded together (unless
    validation already put them on one array) and sorted, so no row's text is read again.
    """
    dtype = text_dtype(columns[0]) if columns else None
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow") or (
            isinstance(columns[0].dtype, pd.CategoricalDtype) and known is None):
        return _encode_ids_as_held(columns)
    encoded = [(c.distinct, c.codes) if c is not None else dictionary_codes(arrow_column(col))
               for col, c in zip(columns, known or [None] * len(columns), strict=True)]
    if all(values is encoded[0][0] for values, _ in encoded):  # validated together: one array of distinct ids
        present = np.zeros(len(encoded[0][0]), dtype=bool)
        for _, codes in encoded:
            present[codes[codes >= 0]] = True
        if not present.all():  # ids of no row (the tables were validated with other rows)
            remap = np.cumsum(present, dtype=np.int32) - 1
            encoded = [(encoded[0][0].filter(present), remap[codes]) for _, codes in encoded]
        dictionary, maps = encoded[0][0], [None] * len(encoded)
    elif len(encoded) == 1:
        dictionary, maps = encoded[0][0], [None]
    else:
        dictionary, joint = dictionary_codes(pa.chunked_array([v for v, _ in encoded], type=pa.large_string()))
        bounds = np.cumsum([0] + [len(v) for v, _ in encoded])
        maps = [joint[a:b] for a, b in itertools.pairwise(bounds)]
    order, rank = _sort_order(dictionary)
    ids = pd.Index(pd.array(dictionary.take(pa.array(order)), dtype=dtype))
    tables = [rank if m is None else rank[m] for m in maps]
    # each row's rank by Arrow's take, a third of numpy's time for 32-bit codes (take_codes reads -1 as the
    # table's last place, as numpy's indexing does: the last rank is put there)
    return ids, [take_codes(np.append(t, t[-1:]), codes) for t, (_, codes) in zip(tables, encoded, strict=True)]


def _encode_ids_as_held(columns: list[pd.Series]) -> tuple[pd.Index, list[np.ndarray]]:
    """:func:`_encode_ids` of columns held other than as Arrow text: the ids as the columns hold them, at the
    first row of each."""
    chunks = [chunk.cast(pa.large_string()) for c in columns for chunk in arrow_column(c).chunks]
    dictionary, codes = dictionary_codes(pa.chunked_array(chunks, type=pa.large_string()))
    order, rank = _sort_order(dictionary)
    ids = pd.Index(pd.concat(columns, ignore_index=True).take(_first_rows(codes)[order]).array)
    bounds = np.cumsum([0] + [len(c) for c in columns])
    return ids, [rank[codes[a:b]] for a, b in itertools.pairwise(bounds)]


def _used(codes: np.ndarray, n: int) -> np.ndarray:
    """Which of ``n`` codes occur in ``codes`` (-1: none), a piece of rows at a time: no temporary of every row."""
    used = np.zeros(n + 1, dtype=bool)  # the last: where a missing code (-1) is marked, then left out
    for first in range(0, len(codes), _PIECE):
        used[codes[first : first + _PIECE]] = True
    return used[:n]


def _event_ids(tables: Tables, known: IdCodes | None) -> IdCodes | None:
    """The events' customer ids as :class:`churnguard.dataset.IdCodes` (validation's, ``known``, or made here)
    when :func:`_encode_ids` encodes the ids by their distinct values; None when it reads every row's."""
    from churnguard.dataset import IdCodes

    dtype = text_dtype(tables.transactions["customer_id"])
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return None
    return known or IdCodes(*dictionary_codes(arrow_column(tables.events["customer_id"])), None)


def _encode(tables: Tables) -> _Encoded:
    named = {name: f for name, f in (("transactions", tables.transactions), ("tickets", tables.tickets),
                                     ("customers", tables.customers), ("events", tables.events)) if f is not None}
    tx = tables.transactions
    tx_time = tx["timestamp"].to_numpy()
    amount = tx["amount"].to_numpy(dtype="float64")
    # The order keys' hashes need only the raw columns: computed on another thread meanwhile.
    with ThreadPoolExecutor(2, thread_name_prefix="churnguard-encode") as pool:
        keys = pool.submit(_OrderKeys.of, tx, tx_time, amount)
        known = [tables.id_codes(name) or _category_ids(f["customer_id"]) for name, f in named.items()]
        events = _event_ids(tables, known[-1]) if "events" in named else None
        if events is not None:  # the distinct ids the events use are encoded with the others, not every row's
            used = np.flatnonzero(_used(events.codes, len(events.distinct))).astype(np.int32)
            known[-1] = replace(events, codes=used)
        ids, positions = _encode_ids([f["customer_id"] for f in named.values()], known)
        at = dict(zip(named, positions, strict=True))
        tx_id = at["transactions"]
        blocks = pool.submit(_block_rows, tx_id, len(ids))
        days = _day_numbers(tx_time).astype(np.int32)  # days since 1970: +-5.8 million years fit
        groups = keys.result().groups(tx, tx_id)
        block_rows = blocks.result()
    if "events" in at:  # codes and their positions, or (ids encoded row by row) positions and themselves
        if events is not None:
            customer, positions = events.codes, np.full(len(events.distinct), -1, dtype=np.int32)
            positions[used] = at.pop("events")
        else:
            customer, positions = at.pop("events"), np.arange(len(ids), dtype=np.int32)
        events = _Events.of(tables.events, customer, positions, len(ids))
    return _Encoded(tables, ids, tx_id, at.get("tickets"), at.get("customers"), tx_time, days, amount, groups,
                    block_rows, events)


@dataclass(frozen=True)
class _OrderKeys:
    """The purchase and refund rows' order keys -- ``order_id``, or without an order id the timestamp -- as
    64-bit hashes, and which rows' hashes repeat: the only rows that can share an order, once the customer and
    the sign (a purchase never shares an order with a refund) are added."""

    rows: np.ndarray  # the purchase and refund rows
    hashed: np.ndarray  # their order ids' (or timestamps') hashes, without the customer
    repeated: np.ndarray  # of rows: the hash occurs more than once
    times: np.ndarray  # per transaction row: the timestamp (int64), part of the key where no order id is
    order_id: pa.ChunkedArray | None
    buys: np.ndarray  # per transaction row: a purchase (amount > 0), part of the key

    @classmethod
    def of(cls, tx: pd.DataFrame, times: np.ndarray, amount: np.ndarray) -> _OrderKeys:
        """Hashes of ``order_id`` (or the timestamp) alone: the customer is added once ids are encoded.

        The order ids are hashed one Arrow chunk at a time, so the hashing's temporary buffers stay small and
        are reused, instead of a copy of every id at once."""
        rows = np.flatnonzero(amount != 0)
        stamp = times.view("int64")
        order_id = arrow_column(tx["order_id"]) if "order_id" in tx else None
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
        return cls(rows, hashed, _repeated(hashed), stamp, order_id, amount > 0)

    def _stamp(self, rows: np.ndarray) -> np.ndarray:
        """The timestamp as part of the rows' keys: 0 where an order id is."""
        if self.order_id is None:
            return self.times[rows]
        return np.where(self.order_id.take(rows).is_valid().to_numpy(zero_copy_only=False), 0, self.times[rows])

    def groups(self, tx: pd.DataFrame, cid: np.ndarray) -> np.ndarray:
        """Label the purchase rows that share an order with another purchase row, and the refund rows that
        share one with another refund row; -1 for every other row, which is an order of its own.

        Rows whose hash repeats are grouped by it, and the groups are checked against the actual keys
        (``cid``: the rows' customer positions), falling back to grouping by the keys themselves if two
        keys ever share a hash.
        """
        groups = np.full(len(tx), -1, dtype=_ints(len(tx)))
        candidates = self.rows[self.repeated]
        if len(candidates) == 0:
            return groups
        hashed = _hashes({"customer": cid[candidates], "order": self.hashed[self.repeated],
                          "buys": self.buys[candidates].astype(np.int64)})
        repeated = _repeated(hashed)
        candidates, hashed = candidates[repeated], hashed[repeated]
        if len(candidates) == 0:
            return groups
        labels = pd.factorize(hashed)[0]
        rep = candidates[_first_rows(labels)][labels]  # each candidate's group's first row
        same = ((cid[candidates] == cid[rep]) & (self._stamp(candidates) == self._stamp(rep))
                & (self.buys[candidates] == self.buys[rep]))
        if self.order_id is not None:
            mine, theirs = self.order_id.take(candidates), self.order_id.take(rep)
            same &= pc.fill_null(pc.equal(mine, theirs), True).to_numpy(zero_copy_only=False)
            same &= pc.equal(mine.is_null(), theirs.is_null()).to_numpy(zero_copy_only=False)
        if not same.all():  # two keys share a hash: group the candidates by their actual keys
            part = tx.iloc[candidates]
            order_key = part["timestamp"].astype("object")
            if "order_id" in part:
                order_key = part["order_id"].astype("object").where(part["order_id"].notna(), order_key)
            labels = pd.DataFrame({"c": cid[candidates], "b": self.buys[candidates], "k": order_key.to_numpy()}
                                  ).groupby(["c", "b", "k"], sort=False).ngroup()
            labels = labels.to_numpy()
        shared = np.bincount(labels)[labels] > 1
        groups[candidates[shared]] = labels[shared]
        return groups


def purchase_orders(tx: pd.DataFrame) -> pd.DataFrame:
    """The purchase orders of a transactions table as the features count them, one row per order (the purchase
    rows of one customer sharing an order key): ``customer_id``, ``day`` of the order's oldest line (days
    since 1970-01-01, int64) and ``value`` (its lines added). Only rows with ``amount > 0`` take part."""
    tx = tx.loc[tx["amount"].to_numpy() > 0, [c for c in ("customer_id", "timestamp", "amount", "order_id") if c in tx]]
    times = tx["timestamp"].to_numpy()
    amount = tx["amount"].to_numpy(dtype="float64")
    codes, ids = pd.factorize(tx["customer_id"])
    groups = _OrderKeys.of(tx, times, amount).groups(tx, codes)
    codes, age, value = k.order_values(codes, -_day_numbers(times).astype("float64"), amount, groups)
    return pd.DataFrame({"customer_id": ids.take(codes), "day": (-age).astype(np.int64), "value": value})


def _repeated(key: np.ndarray) -> np.ndarray:
    """True where a key occurs more than once. The keys sorted (numpy sorts the values themselves several times
    faster than it finds their order): equal neighbours are the repeated values; when they are few (every row
    its own order, as in the demo's tables) each key is looked up among them (Arrow's hash table), else the keys'
    order is found, equal neighbours in it marked and the marks put back in row order. The 4.37M order keys of
    a partition of the 1M world, none repeated: 25 ms looked up against 189 ms by the order; with 5% of them
    copied over others, 103 against 191 ms; with 30%, 283 against 185 ms (so there the order is taken, after the
    sort: about 25 ms more than the order alone)."""
    ordered = np.sort(key)
    same = ordered[1:] == ordered[:-1]
    values = ordered[1:][same]  # each repeated value, once or more
    if len(values) <= len(key) // _FEW_REPEATED:
        if not len(values):
            return np.zeros(len(key), dtype=bool)
        return pc.is_in(pa.array(key), value_set=pa.array(values)).to_numpy(zero_copy_only=False)
    del ordered, same, values
    order = np.argsort(key)
    ordered = key[order]
    same = ordered[1:] == ordered[:-1]
    marks = np.zeros(len(key), dtype=bool)
    marks[1:] = same
    marks[:-1] |= same
    repeated = np.empty(len(key), dtype=bool)
    repeated[order] = marks
    return repeated


_FEW_REPEATED = 16  # up to 1/16 of the keys repeated values: looked up among them (see _repeated)


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


_BLOCK = 1 << 16  # customers per block of the purchase aggregation
_FEW_BLOCKS = 64  # up to this many blocks (4M ids), rows are split by a pass per block, not by a sort


def _block_rows(tx_id: np.ndarray, n_ids: int) -> list[np.ndarray]:
    """The transaction rows of each block of ``_BLOCK`` consecutive ids, each in row order (one stable sort),
    as :func:`_ints`."""
    n_blocks = max(-(-n_ids // _BLOCK), 1)
    key = np.uint8 if n_blocks <= 256 else np.uint16 if n_blocks <= 65536 else np.int64
    block = (tx_id >> _BLOCK.bit_length() - 1).astype(key)
    if n_blocks <= _FEW_BLOCKS:  # a pass over the 8-bit keys per block costs less than sorting them
        return [np.flatnonzero(block == b).astype(_ints(len(tx_id))) for b in range(n_blocks)]
    order = np.argsort(block, kind="stable").astype(_ints(len(tx_id)))  # a radix sort for 8- and 16-bit keys
    return np.split(order, np.searchsorted(block[order], np.arange(1, n_blocks)))


def _block_features(enc: _Encoded, b: int, where: np.ndarray, kept: np.ndarray, day: int, cfg: FeatureConfig,
                    count_lifespan: bool) -> tuple[dict, np.ndarray, float | None]:
    """Purchase features of the population's customers among ids block ``b``; when asked, also their
    lifespan counts and the age of their oldest purchase (else zeros and None)."""
    known = where[b * _BLOCK : (b + 1) * _BLOCK]
    members = known[known >= 0]
    start = int(members[0]) if len(members) else 0  # population positions of a block are consecutive
    rows = enc.block_rows[b]
    rows = rows[kept[rows]]
    amount = enc.amount[rows]
    buy, refund = rows[amount > 0], rows[amount < 0]
    buy_pos = where[enc.tx_id[buy]] - start
    age = (day - enc.tx_day[buy]).astype("float64")
    orders = k.order_values(buy_pos, age, enc.amount[buy], enc.order_group[buy])
    refunds = (where[enc.tx_id[refund]] - start, -enc.amount[refund], enc.order_group[refund])
    f = k.purchase_features(len(members), orders, refunds, cfg)
    if not count_lifespan:
        return f, np.zeros(2, dtype=np.int64), None
    oldest = float(age.max()) if len(age) else None
    return f, k.lifespan_counts(buy_pos, age, len(members)), oldest


def lifespan_inputs(tx: pd.DataFrame, as_of: pd.Timestamp) -> tuple[np.ndarray, float | None]:
    """The lifespan counts (:func:`churnguard.features.kernel.lifespan_counts`) of the purchases on or before
    ``as_of`` and the age of the oldest one (None without purchases); counts of disjoint customers add up."""
    as_of = to_day(as_of)
    bought = ((tx["amount"] > 0) & (tx["timestamp"] < as_of + _DAY)).to_numpy()
    if not bought.any():
        return np.zeros(2, dtype=np.int64), None
    codes, uniques = pd.factorize(tx["customer_id"][bought])  # of the two columns used only (not the order ids)
    age = (_day_numbers(np.datetime64(as_of)) - _day_numbers(tx["timestamp"].to_numpy()[bought])).astype("float64")
    return k.lifespan_counts(codes, age, len(uniques)), float(age.max())


def estimate_lifespan_years(tx: pd.DataFrame, as_of: pd.Timestamp, cfg: FeatureConfig) -> float:
    """Average customer lifespan = 1 / annual churn rate, from purchases on or before ``as_of`` only
    (:func:`churnguard.features.kernel.lifespan_from_counts`)."""
    return k.lifespan_from_counts(*lifespan_inputs(tx, as_of), cfg)


def _support(enc: _Encoded, where: np.ndarray, as_of: pd.Timestamp, n: int, cfg: FeatureConfig) -> dict:
    """The kernel's support features from the tickets table."""
    cutoff = as_of + _DAY
    tickets = enc.tables.tickets
    opened_mask = (tickets["opened_at"] < cutoff).to_numpy()
    times = {c: tickets[c].to_numpy()[opened_mask] for c in ("opened_at", "first_response_at", "resolved_at")
             if c in tickets}
    if "csat" in tickets:
        times["csat"] = tickets["csat"].to_numpy(dtype="float64", na_value=np.nan)[opened_mask]
    pos = where[enc.tk_id[opened_mask]]
    age = (_day_numbers(np.datetime64(as_of)) - _day_numbers(times["opened_at"])).astype("float64")
    return k.support_features(n, pos, age, times, cutoff.to_datetime64(), cfg)


def _attribute_rows(enc: _Encoded, where: np.ndarray, n: int) -> pd.DataFrame:
    """Each known customer's row of the customers table (without the id; all missing where it has none)."""
    row = np.full(n, -1, dtype=np.intp)  # each customer's row in the customers table, -1: none
    listed = where[enc.cu_id]
    row[listed[listed >= 0]] = np.flatnonzero(listed >= 0)
    return enc.tables.customers.drop(columns="customer_id").reset_index(drop=True).reindex(row)


def _attributes(cust: pd.DataFrame, as_of: pd.Timestamp, kinds: dict | None, cfg: FeatureConfig
                ) -> tuple[dict, dict]:
    """The kernel's attribute features of the known customers' rows of the customers table (kinds decided on
    those rows when not given), and the kinds used."""
    if kinds is None:
        kinds = k.attribute_kinds(attribute_summaries(cust, cfg.max_categories))
    known = {}
    for name in ("loyalty_member", "loyalty_points", "nps"):
        if name in cust:
            known[name] = cust[name].to_numpy(dtype="float64", na_value=np.nan)
    if "signup_date" in cust:
        known["signup_date"] = cust["signup_date"].to_numpy()
    free = {col: cust[col].to_numpy(dtype=object) for col in kinds if col in cust}
    return k.attribute_features(known, free, kinds, _day_numbers(np.datetime64(as_of))), kinds


def _engagement(ev: _Events, where: np.ndarray, as_of: pd.Timestamp, recency: np.ndarray, cfg: FeatureConfig
                ) -> dict:
    """The kernel's engagement features from the events of the known customers on or before ``as_of``: per
    block of ``_EVENT_BLOCK`` ids (a customer's events all in one block), on two threads."""
    member = where[ev.ids]  # per customer code: its position in the population (-1: not known at as_of)
    member[ev.ids < 0] = -1  # codes of ids no event uses
    with ThreadPoolExecutor(2, thread_name_prefix="churnguard-engagement") as pool:
        parts = list(pool.map(lambda b: _block_engagement(ev, b, where, member, as_of, recency, cfg),
                              range(len(ev.bounds) - 1)))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _block_engagement(ev: _Events, b: int, where: np.ndarray, member: np.ndarray, as_of: pd.Timestamp,
                      recency: np.ndarray, cfg: FeatureConfig) -> dict:
    """The engagement features of the population's customers among ids block ``b`` (``member``: each customer
    code's position in the population)."""
    known = where[b * _EVENT_BLOCK : (b + 1) * _EVENT_BLOCK]
    members = known[known >= 0]
    start = int(members[0]) if len(members) else 0  # population positions of a block are consecutive
    rows = ev.order[ev.bounds[b] : ev.bounds[b + 1]].astype(np.intp)  # numpy indexes by intp: converted once
    pos, time = member[ev.customer[rows]], ev.time[rows]
    keep = (pos >= 0) & (time < (as_of + _DAY).value)
    if not keep.all():
        rows, pos, time = rows[keep], pos[keep], time[keep]
    age = (_day_numbers(np.datetime64(as_of)) - _day_numbers(time.view("datetime64[ns]"))).astype("float64")
    arrays = EventArrays(pos - start, age, time, _take(ev.kind, rows), ev.duration[rows],
                         _take(ev.channel, rows), ev.session[rows])
    return engagement_features(len(members), arrays, recency[start : start + len(members)], cfg)


def attribute_summaries(customers: pd.DataFrame, max_categories: int) -> dict:
    """:func:`churnguard.features.kernel.attribute_summary` of each free attribute column of ``customers``."""
    return {c: k.attribute_summary(customers[c].to_numpy(dtype=object), max_categories)
            for c in sorted(set(customers.columns) - k.KNOWN_ATTRIBUTES)}


def _labels(which: np.ndarray, labels: tuple[str, str]) -> pd.api.extensions.ExtensionArray:
    """``labels[1]`` where ``which`` else ``labels[0]``, as a text column (built by Arrow from the two labels
    instead of a million Python strings)."""
    codes = pa.array(which.astype(np.int8))
    text = pa.DictionaryArray.from_arrays(codes, pa.array(list(labels))).cast(pa.large_string())
    return pd.array(text, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


@dataclass(frozen=True)
class Partial:
    """The features of the customers known at ``as_of`` that need nothing learned from the whole population:
    the purchase, support and engagement families (``churnguard.features.kernel``), each customer's row of the
    customers table for the attribute features, and the lifespan counts and oldest purchase age when asked for.
    :func:`finish_features` adds the rest. A partitioned build keeps a partition's ``Partial`` instead of its
    tables until the population's state is known."""

    as_of: pd.Timestamp
    customers: pd.Index  # sorted
    purchase: dict[str, np.ndarray]
    support: dict[str, np.ndarray] | None
    engagement: dict[str, np.ndarray] | None
    customer_rows: pd.DataFrame | None  # None without a customers table
    lifespan: tuple[np.ndarray, float | None] | None = None


def build_features(tables: Tables, as_of: str | pd.Timestamp, config: FeatureConfig,
                   population: Population | None = None) -> pd.DataFrame:
    """One row per customer known at ``as_of``, computed only from events on or before that day.

    Args:
        tables: validated input tables (``churnguard.dataset``).
        as_of: the cut-off day.
        config: feature windows and thresholds.
        population: what training learned about the population (lifespan, VIP cut-off, attribute kinds,
            BG/NBD parameters), as scoring passes it; without it they are estimated from ``tables`` (training)
            and no BG/NBD columns are added.

    Returns:
        A frame with ``customer_id``, ``as_of`` and the feature columns (``churnguard.features.kernel``), sorted
        by ``customer_id``; ``attrs['population']`` holds the population state used (``Population.to_dict``).
    """
    return _build(_encode(tables), to_day(as_of), config, population)


def frame_columns(f: dict[str, np.ndarray], kinds: dict | None) -> dict:
    """Kernel columns as frame columns: categorical codes as pandas categoricals with their levels."""
    levels = k.categorical_levels(kinds or {})
    return {name: pd.Categorical.from_codes(values, categories=list(levels[name]), ordered=name == "nps_group")
            if name in levels else values for name, values in f.items()}


def partial_features(tables: Tables, as_of: str | pd.Timestamp, config: FeatureConfig, *,
                     count_lifespan: bool = False) -> Partial:
    """The :class:`Partial` features of ``tables`` as of ``as_of`` (with the lifespan counts when asked);
    ``finish_features(partial_features(t, d, c), c, p)`` is ``build_features(t, d, c, p)``."""
    return _partial(_encode(tables), to_day(as_of), config, count_lifespan)


def _build(enc: _Encoded, as_of: pd.Timestamp, config: FeatureConfig, population: Population | None = None
           ) -> pd.DataFrame:
    """:func:`build_features` on encoded tables (``as_of`` already a day)."""
    return finish_features(_partial(enc, as_of, config, population is None), config, population)


def _partial(enc: _Encoded, as_of: pd.Timestamp, config: FeatureConfig, count_lifespan: bool) -> Partial:
    """:func:`partial_features` on encoded tables (``as_of`` already a day)."""
    kept = enc.tx_time < np.datetime64(as_of + _DAY)
    customers, where = _population(enc, as_of, kept)
    # Purchases are aggregated per block of customers (all of a customer's rows in one block, in row order):
    # a block's arrays are small enough for the allocator to reuse and its per-customer totals stay in cache.
    # Blocks, and tickets and attributes, run on two threads; numpy releases the GIL in its array loops.
    day = _day_numbers(np.datetime64(as_of))
    tables = enc.tables
    with ThreadPoolExecutor(2, thread_name_prefix="churnguard-features") as pool:
        support = (pool.submit(_support, enc, where, as_of, len(customers), config)
                   if tables.tickets is not None else None)
        parts = list(pool.map(lambda b: _block_features(enc, b, where, kept, day, config, count_lifespan),
                              range(len(enc.block_rows))))
        support = None if support is None else support.result()
    purchase = {name: np.concatenate([p[0][name] for p in parts]) for name in parts[0][0]}
    lifespan = None
    if count_lifespan:
        oldest = [p[2] for p in parts if p[2] is not None]
        lifespan = (sum(p[1] for p in parts), max(oldest) if oldest else None)
    del parts
    engagement = None if enc.events is None else _engagement(enc.events, where, as_of, purchase["recency_days"],
                                                             config)
    rows = None if tables.customers is None else _attribute_rows(enc, where, len(customers))
    return Partial(as_of, customers, purchase, support, engagement, rows, lifespan)


def finish_features(partial: Partial, config: FeatureConfig, population: Population | None = None
                    ) -> pd.DataFrame:
    """The features frame of :func:`build_features` from its :class:`Partial` features: the attribute
    features and the families that need the population's state (``churnguard.features.kernel.combine``), with
    ``population`` (without it, the state of these customers: the partial must then hold the lifespan counts)."""
    as_of = partial.as_of
    kinds = None if population is None or population.attributes is None else dict(population.attributes)
    attrs = None
    if partial.customer_rows is not None:
        attrs, kinds = _attributes(partial.customer_rows, as_of, kinds, config)
    lifespan = None
    if population is None:
        lifespan = k.lifespan_from_counts(*partial.lifespan, config)
    cols = k.combine(partial.purchase, partial.support, attrs, population=population, month=as_of.month,
                     cfg=config, lifespan_years=lifespan, engagement=partial.engagement)
    if population is None:
        state = Population(lifespan, k.vip_threshold(cols["cltv"], config.vip_quantile), attributes=kinds)
    else:
        state = replace(population, attributes=kinds)
    customers = partial.customers
    data = {"customer_id": customers.array, "as_of": np.full(len(customers), as_of.to_datetime64())}
    data |= frame_columns(cols, kinds)
    data["value_tier"] = _labels(cols["value_tier"], k.VALUE_TIERS)
    features = pd.DataFrame(data, copy=False)  # the columns are this call's own arrays
    features.attrs["population"] = state.to_dict()  # plain values: parquet keeps attrs as JSON
    features.attrs["lifespan_years"] = state.lifespan_years
    return features
