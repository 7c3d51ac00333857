"""The Dask cluster the engine's tests run on: a real LocalCluster of 2 worker processes, 1 thread each
(lightgbm.dask needs one process per worker)."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import dask
import distributed


@contextmanager
def local_cluster(**config) -> Iterator[distributed.LocalCluster]:
    """A new cluster, built under the given Dask config (e.g. ``distributed.scheduler.allowed-failures``), closed
    on exit. Then the comm sockets Dask's clients leave to the garbage collector are collected there, not in a
    later test that the ResourceWarning would fail (the suite turns warnings into errors)."""
    with dask.config.set(config):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        with cluster:
            yield cluster
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "unclosed <socket.socket", ResourceWarning)
            gc.collect()
