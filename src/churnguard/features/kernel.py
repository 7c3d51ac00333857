"""The feature kernel: every feature's one definition, as functions of numpy arrays for ``n`` customers.

Customers are the positions ``0 .. n - 1``; events are arrays with one entry per row, each row carrying its
customer's position, in row order. The same functions serve one customer over HTTP (``n = 1``), a block of
65,536 customers in a batch build and a Dask partition: the engines only bring the rows in and take the
columns out (``churnguard.features.build`` for tables, ``churnguard.features.records`` for plain records).

Time is counted in whole calendar days: ``age`` is ``as_of``'s day number minus the event's, so an event on the
cut-off day has age 0. Every function here receives only events on or before ``as_of`` (ages >= 0, tickets
opened before the end of that day), and ticket facts that became known later (a reply, a resolution, a CSAT
answer) are masked out with the instant cut-off ``end`` (the end of the ``as_of`` day).

The engagement family (the events table) is in ``churnguard.features.engagement``; :func:`combine` joins it.

What training learns about the whole population (lifespan, VIP cut-off, attribute kinds, BG/NBD parameters)
comes in as :class:`churnguard.population.Population`, never re-derived here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard import btyd

if TYPE_CHECKING:
    from churnguard.config import FeatureConfig
    from churnguard.population import Population

__all__ = [
    "KNOWN_ATTRIBUTES",
    "NPS_GROUPS",
    "as_numbers",
    "attribute_features",
    "attribute_kinds",
    "attribute_summary",
    "bgnbd_features",
    "categorical_levels",
    "category_codes",
    "cltv",
    "combine",
    "day_numbers",
    "distinct",
    "is_vip",
    "lifespan_counts",
    "lifespan_from_counts",
    "merge_summaries",
    "order_values",
    "purchase_features",
    "run_starts",
    "support_features",
    "tenure_days",
    "value_tiers",
    "vip_threshold",
]

logger = logging.getLogger(__name__)

NPS_GROUPS = ("detractor", "passive", "promoter")
NPS_UPPER = (6.5, 8.5, 10.5)  # bins (-0.5, 6.5], (6.5, 8.5], (8.5, 10.5]
KNOWN_ATTRIBUTES = frozenset({"customer_id", "signup_date", "loyalty_member", "loyalty_points", "nps"})
WEEK_DAYS = 7.0  # BG/NBD runs in weeks
_HOUR = np.timedelta64(1, "h")
_FEW = 64  # up to this many values, attributes are converted one by one instead of through pandas
# the common datetime64 units finer than a day -> ticks per day (day_numbers' divisor, worked out once)
_PER_DAY = {np.dtype(f"datetime64[{unit}]"): np.timedelta64(1, "D").astype(f"timedelta64[{unit}]").astype(np.int64)
            for unit in ("s", "ms", "us", "ns")}
_FEW_VALUES = 256  # up to this many values, _runs steps through each run on plain floats
_OLDEST = np.iinfo(np.int64).min  # before every timestamp (as int64)
_LARGEST = np.finfo(np.float64).max



# -- arithmetic shared by the families ------------------------------------------------------------------------


def day_numbers(times: np.ndarray) -> np.ndarray:
    """Calendar day of each timestamp (days since 1970-01-01, rounded down like ``Series.dt.normalize``)."""
    times = np.asarray(times)
    per_day = _PER_DAY.get(times.dtype) if times.ndim else None
    if per_day is None:
        unit, _ = np.datetime_data(times.dtype)
        if times.ndim == 0 or unit in ("D", "W", "M", "Y", "generic"):
            return times.astype("datetime64[D]").astype("int64")
        per_day = np.timedelta64(1, "D").astype(f"timedelta64[{unit}]").astype(np.int64)
    return times.view("int64") // per_day  # floor division: rounds down before 1970 too


def _nans(shape) -> np.ndarray:
    """A float64 array of NaN (``np.full`` without its Python-level set-up, which costs more than filling a
    few customers' entries)."""
    out = np.empty(shape)
    out.fill(np.nan)
    return out


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 (an undefined ratio is unknown, not infinite)."""
    num, den = np.asarray(num, dtype="float64"), np.asarray(den, dtype="float64")
    out = _nans(num.shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values of a numeric array, sorted, by one sort: what ``np.unique`` gives, whose plain form
    (no ``return_*`` option) takes a hash set since numpy 2.3, far slower on many distinct values (12M int64
    with 10M distinct: 10.7 s against 0.1 s of CPU, numpy 2.4)."""
    ordered = np.sort(np.ravel(values))
    return ordered[run_starts(ordered)]


def run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Positions where a run of equal values starts in a sorted array."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.intp)
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return change.nonzero()[0]


class Groups:
    """Per-customer aggregation over integer positions ``0 .. n - 1``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def sum(self, pos: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Count (or sum of ``values``, added in row order) per customer."""
        return np.bincount(pos, weights=values, minlength=self.n).astype("float64", copy=False)

    def windows(self, pos: np.ndarray, age: np.ndarray, windows: tuple[int, ...],
                values: np.ndarray | None = None, *, counts: bool = False) -> np.ndarray:
        """Per window ``w`` (the rows with ``age < w``), what :meth:`sum` gives for those rows: windows x
        customers, in one count (with ``counts``, the counts and the sums of ``values`` alike, the rows found
        once)."""
        window, row = (age < np.array(windows, dtype="float64")[:, None]).nonzero()  # window-major, rows in order
        return self._binned(window * self.n + pos.take(row), len(windows), values, row, counts)

    def spans(self, pos: np.ndarray, age: np.ndarray, edges: tuple[int, ...], values: np.ndarray | None = None, *,
              counts: bool = False) -> np.ndarray:
        """Per span between ages (``age < edges[0]``, ``edges[0] <= age < edges[1]``, ...), what :meth:`sum`
        gives for its rows: spans x customers, in one count (``counts`` as in :meth:`windows`)."""
        span = np.searchsorted(np.array(edges, dtype="float64"), age, side="right")  # len(edges): beyond the last
        return self._binned(span * self.n + pos, len(edges) + 1, values, None, counts)[..., : len(edges), :]

    def _binned(self, at: np.ndarray, bins: int, values: np.ndarray | None, row: np.ndarray | None, counts: bool
                ) -> np.ndarray:
        """bins x customers of the rows at ``at`` (``bin * n + position``; ``row``: which of ``values`` each
        is, None for all in order): the counts, the sums of ``values`` (added in row order), or with ``counts``
        both, stacked."""
        out = []
        if counts or values is None:
            out.append(np.bincount(at, minlength=bins * self.n))
        if values is not None:
            out.append(np.bincount(at, weights=values if row is None else values.take(row), minlength=bins * self.n))
        total = np.array(out, dtype="float64").reshape(len(out), bins, self.n)
        return total if len(out) > 1 else total[0]

    def extreme(self, pos: np.ndarray, values: np.ndarray, how: str) -> np.ndarray:
        """min / max of values per customer; NaN where a customer has none (values hold no NaN: ``fmin`` /
        ``fmax`` from NaN take the first value)."""
        out = _nans(self.n)
        (np.fmin if how == "min" else np.fmax).at(out, pos, np.asarray(values, dtype="float64"))
        return out

    def mean(self, pos: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Mean per customer, each customer's values added in row order with Kahan's compensation (the grouped
        mean pandas computes); NaN where a customer has none."""
        values = np.asarray(values, dtype="float64")
        if len(values) <= _FEW_VALUES:  # a few values: each customer's run on plain floats, as _runs steps it
            out = _nans(self.n)
            for p, (total, _, size) in _small_runs(pos, values, _kahan).items():
                out[p] = total / size
            return out
        order = np.argsort(pos, kind="stable")
        spos = pos[order]
        starts = run_starts(spos)
        sizes = np.diff(np.append(starts, len(spos)))
        total = _runs(values[order], starts, sizes, _kahan)[0]
        out = _nans(self.n)
        out[spos[starts]] = total / sizes
        return out


def _kahan(total, comp, val, k: int):
    """One step of Kahan's compensated sum (pandas' grouped mean), on floats or arrays alike."""
    y = val - comp
    t = total + y
    return t, t - total - y


def _welford(mean, m2, val, k: int):
    """The ``k``-th step (from 0) of Welford's mean and sum of squared deviations, on floats or arrays alike."""
    new = mean + (val - mean) / (k + 1)
    return new, m2 + (val - new) * (val - mean)


def _small_runs(pos: np.ndarray, values: np.ndarray, step) -> dict[int, tuple[float, float, int]]:
    """``step`` (see :func:`_runs`) over each customer's values in row order, on plain floats: customer
    position -> the two state values and the number of values."""
    runs: dict[int, list[float]] = {}
    for p, val in zip(pos.tolist(), values.tolist(), strict=True):
        runs.setdefault(p, []).append(val)
    return {p: (*_stepped(vals, step), len(vals)) for p, vals in runs.items()}


def _stepped(vals: list[float], step, a: float = 0.0, b: float = 0.0, first: int = 0) -> tuple[float, float]:
    """``step`` over one run's values on plain floats, from the state ``(a, b)`` and the step number ``first``."""
    for j, val in enumerate(vals, start=first):
        a, b = step(a, b, val, j)
    return a, b


def _runs(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray, step) -> tuple[np.ndarray, np.ndarray]:
    """A sequential two-value update ``step`` over each run ``values[starts[i] : starts[i] + sizes[i]]`` in row
    order, vectorised across runs: the k-th update of every run longer than k in one step. Once a single run
    is left, its remaining steps run on plain floats (the same IEEE arithmetic without the cost of arrays), so
    one long history costs little; so do a few short ones (up to ``_FEW_VALUES`` values: every run on plain
    floats). Returns the two state arrays, one entry per run in the runs' order."""
    if len(values) <= _FEW_VALUES:
        state = [np.zeros(len(sizes)), np.zeros(len(sizes))]
        for i, (start, size) in enumerate(zip(starts.tolist(), sizes.tolist(), strict=True)):
            state[0][i], state[1][i] = _stepped(values[start : start + size].tolist(), step)
        return state[0], state[1]
    order = np.argsort(-sizes, kind="stable")
    first, n = starts[order], sizes[order]
    state = [np.zeros(len(n)), np.zeros(len(n))]
    active = np.searchsorted(-n, -np.arange(int(n[0]) if len(n) else 0), side="left")  # runs longer than k
    for k, m in enumerate(active.tolist()):
        if m == 1:
            state[0][0], state[1][0] = _stepped(values[first[0] + k : first[0] + n[0]].tolist(), step,
                                                float(state[0][0]), float(state[1][0]), k)
            break
        new = step(state[0][:m], state[1][:m], values[first[:m] + k], k)
        state[0][:m], state[1][:m] = new
    result = [np.empty(len(n)), np.empty(len(n))]
    for r, s in zip(result, state, strict=True):
        r[order] = s
    return result[0], result[1]


def run_std(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sample standard deviation of each run (sizes > 0; NaN for runs of one) by Welford's update in row order,
    then ``sqrt(M2 / (n - 1))`` (the grouped algorithm pandas uses)."""
    m2 = _runs(values, starts, sizes, _welford)[1]
    out = _nans(len(sizes))
    several = sizes > 1
    out[several] = np.sqrt(m2[several] / (sizes[several] - 1).astype("float64"))
    return out


# -- purchases --------------------------------------------------------------------------------------------------


def order_values(pos: np.ndarray, age: np.ndarray, amount: np.ndarray, group: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry per order from purchase rows in row order (customer position, age in days, amount, and the
    order label shared by the rows of one multi-row order, -1 for a row that is an order of its own): customer
    position, age of its oldest line and value (its lines added in row order), in the order of each order's
    first row."""
    multi = group >= 0
    if not multi.any():
        return pos, age, amount
    _, first_at, codes = np.unique(group[multi], return_index=True, return_inverse=True)
    # codes numbered by first occurrence, so an order's value adds its lines in row order
    rank = np.empty(len(first_at), dtype=np.intp)
    rank[np.argsort(first_at, kind="stable")] = np.arange(len(first_at))
    codes = rank[codes]
    at = multi.nonzero()[0]
    first = at[np.sort(first_at)]
    keep = ~multi
    keep[first] = True
    age, value = age.copy(), amount.copy()
    oldest = np.full(len(first), -np.inf)
    np.maximum.at(oldest, codes, age[multi])
    age[first] = oldest
    value[first] = np.bincount(codes, weights=amount[multi])
    return pos[keep], age[keep], value[keep]


def _first_of_groups(group: np.ndarray) -> np.ndarray:
    """True for each row that is an order of its own (label -1) and for the first row of each labelled group."""
    first = group < 0
    if not first.all():
        labelled = (~first).nonzero()[0]
        first[labelled[np.unique(group[labelled], return_index=True)[1]]] = True
    return first


def _window_features(g: Groups, orders: tuple[np.ndarray, np.ndarray, np.ndarray], cfg: FeatureConfig
                     ) -> dict[str, np.ndarray]:
    """Orders and spend in each trailing window, and their trend (the last ``trend_window_days`` over the
    same span before)."""
    pos, age, value = orders
    f = {}
    counts, spend = g.windows(pos, age, cfg.windows_days, value, counts=True)
    for k, w in enumerate(cfg.windows_days):
        f[f"orders_{w}d"], f[f"spend_{w}d"] = counts[k], spend[k]
    tw = cfg.trend_window_days
    counts, spend = g.spans(pos, age, (tw, 2 * tw), value, counts=True)  # the last tw days, the tw before
    f["trend_orders"] = ratio(counts[0], counts[1])
    f["trend_spend"] = ratio(spend[0], spend[1])
    return f


def purchase_features(n: int, orders: tuple[np.ndarray, np.ndarray, np.ndarray],
                      refunds: tuple[np.ndarray, np.ndarray, np.ndarray], cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """Recency / frequency / monetary value, windows, trend, rhythm and the BG/NBD inputs of ``n`` customers.

    Args:
        n: customers.
        orders: :func:`order_values` of their purchases (customer position, age in days, value).
        refunds: their refund rows (customer position, refunded amount as a positive number, order label as
            :func:`order_values` takes it); ``refund_count`` counts refunded orders, not rows.
        cfg: windows and the trend window.
    """
    g = Groups(n)
    pos, age, value = orders
    # Distinct purchase days per customer, sorted by (customer, age): one integer key sorts both.
    shift = int(age.max()).bit_length() if len(age) else 1
    days = np.sort((pos.astype(np.int64) << shift) | age.astype(np.int64))
    days = days[run_starts(days)]
    dpos, iage = days >> shift, days & ((1 << shift) - 1)
    dage = iage.astype("float64")
    starts = run_starts(dpos)
    ends = np.empty_like(starts)  # each customer's last (oldest) purchase day
    ends[:-1], ends[-1:] = starts[1:] - 1, len(dpos) - 1
    last, first = _nans(n), _nans(n)
    last[dpos[starts]] = dage[starts]  # the newest purchase day's age
    first[dpos[starts]] = dage[ends]  # the oldest one's
    f: dict[str, np.ndarray] = {"recency_days": last, "n_orders": g.sum(pos), "gross_spend": g.sum(pos, value)}
    f["mean_order_value"] = ratio(f["gross_spend"], f["n_orders"])
    f["max_order_value"] = g.extreme(pos, value, "max")
    rpos, ramount, rgroup = refunds
    f["refund_count"] = g.sum(rpos[_first_of_groups(rgroup)])
    refunded = g.sum(rpos, ramount)
    f["refund_share"] = ratio(refunded, f["gross_spend"])
    f["net_spend"] = f["gross_spend"] - refunded
    f.update(_window_features(g, orders, cfg))
    # Gaps between distinct purchase days: a customer's gaps are the differences within their run of days.
    n_days = ends - starts + 1
    f["n_purchase_days"] = np.zeros(n)
    f["n_purchase_days"][dpos[starts]] = n_days
    within = np.ones(max(len(iage) - 1, 0), dtype=bool)
    within[starts[1:] - 1] = False
    gap = (dage[1:] - dage[:-1])[within]
    gap_starts, n_gaps = starts - np.arange(len(starts)), n_days - 1
    many = n_gaps > 0
    gap_sum = np.add.reduceat(gap, gap_starts[many]) if len(gap) else np.zeros(0)  # whole days: exact
    f["gap_mean_days"] = _nans(n)
    f["gap_mean_days"][dpos[starts[many]]] = gap_sum / n_gaps[many]
    f["gap_std_days"] = _nans(n)
    f["gap_std_days"][dpos[starts[many]]] = run_std(gap, gap_starts[many], n_gaps[many])
    f["overdue_ratio"] = ratio(last, f["gap_mean_days"])
    # BG/NBD inputs (days): repeat purchase days, first-to-last span, first purchase to as_of.
    f["bg_frequency"] = np.where(np.isnan(first), np.nan, f["n_purchase_days"] - 1)
    f["bg_recency_days"] = first - last
    f["bg_age_days"] = first
    return f


def lifespan_counts(pos: np.ndarray, age: np.ndarray, n: int) -> np.ndarray:
    """Customers (positions < n) who bought in the year before last, and those of them who also bought in the
    last year, from purchase rows' positions and ages in days. Counts of disjoint customer sets add up."""
    last_year = np.bincount(pos[age < 365], minlength=n) > 0
    year_before = np.bincount(pos[(age >= 365) & (age < 730)], minlength=n) > 0
    return np.array([year_before.sum(), (year_before & last_year).sum()], dtype=np.int64)


def lifespan_from_counts(counts: np.ndarray, oldest_age: float | None, cfg: FeatureConfig) -> float:
    """Average customer lifespan = 1 / annual churn rate, where the annual churn rate is the share of customers
    who bought in the year before last (ages 365-729 days) and not in the last year; clipped to
    ``max_lifespan_years``, and ``default_lifespan_years`` without two years of history (``oldest_age``: the
    age in days of the oldest purchase, None without purchases)."""
    if oldest_age is None or oldest_age < 730:
        return cfg.default_lifespan_years
    n_before, n_both = (int(c) for c in counts)
    if n_before == 0:
        return cfg.default_lifespan_years
    churn = 1.0 - float(np.float64(n_both) / np.float64(n_before))
    return float(min(1 / churn, cfg.max_lifespan_years)) if churn > 0 else cfg.max_lifespan_years


# -- support tickets -----------------------------------------------------------------------------------------


def _latest(g: Groups, pos: np.ndarray, opened: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Value of the most recently opened ticket per customer among ``mask``; ties go to the larger value so
    the result never depends on row order."""
    pos, opened, values = pos[mask], opened[mask].view("int64"), values[mask]
    newest = np.full(g.n, _OLDEST)
    np.maximum.at(newest, pos, opened)
    at_newest = opened == newest[pos]
    return g.extreme(pos[at_newest], values[at_newest], "max")


def support_features(n: int, pos: np.ndarray, age: np.ndarray, times: Mapping[str, np.ndarray], end: np.datetime64,
                     cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """Ticket counts, open tickets, response and resolution hours, SLA share, CSAT and recency of support.

    Args:
        n: customers.
        pos, age: each ticket's customer position and age in days (tickets opened on or before ``as_of``).
        times: ``opened_at`` (datetime64) and, when the table has them, ``first_response_at``, ``resolved_at``
            (datetime64, NaT when missing) and ``csat`` (float, NaN when missing).
        end: the instant cut-off, the end of the ``as_of`` day: later replies, resolutions and answers are
            not known yet.
        cfg: ticket windows and the SLA.
    """
    g = Groups(n)
    f: dict[str, np.ndarray] = {}
    counts = g.windows(pos, age, cfg.ticket_windows_days)
    for k, w in enumerate(cfg.ticket_windows_days):
        f[f"tickets_{w}d"] = counts[k]
    f["tickets_total"] = g.sum(pos)
    f["days_since_last_ticket"] = g.extreme(pos, age, "min")
    opened = times["opened_at"]
    resolved = times["resolved_at"] < end if "resolved_at" in times else np.zeros(len(pos), dtype=bool)
    f["open_tickets"] = g.sum(pos[~resolved])
    if "first_response_at" in times:
        answered = times["first_response_at"] < end
        hours = (times["first_response_at"] - opened) / _HOUR
        waiting = (end - opened) / _HOUR
        f["first_response_hours_mean"] = g.mean(pos[answered], hours[answered])
        f["first_response_hours_max"] = g.extreme(pos[answered], hours[answered], "max")
        f["first_response_hours_latest"] = _latest(g, pos, opened, hours, answered)
        slow = np.where(answered, hours > cfg.sla_hours, waiting > cfg.sla_hours)
        f["slow_response_share"] = ratio(g.sum(pos[slow]), f["tickets_total"])
    if "resolved_at" in times:
        hours = (times["resolved_at"] - opened) / _HOUR
        f["resolution_hours_mean"] = g.mean(pos[resolved], hours[resolved])
        f["resolution_hours_max"] = g.extreme(pos[resolved], hours[resolved], "max")
        f["resolution_hours_latest"] = _latest(g, pos, opened, hours, resolved)
    if "csat" in times:
        # A survey answer is known once the ticket is resolved (or, without resolution times, once opened).
        csat = times["csat"]
        known = (resolved if "resolved_at" in times else np.ones(len(pos), bool)) & ~np.isnan(csat)
        f["csat_mean"] = g.mean(pos[known], csat[known])
        f["csat_min"] = g.extreme(pos[known], csat[known], "min")
        f["csat_latest"] = _latest(g, pos, opened, csat, known)
    return f


# -- customer attributes -----------------------------------------------------------------------------------------


def as_numbers(values: np.ndarray) -> np.ndarray:
    """Each value as a float: numbers as they are, text parsed as ``pandas.to_numeric`` parses it, NaN when
    missing or not a number."""
    values = np.asarray(values, dtype=object)
    if len(values) <= _FEW and not any(isinstance(v, str) for v in values):  # numbers already: no parsing
        return np.array([np.nan if v is None else v for v in values], dtype="float64")
    parsed = pd.to_numeric(pd.Series(values), errors="coerce")
    return parsed.to_numpy(dtype="float64", na_value=np.nan)


def _label(value: object) -> str | None:
    text = None if pd.isna(value) else str(value).strip()
    return text or None


def category_codes(values: np.ndarray, levels: tuple[str, ...]) -> np.ndarray:
    """Position of each value in ``levels``, compared as text without surrounding blanks; -1 when missing,
    blank or not a level. Each distinct value is looked up once."""
    index = {level: i for i, level in enumerate(levels)}
    if len(values) <= _FEW:
        return np.array([index.get(_label(v), -1) for v in values], dtype=np.int32)
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    mapped = np.array([index.get(_label(u), -1) for u in uniques] + [-1], dtype=np.int32)
    return mapped[codes]


def attribute_summary(values: np.ndarray, max_categories: int) -> tuple[bool, frozenset[str] | None]:
    """What decides a free attribute's kind, from its values: whether every present value parses as a number,
    and its distinct labels (None when more than ``max_categories``). Summaries of parts of a column merge with
    :func:`merge_summaries`."""
    values = np.asarray(values, dtype=object)
    distinct = pd.unique(values[~pd.isna(values)])  # each distinct value is looked at once
    numeric = not np.isnan(as_numbers(distinct)).any()
    labels: set[str] = set()
    for label in map(_label, distinct):
        if label is not None:
            labels.add(label)
            if len(labels) > max_categories:
                return numeric, None
    return numeric, frozenset(labels)


def merge_summaries(a: tuple[bool, frozenset[str] | None], b: tuple[bool, frozenset[str] | None],
                    max_categories: int) -> tuple[bool, frozenset[str] | None]:
    """The :func:`attribute_summary` of two parts of a column together."""
    labels = None if a[1] is None or b[1] is None else a[1] | b[1]
    return a[0] and b[0], labels if labels is not None and len(labels) <= max_categories else None


def attribute_kinds(summaries: Mapping[str, tuple[bool, frozenset[str] | None]]) -> dict[str, tuple[str, ...] | None]:
    """How each free customer attribute becomes a feature: a number (None) when every present value parses as
    one, else a category with its sorted levels when there are at most ``max_categories``; columns with more
    levels are left out (logged).

    Args:
        summaries: column -> :func:`attribute_summary` of its values over the population.
    """
    kinds: dict[str, tuple[str, ...] | None] = {}
    for col in sorted(summaries):
        numeric, labels = summaries[col]
        if numeric:
            kinds[col] = None
        elif labels is not None:
            kinds[col] = tuple(sorted(labels))
        else:
            logger.info("customers column %r has too many levels to be a categorical feature: not used", col)
    return kinds


def categorical_levels(kinds: Mapping[str, tuple[str, ...] | None]) -> dict[str, tuple[str, ...]]:
    """Feature name -> levels of every categorical feature the attributes give: ``nps_group`` and the
    categorical ``attr_<name>`` columns. Categorical features are arrays of codes into these levels."""
    return {"nps_group": NPS_GROUPS, **{f"attr_{c}": levels for c, levels in kinds.items() if levels is not None}}


def attribute_features(known: Mapping[str, np.ndarray], free: Mapping[str, np.ndarray],
                       kinds: Mapping[str, tuple[str, ...] | None], as_of_day: int) -> dict[str, np.ndarray]:
    """Loyalty, NPS and its group, days since signup (unknown for a signup after ``as_of``), and the free
    attributes as ``attr_<name>``.

    Args:
        known: per customer, the contract's attribute columns present: ``loyalty_member`` (1.0 / 0.0 / NaN),
            ``loyalty_points`` and ``nps`` (float, NaN when unknown), ``signup_date`` (datetime64, NaT).
        free: per customer, other columns as given (text or numbers, missing as None / NaN).
        kinds: :func:`attribute_kinds` (from training at scoring time); a column not listed is left out.
        as_of_day: the day number of ``as_of``.

    Returns:
        Feature columns: floats, and for the categorical ones (``nps_group`` and categorical attributes)
        int32 codes into :func:`categorical_levels`, -1 when unknown.
    """
    out: dict[str, np.ndarray] = {}
    for name in ("loyalty_member", "loyalty_points"):
        if name in known:
            out[name] = np.asarray(known[name], dtype="float64")
    if "nps" in known:
        nps = np.asarray(known["nps"], dtype="float64")
        out["nps"] = nps
        valid = (nps > -0.5) & (nps <= NPS_UPPER[-1])  # pd.cut's bins, closed on the right
        out["nps_group"] = np.where(valid, np.searchsorted(np.array(NPS_UPPER), nps, side="left"), -1).astype(np.int32)
    if "signup_date" in known:
        signup = known["signup_date"]
        days = as_of_day - day_numbers(signup)
        # A signup after as_of is not known at as_of (a customer who bought as a guest and signed up later).
        out["days_since_signup"] = np.where(np.isnat(signup) | (days < 0), np.nan, days).astype("float64")
    for col, kind in kinds.items():
        if col in free:
            out[f"attr_{col}"] = as_numbers(free[col]) if kind is None else category_codes(free[col], kind)
    return out


# -- value and BG/NBD ----------------------------------------------------------------------------------------


def vip_threshold(cltv: np.ndarray, quantile: float) -> float:
    """The CLTV from which a customer counts as VIP: the ``quantile`` of the population's CLTV (linear
    interpolation), infinite for an empty population."""
    return float(np.percentile(cltv, quantile * 100)) if len(cltv) else float("inf")  # as pandas' quantile


def cltv(f: Mapping[str, np.ndarray], lifespan_years: float, cfg: FeatureConfig) -> np.ndarray:
    """CLTV = average order value x orders in the last year (the longest window when 365 days is not one) x
    average lifespan in years."""
    value_column, orders_column = cltv_inputs(cfg)
    orders = f[orders_column]
    value = np.where(np.isnan(f[value_column]), 0.0, f[value_column])
    return np.clip(value, -_LARGEST, _LARGEST, out=value) * orders * lifespan_years  # np.nan_to_num, fewer steps


def cltv_inputs(cfg: FeatureConfig) -> tuple[str, str]:
    """The purchase features :func:`cltv` reads: the average order value and the orders of the last year."""
    windows = cfg.windows_days
    return "mean_order_value", "orders_365d" if 365 in windows else f"orders_{max(windows)}d"


VALUE_TIERS = ("standard", "vip")  # value_tier's labels where is_vip is False, True


def is_vip(cltv: np.ndarray, threshold: float) -> np.ndarray:
    """``value_tier`` is ``vip`` where this holds (a positive CLTV at or above the cut-off), else ``standard``."""
    cltv = np.asarray(cltv, dtype="float64")
    return (cltv >= threshold) & (cltv > 0)


def value_tiers(cltv: np.ndarray, threshold: float) -> np.ndarray:
    """Each CLTV's ``value_tier`` label (:data:`VALUE_TIERS` by :func:`is_vip`), as Python strings."""
    return np.asarray(VALUE_TIERS, dtype=object)[is_vip(cltv, threshold).astype(np.intp)]


def bgnbd_features(f: Mapping[str, np.ndarray], params: btyd.BGNBDParams, horizon_days: int) -> dict[str, np.ndarray]:
    """``bg_expected_purchases`` over the horizon and ``bg_p_alive`` (NaN for customers with no purchase)."""
    has = ~np.isnan(np.asarray(f["bg_frequency"], dtype="float64"))
    x = np.asarray(f["bg_frequency"], dtype="float64")[has]
    tx = np.asarray(f["bg_recency_days"], dtype="float64")[has] / WEEK_DAYS
    t = np.asarray(f["bg_age_days"], dtype="float64")[has] / WEEK_DAYS
    expected = _nans(len(has))
    alive = _nans(len(has))
    if has.any():
        expected[has], alive[has] = btyd.expected_purchases_and_alive(params, horizon_days / WEEK_DAYS, x, tx, t,
                                                                      validate=False)
    return {"bg_expected_purchases": expected, "bg_p_alive": alive}


def tenure_days(f: Mapping[str, np.ndarray]) -> np.ndarray:
    """Days since the first purchase or the signup, whichever is earlier (NaN when neither is known)."""
    if "days_since_signup" in f:
        return np.fmax(f["bg_age_days"], f["days_since_signup"])
    return f["bg_age_days"]


def combine(purchase: dict[str, np.ndarray], support: dict[str, np.ndarray] | None,
            attributes: dict[str, np.ndarray] | None, *, population: Population | None, month: int,
            cfg: FeatureConfig, lifespan_years: float | None = None,
            engagement: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Every feature column from the families: CLTV, tickets per order, tenure, the value tier (a boolean
    ``is_vip``), the calendar month and, when the population has BG/NBD parameters, the BG/NBD features.

    Args:
        purchase, support, attributes: :func:`purchase_features`, :func:`support_features` (None without
            tickets) and :func:`attribute_features` (None without customer attributes).
        population: the learned population state; None at training, where the VIP cut-off is the
            ``vip_quantile`` of these customers' CLTV.
        month: the month of ``as_of``.
        cfg: feature settings.
        lifespan_years: the lifespan to use (default: the population's).
        engagement: ``churnguard.features.engagement.engagement_features`` (None without events).
    """
    cols = dict(purchase)
    n = len(cols["n_orders"])
    lifespan = population.lifespan_years if lifespan_years is None else lifespan_years
    cols["cltv"] = cltv(cols, lifespan, cfg)
    if support is not None:
        cols |= support
        cols["tickets_per_order"] = ratio(support["tickets_total"], cols["n_orders"])
    if attributes is not None:
        cols |= attributes
    if engagement is not None:
        cols |= engagement
    cols["tenure_days"] = tenure_days(cols)
    threshold = vip_threshold(cols["cltv"], cfg.vip_quantile) if population is None else population.vip_cltv_threshold
    cols["value_tier"] = is_vip(cols["cltv"], threshold)
    cols["as_of_month"] = np.full(n, float(month))  # churn over the next months is seasonal
    if population is not None and population.bgnbd is not None:
        cols |= bgnbd_features(cols, population.bgnbd, population.horizon_days)
    return cols
