"""Scale-out on Dask: the local engine's tables, features, scores and models, computed on a cluster.

The local engine holds every table in one process. This module runs the same steps on a
``dask.distributed`` cluster (a ``LocalCluster`` on this machine, or a scheduler given by address) and
gives the same results:

* :func:`read_tables_dask` reads CSV files, Parquet files and Parquet datasets (directories of files) in
  chunks on the workers and repartitions every table by a hash of the customer id, so each partition holds
  the complete history of its customers in all three tables. Each partition is validated with
  :func:`churnguard.dataset.validate_tables`. What depends on a whole file is decided once over all
  partitions: whether it has rows and the contract columns, the date style of each date column, and the
  ``on_bad_rows`` policy (raise on any bad row, or on a table without usable rows). So the kept rows, the
  rejects (with each row's number in its file) and the errors are the local engine's.
* :func:`build_features_dask` computes the population-level quantities over all customers first: the
  lifespan behind CLTV, the VIP threshold, and whether each customer attribute is numeric or categorical
  (and its levels). Each partition's features are then built with them, so the result equals
  ``build_features`` on all the data, column for column.
* :func:`score_dask` scores the partitions in parallel with the model's own lifespan and VIP threshold and
  selects customers within the budget over all of them: the scores equal ``score_tables``.
* :func:`train_dask` builds the training set per partition and trains ``lightgbm.dask``'s classifier.

Failures: a task whose worker dies is retried on another worker, up to
``distributed.scheduler.allowed-failures`` times (3 by default). When the retries are used up, or a task
raises, the call raises ``RuntimeError`` naming the step and the customer partition; a :class:`DataError`
about the input passes through as it is. Output files are written atomically, so a failed run leaves none.

Workers read the input files themselves: with a remote scheduler, every worker must see the same paths
(a shared file system). The shuffle by customer makes ``chunks x partitions`` small tasks per table;
input is read in chunks of about 64 MB and partitioned at about 128 MB per partition by default.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import operator
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd

from churnguard._io import TABLE_SUFFIXES, atomic_path

# _DATES and _KNOWN_ATTRIBUTES are the local engine's own lists of date columns and of customer columns that
# are not free attributes: imported, not copied, so both engines stay in step.
from churnguard.dataset import (
    _DATES,
    CONTRACT,
    REJECT_COLUMNS,
    ROW_COLUMN,
    DataError,
    Tables,
    validate_tables,
)
from churnguard.features import _KNOWN_ATTRIBUTES, build_features, to_day

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.btyd import BGNBDParams
    from churnguard.config import Config, DataConfig, FeatureConfig, Playbook
    from churnguard.model import ChurnModel
    from churnguard.scoring import ScoreResult
    from churnguard.train import TrainResult

__all__ = ["DaskTables", "build_features_dask", "connect", "read_tables_dask", "score_dask", "train_dask"]

logger = logging.getLogger(__name__)

_TABLES = ("transactions", "tickets", "customers")
_CHECK_ORDER = ("transactions", "customers", "tickets")  # the order validate_tables checks the tables in
_BLOCK_BYTES = 64 * 2**20
_PARTITION_BYTES = 128 * 2**20
_DAY = pd.Timedelta(days=1)
_WEEK = 7.0  # BG/NBD runs in weeks, as in churnguard.train
_DRIFT_LIMIT = 200_000  # rows in the drift sample, as in churnguard.scoring
# A valid row appended to every table of every partition before validation (and removed after): it keeps
# validate_tables from refusing a partition whose table is empty or has only bad rows, which are facts about
# the partition, not the file. Values are chosen to pass every check and to keep each column's dtype.
_PLACEHOLDER_ID = "__churnguard_placeholder__"
_PLACEHOLDER_DAY = pd.Timestamp("2000-01-01")
_PLACEHOLDER_NUMBERS = {"amount": 0, "quantity": 0, "discount": 0, "csat": 3, "nps": 5, "loyalty_points": 0}


# -- the cluster --------------------------------------------------------------------------------------------


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


def _client_for(dtables: DaskTables, client: Client | str | None) -> Client:
    """The client of ``dtables``; a given client or address must point at the same scheduler."""
    if client is None:
        return dtables.client
    address = client if isinstance(client, str) else client.scheduler.address
    if address != dtables.client.scheduler.address:
        raise ValueError(f"the tables live on the scheduler {dtables.client.scheduler.address}, not on {address}; "
                         "use the client they were read with")
    return dtables.client if isinstance(client, str) else client


# -- reading: plan on the client, read and shuffle on the workers -------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    """One piece of an input file that one task reads: a byte range of a CSV file (parsed with the file's
    header line) or some row groups of a Parquet file (plus the file's hive partition values)."""

    path: str
    kind: str
    start: int = 0
    stop: int = 0
    header: bytes = b""
    row_groups: tuple[int, ...] = ()
    keys: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class _Source:
    """An input table: its name in messages, its columns, its chunks and which file each chunk is in."""

    table: str
    name: str
    columns: tuple[str, ...]
    chunks: tuple[_Chunk, ...]
    files: tuple[str, ...]
    chunk_file: tuple[int, ...]
    nbytes: int


def _plan(path: str | Path, table: str, block_bytes: int) -> _Source:
    """Chunks of a CSV file, a Parquet file or a Parquet dataset directory, from headers and footers only."""
    p = Path(path)
    if p.is_dir():
        return _plan_dataset(p, table, block_bytes)
    if not p.is_file():
        raise DataError(f"{p}: {table} file not found")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _plan_csv(p, table, block_bytes)
    if suffix in TABLE_SUFFIXES:
        return _plan_parquet(str(p), table, [(str(p), ())], block_bytes)
    raise DataError(f"{p}: cannot read {table} file: unsupported file type {suffix or '(none)'!r}; "
                    "use .csv, .parquet or a directory of Parquet files")


def _plan_csv(p: Path, table: str, block_bytes: int) -> _Source:
    size = p.stat().st_size
    with p.open("rb") as fh:
        header = fh.readline()
        try:
            columns = tuple(pd.read_csv(io.BytesIO(header), dtype=str, nrows=0).columns)
        except pd.errors.EmptyDataError:
            raise DataError(f"{p}: the {table} file is empty") from None
        except ValueError as exc:
            raise DataError(f"{p}: cannot read {table} file: {exc}") from None
        bounds = [len(header)]
        while bounds[-1] + block_bytes < size:  # cut right after a line end near every block_bytes
            fh.seek(bounds[-1] + block_bytes - 1)
            fh.readline()
            if fh.tell() >= size:
                break
            bounds.append(fh.tell())
        bounds.append(max(size, len(header)))
    chunks = tuple(_Chunk(str(p), "csv", start=a, stop=b, header=header) for a, b in itertools.pairwise(bounds))
    return _Source(table, str(p), columns, chunks, (str(p),), (0,) * len(chunks), size)


def _plan_dataset(p: Path, table: str, block_bytes: int) -> _Source:
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(p, format="parquet", partitioning="hive")  # skips files starting with '.' or '_'
        fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"{p}: cannot read the {table} dataset: {exc}") from None
    if not fragments:
        raise DataError(f"{p}: the {table} dataset directory holds no Parquet files")
    csv = [f.path for f in fragments if f.path.lower().endswith(".csv")]
    if csv:
        raise DataError(f"{p}: a directory is read as a Parquet dataset, but it holds CSV files (e.g. {csv[0]}); "
                        "give one CSV file or convert the files to Parquet")
    files = [(f.path, tuple(ds.get_partition_keys(f.partition_expression).items())) for f in fragments]
    return _plan_parquet(str(p), table, files, block_bytes)


def _plan_parquet(name: str, table: str, files: list[tuple[str, tuple]], block_bytes: int) -> _Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunks: list[_Chunk] = []
    chunk_file: list[int] = []
    columns: dict[str, None] = {}
    nbytes = 0
    for i, (path, keys) in enumerate(files):
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataError(f"{path}: cannot read {table} file: {exc}") from None
        schema = meta.schema.to_arrow_schema()
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        columns.update((c, None) for c in schema.names if c not in index)
        columns.update((k, None) for k, _ in keys)
        groups: list[int] = []
        size = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            size += meta.row_group(g).total_byte_size
            nbytes += meta.row_group(g).total_byte_size
            if size >= block_bytes:
                chunks.append(_Chunk(path, "parquet", row_groups=tuple(groups), keys=keys))
                chunk_file.append(i)
                groups, size = [], 0
        if groups or meta.num_row_groups == 0:
            chunks.append(_Chunk(path, "parquet", row_groups=tuple(groups), keys=keys))
            chunk_file.append(i)
    return _Source(table, name, tuple(columns), tuple(chunks), tuple(f for f, _ in files), tuple(chunk_file), nbytes)


def _read_chunk(chunk: _Chunk, columns: tuple[str, ...]) -> pd.DataFrame:
    """The raw rows of one chunk, read exactly as the local engine reads the whole file."""
    if chunk.kind == "csv":
        with open(chunk.path, "rb") as fh:
            fh.seek(chunk.start)
            data = fh.read(chunk.stop - chunk.start)
        try:
            frame = pd.read_csv(io.BytesIO(chunk.header + data), dtype=str, keep_default_na=False, na_values=[""])
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"{chunk.path}: cannot read bytes {chunk.start}-{chunk.stop}: {exc}") from None
    else:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(chunk.path)
        arrow = (pf.read_row_groups(list(chunk.row_groups), use_pandas_metadata=True) if chunk.row_groups
                 else pf.schema_arrow.empty_table())
        frame = arrow.to_pandas().reset_index(drop=True)
        for key, value in chunk.keys:
            frame[key] = value
    return frame if tuple(frame.columns) == columns else frame.reindex(columns=list(columns))


def _date_text(raw: pd.Series) -> pd.Series:
    """Date cells as validate_tables sees them before parsing: stripped text, blanks missing."""
    text = raw.astype("string").str.strip()
    return text.mask(text == "")


def _first_unique(values: pd.Series, n: int) -> list[str]:
    return [str(v) for v in values.dropna().astype(str).unique()[:n]]


def _census(frame: pd.DataFrame, date_columns: tuple[str, ...]) -> dict[str, Any]:
    """Row count and, per text date column, what decides its date style over the whole file."""
    dates = {}
    for col in date_columns:
        if col not in frame or pd.api.types.is_datetime64_any_dtype(frame[col]):
            continue
        present = _date_text(frame[col]).dropna()
        if present.empty:
            continue
        iso = pd.to_datetime(present, format="ISO8601", errors="coerce", utc=True)
        dates[col] = {"present": len(present), "iso": int(iso.notna().sum()), "first": str(present.iloc[0])}
    return {"rows": len(frame), "dates": dates}


def _bucket(ids: pd.Series, n: int) -> np.ndarray:
    """Partition of each row: a hash of the stripped customer id (as in churnguard.batch)."""
    key = ids.astype("string").fillna("").str.strip()
    return (pd.util.hash_pandas_object(key, index=False).to_numpy() % n).astype(np.int64)


def _split_chunk(frame: pd.DataFrame, first_row: int, id_column: str, n: int,
                 styles: dict[str, str]) -> tuple[list[pd.DataFrame], dict[str, dict]]:
    """Number the rows, check and unify the date styles decided for the whole file, and cut the chunk into one
    piece per customer partition (row order kept).

    For each column in ``styles``, values not in that style must be no date at all (else the file mixes
    styles: counted in the returned stats). Values of a non-ISO style are rewritten as ISO text, so every
    partition reads them alike instead of guessing a style from its own first value.
    """
    frame = frame.copy()
    frame[ROW_COLUMN] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    stats = {}
    for col, fmt in styles.items():
        if col not in frame:
            continue
        text = _date_text(frame[col])
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        ok = parsed.notna()
        failed = text[text.notna() & ~ok]
        other = pd.to_datetime(failed, format="mixed", errors="coerce", utc=True)
        stats[col] = {"present": int(text.notna().sum()), "mixed": int(other.notna().sum()),
                      "ok": _first_unique(text[ok], 2), "bad": _first_unique(failed[other.notna()], 3)}
        if fmt != "ISO8601":
            iso = pd.Series(pd.NA, index=text.index, dtype="string")
            iso[ok] = [t.isoformat() for t in parsed[ok]]  # the same instant, in ISO 8601
            frame[col] = text.where(~ok, iso)
    buckets = _bucket(frame[id_column], n) if id_column in frame else np.zeros(len(frame), dtype=np.int64)
    order = np.argsort(buckets, kind="stable")
    cuts = np.searchsorted(buckets[order], np.arange(n + 1))
    ordered = frame.iloc[order]
    return [ordered.iloc[cuts[b] : cuts[b + 1]] for b in range(n)], stats


@dataclass(frozen=True)
class _Spec:
    """What each partition's validation needs to know about the whole input."""

    config: DataConfig
    sources: dict[str, str]
    files: dict[str, tuple[str, ...]]
    file_starts: dict[str, tuple[int, ...]]
    date_text: str


def _placeholder_value(name: str, dtype: Any, date_text: str) -> Any:
    """A value for the placeholder row's column ``name`` that passes validation and fits ``dtype``."""
    if name == ROW_COLUMN:
        return 0
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if name == "customer_id":
        if pd.api.types.is_integer_dtype(dtype):
            info = np.iinfo(getattr(dtype, "numpy_dtype", dtype))
            return int(info.min) if info.min < 0 else int(info.max)
        return _PLACEHOLDER_ID
    if name in ("timestamp", "opened_at"):
        if pd.api.types.is_datetime64_any_dtype(dtype):
            tz = getattr(dtype, "tz", None)
            return _PLACEHOLDER_DAY.tz_localize(tz) if tz is not None else _PLACEHOLDER_DAY
        return date_text
    if name in _PLACEHOLDER_NUMBERS:
        if numeric:
            return _PLACEHOLDER_NUMBERS[name]
        return "0" if name == "amount" else None
    if isinstance(dtype, pd.CategoricalDtype):
        return np.nan
    if pd.api.types.is_bool_dtype(dtype):
        return False
    if pd.api.types.is_integer_dtype(dtype):
        return 0
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return pd.NaT
    return None


def _placeholder(frame: pd.DataFrame, table: str, config: DataConfig, date_text: str) -> pd.DataFrame:
    inverse = {user: name for name, user in getattr(config.columns, table).items()}
    columns = {}
    for col, dtype in frame.dtypes.items():
        value = _placeholder_value(inverse.get(col, col), dtype, date_text)
        try:
            columns[col] = pd.Series([value], dtype=dtype)
        except (TypeError, ValueError):
            columns[col] = pd.Series([value])
    return pd.DataFrame(columns)


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, leaving out empty frames (they must not change dtypes); the first one if all are empty."""
    full = [f for f in frames if len(f)]
    if not full:
        return frames[0].iloc[:0]
    return full[0] if len(full) == 1 else pd.concat(full, ignore_index=True)


def _validate_partition(pieces: dict[str, list[pd.DataFrame]], spec: _Spec) -> Tables:
    """Validate one customer partition (always in reject mode: the raise/reject policy is applied globally).

    Returns the partition's tables; rejects carry the row number and file of each row and ``_order``, its
    position in the whole input.
    """
    frames, placeholder_ids = {}, {}
    for table, parts in pieces.items():
        frame = _concat(parts)
        extra = _placeholder(frame, table, spec.config, spec.date_text)
        id_column = getattr(spec.config.columns, table).get("customer_id", "customer_id")
        placeholder_ids[table] = str(extra[id_column].iloc[0]) if id_column in extra else None
        frames[table] = extra if frame.empty else pd.concat([frame.reset_index(drop=True), extra], ignore_index=True)
    config = spec.config.model_copy(update={"on_bad_rows": "reject"})
    tables = validate_tables(frames["transactions"], frames.get("tickets"), frames.get("customers"), config=config,
                             sources=spec.sources, allow_empty=True)
    rejects = tables.rejects
    if not rejects.empty and (rejects["row"] == 0).any():
        bad = rejects[rejects["row"] == 0].iloc[0]
        raise RuntimeError(f"internal placeholder row of the {bad['table']} table was rejected: column "
                           f"{bad['column']!r} {bad['reason']} ({bad['value']!r}); please report this")
    if not rejects.empty:
        rejects = rejects.copy()
        order = rejects["row"].to_numpy(dtype=np.int64)
        rejects["_order"] = order
        for table in rejects["table"].unique():
            mine = (rejects["table"] == table).to_numpy()
            starts = np.asarray(spec.file_starts[table], dtype=np.int64)
            idx = np.searchsorted(starts, order[mine], side="right") - 1
            rejects.loc[mine, "row"] = order[mine] - starts[idx] + 1
            if len(spec.files[table]) > 1:
                rejects.loc[mine, "source"] = np.asarray(spec.files[table], dtype=object)[idx]
    out = {}
    for table in ("transactions", "tickets", "customers"):
        frame = getattr(tables, table)
        if frame is not None:
            if frame.empty or str(frame["customer_id"].iloc[-1]) != placeholder_ids[table]:
                raise RuntimeError(f"internal placeholder row of the {table} table is missing; please report this")
            frame = frame.iloc[:-1]
        out[table] = frame
    return Tables(out["transactions"], out["tickets"], out["customers"], rejects)


def _partition_rejects(tables: Tables) -> pd.DataFrame:
    return tables.rejects


def _reject_digest(tables: Tables) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (table, column, reason): how many rows, and the few rows a raise-mode message quotes."""
    rej = tables.rejects
    if rej.empty:
        return pd.DataFrame(columns=["table", "column", "reason", "n"]), rej
    rej = rej.sort_values("_order", kind="stable")
    keys = ["table", "column", "reason"]
    counts = rej.groupby(keys, sort=False).size().rename("n").reset_index()
    first = rej.groupby(keys, sort=False).cumcount() < 3
    seen = ~rej.duplicated([*keys, "value"])
    first_values = seen & (seen.astype(int).groupby([rej[k] for k in keys], sort=False).cumsum() <= 3)
    return counts, rej[first | first_values]


def _rows_error(table: str, source: str, n_rows: int, counts: pd.DataFrame, samples: pd.DataFrame,
                multi_file: bool) -> DataError:
    """The DataError validate_tables would raise for ``table``, with counts over the whole input."""
    n_bad = int(counts["n"].sum())
    lines = []
    for (column, reason), group in counts.groupby(["column", "reason"]):
        rows = samples[(samples["column"] == column) & (samples["reason"] == reason)].sort_values("_order")
        examples = ", ".join(repr(v) for v in _first_unique(rows["value"], 3))
        where = [f"{Path(s).name}:{r}" if multi_file else str(r) for s, r in zip(rows["source"], rows["row"], strict=True)]
        lines.append(f"  column {column!r}: {int(group['n'].sum())} row(s) {reason}, e.g. {examples} "
                     f"(rows {', '.join(where[:3])})")
    hint = ("no usable rows remain" if n_bad == n_rows
            else "fix the file, or set data.on_bad_rows: reject to set these rows aside in a rejects report")
    return DataError(f"{source}: {n_bad} of {n_rows} {table} row(s) cannot be used:\n" + "\n".join(lines) + f"\n{hint}")


def _check_columns(src: _Source, n_rows: int, config: DataConfig) -> None:
    """The whole-file checks of validate_tables: rows present, mapped and required columns present."""
    table, columns = src.table, list(src.columns)
    if n_rows == 0:
        raise DataError(f"{src.name}: the {table} file has no rows (columns: {', '.join(map(str, columns))})")
    mapping: dict[str, str] = getattr(config.columns, table)
    missing_mapped = {c: u for c, u in mapping.items() if u not in columns}
    if missing_mapped:
        c, u = next(iter(missing_mapped.items()))
        raise DataError(f"{src.name}: column {u!r} (mapped to {c!r} in data.columns.{table}) not found; "
                        f"the file has {len(columns)} columns: {', '.join(map(str, columns[:20]))}")
    renamed = [{u: c for c, u in mapping.items()}.get(col, col) for col in columns]
    missing = [c for c in CONTRACT[table]["required"] if c not in renamed]
    if missing:
        raise DataError(
            f"{src.name}: required {table} column(s) {', '.join(map(repr, missing))} not found in {n_rows} rows; "
            f"the file has columns: {', '.join(map(str, renamed[:20]))}. "
            f"Map your names with data.columns.{table} in the config, e.g. {{{missing[0]}: YourColumn}}"
        )


def _mixed_error(source: str, column: str, fmt: str, stats: list[dict]) -> DataError:
    n_mixed = sum(s["mixed"] for s in stats)
    present = sum(s["present"] for s in stats)
    ok = list(dict.fromkeys(v for s in stats for v in s["ok"]))[:2]
    bad = list(dict.fromkeys(v for s in stats for v in s["bad"]))[:3]
    return DataError(
        f"{source}: column {column!r} mixes date styles: {n_mixed} of {present} rows "
        f"do not match the style {fmt!r} of the others (e.g. {', '.join(map(repr, ok))}), "
        f"e.g. {', '.join(map(repr, bad))}. Set data.date_format (e.g. '%d/%m/%Y %H:%M') so every row is read the same way"
    )


def _date_formats(src: _Source, census: list[dict], config: DataConfig) -> dict[str, str]:
    """Decide each text date column's style over the whole file, as validate_tables would on all rows.

    Columns all in ISO 8601 need nothing. A column with ISO and other values is ISO: the others must be no
    date at all (checked in ``_split_chunk``). A column without ISO values takes the style of its first value,
    and the others must be no date either.
    """
    if config.date_format is not None:
        return {}
    mapping: dict[str, str] = getattr(config.columns, src.table)
    inverse = {u: c for c, u in mapping.items()}
    formats = {}
    for col in src.columns:
        name = inverse.get(col, col)
        stats = [c["dates"][col] for c in census if col in c["dates"]]
        present = sum(s["present"] for s in stats)
        iso = sum(s["iso"] for s in stats)
        if name not in _DATES or present == 0 or iso == present:
            continue
        if iso > 0:
            formats[col] = "ISO8601"
            continue
        first = stats[0]["first"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas' dayfirst hint; the local engine guesses alike
            fmt = pd.tseries.api.guess_datetime_format(first)
        if fmt is None:
            raise DataError(f"{src.name}: column {name!r}: its first value {first!r} is a date in no known style, "
                            "so the style of the column cannot be inferred; fix the value or set data.date_format")
        formats[col] = fmt
    return formats


def read_tables_dask(
    transactions: str | Path,
    tickets: str | Path | None = None,
    customers: str | Path | None = None,
    *,
    config: DataConfig,
    client: Client | str,
    npartitions: int | None = None,
    block_bytes: int = _BLOCK_BYTES,
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
            _check_columns(sources[t], rows[t], config)
            formats[t] = _date_formats(sources[t], census[t], config)
    splits, starts, file_starts = {}, {}, {}
    for t, src in sources.items():
        lengths = np.array([c["rows"] for c in census[t]], dtype=np.int64)
        starts[t] = np.concatenate([[1], 1 + np.cumsum(lengths)[:-1]])
        file_starts[t] = tuple(int(starts[t][src.chunk_file.index(i)]) for i in range(len(src.files)))
        splits[t] = [tasks.submit(f"split-{t}-c{i}", _split_chunk, f, int(starts[t][i]), ids[t], n, formats[t])
                     for i, f in enumerate(raw[t])]
    del raw
    if any(formats.values()):  # no value outside a column's style may be a date in another style
        checked = _gather(client, {t: [tasks.submit(f"datecheck-{t}-c{i}", operator.itemgetter(1), s)
                                       for i, s in enumerate(fs)] for t, fs in splits.items() if formats[t]},
                          "checking date styles")
        for t in _CHECK_ORDER:
            for col, fmt in formats.get(t, {}).items():
                stats = [c[col] for c in checked[t] if col in c]
                if sum(s["mixed"] for s in stats):
                    inverse = {u: c for c, u in getattr(config.columns, t).items()}
                    raise _mixed_error(sources[t].name, inverse.get(col, col), fmt, stats)
    spec = _Spec(config, {t: s.name for t, s in sources.items()}, {t: s.files for t, s in sources.items()},
                 file_starts, _placeholder_date(config))
    partitions = []
    for b in range(n):
        pieces = {t: [tasks.submit(f"piece-{t}-c{i}-p{b}", _piece, s, b) for i, s in enumerate(fs)]
                  for t, fs in splits.items()}
        partitions.append(tasks.submit(f"validate-p{b}", _validate_partition, pieces, spec))
    del splits
    counts, samples = zip(*_gather(client, [tasks.submit(f"rejects-p{b}", _reject_digest, p)
                                             for b, p in enumerate(partitions)], "validating the input"), strict=True)
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
        frames = _gather(client, [tasks.submit(f"gather-rejects-p{b}", _partition_rejects, p)
                                  for b, p in enumerate(partitions)], "collecting rejected rows")
        rank = {t: i for i, t in enumerate(_CHECK_ORDER)}
        rejects = pd.concat([f for f in frames if not f.empty], ignore_index=True)
        rejects = (rejects.assign(_rank=rejects["table"].map(rank))
                   .sort_values(["_rank", "_order"], kind="stable")[REJECT_COLUMNS].reset_index(drop=True))
        for t, k in rejected.items():
            if k:
                logger.warning("%s: set aside %d of %d %s rows (see rejects)", sources[t].name, k, rows[t], t)
    return DaskTables(client, partitions, rejects, {t: s.name for t, s in sources.items()}, rows)


def _piece(split: tuple[list[pd.DataFrame], dict], b: int) -> pd.DataFrame:
    return split[0][b]


def _placeholder_date(config: DataConfig) -> str:
    if config.date_format is None:
        return _PLACEHOLDER_DAY.strftime("%Y-%m-%d")
    text = _PLACEHOLDER_DAY.tz_localize("UTC").strftime(config.date_format)
    if pd.isna(pd.to_datetime(text, format=config.date_format, errors="coerce", utc=True)):
        raise DataError(f"data.date_format {config.date_format!r} cannot be read back from the dates it writes "
                        f"({text!r}); the dask engine needs a format that round-trips")
    return text


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
        """The last calendar day with a transaction, as :meth:`churnguard.dataset.Tables.last_date`."""
        return self._timespan()[1].normalize()

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


# -- features -----------------------------------------------------------------------------------------------


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
    return len(purchases), purchases["timestamp"].min(), len(year_before), int(np.isin(year_before, last_year).sum())


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
    return build_features(tables, as_of, cfg, lifespan_years=lifespan, vip_threshold=vip)


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


# -- scoring ------------------------------------------------------------------------------------------------


def _score_partition(model: ChurnModel, tables: Tables, feats: pd.DataFrame, playbook: Playbook, reasons_for: str,
                     as_of: pd.Timestamp) -> dict[str, Any]:
    """The steps of :func:`churnguard.scoring.score_tables` after the features, for one partition (without the
    selection, which needs every customer)."""
    from churnguard.btyd import BGNBDParams
    from churnguard.scoring import OUTPUT_COLUMNS, score_features
    from churnguard.train import add_bgnbd_features

    meta = model.metadata
    feats = add_bgnbd_features(feats, BGNBDParams(**meta["bgnbd_params"]), meta["horizon_days"])
    columns = [c for c in OUTPUT_COLUMNS if c not in ("selected", "control_group")]
    if len(feats):
        scores = score_features(model, feats, playbook, reasons_for=reasons_for)
        scores["model_version"] = meta.get("model_version", meta["package_version"])
        scores = scores[columns]
    else:
        scores = pd.DataFrame(columns=columns)
    known = tables.customer_ids()
    if tables.tickets is not None:
        known = known.union(pd.Index(tables.tickets["customer_id"].unique()))
    keep = (feats["recency_days"] <= meta["config"]["labels"]["lookback_days"]).to_numpy()
    drift = feats.loc[keep, ["customer_id", *[c for c in model.feature_names_ if c in feats]]].copy()
    drift["churn_probability"] = scores.loc[keep, "churn_probability"].to_numpy() if len(feats) else []
    light = scores[["customer_id", "risk_band", "expected_value", "action_cost"]].assign(_in_lookback=keep)
    return {"scores": scores, "light": light, "unseen": known.difference(pd.Index(scores["customer_id"])).to_numpy(),
            "drift": drift}


def _drift_rows(bundle: dict[str, Any], wanted: np.ndarray | None) -> pd.DataFrame:
    drift = bundle["drift"]
    return drift if wanted is None else drift[drift["customer_id"].isin(wanted)]


def _drift_sample(client: Client, tasks: _Tasks, scored: list[Future], light: pd.DataFrame) -> pd.DataFrame | None:
    """The local engine's drift sample: the in-lookback customers (in customer order, labelled by their row
    in the scores), or the same ``sample(n=200_000, random_state=0)`` of them when there are more."""
    kept = light.loc[light["_in_lookback"]]
    wanted: dict[int, np.ndarray | None] = dict.fromkeys(range(len(scored)))
    labels = kept.index.to_numpy()
    if len(kept) > _DRIFT_LIMIT:  # pandas' DataFrame.sample draws RandomState(seed).choice(n, size, replace=False)
        labels = labels[np.random.RandomState(0).choice(len(kept), size=_DRIFT_LIMIT, replace=False)]
        chosen = light.loc[labels]
        wanted = {b: chosen.loc[chosen["_part"] == b, "customer_id"].to_numpy() for b in range(len(scored))}
    frames = _gather(client, [tasks.submit(f"drift-p{b}", _drift_rows, s, wanted[b]) for b, s in enumerate(scored)],
                     "collecting the drift sample")
    drift = _concat(frames)
    if drift.empty:
        return drift.drop(columns="customer_id")
    position = pd.Series(light.index, index=pd.Index(light["customer_id"]))
    drift.index = position.reindex(drift["customer_id"]).to_numpy()
    return drift.drop(columns="customer_id").loc[labels]


def score_dask(
    model: ChurnModel,
    dtables: DaskTables,
    as_of: str | pd.Timestamp | None,
    playbook: Playbook,
    *,
    client: Client | str | None = None,
    budget: float | None = None,
    control_fraction: float = 0.1,
    seed: int = 0,
    reasons_for: str = "all",
    out: str | Path | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score every customer on the cluster; the same result as ``score_tables`` on all the data.

    Partitions are scored in parallel (features with the model's lifespan and VIP threshold and with attribute
    kinds decided over all customers, then the model, reasons and actions); the budget selection and the
    control group are then drawn over all customers from their light columns.

    Args:
        model: a loaded model (sent to the workers as an object: they need no model file or key).
        dtables: tables from :func:`read_tables_dask`.
        as_of: score as of this day (default: the last day in the data).
        playbook: the retention playbook.
        client: the tables' client (default) or the same scheduler's address.
        budget, control_fraction, seed, reasons_for: as for ``score_tables``.
        out: when given, the scores are written there (.csv or .parquet, atomically, one partition at a time,
            each sorted by customer id) and the result holds only the light columns, as ``score_files``.
        on_step: progress callback, called with a short description before each step.

    Returns:
        Scores (all columns sorted by customer id, or the light ones when ``out`` is given), rejects and the
        drift sample.

    Raises:
        RuntimeError: a worker failed or died; ``out`` is then not written.
    """
    from churnguard.config import FeatureConfig
    from churnguard.scoring import OUTPUT_COLUMNS, ScoreResult, select_customers

    step = on_step or (lambda _msg: None)
    client = _client_for(dtables, client)
    if not 0 <= control_fraction < 1:
        raise ValueError(f"control_fraction must be in [0, 1), got {control_fraction}")
    if budget is not None and budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if out is not None and Path(out).suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{out}: unsupported file type {Path(out).suffix or '(none)'!r}; use .csv or .parquet")
    meta = model.metadata
    day = to_day(as_of) if as_of is not None else dtables.last_date()
    fcfg = FeatureConfig.model_validate(meta["config"]["features"])
    step(f"building features as of {day.date()}")
    snap = _feature_snapshots(dtables, client, [day], fcfg, lifespan=meta["summary"]["lifespan_years"],
                              vip=meta["vip_cltv_threshold"])[day]
    step("scoring the partitions")
    tasks = _Tasks(client)
    remote_model = client.scatter(model, broadcast=True, hash=False)
    scored = [tasks.submit(f"score-p{b}", _score_partition, remote_model, p, f, playbook, reasons_for, day)
              for b, (p, f) in enumerate(zip(dtables.partitions, snap.parts, strict=True))]
    parts = _gather(client, [tasks.submit(f"light-p{b}", _pick, s, "light", "unseen") for b, s in enumerate(scored)],
                    "scoring")
    step("selecting customers within the budget")
    light = _combine([lt.assign(_part=b) for b, (lt, _) in enumerate(parts)])
    flags = select_customers(light[["customer_id", "risk_band", "expected_value", "action_cost"]], budget=budget,
                             control_fraction=control_fraction, seed=seed)
    unseen = pd.Index(np.concatenate([u for _, u in parts])).sort_values()
    late = pd.DataFrame({"table": "all", "source": "", "row": pd.NA, "customer_id": unseen.to_numpy(),
                         "column": "", "value": "", "reason": f"no activity on or before as_of {day.date()}"})
    base = dtables.rejects
    rejects = (pd.concat([r for r in (base, late) if not r.empty], ignore_index=True)
               if not base.empty or not late.empty else base)
    drift = _drift_sample(client, tasks, scored, light)
    selection = flags.set_index("customer_id")[["selected", "control_group"]]
    if out is None:
        frames = _gather(client, [tasks.submit(f"scores-p{b}", _pick, s, "scores") for b, s in enumerate(scored)],
                         "collecting the scores")
        scores = _combine([f for (f,) in frames]).join(selection, on="customer_id")[OUTPUT_COLUMNS]
        return ScoreResult(scores, rejects, drift)
    step(f"writing {out}")
    _write_scores(client, [tasks.submit(f"scores-p{b}", _pick, s, "scores") for b, s in enumerate(scored)],
                  selection, Path(out))
    return ScoreResult(flags, rejects, drift)


def _pick(bundle: dict[str, Any], *names: str) -> tuple:
    return tuple(bundle[n] for n in names)


def _write_scores(client: Client, futures: list[Future], selection: pd.DataFrame, out: Path) -> None:
    """Stream the partitions' scores into ``out`` (CSV or Parquet), atomically: all of it or nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churnguard.scoring import OUTPUT_COLUMNS

    csv = out.suffix.lower() == ".csv"
    with atomic_path(out) as tmp:
        writer = None
        written = False
        try:
            for b, fut in enumerate(futures):
                (frame,) = _gather(client, fut, f"writing the scores of customer partition {b}")
                if frame.empty and (written or b < len(futures) - 1):
                    continue
                frame = frame.sort_values("customer_id", kind="stable").join(selection, on="customer_id")[OUTPUT_COLUMNS]
                if csv:
                    frame.to_csv(tmp, index=False, mode="a" if written else "w", header=not written)
                else:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table.cast(writer.schema))
                written = True
        finally:
            if writer is not None:
                writer.close()


# -- training -----------------------------------------------------------------------------------------------


def _bg_counts(feats: pd.DataFrame) -> pd.DataFrame:
    """This partition's (x, t_x, T) histories in weeks with their counts, as churnguard.train.fit_bgnbd
    compresses them (BG/NBD's fit merges identical rows, so the global fit on these counts is the same)."""
    has = feats["bg_frequency"].notna()
    rows = pd.DataFrame({"x": feats.loc[has, "bg_frequency"], "tx": feats.loc[has, "bg_recency_days"] / _WEEK,
                         "T": feats.loc[has, "bg_age_days"] / _WEEK})
    return rows.value_counts().reset_index(name="n")


def _fit_bgnbd(counts: list[pd.DataFrame]) -> BGNBDParams:
    from churnguard import btyd

    rows = pd.concat(counts, ignore_index=True).groupby(["x", "tx", "T"], sort=False)["n"].sum().reset_index()
    return btyd.fit_bgnbd(rows["x"].to_numpy(), rows["tx"].to_numpy(), rows["T"].to_numpy(), weights=rows["n"].to_numpy())


def _training_rows(feats: pd.DataFrame, tables: Tables, params: BGNBDParams, as_of: pd.Timestamp, horizon: int,
                   lookback: int) -> pd.DataFrame:
    """One snapshot's labelled rows of one partition, as churnguard.training_set.make_training_set makes them."""
    from churnguard.labels import make_labels
    from churnguard.train import add_bgnbd_features

    x = add_bgnbd_features(feats, params, horizon)
    y = make_labels(tables.transactions, as_of, horizon, lookback)
    return x.merge(y.drop(columns="as_of"), on="customer_id", how="inner", validate="one_to_one")


def _shape(frame: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    return len(frame), frame.iloc[:0]


def _stack(frames: list[pd.DataFrame], dtypes: dict[str, Any]) -> pd.DataFrame:
    """Snapshots of one partition as one frame with the dtypes of the local engine's concatenated set."""
    out = _concat(frames)
    change = {c: t for c, t in dtypes.items() if out[c].dtype != t}
    return out.astype(change) if change else out


def _sample(frame: pd.DataFrame, frac: float, seed: int) -> pd.DataFrame:
    return frame if frac >= 1 else frame.sample(frac=frac, random_state=seed)


def _model_input(frame: pd.DataFrame, probe: ChurnModel) -> pd.DataFrame:
    return probe.prepare(frame)


def _labels(frame: pd.DataFrame) -> pd.Series:
    return frame["churned"]


def _row_hashes(tables: Tables) -> list[np.ndarray]:
    return [pd.util.hash_pandas_object(f, index=False).to_numpy() if f is not None else np.array([], dtype=np.uint64)
            for f in (tables.transactions, tables.tickets, tables.customers)]


def _fingerprint(client: Client, dtables: DaskTables) -> str:
    """churnguard.train.data_fingerprint of the same data: the sorted row hashes of each table."""
    import hashlib

    tasks = _Tasks(client)
    hashes = _gather(client, [tasks.submit(f"fingerprint-p{b}", _row_hashes, p) for b, p in enumerate(dtables.partitions)],
                     "fingerprinting the data")
    h = hashlib.sha256()
    for i, name in enumerate(_TABLES):
        if name in dtables.sources:
            h.update(np.sort(np.concatenate([p[i] for p in hashes])).tobytes())
    return h.hexdigest()[:16]


def train_dask(
    dtables: DaskTables,
    config: Config,
    *,
    client: Client | str | None = None,
    model_out: str | Path,
    as_of: str | pd.Timestamp | None = None,
    sample_rows: int = 200_000,
    config_text: str | None = None,
    track: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, evaluate and save a churn model on the cluster, like ``run_training`` on all the data.

    The training set is built per partition (features with global lifespan, VIP threshold and attribute kinds;
    BG/NBD fitted per snapshot on every partition's histories; labels), with the same time split. LightGBM
    trains with ``lightgbm.dask.DaskLGBMClassifier``; its early stopping does not work on the cluster, so the
    number of boosting rounds is chosen by early stopping on the validation snapshot with a local model trained
    on a sample of ``sample_rows`` training rows (all of them when there are fewer), and the distributed model
    then trains for that many rounds. The validation and test snapshots are gathered locally to calibrate and
    to score the model. The saved model is an ordinary :class:`~churnguard.model.ChurnModel` whose booster is
    the distributed one, so it loads and scores like any other.

    Args:
        dtables: tables from :func:`read_tables_dask`.
        config: the whole configuration.
        client: the tables' client (default) or the same scheduler's address.
        model_out: where the signed model file is written (atomically).
        as_of: "today": the last day whose data may be used (default: the last transaction day).
        sample_rows: training rows for choosing the number of boosting rounds.
        config_text: the YAML the config came from, logged to MLflow.
        track: record the run in MLflow (with ``churnguard.train``'s logging: the training curves are those of
            the round-choosing sample model).
        on_step: progress callback, called with a short description before each step.
    """
    from churnguard import __version__
    from churnguard.evaluation import compare_to_baselines, scorecard
    from churnguard.model import ChurnModel, _Calibrator
    from churnguard.monitoring import reference_profile
    from churnguard.train import (
        CALENDAR_FEATURES,
        TrainResult,
        _baseline_scores,
        _git_commit,
        _log_training_run,
        split_by_time,
    )
    from churnguard.training_set import snapshot_dates

    step = on_step or (lambda _msg: None)
    client = _client_for(dtables, client)
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be at least 1, got {sample_rows}")
    last = to_day(as_of) if as_of is not None else dtables.last_date()
    horizon, lookback = config.labels.horizon_days, config.labels.lookback_days
    dates = snapshot_dates(dtables.first_timestamp(), last, config.labels, config.snapshots)
    train_days, valid_day, test_day = split_by_time(dates, horizon)
    used = [*train_days, valid_day, test_day]

    step(f"building features for {len(used)} snapshots and today")
    snaps = _feature_snapshots(dtables, client, [*used, last], config.features)
    tasks = _Tasks(client)
    bg_counts = _gather(client, {d: [tasks.submit(f"bgcounts-{d:%Y%m%d}-p{b}", _bg_counts, f)
                                     for b, f in enumerate(s.parts)] for d, s in snaps.items()}, "fitting BG/NBD")
    bg = {d: _fit_bgnbd(c) for d, c in bg_counts.items()}
    rows = {d: [tasks.submit(f"rows-{d:%Y%m%d}-p{b}", _training_rows, f, p, bg[d], d, horizon, lookback)
                for b, (f, p) in enumerate(zip(snaps[d].parts, dtables.partitions, strict=True))] for d in used}
    shapes = _gather(client, {d: [tasks.submit(f"shape-{d:%Y%m%d}-p{b}", _shape, r) for b, r in enumerate(fs)]
                              for d, fs in rows.items()}, "labelling the snapshots")
    metas = [next((m for n, m in shapes[d] if n), shapes[d][0][1]) for d in used]
    dtypes = pd.concat(metas, ignore_index=True).dtypes.to_dict()  # as the local engine's concatenated set

    step("gathering the validation and test snapshots")

    def local(day: pd.Timestamp) -> pd.DataFrame:
        frames = _gather(client, [tasks.submit(f"stack-{day:%Y%m%d}-p{b}", _stack, [r], dtypes)
                                  for b, r in enumerate(rows[day])], f"gathering the snapshot {day.date()}")
        return _combine(frames)

    valid, test = local(valid_day), local(test_day)
    parts = [b for b in range(dtables.npartitions) if sum(shapes[d][b][0] for d in train_days)]
    train = {b: tasks.submit(f"train-p{b}", _stack, [rows[d][b] for d in train_days], dtypes) for b in parts}
    n_train = sum(shapes[d][b][0] for d in train_days for b in parts)
    if not n_train:
        raise ValueError("the training snapshots hold no labelled customers")

    step(f"choosing the number of boosting rounds on a sample of {min(sample_rows, n_train):,} rows")
    frac = min(1.0, sample_rows / n_train)
    sample = _gather(client, [tasks.submit(f"sample-p{b}", _sample, f, frac, config.model.seed + b)
                              for b, f in train.items()], "sampling training rows")
    sample = _concat(sample).sort_values(["as_of", "customer_id"], kind="stable", ignore_index=True)
    mc = config.model

    def new_model() -> ChurnModel:
        return ChurnModel(mc.params, mc.num_boost_round, mc.early_stopping_rounds, mc.calibration, mc.seed,
                          dict(mc.monotone_constraints))

    probe = new_model().fit(sample, sample["churned"], valid, valid["churned"])
    rounds = probe.best_iteration_

    step(f"training LightGBM on the cluster ({rounds} rounds, {n_train:,} rows)")
    booster = _fit_distributed(client, tasks, train, probe, sample, rounds, config)
    model = new_model()
    model.feature_names_, model.categories_ = probe.feature_names_, probe.categories_
    model.booster_, model.best_iteration_ = booster, int(booster.current_iteration())
    model.evals_result_ = probe.evals_result_  # curves of the round-choosing run (MLflow plots them)
    y_valid, y_test = valid["churned"].to_numpy(), test["churned"].to_numpy()
    model.calibrator_ = _Calibrator.fit(mc.calibration, model.predict_raw(valid), y_valid)

    step("scoring the test snapshot")
    probs = {"model": model.predict_proba(test)}
    baseline_calibrators = {}
    for name, score in _baseline_scores(valid).items():
        baseline_calibrators[name] = _Calibrator.fit(mc.calibration, np.nan_to_num(score, nan=np.nanmax(score)), y_valid)
    for name, score in _baseline_scores(test).items():
        probs[name] = baseline_calibrators[name](np.nan_to_num(score, nan=np.nanmax(score)))
    scorecards = {name: scorecard(y_test, p) for name, p in probs.items()}
    beats, verdict = compare_to_baselines(scorecards)

    step("fingerprinting the data")
    today = snaps[last]
    n_customers = len(_customer_ids(client, tasks, dtables))
    summary = {
        "data_first_day": str(dtables.first_timestamp().date()),
        "as_of": str(last.date()),
        "horizon_days": horizon,
        "transactions": _valid_rows(client, tasks, dtables, "transactions"),
        "tickets": _valid_rows(client, tasks, dtables, "tickets"),
        "customers": n_customers,
        "rejected_rows": len(dtables.rejects),
        "train_snapshots": [str(d.date()) for d in train_days],
        "valid_snapshot": str(valid_day.date()),
        "test_snapshot": str(test_day.date()),
        "train_rows": n_train,
        "valid_rows": len(valid),
        "test_rows": len(test),
        "train_churn_rate": _train_churn_rate(client, tasks, train, n_train),
        "test_churn_rate": float(test["churned"].mean()),
        "best_iteration": model.best_iteration_,
        "n_features": len(model.feature_names_),
        "valid_brier_uncalibrated": float(np.mean((model.predict_raw(valid) - y_valid) ** 2)),
        "valid_brier_calibrated": float(np.mean((model.predict_proba(valid) - y_valid) ** 2)),
        "lifespan_years": today.lifespan,
        "engine": "dask",
        "rounds_chosen_on_rows": len(sample),
    }
    model.metadata = {
        "package_version": __version__,
        "config": config.model_dump(mode="json"),
        "columns": config.data.columns.model_dump(),
        "horizon_days": horizon,
        "risk_bands": dict(mc.risk_bands),
        "training_window": {"first_day": summary["data_first_day"], "as_of": summary["as_of"]},
        "summary": summary,
        "scorecards": scorecards,
        "verdict": verdict,
        "bgnbd_params": bg[last].to_dict(),
        "bgnbd_params_by_snapshot": {str(d.date()): bg[d].to_dict() for d in used},
        "vip_cltv_threshold": float(today.vip_threshold),
        "baseline_calibrators": {k: v.__dict__ for k, v in baseline_calibrators.items()},
        "data_fingerprint": _fingerprint(client, dtables),
        "git_commit": _git_commit(),
        "feature_dtypes": {c: str(dtypes[c]) for c in model.feature_names_},
        "drift_profiles": {
            **{c: reference_profile(test[c]) for c in model.feature_names_ if c not in CALENDAR_FEATURES},
            "churn_probability": reference_profile(pd.Series(probs["model"])),
        },
    }
    step("saving the model file")
    model_path = model.save(model_out)
    result = TrainResult(model, Path(model_path), scorecards, verdict, beats, summary)
    if track:
        step("recording the MLflow run")
        _log_training_run(result, config, config_text, test, probs, y_test)
    return result


def _fit_distributed(client: Client, tasks: _Tasks, train: dict[int, Future], probe: ChurnModel,
                     sample: pd.DataFrame, rounds: int, config: Config) -> Any:
    """Train ``rounds`` boosting rounds with lightgbm.dask on the partitions' rows; return the booster."""
    import dask.dataframe as dd
    import lightgbm.dask as lgb_dask

    mc = config.model
    remote_probe = client.scatter(probe, broadcast=True, hash=False)
    xs = [tasks.submit(f"modelinput-p{b}", _model_input, f, remote_probe) for b, f in train.items()]
    ys = [tasks.submit(f"labels-p{b}", _labels, f) for b, f in train.items()]
    _gather(client, [tasks.submit(f"check-p{b}", len, x) for b, x in zip(train, xs, strict=True)],
            "preparing the model inputs")  # failures surface here, not inside lightgbm
    x = dd.from_delayed(xs, meta=probe.prepare(sample.iloc[:0]), verify_meta=False)
    y = dd.from_delayed(ys, meta=sample["churned"].iloc[:0], verify_meta=False)
    params = {"objective": "binary", "metric": "binary_logloss", "verbose": -1, **mc.params, "seed": mc.seed}
    if mc.monotone_constraints:
        params["monotone_constraints"] = [mc.monotone_constraints.get(c, 0) for c in probe.feature_names_]
    classifier = lgb_dask.DaskLGBMClassifier(client=client, n_estimators=rounds, **params)
    try:
        with warnings.catch_warnings():
            # lightgbm.dask warns about n_jobs on every fit: it sets the threads from the workers itself.
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
            classifier.fit(x, y)
        return classifier.booster_
    except Exception as exc:
        raise RuntimeError(f"dask engine: training LightGBM on the cluster failed: {type(exc).__name__}: {exc}") from exc


def _ids(tables: Tables) -> np.ndarray:
    return tables.customer_ids().to_numpy()


def _customer_ids(client: Client, tasks: _Tasks, dtables: DaskTables) -> np.ndarray:
    ids = _gather(client, [tasks.submit(f"ids-p{b}", _ids, p) for b, p in enumerate(dtables.partitions)],
                  "counting customers")
    return np.concatenate(ids) if ids else np.array([])


def _table_len(tables: Tables, name: str) -> int:
    frame = getattr(tables, name)
    return 0 if frame is None else len(frame)


def _valid_rows(client: Client, tasks: _Tasks, dtables: DaskTables, name: str) -> int:
    return int(sum(_gather(client, [tasks.submit(f"len-{name}-p{b}", _table_len, p, name)
                                    for b, p in enumerate(dtables.partitions)], f"counting {name}")))


def _churned(frame: pd.DataFrame) -> int:
    return int(frame["churned"].sum())


def _train_churn_rate(client: Client, tasks: _Tasks, train: dict[int, Future], n_train: int) -> float:
    churned = _gather(client, [tasks.submit(f"churned-p{b}", _churned, f) for b, f in train.items()],
                      "summarising the training set")
    return float(np.float64(sum(churned)) / n_train)
