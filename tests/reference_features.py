"""The row-by-row pandas feature implementation that ``churnguard.features`` replaced, kept as the oracle
the vectorised one must match exactly (``tests/test_feature_reference.py``). Not part of the package.

It is the version of ``features.py`` before the integer-coded rewrite, unchanged but for this docstring.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

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


class _Groups:
    """Fast per-customer aggregation over integer positions in the population index."""

    def __init__(self, population: pd.Index) -> None:
        self.population = population
        self.n = len(population)

    def pos(self, ids: pd.Series) -> np.ndarray:
        return self.population.get_indexer(ids)

    def sum(self, pos: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(pos, weights=values, minlength=self.n).astype("float64")

    def agg(self, pos: np.ndarray, values: pd.Series | np.ndarray, how: str) -> np.ndarray:
        """min / max / mean / std / last of values per customer; NaN where a customer has none."""
        s = pd.Series(np.asarray(values, dtype="float64"))
        out = s.groupby(pos, sort=False).agg(how)
        return out.reindex(np.arange(self.n)).to_numpy(dtype="float64")


def _population(tables: Tables, as_of: pd.Timestamp) -> pd.Index:
    """Customers known at ``as_of``: a transaction or ticket on or before it, or listed and signed up by then."""
    cutoff = as_of + _DAY
    ids = pd.Index(tables.transactions.loc[tables.transactions["timestamp"] < cutoff, "customer_id"].unique())
    if tables.tickets is not None:
        ids = ids.union(pd.Index(tables.tickets.loc[tables.tickets["opened_at"] < cutoff, "customer_id"].unique()))
    if tables.customers is not None:
        cust = tables.customers
        listed = (
            cust["signup_date"].isna() | (cust["signup_date"] < cutoff)
            if "signup_date" in cust
            else pd.Series(True, index=cust.index)
        )
        ids = ids.union(pd.Index(cust.loc[listed, "customer_id"]))
    return ids.sort_values().rename("customer_id")


def _order_keys(rows: pd.DataFrame) -> pd.DataFrame:
    """Each row's customer and order key: its order id, or without one its timestamp."""
    if "order_id" in rows:
        key = rows["order_id"].astype("object").where(rows["order_id"].notna(), rows["timestamp"])
    else:
        key = rows["timestamp"]
    return pd.DataFrame({"customer_id": rows["customer_id"].to_numpy(), "key": key.astype("object").to_numpy()})


def _orders(tx: pd.DataFrame) -> pd.DataFrame:
    """One row per order (purchase rows only): customer, time of the order and its value."""
    purchases = tx[tx["amount"] > 0]
    if "order_id" in purchases:
        key = purchases["order_id"].astype("object").where(purchases["order_id"].notna(), purchases["timestamp"])
    else:
        key = purchases["timestamp"]
    grouped = purchases.groupby([purchases["customer_id"], key.rename("_order")], sort=False)
    orders = grouped.agg(timestamp=("timestamp", "min")).reset_index(level=0)
    # An order's value: its lines added in row order. (pandas' grouped sum picks its algorithm -- pairwise
    # over sorted groups, else compensated -- by how all other rows are ordered, so it does not define one.)
    orders["value"] = np.bincount(grouped.ngroup().to_numpy(), weights=purchases["amount"].to_numpy(dtype="float64"))
    return orders


def _purchase_features(tx: pd.DataFrame, as_of: pd.Timestamp, g: _Groups, cfg: FeatureConfig) -> dict:
    orders = _orders(tx)
    pos = g.pos(orders["customer_id"])
    day = orders["timestamp"].dt.normalize()
    age = _days(as_of - day)  # 0 = bought on as_of
    value = orders["value"].to_numpy(dtype="float64")
    f: dict[str, np.ndarray] = {}
    n_orders = g.sum(pos)
    first = g.agg(pos, -age, "min") * -1  # oldest order's age
    last = g.agg(pos, age, "min")
    f["recency_days"] = last
    f["n_orders"] = n_orders
    f["gross_spend"] = g.sum(pos, value)
    f["mean_order_value"] = _ratio(f["gross_spend"], n_orders)
    f["max_order_value"] = g.agg(pos, value, "max")
    refunds = tx[tx["amount"] < 0]
    rpos = g.pos(refunds["customer_id"])
    # Refunded orders, not refund rows: the refund lines of one order (same customer and order id, or without an
    # order id the same timestamp) count once, as n_orders counts an order's lines once.
    f["refund_count"] = g.sum(g.pos(_order_keys(refunds).drop_duplicates()["customer_id"]))
    refund_amount = g.sum(rpos, -refunds["amount"].to_numpy(dtype="float64"))
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
    days = pd.DataFrame({"pos": pos, "age": age}).drop_duplicates().sort_values(["pos", "age"])
    f["n_purchase_days"] = g.sum(days["pos"].to_numpy())
    gap = days["age"].diff().to_numpy()
    same = days["pos"].to_numpy()[1:] == days["pos"].to_numpy()[:-1]
    gpos, gval = days["pos"].to_numpy()[1:][same], gap[1:][same]
    f["gap_mean_days"] = g.agg(gpos, gval, "mean")
    f["gap_std_days"] = g.agg(gpos, gval, "std")
    f["overdue_ratio"] = _ratio(last, f["gap_mean_days"])
    # BG/NBD inputs (days): repeat purchase days, first-to-last span, first purchase to as_of.
    f["bg_frequency"] = np.where(np.isnan(first), np.nan, f["n_purchase_days"] - 1)
    f["bg_recency_days"] = first - last
    f["bg_age_days"] = first
    return f


def estimate_lifespan_years(tx: pd.DataFrame, as_of: pd.Timestamp, cfg: FeatureConfig) -> float:
    """Average customer lifespan = 1 / annual churn rate, from purchases on or before ``as_of`` only.

    The annual churn rate is the share of customers who bought in the year before last (days
    ``(as_of - 730, as_of - 365]``) and made no purchase in the last year ``(as_of - 365, as_of]``. Ages are
    whole days, like every other feature: a purchase at any time of the day 730 days before ``as_of`` makes two
    years of history.
    """
    purchases = tx[(tx["amount"] > 0) & (tx["timestamp"] < as_of + _DAY)]
    if purchases.empty:
        return cfg.default_lifespan_years
    age = _days(as_of - purchases["timestamp"].dt.normalize())
    if age.max() < 730:  # two years of history: a purchase on the day 730 days before as_of or earlier
        return cfg.default_lifespan_years
    last_year = purchases.loc[age < 365, "customer_id"].unique()
    year_before = purchases.loc[(age >= 365) & (age < 730), "customer_id"].unique()
    if len(year_before) == 0:
        return cfg.default_lifespan_years
    churn = 1.0 - float(np.isin(year_before, last_year).mean())
    return float(min(1 / churn, cfg.max_lifespan_years)) if churn > 0 else cfg.max_lifespan_years


def _latest(g: _Groups, pos: np.ndarray, opened: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Value of the most recently opened ticket per customer among ``mask``; ties go to the larger value so
    the result never depends on row order."""
    idx = np.flatnonzero(mask)
    order = idx[np.lexsort((values[idx], opened[idx]))]
    return g.agg(pos[order], values[order], "last")


def _support_features(tickets: pd.DataFrame, as_of: pd.Timestamp, g: _Groups, cfg: FeatureConfig) -> dict:
    cutoff = as_of + _DAY
    tk = tickets[tickets["opened_at"] < cutoff]
    pos = g.pos(tk["customer_id"])
    age = _days(as_of - tk["opened_at"].dt.normalize())
    f: dict[str, np.ndarray] = {}
    for w in cfg.ticket_windows_days:
        f[f"tickets_{w}d"] = g.sum(pos[age < w])
    f["tickets_total"] = g.sum(pos)
    f["days_since_last_ticket"] = g.agg(pos, age, "min")
    resolved = tk["resolved_at"] < cutoff if "resolved_at" in tk else pd.Series(False, index=tk.index)
    f["open_tickets"] = g.sum(pos[~resolved.to_numpy()])
    opened = tk["opened_at"].to_numpy()
    if "first_response_at" in tk:
        answered = (tk["first_response_at"] < cutoff).to_numpy()
        hours = _hours(tk["first_response_at"] - tk["opened_at"])
        waiting = _hours(cutoff - tk["opened_at"])
        f["first_response_hours_mean"] = g.agg(pos[answered], hours[answered], "mean")
        f["first_response_hours_max"] = g.agg(pos[answered], hours[answered], "max")
        f["first_response_hours_latest"] = _latest(g, pos, opened, hours, answered)
        slow = np.where(answered, hours > cfg.sla_hours, waiting > cfg.sla_hours)
        f["slow_response_share"] = _ratio(g.sum(pos[slow]), f["tickets_total"])
    if "resolved_at" in tk:
        res = resolved.to_numpy()
        hours = _hours(tk["resolved_at"] - tk["opened_at"])
        f["resolution_hours_mean"] = g.agg(pos[res], hours[res], "mean")
        f["resolution_hours_max"] = g.agg(pos[res], hours[res], "max")
        f["resolution_hours_latest"] = _latest(g, pos, opened, hours, res)
    if "csat" in tk:
        # A survey answer is known once the ticket is resolved (or, without resolution times, once opened).
        known = (resolved.to_numpy() if "resolved_at" in tk else np.ones(len(tk), bool)) & tk["csat"].notna().to_numpy()
        csat = tk["csat"].to_numpy(dtype="float64")
        f["csat_mean"] = g.agg(pos[known], csat[known], "mean")
        f["csat_min"] = g.agg(pos[known], csat[known], "min")
        f["csat_latest"] = _latest(g, pos, opened, csat, known)
    return f


def _attribute_features(customers: pd.DataFrame, as_of: pd.Timestamp, population: pd.Index, cfg: FeatureConfig) -> pd.DataFrame:
    cust = customers.set_index("customer_id").reindex(population)
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
        num = pd.to_numeric(raw, errors="coerce")
        if num.notna().sum() == raw.notna().sum():
            out[f"attr_{col}"] = num.astype("float64")
        elif raw.nunique() <= cfg.max_categories:
            out[f"attr_{col}"] = pd.Categorical(raw.astype("object"), categories=sorted(raw.dropna().unique()))
        else:
            logger.info("customers column %r has %d levels (> %d): not used", col, raw.nunique(), cfg.max_categories)
    return out


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
    as_of = to_day(as_of)
    cutoff = as_of + _DAY
    population = _population(tables, as_of)
    g = _Groups(population)
    tx = tables.transactions[tables.transactions["timestamp"] < cutoff]
    cols = _purchase_features(tx, as_of, g, config)
    lifespan = lifespan_years if lifespan_years is not None else estimate_lifespan_years(tx, as_of, config)
    aov = np.nan_to_num(cols["mean_order_value"])
    cols["cltv"] = aov * cols["orders_365d" if 365 in config.windows_days else f"orders_{max(config.windows_days)}d"] * lifespan
    if tables.tickets is not None:
        support = _support_features(tables.tickets, as_of, g, config)
        support["tickets_per_order"] = _ratio(support["tickets_total"], cols["n_orders"])
        cols |= support
    features = pd.DataFrame(cols, index=population)
    if tables.customers is not None:
        attrs = _attribute_features(tables.customers, as_of, population, config)
        features = features.join(attrs)
        if "days_since_signup" in attrs:
            features["tenure_days"] = np.fmax(features["bg_age_days"], attrs["days_since_signup"])
    if "tenure_days" not in features:
        features["tenure_days"] = features["bg_age_days"]
    threshold = vip_threshold
    if threshold is None:
        threshold = features["cltv"].quantile(config.vip_quantile) if len(features) else np.inf
    features["value_tier"] = np.where((features["cltv"] >= threshold) & (features["cltv"] > 0), "vip", "standard")
    features["as_of_month"] = float(as_of.month)  # calendar: churn over the next months is seasonal
    features.attrs["lifespan_years"] = lifespan
    features.insert(0, "as_of", as_of)
    return features.reset_index()
