"""The Dask cluster the engine's tests run on: a real LocalCluster of 2 worker processes, 1 thread each
(lightgbm.dask needs one process per worker)."""

from __future__ import annotations

import dask
import distributed


def local_cluster(**config) -> distributed.LocalCluster:
    """A new cluster, built under the given Dask config (e.g. ``distributed.scheduler.allowed-failures``)."""
    with dask.config.set(config):
        return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
