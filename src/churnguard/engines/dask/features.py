"""Features on the cluster: each partition's partial features, population-level quantities (lifespan, VIP
threshold, attribute kinds) over all partitions, then each partition's features finished with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard.dataset import Tables
from churnguard.engines.dask._cluster import _gather, _Tasks
from churnguard.engines.dask._read import _client_for
from churnguard.engines.partitions import (
    concat_frames,
    learned_population,
    population_inputs,
)
from churnguard.features import build_features, to_day
from churnguard.features.build import finish_features, partial_features
from churnguard.population import Population

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.config import FeatureConfig
    from churnguard.engines.dask._read import DaskTables
    from churnguard.features import build


@dataclass
class _Snapshot:
    """One day's features on the cluster, one frame per partition, and the population state behind them."""

    day: pd.Timestamp
    parts: list[Future]
    population: Population


def _partial_features(tables: Tables, day: pd.Timestamp, cfg: FeatureConfig) -> build.Partial:
    return partial_features(tables, day, cfg, count_lifespan=True)


def _feature_snapshots(dtables: DaskTables, client: Client, days: Sequence[pd.Timestamp], cfg: FeatureConfig, *,
                       population: Population | None = None) -> dict[pd.Timestamp, _Snapshot]:
    """Features of every partition for each day, with the given population state (a model's, at scoring), or
    with one learned over all partitions as the local engine learns it: each partition's partial features
    first, then the lifespan, attribute kinds and VIP cut-off over all of them, then the features finished."""
    tasks = _Tasks(client)
    parts = dtables.partitions
    if population is not None:
        built = {d: [tasks.submit(f"features-{d:%Y%m%d}-p{b}", build_features, p, d, cfg, population)
                     for b, p in enumerate(parts)] for d in days}
        return {d: _Snapshot(d, built[d], population) for d in days}
    partial = {d: [tasks.submit(f"partial-{d:%Y%m%d}-p{b}", _partial_features, p, d, cfg) for b, p in enumerate(parts)]
               for d in days}
    inputs = _gather(client, {d: [tasks.submit(f"inputs-{d:%Y%m%d}-p{b}", population_inputs, f, cfg)
                                  for b, f in enumerate(partial[d])] for d in days}, "building features")
    out = {}
    for d in days:
        state = learned_population(inputs[d], cfg)
        out[d] = _Snapshot(d, [tasks.submit(f"finish-{d:%Y%m%d}-p{b}", finish_features, f, cfg, state)
                               for b, f in enumerate(partial[d])], state)
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
