"""The cluster: connecting to it, submitting tasks under readable keys, and gathering results with clear errors."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from churnguard.dataset import DataError

if TYPE_CHECKING:
    from distributed import Client, Future


def connect(scheduler: str | None = None, *, n_workers: int | None = None, threads_per_worker: int = 1,
            timeout: float = 30) -> Client:
    """A client of the scheduler at ``scheduler``, or of a new local cluster when it is ``None``.

    The local cluster runs one process per worker (``processes=True``): pandas work then runs in parallel, and
    ``lightgbm.dask`` needs one process per worker. Its dashboard listens on a free port
    (``client.dashboard_link``). Closing the client (``client.close()`` or leaving a ``with`` block) also
    shuts a cluster started here down.

    Args:
        scheduler: address such as ``tcp://10.0.0.5:8786``; ``None`` starts a ``LocalCluster``.
        n_workers: workers of the local cluster (default: one per core with ``threads_per_worker=1``).
        threads_per_worker: threads of each local worker.
        timeout: seconds to wait for the scheduler.

    Raises:
        RuntimeError: the scheduler cannot be reached.
    """
    from distributed import Client

    if scheduler is None:
        return Client(n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True,
                      dashboard_address=":0")  # a free port (see client.dashboard_link): 8787 may be taken
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from exc


def describe(client: Client, scheduler: str | None) -> str:
    """Where the work runs: the scheduler (or local cluster), its workers and threads, and the dashboard link."""
    import importlib.util

    info = client.scheduler_info()
    workers = info.get("workers", {}).values()
    threads = sum(w.get("nthreads", 0) for w in workers)
    where = f"scheduler {client.scheduler.address}" if scheduler else "local cluster"
    dashboard = client.dashboard_link if "dashboard" in info.get("services", {}) else "not served"
    if scheduler is None and importlib.util.find_spec("bokeh") is None and dashboard != "not served":
        dashboard += " (its pages need bokeh: pip install 'bokeh>=3.1')"
    return f"dask: {where}, {len(workers)} worker(s), {threads} thread(s); dashboard {dashboard}"


class _Tasks:
    """Submits tasks under readable, unique keys (``churnguard-<step>-p<partition>-<token>``), so a failure
    can say which step and which customer partition it hit."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.token = uuid.uuid4().hex[:10]

    def submit(self, name: str, fn: Callable, *args: Any) -> Future:
        return self.client.submit(fn, *args, key=f"churnguard-{name}-{self.token}")


def _what(key: object) -> str:
    """"task 'score' (customer partition 3)" from a task key made by :class:`_Tasks`."""
    parts = str(key).split("-")
    if len(parts) < 3 or parts[0] != "churnguard":
        return f"task {key!r}"
    step, rest = parts[1], parts[2:-1]
    where = [f"customer partition {p[1:]}" if p.startswith("p") and p[1:].isdigit() else p for p in rest]
    return f"task {step!r}" + (f" ({', '.join(where)})" if where else "")


def _gather(client: Client, futures: Any, what: str) -> Any:
    """``client.gather`` that turns worker failures into a ``RuntimeError`` naming the step.

    ``DataError`` (a problem with the input) passes through unchanged.
    """
    from distributed import KilledWorker

    try:
        return client.gather(futures)
    except DataError:
        raise
    except KilledWorker as exc:
        raise RuntimeError(
            f"dask engine: {what} failed: the worker running {_what(exc.task)} died "
            f"({exc.allowed_failures + 1} time(s); distributed.scheduler.allowed-failures = {exc.allowed_failures}). "
            "Check the worker logs (memory limits are the usual cause); nothing was written"
        ) from exc
    except Exception as exc:
        if "CancelledError" in type(exc).__name__ or isinstance(exc, (OSError, TimeoutError)):
            raise RuntimeError(f"dask engine: {what} failed: lost the cluster ({type(exc).__name__}: {exc}); "
                               "nothing was written") from exc
        raise RuntimeError(f"dask engine: {what} failed on a worker: {type(exc).__name__}: {exc}") from exc
