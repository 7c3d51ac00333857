"""Reading the input tables on the cluster: read and census the chunks, decide what depends on whole files,
shuffle the rows by customer into partitions, validate each one, and apply the bad-row policy over all."""

from __future__ import annotations

import logging
import math
import operator
from dataclasses import dataclass, field, replace
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Self

import numpy as np
import pandas as pd

from churnguard import dataset
from churnguard.dataset import _DATES, REJECT_COLUMNS, Tables, feature_columns
from churnguard.engines.dask._cluster import _gather, _Tasks, connect
from churnguard.engines.dask._plan import _plan, _read_chunk, _Source
from churnguard.engines.dask._validate import (
    _census,
    _date_styles,
    _partition_rejects,
    _placeholder_date,
    _reject_digest,
    _rows_error,
    _Spec,
    _split_chunk,
    _validate_partition,
)

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.config import DataConfig

logger = logging.getLogger(__name__)

_CHECK_ORDER = ("transactions", "customers", "tickets")  # the order validate_tables checks the tables in
_BLOCK_BYTES = 64 * 2**20
_PARTITION_BYTES = 128 * 2**20


def read_tables_dask(
    transactions: str | Path,
    tickets: str | Path | None = None,
    customers: str | Path | None = None,
    *,
    config: DataConfig,
    client: Client | str,
    npartitions: int | None = None,
    block_bytes: int = _BLOCK_BYTES,
    feature_inputs_only: bool = False,
) -> DaskTables:
    """Read, repartition by customer and validate the input tables on the cluster.

    Each path is a CSV file, a Parquet file or a directory holding a Parquet dataset (hive partition
    directories such as ``region=north/`` become columns). The result keeps each customer partition's
    validated :class:`~churnguard.dataset.Tables` in the workers' memory.

    Args:
        transactions, tickets, customers: the input paths; workers must be able to read them.
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
    paths = {"transactions": transactions, "tickets": tickets, "customers": customers}
    sources = {name: _plan(p, name, block_bytes) for name, p in paths.items() if p is not None}
    if feature_inputs_only:
        sources = {name: replace(s, columns=tuple(feature_columns(name, list(s.columns), config)))
                   for name, s in sources.items()}
    owned = isinstance(client, str)
    client = connect(client) if isinstance(client, str) else client
    try:
        n = npartitions or max(sum(client.nthreads().values()) or 1,
                               math.ceil(sum(s.nbytes for s in sources.values()) / _PARTITION_BYTES))
        dtables = _read(sources, config, client, n)
    except BaseException:
        if owned:
            client.close()
        raise
    dtables.owns_client = owned
    return dtables


def _read(sources: dict[str, _Source], config: DataConfig, client: Client, n: int) -> DaskTables:
    tasks = _Tasks(client)
    ids = {t: getattr(config.columns, t).get("customer_id", "customer_id") for t in sources}
    dates = {t: tuple(getattr(config.columns, t).get(c, c) for c in _DATES) for t in sources}
    raw = {t: [tasks.submit(f"read-{t}-c{i}", _read_chunk, chunk, src.columns) for i, chunk in enumerate(src.chunks)]
           for t, src in sources.items()}
    census = _gather(client, {t: [tasks.submit(f"census-{t}-c{i}", _census, f, dates[t]) for i, f in enumerate(fs)]
                              for t, fs in raw.items()}, "reading the input files")
    rows = {t: sum(c["rows"] for c in census[t]) for t in sources}
    formats = {}
    for t in _CHECK_ORDER:
        if t in sources:
            dataset.check_columns(t, list(sources[t].columns), sources[t].name, config, rows[t])
            formats[t] = _date_styles(sources[t], census[t], config)
    splits, starts, file_starts = {}, {}, {}
    for t, src in sources.items():
        lengths = np.array([c["rows"] for c in census[t]], dtype=np.int64)
        starts[t] = np.concatenate([[1], 1 + np.cumsum(lengths)[:-1]])
        file_starts[t] = tuple(int(starts[t][src.chunk_file.index(i)]) for i in range(len(src.files)))
        splits[t] = [tasks.submit(f"split-{t}-c{i}", _split_chunk, f, int(starts[t][i]), ids[t], n, formats[t])
                     for i, f in enumerate(raw[t])]
    del raw
    _check_date_styles(tasks, splits, formats, sources, config)
    spec = _Spec(config, {t: s.name for t, s in sources.items()}, {t: s.files for t, s in sources.items()},
                 file_starts, _placeholder_date(config))
    partitions = []
    for b in range(n):
        pieces = {t: [tasks.submit(f"piece-{t}-c{i}-p{b}", _piece, s, b) for i, s in enumerate(fs)]
                  for t, fs in splits.items()}
        partitions.append(tasks.submit(f"validate-p{b}", _validate_partition, pieces, spec))
    del splits
    rejects = _bad_rows(tasks, partitions, sources, rows, config)
    return DaskTables(client, partitions, rejects, {t: s.name for t, s in sources.items()}, rows)


def _check_date_styles(tasks: _Tasks, splits: dict[str, list[Future]], formats: dict[str, dict],
                       sources: dict[str, _Source], config: DataConfig) -> None:
    """No value outside a date column's style may be a date in another style: DataError naming the column."""
    if not any(formats.values()):
        return
    checked = _gather(tasks.client, {t: [tasks.submit(f"datecheck-{t}-c{i}", operator.itemgetter(1), s)
                                         for i, s in enumerate(fs)] for t, fs in splits.items() if formats[t]},
                      "checking date styles")
    for t in _CHECK_ORDER:
        for col, fmt in formats.get(t, {}).items():
            parts = [c[col] for c in checked[t] if col in c]
            census = reduce(dataset.merge_census, parts, dataset.DateCensus())
            if census.mixed:
                inverse = {u: c for c, u in getattr(config.columns, t).items()}
                raise dataset.mixed_styles_error(census, sources[t].name, inverse.get(col, col), fmt)


def _bad_rows(tasks: _Tasks, partitions: list[Future], sources: dict[str, _Source], rows: dict[str, int],
              config: DataConfig) -> pd.DataFrame:
    """The ``on_bad_rows`` policy over all partitions: DataError for bad rows under ``raise`` (or a table with
    no usable rows), else the rows set aside, in the order the local engine reports them."""
    digests = _gather(tasks.client, [tasks.submit(f"rejects-p{b}", _reject_digest, p) for b, p in enumerate(partitions)],
                      "validating the input")
    counts, samples = zip(*digests, strict=True)
    counts = pd.concat([c for c in counts if not c.empty] or [counts[0]], ignore_index=True)
    samples = pd.concat([s for s in samples if not s.empty] or [samples[0]], ignore_index=True)
    rejected = {}
    for t in _CHECK_ORDER:
        if t not in sources:
            continue
        mine = counts[counts["table"] == t]
        rejected[t] = int(mine["n"].sum())
        if rejected[t] and (config.on_bad_rows == "raise" or rejected[t] == rows[t]):
            raise _rows_error(t, sources[t].name, rows[t], mine, samples[samples["table"] == t],
                              len(sources[t].files) > 1)
    rejects = pd.DataFrame(columns=REJECT_COLUMNS)
    if any(rejected.values()):
        frames = _gather(tasks.client, [tasks.submit(f"gather-rejects-p{b}", _partition_rejects, p)
                                        for b, p in enumerate(partitions)], "collecting rejected rows")
        rank = {t: i for i, t in enumerate(_CHECK_ORDER)}
        rejects = pd.concat([f for f in frames if not f.empty], ignore_index=True)
        rejects = (rejects.assign(_rank=rejects["table"].map(rank))
                   .sort_values(["_rank", "_order"], kind="stable")[REJECT_COLUMNS].reset_index(drop=True))
        for t, k in rejected.items():
            if k:
                logger.warning("%s: set aside %d of %d %s rows (see rejects)", sources[t].name, k, rows[t], t)
    return rejects


def _piece(split: tuple[list[pd.DataFrame], dict], b: int) -> pd.DataFrame:
    return split[0][b]


@dataclass(eq=False)
class DaskTables:
    """Validated input tables on a cluster: one :class:`~churnguard.dataset.Tables` per customer partition.

    Every customer's rows of all three tables are in the same partition. ``rejects`` holds the rows set aside
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
        return f"input: {rows} in {self.npartitions} customer partitions"

    def _timespan(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        if self._span is None:
            tasks = _Tasks(self.client)
            spans = _gather(self.client, [tasks.submit(f"timespan-p{b}", _timespan, p)
                                          for b, p in enumerate(self.partitions)], "finding the data's time span")
            lo = [a for a, _ in spans if not pd.isna(a)]
            hi = [b for _, b in spans if not pd.isna(b)]
            self._span = (min(lo) if lo else pd.NaT, max(hi) if hi else pd.NaT)
        return self._span

    def first_timestamp(self) -> pd.Timestamp:
        """The earliest transaction time (``transactions['timestamp'].min()`` of the local tables)."""
        return self._timespan()[0]

    def last_date(self) -> pd.Timestamp:
        """"Today" when none is given: :func:`churnguard.dataset.last_day` of the partitions' last timestamps."""
        from churnguard.dataset import last_day

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
