"""Batch scoring of files larger than memory comfortably allows, partitioned by customer.

Inputs are streamed in chunks and split into ``partitions`` buckets by a hash of the customer id, so every
customer's whole history lands in one bucket. Each bucket is validated and scored on its own (bounded memory:
about 1/partitions of the data at a time); bucket-independent quantities (lifespan, VIP threshold, BG/NBD
parameters) come from the model, so the scores do not depend on the partitioning. The budget selection and
control group are then drawn over all customers, and the output is written once, atomically.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._io import appending_table, read_table
from churnguard.dataset import (
    ROW_COLUMN,
    DataError,
    check_columns,
    feature_columns,
    last_day,
    parse_dates,
    validate_tables,
)
from churnguard.engines import customer_partition
from churnguard.scoring import OUTPUT_COLUMNS, ScoreResult, score_tables, select_customers

if TYPE_CHECKING:
    from churnguard.config import DataConfig, Playbook
    from churnguard.dataset import Tables
    from churnguard.model import ChurnModel

__all__ = ["auto_partitions", "score_files"]

logger = logging.getLogger(__name__)

_CHUNK_ROWS = 1_000_000
_BYTES_PER_PARTITION = 256 * 1024 * 1024


def auto_partitions(paths: list[Path]) -> int:
    """One partition per ~256 MB of input."""
    size = sum(p.stat().st_size for p in paths)
    return max(1, int(np.ceil(size / _BYTES_PER_PARTITION)))


def _chunks(path: Path, id_column: str, columns: list[str] | None) -> Iterator[pd.DataFrame]:
    """Raw rows (of ``columns``, default all) in chunks, each with its 1-based row number in the file."""
    start = 1
    if path.suffix.lower() == ".csv":
        reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], chunksize=_CHUNK_ROWS,
                             usecols=None if columns is None else set(columns).__contains__)
    else:
        import pyarrow.parquet as pq

        reader = (b.to_pandas() for b in pq.ParquetFile(path).iter_batches(batch_size=_CHUNK_ROWS, columns=columns))
    for chunk in reader:
        chunk[ROW_COLUMN] = np.arange(start, start + len(chunk))
        start += len(chunk)
        if id_column not in chunk:
            raise DataError(f"{path}: column {id_column!r} not found; the file has columns: "
                            f"{', '.join(map(str, _read_header(path)[:20]))}")
        yield chunk


def _split(path: Path, table: str, id_column: str, columns: list[str] | None, partitions: int, workdir: Path
           ) -> None:
    """Write each chunk's rows of bucket ``b`` to ``{table}-{b}-{chunk}.arrow``. Parquet chunks stay Arrow
    record batches (only the id column is converted, to compute the buckets); the buckets are uncompressed
    Arrow IPC files, which cost little more than a copy to write and read back."""
    import pyarrow as pa

    if path.suffix.lower() == ".csv":
        chunks = (pa.Table.from_pandas(c, preserve_index=False) for c in _chunks(path, id_column, columns))
    else:
        chunks = _arrow_chunks(path, id_column, columns)
    for n, chunk in enumerate(chunks):
        buckets = customer_partition(chunk.column(id_column).to_pandas(), partitions)
        order = np.argsort(buckets, kind="stable")
        bounds = np.searchsorted(buckets[order], np.arange(partitions + 1))
        for b in range(partitions):
            if bounds[b + 1] > bounds[b]:
                part = chunk.take(order[bounds[b] : bounds[b + 1]])
                with pa.OSFile(str(workdir / f"{table}-{b}-{n}.arrow"), "wb") as sink, \
                        pa.ipc.new_file(sink, part.schema) as writer:
                    writer.write_table(part)


def _arrow_chunks(path: Path, id_column: str, columns: list[str] | None) -> Iterator:
    """A Parquet file's rows (``columns`` only) as Arrow tables of ``_CHUNK_ROWS``, each with its 1-based row
    numbers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = 1
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_CHUNK_ROWS, columns=columns):
        if id_column not in batch.schema.names:
            raise DataError(f"{path}: column {id_column!r} not found; the file has columns: "
                            f"{', '.join(_read_header(path)[:20])}")
        rows = pa.array(np.arange(start, start + len(batch)))
        start += len(batch)
        yield pa.Table.from_batches([batch]).append_column(ROW_COLUMN, rows)


def _read_bucket(workdir: Path, table: str, b: int) -> pd.DataFrame | None:
    parts = sorted(workdir.glob(f"{table}-{b}-*.arrow"))
    if not parts:
        return None
    import pyarrow as pa

    tables = []
    for p in parts:
        with pa.OSFile(str(p), "rb") as source:
            tables.append(pa.ipc.open_file(source).read_all())
    return pa.concat_tables(tables, promote_options="default").to_pandas()


def score_files(
    model: ChurnModel,
    *,
    transactions: Path,
    tickets: Path | None,
    customers: Path | None,
    out: Path,
    playbook: Playbook,
    data_config: DataConfig,
    as_of: str | pd.Timestamp | None = None,
    budget: float | None = None,
    control_fraction: float = 0.1,
    seed: int = 0,
    partitions: int | None = None,
    on_partition: Callable[[int, int], None] | None = None,
) -> ScoreResult:
    """Score the customers in the files and write ``out`` atomically.

    With one partition the files are read whole; otherwise see the module docstring. Returns the rejects and,
    to keep memory bounded, only the summary columns of the scores (``customer_id, risk_band,
    expected_value, action_cost, selected, control_group``); the full rows are in ``out``.
    """
    from churnguard.features import to_day

    paths = {"transactions": transactions, "tickets": tickets, "customers": customers}
    given = {k: Path(p) for k, p in paths.items() if p is not None}
    for name, p in given.items():
        if not p.is_file():
            raise DataError(f"{p}: {name} file not found")
    partitions = partitions or auto_partitions(list(given.values()))
    read = _columns_to_read(given, data_config)
    as_of = to_day(as_of if as_of is not None else _last_day(given["transactions"], data_config))
    with tempfile.TemporaryDirectory(dir=Path(out).parent if Path(out).parent.exists() else None) as tmp:
        work = Path(tmp)
        if partitions > 1:
            for name, p in given.items():
                id_column = getattr(data_config.columns, name).get("customer_id", "customer_id")
                _split(p, name, id_column, read[name], partitions, work)
        scored, rejects, samples = [], [], []
        for b in range(partitions):
            result = score_tables(model, _bucket_tables(given, read, data_config, work, b, partitions), as_of,
                                  playbook, control_fraction=0.0)
            scored.append(work / f"scores-{b}.parquet")
            result.scores.drop(columns=["selected", "control_group"]).to_parquet(scored[-1], index=False)
            rejects.append(result.rejects)
            if result.drift_sample is not None:
                frac = min(1.0, 200_000 / partitions / max(len(result.drift_sample), 1))
                samples.append(result.drift_sample.sample(frac=frac, random_state=b))
            if on_partition is not None:
                on_partition(b + 1, partitions)
        light = pd.concat([pd.read_parquet(p, columns=["customer_id", "risk_band", "expected_value", "action_cost"])
                           for p in scored], ignore_index=True)
        light = select_customers(light, budget=budget, control_fraction=control_fraction, seed=seed)
        _write_parts(scored, light.set_index("customer_id")[["selected", "control_group"]], Path(out))
    non_empty = [r for r in rejects if not r.empty]
    all_rejects = pd.concat(non_empty, ignore_index=True) if non_empty else rejects[0]
    return ScoreResult(light, all_rejects, pd.concat(samples, ignore_index=True) if samples else None)


def _columns_to_read(given: dict[str, Path], data_config: DataConfig) -> dict[str, list[str] | None]:
    """The columns to read of each file: those the features use; None: every column. A missing contract
    column stops here, before partitioning."""
    read: dict[str, list[str] | None] = {}
    for name, p in given.items():
        header = _header_or_none(p)
        if header is not None:
            check_columns(name, header, str(p), data_config)
        used = None if header is None else feature_columns(name, header, data_config)
        read[name] = None if used == header else used
    return read


def _last_day(transactions: Path, data_config: DataConfig) -> pd.Timestamp:
    """"Today" when none is given: the last day in the transactions (one pass over the timestamps)."""
    ts_col = data_config.columns.transactions.get("timestamp", "timestamp")
    return max(last_day(parse_dates(c[ts_col], "timestamp", str(transactions), data_config.date_format))
               for c in _chunks(transactions, ts_col, [ts_col]))


def _bucket_tables(given: dict[str, Path], read: dict[str, list[str] | None], data_config: DataConfig,
                   work: Path, b: int, partitions: int) -> Tables:
    """The validated tables of bucket ``b`` (with one partition: the files read whole)."""
    if partitions == 1:
        frames = {k: read_table(p, read[k]) for k, p in given.items()}
    else:
        frames = {k: _read_bucket(work, k, b) for k in given}
    if frames["transactions"] is None:
        frames["transactions"] = pd.DataFrame(columns=read["transactions"] or _read_header(given["transactions"]))
    return validate_tables(frames["transactions"], frames.get("tickets"), frames.get("customers"),
                           config=data_config, sources={k: str(p) for k, p in given.items()},
                           allow_empty=partitions > 1)


def _header_or_none(path: Path) -> list[str] | None:
    """The file's column names; None when they cannot be read (reading the file whole then raises the error)."""
    try:
        return _read_header(path)
    except (ValueError, OSError):
        return None


def _read_header(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        return list(pd.read_csv(path, nrows=0).columns)
    import pyarrow.parquet as pq

    return pq.read_schema(path).names


def _write_parts(parts: list[Path], flags: pd.DataFrame, out: Path) -> None:
    """Join the selection flags onto each scored part and stream the parts into ``out``, atomically."""
    with appending_table(out) as append:
        for part in parts:
            append(pd.read_parquet(part).join(flags, on="customer_id")[OUTPUT_COLUMNS])
