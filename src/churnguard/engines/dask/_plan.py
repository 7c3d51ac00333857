"""Planning the reads on the client: the chunks of each input file (from headers and footers only), and reading
one chunk on a worker."""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churnguard._io import TABLE_SUFFIXES
from churnguard.dataset import DataError


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
            frame = pd.read_csv(io.BytesIO(chunk.header + data), dtype=str, keep_default_na=False, na_values=[""],
                                usecols=set(columns).__contains__)
        except (ValueError, pd.errors.ParserError) as exc:
            raise DataError(f"{chunk.path}: cannot read bytes {chunk.start}-{chunk.stop}: {exc}") from None
    else:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(chunk.path)
        stored = [c for c in columns if c in pf.schema_arrow.names]  # hive keys are added below
        arrow = (pf.read_row_groups(list(chunk.row_groups), columns=stored, use_pandas_metadata=True)
                 if chunk.row_groups else pf.schema_arrow.empty_table())
        frame = arrow.to_pandas().reset_index(drop=True)
        for key, value in chunk.keys:
            frame[key] = value
    return frame if tuple(frame.columns) == columns else frame.reindex(columns=list(columns))
