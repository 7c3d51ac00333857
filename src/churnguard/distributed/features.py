"""Features on the cluster: population-level quantities (lifespan, VIP threshold, attribute kinds) over all
partitions, then each partition's features built with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard.dataset import Tables
from churnguard.distributed._cluster import _client_for, _gather, _Tasks
from churnguard.distributed._validate import _concat

# _KNOWN_ATTRIBUTES is the local engine's own list of customer columns that are not free attributes: imported,
# not copied, so both engines stay in step.
from churnguard.features import build_features, to_day
from churnguard.features.kernel import KNOWN_ATTRIBUTES as _KNOWN_ATTRIBUTES
from churnguard.population import Population

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.config import FeatureConfig
    from churnguard.distributed._read import DaskTables

_DAY = pd.Timedelta(days=1)


def _lifespan_counts(tables: Tables, as_of: pd.Timestamp) -> tuple[int, pd.Timestamp, int, int]:
    """This partition's share of :func:`churnguard.features.estimate_lifespan_years`: purchases, the first
    purchase time, customers who bought in the year before last, and how many of them bought in the last year.
    Customers never span partitions, so the counts add up to the global ones."""
    tx = tables.transactions
    purchases = tx[(tx["amount"] > 0) & (tx["timestamp"] < as_of + _DAY)]
    if purchases.empty:
        return 0, pd.NaT, 0, 0
    age = np.asarray((as_of - purchases["timestamp"].dt.normalize()) / _DAY, dtype="float64")
    last_year = purchases.loc[age < 365, "customer_id"].unique()
    year_before = purchases.loc[(age >= 365) & (age < 730), "customer_id"].unique()
    return len(purchases), purchases["timestamp"].min(), len(year_before), int(pd.Index(year_before).isin(last_year).sum())  # a hash lookup; np.isin on strings compares every pair


def _lifespan(counts: list[tuple[int, pd.Timestamp, int, int]], as_of: pd.Timestamp, cfg: FeatureConfig) -> float:
    """:func:`churnguard.features.estimate_lifespan_years` from the partitions' counts (same arithmetic)."""
    if sum(c[0] for c in counts) == 0:
        return cfg.default_lifespan_years
    if min(c[1] for c in counts if c[0]) > as_of - pd.Timedelta(days=730):
        return cfg.default_lifespan_years
    year_before, both = sum(c[2] for c in counts), sum(c[3] for c in counts)
    if year_before == 0:
        return cfg.default_lifespan_years
    churn = 1.0 - float(np.float64(both) / np.float64(year_before))
    return float(min(1 / churn, cfg.max_lifespan_years)) if churn > 0 else cfg.max_lifespan_years


def _build(tables: Tables, as_of: pd.Timestamp, cfg: FeatureConfig, lifespan: float, vip: float) -> pd.DataFrame:
    return build_features(tables, as_of, cfg, Population(lifespan, vip))


def _attribute_stats(feats: pd.DataFrame, tables: Tables, max_categories: int) -> tuple[np.ndarray, dict | None]:
    """CLTV values, and per extra customer attribute: present values, numeric values, and its levels (None
    when more than ``max_categories``), over this partition's population."""
    cltv = feats["cltv"].to_numpy(dtype="float64")
    if tables.customers is None:
        return cltv, None
    cust = tables.customers.set_index("customer_id").reindex(pd.Index(feats["customer_id"]))
    stats = {}
    for col in cust.columns.difference(sorted(_KNOWN_ATTRIBUTES)):
        raw = cust[col]
        levels = raw.dropna().unique()
        stats[col] = (int(raw.notna().sum()), int(pd.to_numeric(raw, errors="coerce").notna().sum()),
                      None if len(levels) > max_categories else list(levels))
    return cltv, stats


def _attribute_kinds(stats: list[dict | None], max_categories: int) -> dict[str, tuple[str, list] | None] | None:
    """Numeric, categorical (with sorted levels) or dropped, per attribute, as build_features decides on all
    customers at once."""
    stats = [s for s in stats if s is not None]
    if not stats:
        return None
    kinds: dict[str, tuple[str, list] | None] = {}
    for col in stats[0]:
        present = sum(s[col][0] for s in stats)
        if sum(s[col][1] for s in stats) == present:
            kinds[col] = ("numeric", [])
        elif any(s[col][2] is None for s in stats):
            kinds[col] = None
        else:
            levels = set().union(*(s[col][2] for s in stats))
            kinds[col] = ("category", sorted(levels)) if len(levels) <= max_categories else None
    return kinds


def _finalize(feats: pd.DataFrame, tables: Tables, kinds: dict | None, threshold: float) -> pd.DataFrame:
    """Apply the global VIP threshold and attribute decisions to one partition's features."""
    out = feats.copy()
    cltv = out["cltv"].to_numpy(dtype="float64")
    out["value_tier"] = np.where((cltv >= threshold) & (cltv > 0), "vip", "standard")  # as in build_features
    if kinds is not None:
        out = out.drop(columns=[c for c in out.columns if c.startswith("attr_")])
        cust = tables.customers.set_index("customer_id").reindex(pd.Index(out["customer_id"]))
        at = out.columns.get_loc("tenure_days")  # build_features puts attributes right before tenure_days
        for col, kind in kinds.items():
            if kind is None:
                continue
            raw = cust[col]
            if kind[0] == "numeric":
                values: Any = pd.to_numeric(raw, errors="coerce").astype("float64").to_numpy()
            else:
                values = pd.Categorical(raw.astype("object"), categories=kind[1])
            out.insert(at, f"attr_{col}", values)
            at += 1
    return out


@dataclass
class _Snapshot:
    """One day's features on the cluster, one frame per partition, and the global quantities behind them."""

    day: pd.Timestamp
    parts: list[Future]
    lifespan: float
    vip_threshold: float
    cltv: np.ndarray


def _feature_snapshots(dtables: DaskTables, client: Client, days: Sequence[pd.Timestamp], cfg: FeatureConfig, *,
                       lifespan: float | None = None, vip: float | None = None) -> dict[pd.Timestamp, _Snapshot]:
    """Features of every partition for each day, with lifespan, VIP threshold and attribute kinds computed over
    all partitions (or the given lifespan and VIP threshold, as a model fixes them at scoring)."""
    tasks = _Tasks(client)
    parts = dtables.partitions
    if lifespan is None:
        counts = _gather(client, {d: [tasks.submit(f"lifespan-{d:%Y%m%d}-p{b}", _lifespan_counts, p, d)
                                      for b, p in enumerate(parts)] for d in days},
                         "counting purchases for the CLTV lifespan")
        lifespans = {d: _lifespan(counts[d], d, cfg) for d in days}
    else:
        lifespans = dict.fromkeys(days, lifespan)
    build_vip = np.inf if vip is None else vip
    built = {d: [tasks.submit(f"features-{d:%Y%m%d}-p{b}", _build, p, d, cfg, lifespans[d], build_vip)
                 for b, p in enumerate(parts)] for d in days}
    stats = _gather(client, {d: [tasks.submit(f"featstats-{d:%Y%m%d}-p{b}", _attribute_stats, f, p, cfg.max_categories)
                                 for b, (f, p) in enumerate(zip(built[d], parts, strict=True))] for d in days},
                    "building features")
    out = {}
    for d in days:
        cltv = np.concatenate([c for c, _ in stats[d]]) if stats[d] else np.array([])
        threshold = vip if vip is not None else (float(pd.Series(cltv).quantile(cfg.vip_quantile)) if len(cltv) else np.inf)
        kinds = _attribute_kinds([s for _, s in stats[d]], cfg.max_categories)
        final = [tasks.submit(f"finalize-{d:%Y%m%d}-p{b}", _finalize, f, p, kinds, threshold)
                 for b, (f, p) in enumerate(zip(built[d], parts, strict=True))]
        out[d] = _Snapshot(d, final, lifespans[d], threshold, cltv)
    return out


def _combine(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Partition frames as one, sorted by customer_id like the local engine's output."""
    return _concat(frames).sort_values("customer_id", kind="stable", ignore_index=True)


def build_features_dask(dtables: DaskTables, as_of: str | pd.Timestamp, config: FeatureConfig, *,
                        client: Client | str | None = None) -> pd.DataFrame:
    """Point-in-time features of every customer, equal to ``build_features`` on all the data.

    The lifespan (``estimate_lifespan_years``), the VIP threshold (the ``vip_quantile`` of CLTV) and the
    numeric/categorical decision and levels of each customer attribute are computed over all partitions
    first; each partition's features are then built with them.

    Args:
        dtables: tables from :func:`read_tables_dask`.
        as_of: the cut-off day.
        config: feature windows and thresholds.
        client: the tables' client (default) or the same scheduler's address.

    Returns:
        The features frame, sorted by ``customer_id``; ``attrs['lifespan_years']`` holds the lifespan used.
    """
    client = _client_for(dtables, client)
    day = to_day(as_of)
    snap = _feature_snapshots(dtables, client, [day], config)[day]
    out = _combine(_gather(client, snap.parts, f"building features as of {day.date()}"))
    out.attrs["lifespan_years"] = snap.lifespan
    return out
