"""Reading the input tables on the cluster: the steps of :mod:`churnguard.engines.partitions` (read and census
the chunks, decide what depends on whole files, split the rows by customer, validate each partition, apply the
bad-row policy over all) run as tasks."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

import pandas as pd

from churnguard._text import plural
from churnguard.dataset import Tables, last_day
from churnguard.engines import partitions as parts
from churnguard.engines.dask._cluster import _gather, _Tasks, connect

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.config import DataConfig

_PARTITION_BYTES = 128 * 2**20


def read_tables_dask(
    transactions: str | Path,
    tickets: str | Path | None = None,
    customers: str | Path | None = None,
    *,
    config: DataConfig,
    client: Client | str,
    npartitions: int | None = None,
    block_bytes: int = parts.BLOCK_BYTES,
    feature_inputs_only: bool = False,
    events: str | Path | None = None,
) -> DaskTables:
    """Read, repartition by customer and validate the input tables on the cluster.

    Each path is a CSV file, a Parquet file or a directory holding a Parquet dataset (hive partition
    directories such as ``region=north/`` become columns), or a database table (``churnguard.sources.DbSource``:
    one reading task per partition, each selecting its own customers by a hash of the id in the SQL). The result
    keeps each customer partition's validated :class:`~churnguard.dataset.Tables` in the workers' memory.

    Args:
        transactions, tickets, customers, events: the input paths; workers must be able to read them.
        config: column mapping, date format and the bad-row policy, as for ``load_tables``.
        client: a client, or a scheduler address (the returned tables then own that client: ``close()`` it).
        npartitions: customer partitions (default: one per ~128 MB of input, at least one per worker thread).
        block_bytes: about how many bytes of a file one reading task takes.
        feature_inputs_only: read only the columns the features use (``dataset.feature_columns``), as
            ``churnguard score`` does; the other optional columns are then neither read nor checked.

    Raises:
        DataError: as ``load_tables``: a file is missing, empty, lacks columns, mixes date styles, or has bad
            rows and ``on_bad_rows`` is ``raise`` (or no usable rows at all). Row counts in messages are over
            the whole input; row numbers are the file's (``file:row`` within a Parquet dataset).
        RuntimeError: a worker failed or died.
    """
    if npartitions is not None and npartitions < 1:
        raise ValueError(f"npartitions must be at least 1, got {npartitions}")
    paths = {"transactions": transactions, "tickets": tickets, "customers": customers, "events": events}
    owned = isinstance(client, str)
    client = connect(client) if isinstance(client, str) else client
    try:
        threads = npartitions or sum(client.nthreads().values()) or 1
        sources = parts.plan_inputs(paths, config, block_bytes=block_bytes, feature_inputs_only=feature_inputs_only,
                                    db_parts=threads)
        n = npartitions or max(threads, math.ceil(sum(s.nbytes for s in sources.values()) / _PARTITION_BYTES))
        dtables = _read(sources, config, client, n)
    except BaseException:
        if owned:
            client.close()
        raise
    dtables.owns_client = owned
    return dtables


def _read(sources: dict[str, parts.Source], config: DataConfig, client: Client, n: int) -> DaskTables:
    tasks = _Tasks(client)
    raw = {t: [tasks.submit(f"read-{t}-c{i}", parts.read_chunk, chunk, src.columns)
               for i, chunk in enumerate(src.chunks)] for t, src in sources.items()}
    censuses = _gather(client, {t: [tasks.submit(f"census-{t}-c{i}", parts.census, f, sources[t], config)
                                    for i, f in enumerate(fs)] for t, fs in raw.items()}, "reading the input files")
    spec = parts.decide(sources, censuses, config)
    splits = {t: [tasks.submit(f"split-{t}-c{i}", parts.split_chunk, f, spec, t, i, n) for i, f in enumerate(fs)]
              for t, fs in raw.items()}
    del raw
    if any(spec.styles.values()):
        parts.check_styles(spec, _gather(client, {t: [tasks.submit(f"datecheck-{t}-c{i}", operator.itemgetter(1), s)
                                                      for i, s in enumerate(fs)] for t, fs in splits.items()},
                                         "checking date styles"))
    partitions = []
    for b in range(n):
        pieces = {t: [tasks.submit(f"piece-{t}-c{i}-p{b}", _piece, s, b) for i, s in enumerate(fs)]
                  for t, fs in splits.items()}
        partitions.append(tasks.submit(f"validate-p{b}", parts.validate_partition, pieces, spec))
    del splits
    digests = _gather(client, [tasks.submit(f"rejects-p{b}", parts.reject_digest, p)
                               for b, p in enumerate(partitions)], "validating the input")
    rejected = parts.bad_rows(spec, digests)
    frames = _gather(client, [tasks.submit(f"gather-rejects-p{b}", operator.attrgetter("rejects"), p)
                              for b, p in enumerate(partitions)], "collecting rejected rows") if any(
        rejected.values()) else []
    return DaskTables(client, partitions, parts.merge_rejects(spec, frames, rejected),
                       {t: s.name for t, s in sources.items()}, spec.rows)


def _piece(split: tuple[list, dict], b: int):
    return split[0][b]


@dataclass(eq=False)
class DaskTables:
    """Validated input tables on a cluster: one :class:`~churnguard.dataset.Tables` per customer partition.

    Every customer's rows of all tables are in the same partition. ``rejects`` holds the rows set aside
    (``on_bad_rows: reject``), in the order the local engine reports them. Release the workers' memory with
    :meth:`close` (or a ``with`` block); that also closes a client opened from an address.
    """

    client: Client
    partitions: list[Future]
    rejects: pd.DataFrame
    sources: dict[str, str]
    rows: dict[str, int]
    owns_client: bool = False
    _span: tuple[pd.Timestamp, pd.Timestamp] | None = field(default=None, repr=False)

    @property
    def npartitions(self) -> int:
        """Number of customer partitions."""
        return len(self.partitions)

    def summary(self) -> str:
        """What was read: rows per table and the number of customer partitions."""
        rows = ", ".join(f"{n:,} {t}" for t, n in self.rows.items())
        return f"input: {rows} in {plural(self.npartitions, 'customer partition')}"

    def _timespan(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        if self._span is None:
            tasks = _Tasks(self.client)
            spans = _gather(self.client, [tasks.submit(f"timespan-p{b}", _timespan, p)
                                          for b, p in enumerate(self.partitions)], "finding the data's time span")
            lo, hi = (pd.Series(side, dtype="datetime64[ns]") for side in zip(*spans, strict=True))
            self._span = (lo.min(), hi.max())  # NaT: no timestamps
        return self._span

    def first_timestamp(self) -> pd.Timestamp:
        """The earliest transaction time (``transactions['timestamp'].min()`` of the local tables)."""
        return self._timespan()[0]

    def last_date(self) -> pd.Timestamp:
        """"Today" when none is given: :func:`churnguard.dataset.last_day` of the partitions' last timestamps."""
        return last_day(pd.Series([self._timespan()[1]]))

    def close(self) -> None:
        """Free the partitions on the workers; close the client if these tables opened it."""
        if self.partitions:
            self.client.cancel(self.partitions)
            self.partitions = []
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _timespan(tables: Tables) -> tuple[pd.Timestamp, pd.Timestamp]:
    ts = tables.transactions["timestamp"]
    return ts.min(), ts.max()


def _client_for(dtables: DaskTables, client: Client | str | None) -> Client:
    """The client of ``dtables``; a given client or address must point at the same scheduler."""
    if client is None:
        return dtables.client
    address = client if isinstance(client, str) else client.scheduler.address
    if address != dtables.client.scheduler.address:
        raise ValueError(f"the tables live on the scheduler {dtables.client.scheduler.address}, not on {address}; "
                         "use the client they were read with")
    return dtables.client if isinstance(client, str) else client
