"""Features on the cluster: population-level quantities (lifespan, VIP threshold, attribute kinds) over all
partitions, then each partition's features built with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard.dataset import Tables
from churnguard.engines.dask._cluster import _gather, _Tasks
from churnguard.engines.dask._read import _client_for
from churnguard.engines.partitions import (
    attribute_summaries,
    concat_frames,
    learned_population,
    lifespan_inputs,
    with_value_tier,
)
from churnguard.features import build_features, kernel, to_day
from churnguard.population import Population

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.config import FeatureConfig
    from churnguard.engines.dask._read import DaskTables


def _cltv(feats: pd.DataFrame) -> np.ndarray:
    return feats["cltv"].to_numpy(dtype="float64")


@dataclass
class _Snapshot:
    """One day's features on the cluster, one frame per partition, and the population state behind them."""

    day: pd.Timestamp
    parts: list[Future]
    population: Population


def _learn_population(dtables: DaskTables, client: Client, tasks: _Tasks, days: Sequence[pd.Timestamp],
                      cfg: FeatureConfig) -> dict[pd.Timestamp, Population]:
    """Lifespan and attribute kinds of each day over all partitions (the VIP cut-off follows the features)."""
    parts = dtables.partitions
    inputs = _gather(client, {d: [tasks.submit(f"lifespan-{d:%Y%m%d}-p{b}", lifespan_inputs, p, d)
                                  for b, p in enumerate(parts)] for d in days},
                     "counting purchases for the CLTV lifespan")
    summaries = _gather(client, {d: [tasks.submit(f"attributes-{d:%Y%m%d}-p{b}", attribute_summaries, p, d,
                                                  cfg.max_categories) for b, p in enumerate(parts)] for d in days},
                        "deciding the attribute kinds")
    return {d: learned_population(inputs[d], summaries[d], cfg) for d in days}


def _feature_snapshots(dtables: DaskTables, client: Client, days: Sequence[pd.Timestamp], cfg: FeatureConfig, *,
                       population: Population | None = None) -> dict[pd.Timestamp, _Snapshot]:
    """Features of every partition for each day, with the given population state (a model's, at scoring), or
    with one learned over all partitions: lifespan and attribute kinds first, the VIP cut-off from every
    partition's CLTV after."""
    tasks = _Tasks(client)
    parts = dtables.partitions
    learned = population is None
    states = _learn_population(dtables, client, tasks, days, cfg) if learned else dict.fromkeys(days, population)
    built = {d: [tasks.submit(f"features-{d:%Y%m%d}-p{b}", build_features, p, d, cfg, states[d]) for b, p in enumerate(parts)]
             for d in days}
    if not learned:
        return {d: _Snapshot(d, built[d], states[d]) for d in days}
    cltv = _gather(client, {d: [tasks.submit(f"cltv-{d:%Y%m%d}-p{b}", _cltv, f) for b, f in enumerate(built[d])]
                            for d in days}, "building features")
    out = {}
    for d in days:
        threshold = kernel.vip_threshold(np.concatenate(cltv[d]) if cltv[d] else np.zeros(0), cfg.vip_quantile)
        final = [tasks.submit(f"tier-{d:%Y%m%d}-p{b}", with_value_tier, f, threshold) for b, f in enumerate(built[d])]
        out[d] = _Snapshot(d, final, replace(states[d], vip_cltv_threshold=threshold))
    return out


def _combine(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Partition frames as one, sorted by customer_id like the local engine's output."""
    return concat_frames(frames).sort_values("customer_id", kind="stable", ignore_index=True)


def build_features_dask(dtables: DaskTables, as_of: str | pd.Timestamp, config: FeatureConfig, *,
                        client: Client | str | None = None) -> pd.DataFrame:
    """Point-in-time features of every customer, equal to ``build_features`` on all the data.

    The lifespan, the numeric/categorical decision and levels of each customer attribute and the VIP cut-off
    (the ``vip_quantile`` of CLTV) are decided over all partitions by the kernel's own rules
    (``churnguard.features.kernel``); each partition's features are built with them.

    Args:
        dtables: tables from :func:`read_tables_dask`.
        as_of: the cut-off day.
        config: feature windows and thresholds.
        client: the tables' client (default) or the same scheduler's address.

    Returns:
        The features frame, sorted by ``customer_id``; ``attrs['lifespan_years']`` holds the lifespan used.
    """
    return _features(dtables, as_of, config, client)[0]


def features_and_unseen_dask(dtables: DaskTables, as_of: str | pd.Timestamp, config: FeatureConfig, *,
                             client: Client | str | None = None) -> tuple[pd.DataFrame, pd.Index]:
    """:func:`build_features_dask`, and the customers known to the tables but without a features row
    (``churnguard.scoring.score.unseen_customers`` of each partition)."""
    feats, snap, client = _features(dtables, as_of, config, client)
    tasks = _Tasks(client)
    unseen = _gather(client, [tasks.submit(f"unseen-p{b}", _unseen, p, f)
                              for b, (p, f) in enumerate(zip(dtables.partitions, snap.parts, strict=True))],
                     "finding the customers without features")
    return feats, pd.Index(np.concatenate(unseen) if unseen else np.zeros(0, dtype=object))


def _unseen(tables: Tables, feats: pd.DataFrame) -> np.ndarray:
    from churnguard.scoring.score import unseen_customers

    return unseen_customers(tables, feats["customer_id"]).to_numpy()


def _features(dtables: DaskTables, as_of: str | pd.Timestamp, config: FeatureConfig, client: Client | str | None
              ) -> tuple[pd.DataFrame, _Snapshot, Client]:
    """The features frame of :func:`build_features_dask`, the snapshot behind it and the client."""
    client = _client_for(dtables, client)
    day = to_day(as_of)
    snap = _feature_snapshots(dtables, client, [day], config)[day]
    out = _combine(_gather(client, snap.parts, f"building features as of {day.date()}"))
    out.attrs["population"] = snap.population.to_dict()
    out.attrs["lifespan_years"] = snap.population.lifespan_years
    return out, snap, client
