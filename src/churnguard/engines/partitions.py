"""Partitioned reading, the steps both partitioned engines run (the local engine one after another, the Dask
engine as tasks): :func:`plan_inputs` (chunks: CSV byte ranges, Parquet row groups, also of a dataset
directory's files), :func:`census` of each chunk, :func:`decide` what depends on whole files (rows, each chunk's
first row number, each date column's style), :func:`split_chunk` by customer and :func:`check_styles`, then
:func:`validate_partition` and the ``on_bad_rows`` policy over all partitions (:func:`bad_rows`). Pieces are
Arrow tables: cheap to cut, to spill to files and to send between processes. The local engine, which spills
each chunk's pieces rather than holding the chunks, takes the census and the split in one pass
(:func:`census_and_split`, text dates it is sure of carried parsed), and reads again only what the whole input's
census asks for.

Features learn the population over all partitions before any partition's features are final: each
partition's partial features (``features.build.partial_features``: all that needs no population state) and
their :func:`population_inputs`, merged by :func:`learned_population` (lifespan, attribute kinds, VIP cut-off);
then each partition's features are finished with it (``features.build.finish_features``).
"""

from __future__ import annotations

import io
import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard import dataset
from churnguard._io.codes import (
    category_code_type,
    distinct_categories,
    joint_levels,
    put_codes,
    put_mapped_codes,
    take,
    take_codes,
)
from churnguard._io.read import (
    EXTRA_FIELDS,
    UTF8,
    CsvDialect,
    CsvNotBlockwise,
    coded_file,
    column_names,
    csv_rows,
    csv_table,
    header_line,
    header_names,
    input_format,
    open_bytes,
    read_coded,
)
from churnguard._text import plural
from churnguard.dataset import (
    REJECT_COLUMNS,
    ROW_COLUMN,
    DataError,
    DateCensus,
    IdOverlap,
    RepeatedRows,
    Tables,
    contract,
)
from churnguard.dataset.contract import _DATES
from churnguard.features import build, kernel
from churnguard.population import Population
from churnguard.sources import DbSource

if TYPE_CHECKING:
    import pyarrow as pa

    from churnguard.config import DataConfig, FeatureConfig

logger = logging.getLogger(__name__)

CHECK_ORDER = ("transactions", "customers", "tickets", "events")  # the order validate_tables checks the tables in
BLOCK_BYTES = 64 * 2**20  # about how many bytes of a file one chunk holds


@dataclass(frozen=True)
class Chunk:
    """One piece of an input file read at once: a byte range of a CSV file (parsed with the file's header line;
    ``stop`` -1: to the end), some row groups of a Parquet file (plus the file's hive partition values) or part
    ``start`` of ``stop`` parts of a database table (``db``; ``sources.read_part`` by the customer id).
    ``keep``: the columns a CSV row with more fields than the header keeps (``_io.read.csv_rows``); its first is the
    customer id; ``dialect``: the CSV file's encoding and separator; ``coded``: text columns of a Parquet file
    read as its own dictionaries (the events' ids, types, channels and sessions, which ``load_tables`` holds as
    categoricals too): no row's text is decoded, and pieces and partitions stay small; ``hashed``: those of them
    read as text and encoded (``_io.read.read_coded``: the customer ids)."""

    path: str
    kind: str
    start: int = 0
    stop: int = 0
    header: bytes = b""
    row_groups: tuple[int, ...] = ()
    keys: tuple[tuple[str, Any], ...] = ()
    keep: tuple[str, ...] = ()
    dialect: CsvDialect = UTF8
    db: DbSource | None = None
    coded: tuple[str, ...] = ()
    hashed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """An input table: its name in messages, the columns read, its chunks and which file each chunk is in."""

    table: str
    name: str
    columns: tuple[str, ...]
    chunks: tuple[Chunk, ...]
    files: tuple[str, ...]
    chunk_file: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class ChunkCensus:
    """A chunk's row count, the :func:`churnguard.dataset.date_census` of its text date columns and, of the
    transactions, its last transaction time (as read in ISO 8601 or ``data.date_format``: NaT when the dates are
    in another style; NaT for another table)."""

    rows: int
    dates: dict[str, DateCensus]
    last: pd.Timestamp = pd.NaT
    parsed: tuple[str, ...] = ()  # text date columns whose pieces hold the dates parsed (census_and_split)


@dataclass(frozen=True)
class Spec:
    """What the steps after the census know about the whole input: its sources, rows per table, each chunk's
    first row number and the date styles (per table, by contract column name)."""

    config: DataConfig
    sources: dict[str, Source]
    rows: dict[str, int]
    starts: dict[str, tuple[int, ...]]
    styles: dict[str, dict[str, str]]

    def column(self, table: str, name: str) -> str:
        """The file's name of the contract column ``name``."""
        return self.config.columns.file_name(table, name)


def plan_inputs(paths: dict[str, str | Path | DbSource | None], config: DataConfig, *,
                block_bytes: int = BLOCK_BYTES, feature_inputs_only: bool = False, db_parts: int = 1
                ) -> dict[str, Source]:
    """The sources of the given paths (a database table: ``db_parts`` chunks, each reading its own customers),
    their contract columns checked (before any row is read); with ``feature_inputs_only``, only the columns the
    features use (``dataset.feature_columns``) are read."""
    sources = {t: _plan_db(p, t, db_parts) if isinstance(p, DbSource)
               else _plan(p, t, block_bytes, dataset.dialect(config)) for t, p in paths.items() if p is not None}
    for t in filter(sources.__contains__, CHECK_ORDER):
        dataset.check_columns(t, list(sources[t].columns), sources[t].name, config)
    ids = {t: (config.columns.file_name(t, "customer_id"),) for t in sources}
    coded, hashed = ({t: tuple(config.columns.file_name(t, c) for c in names.get(t, ())) for t in sources}
                     for names in (contract._CODED, contract._HASHED))
    sources = {t: replace(s, chunks=tuple(replace(c, keep=ids[t], coded=coded[t], hashed=hashed[t])
                                          for c in s.chunks)) for t, s in sources.items()}
    if feature_inputs_only:
        sources = {t: replace(s, columns=tuple(dataset.feature_columns(t, list(s.columns), config)))
                   for t, s in sources.items()}
    return sources


def census_columns(source: Source, config: DataConfig) -> tuple[str, ...]:
    """The columns the census reads: the date columns (without any, the customer id, to count the rows)."""
    return tuple(c for c, _ in _date_columns(source, config)) or (
        config.columns.file_name(source.table, "customer_id"),)


def _date_columns(source: Source, config: DataConfig) -> list[tuple[str, str]]:
    """The file's name and the contract name of each of the source's date columns, in file order."""
    inverse = {u: c for c, u in getattr(config.columns, source.table).items()}
    return [(c, inverse.get(c, c)) for c in source.columns if inverse.get(c, c) in _DATES]


def _plan_db(source: DbSource, table: str, parts: int) -> Source:
    """A database table in ``parts`` chunks (row numbers are the order the chunks read the rows in: a table
    has no order of its own)."""
    from churnguard.sources import source_columns

    columns = source_columns(source)
    dataset.check_unique_columns(columns, str(source), table)
    chunks = tuple(Chunk(str(source), "db", start=i, stop=parts, db=source) for i in range(parts))
    return Source(table, str(source), tuple(columns), chunks, (str(source),), (0,) * parts, 0)


def _plan(path: str | Path, table: str, block_bytes: int, dialect: CsvDialect = UTF8) -> Source:
    p = Path(path)
    if p.is_dir():
        return _plan_dataset(p, table, block_bytes)
    if not p.is_file():
        raise DataError(f"{p}: {table} file not found")
    try:
        kind = input_format(p)
    except ValueError as exc:
        raise DataError(f"{p}: cannot read {table} file: {exc}, or a directory of Parquet files") from None
    if kind == "csv":
        return _plan_csv(p, table, block_bytes, dialect)
    return _plan_parquet(str(p), table, [(str(p), ())], block_bytes)


def _plan_csv(p: Path, table: str, block_bytes: int, dialect: CsvDialect) -> Source:
    """Chunks of about ``block_bytes`` each, cut after a line end; a gzipped file is one chunk."""
    size = p.stat().st_size
    try:
        header = header_line(p, dialect)
        columns = tuple(column_names(header, dialect)) if header else ()
    except ValueError as exc:
        raise DataError(f"{p}: cannot read {table} file: {exc}") from None
    if not columns:
        raise DataError(f"{p}: the {table} file is empty")
    dataset.check_unique_columns(header_names(header, dialect), str(p), table)
    if str(p).lower().endswith(".gz"):
        chunk = Chunk(str(p), "csv", start=len(header), stop=-1, header=header, dialect=dialect)
        return Source(table, str(p), columns, (chunk,), (str(p),), (0,), size)
    with p.open("rb") as fh:
        bounds = [len(header)]
        while bounds[-1] + block_bytes < size:  # cut right after a line end near every block_bytes
            fh.seek(bounds[-1] + block_bytes - 1)
            fh.readline()
            if fh.tell() >= size:
                break
            bounds.append(fh.tell())
        bounds.append(max(size, len(header)))
    chunks = tuple(Chunk(str(p), "csv", start=a, stop=b, header=header, dialect=dialect)
                   for a, b in itertools.pairwise(bounds))
    return Source(table, str(p), columns, chunks, (str(p),), (0,) * len(chunks), size)


def _plan_dataset(p: Path, table: str, block_bytes: int) -> Source:
    import pyarrow as pa
    import pyarrow.dataset as ds

    try:
        found = ds.dataset(p, format="parquet", partitioning="hive")  # skips files starting with '.' or '_'
        fragments = sorted(found.get_fragments(), key=lambda f: f.path)
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


def _plan_parquet(name: str, table: str, files: list[tuple[str, tuple]], block_bytes: int) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    chunks, chunk_file, columns, nbytes = [], [], {}, 0
    for i, (path, keys) in enumerate(files):
        try:
            meta = pq.ParquetFile(path).metadata
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise DataError(f"{path}: cannot read {table} file: {exc}") from None
        schema = meta.schema.to_arrow_schema()
        dataset.check_unique_columns(schema.names, path, table)
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        columns.update((c, None) for c in schema.names if c not in index)
        columns.update((k, None) for k, _ in keys)
        pieces, size = [[]], 0  # row groups, a new piece once the last one holds block_bytes
        for g in range(meta.num_row_groups):
            if size >= block_bytes:
                pieces.append([])
                size = 0
            pieces[-1].append(g)
            size += meta.row_group(g).total_byte_size
            nbytes += meta.row_group(g).total_byte_size
        chunks += [Chunk(path, "parquet", row_groups=tuple(groups), keys=keys) for groups in pieces]
        chunk_file += [i] * len(pieces)
    return Source(table, name, tuple(columns), tuple(chunks), tuple(f for f, _ in files), tuple(chunk_file), nbytes)


def read_chunk(chunk: Chunk, columns: tuple[str, ...]) -> pa.Table:
    """The raw rows of one chunk (``columns``, in that order, and for CSV ``_io.read.EXTRA_FIELDS``), read as
    ``load_tables`` reads a whole file. A chunk Arrow's reader reads has no row longer than the header: its
    ``_io.read.EXTRA_FIELDS`` are of Arrow's null type, which holds no buffer (a missing text holds an offset per
    row, 8 bytes, cut, spilled and read back with the rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if chunk.kind == "db":
        from churnguard.sources import read_part

        return read_part(chunk.db, list(columns), chunk.keep[0], chunk.start, chunk.stop)
    if chunk.kind == "csv":
        rows = _csv_rows_of(chunk)
        names = column_names(chunk.header, chunk.dialect)
        try:  # Arrow's reader, as a whole file is read; a chunk it cannot read as pandas does goes to pandas
            table = csv_table(rows, names, [n for n in names if n in columns], chunk.dialect)
            table = table.append_column(EXTRA_FIELDS, pa.nulls(len(table)))
        except CsvNotBlockwise:
            data = chunk.header + rows.to_pybytes()
            try:
                frame = csv_rows(lambda: io.BytesIO(data), names, list(columns), chunk.keep, chunk.dialect)
            except (ValueError, pd.errors.ParserError) as exc:
                raise DataError(f"{chunk.path}: cannot read bytes {chunk.start}-{chunk.stop}: {exc}") from None
            table = pa.Table.from_pandas(frame, preserve_index=False)
        columns = (*columns, EXTRA_FIELDS)
    else:
        schema = pq.read_schema(chunk.path)
        text = [c for c in chunk.coded if c in schema.names and c in columns
                and (pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type))]
        hashed = [c for c in chunk.hashed if c in text]
        pf = coded_file(chunk.path, text, hashed)
        table = read_coded(pf, list(chunk.row_groups), [c for c in columns if c in pf.schema_arrow.names], hashed)
        for key, value in chunk.keys:
            table = table.append_column(key, pa.repeat(pa.scalar(value), len(table)))
    for missing in (c for c in columns if c not in table.column_names):
        table = table.append_column(missing, pa.nulls(len(table)))
    return table.select(list(columns))


def _csv_rows_of(chunk: Chunk) -> pa.Buffer:
    """The bytes of a CSV chunk's rows (after the header line): mapped from the file, not copied; a gzipped
    file's decompressed."""
    import pyarrow as pa

    if str(chunk.path).lower().endswith(".gz"):
        with open_bytes(chunk.path) as fh:
            fh.seek(chunk.start)
            return pa.py_buffer(fh.read(chunk.stop - chunk.start if chunk.stop >= 0 else -1))
    mapped = pa.memory_map(chunk.path)  # the buffer keeps the map open
    stop = mapped.size() if chunk.stop < 0 else chunk.stop
    mapped.seek(chunk.start)
    return mapped.read_buffer(max(stop - chunk.start, 0))


def census(table: pa.Table, source: Source, config: DataConfig) -> ChunkCensus:
    """A chunk's :class:`ChunkCensus` (its dates read before any style is known)."""
    return _census(table, source, config, carry=False)[0]


def _census(table: pa.Table, source: Source, config: DataConfig, carry: bool = True
            ) -> tuple[ChunkCensus, dict[str, pd.Series]]:
    """:func:`census`, and (``carry``) the text date columns (by file name) whose every value validation is
    sure to read as the census read it (:func:`_sure_dates`), those values. A column of timestamps has nothing to
    census: it is read only for the transactions' last time (the events' timestamps of the 1M world: 0.3 s)."""
    import pyarrow as pa

    dates, last, sure = {}, pd.NaT, {}
    for col, name in _date_columns(source, config):
        latest = name == "timestamp" and source.table == "transactions"
        if not latest and pa.types.is_timestamp(table.schema.field(col).type):
            continue
        values = table.column(col).to_pandas()
        if not pd.api.types.is_datetime64_any_dtype(values):
            values, dates[name] = dataset.date_census(dataset.text_cells(values), config.date_format)
            if carry and _sure_dates(values, dates[name], name, col in getattr(config.exclude, source.table)):
                sure[col] = values.dt.tz_localize(None)
        if latest:  # the last day validation can keep: in range, not after today
            if getattr(values.dt, "tz", None) is not None:
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            last = values[~dataset.dates_out_of_range(values) & (values < dataset.latest_plausible_day())].max()
    return ChunkCensus(len(table), dates, last), sure


def _sure_dates(parsed: pd.Series, found: DateCensus, name: str, excluded: bool) -> bool:
    """Whether validation, given a text date column's values as parsed by the census (``parsed``, ``found``:
    before any style is known), flags none of its rows and reads every one as parsed, so that the parsed
    values can stand for the text: every value is a date at nanosecond resolution (so in range) before the
    last plausible day, none is missing where a value is required (a missing one is quoted in the rejects as
    its text was), and no ``data.exclude`` rule reads the column's text (``excluded``). A column of
    such chunks only is in no other style than ISO 8601 (or ``data.date_format``): no style is decided for it.
    """
    if excluded or found.parsed != found.present or str(parsed.dtype) != "datetime64[ns, UTC]":
        return False
    if name in contract._REQUIRED_VALUES and found.present != len(parsed):
        return False
    return not len(parsed) or not (parsed.max() >= dataset.latest_plausible_day().tz_localize("UTC"))


def decide(sources: dict[str, Source], censuses: dict[str, list[ChunkCensus]], config: DataConfig) -> Spec:
    """What depends on whole files, from the censuses of their chunks (in file order).

    Raises:
        DataError: a file has no rows, or a date column's style cannot be inferred.
    """
    rows = {t: sum(c.rows for c in censuses[t]) for t in sources}
    styles = {}
    for t in filter(sources.__contains__, CHECK_ORDER):
        dataset.check_columns(t, list(sources[t].columns), sources[t].name, config, rows[t])
        styles[t] = _date_styles(sources[t], censuses[t], config)
    starts = {t: tuple(int(s) for s in np.cumsum([1] + [c.rows for c in censuses[t]])[:-1]) for t in sources}
    return Spec(config, sources, rows, starts, styles)


def _date_styles(source: Source, censuses: list[ChunkCensus], config: DataConfig) -> dict[str, str]:
    """Each text date column's style (by contract name), decided by :func:`churnguard.dataset.date_style` on the
    census of the whole file; columns with nothing to decide are left out."""
    if config.date_format is not None:
        return {}
    styles = {}
    for _, name in _date_columns(source, config):  # in file order, as load_tables decides them
        whole = reduce(dataset.merge_census, [c.dates[name] for c in censuses if name in c.dates], DateCensus())
        fmt = dataset.date_style(whole, source.name, name)
        if fmt is not None:
            styles[name] = fmt
    return styles


def split_chunk(table: pa.Table, spec: Spec, source: str, i: int, n: int) -> tuple[list[pa.Table], dict]:
    """Number chunk ``i``'s rows, census its date columns in the decided styles (for :func:`check_styles`) and
    cut it into ``n`` pieces by customer partition (row order kept within each)."""
    stats = style_census(table, spec, source)
    return split_rows(table, spec.column(source, "customer_id"), spec.starts[source][i], n), stats


def style_census(table: pa.Table, spec: Spec, source: str) -> dict[str, DateCensus]:
    """The census of a chunk's text date columns in the styles decided for them (for :func:`check_styles`)."""
    return {name: dataset.date_census(dataset.text_cells(table.column(spec.column(source, name)).to_pandas()),
                                      fmt)[1] for name, fmt in spec.styles[source].items()}


def census_and_split(table: pa.Table, source: Source, config: DataConfig, first: int, n: int,
                     parse: tuple[str, ...] | None = None) -> tuple[ChunkCensus, list[pa.Table]]:
    """:func:`census` of a chunk read with all its source's columns and its rows cut into ``n`` pieces as
    :func:`split_chunk` cuts them, in one pass, before the whole input is known: ``first`` is the chunk's first
    row number (1 + the rows of the source's chunks before it). What :func:`decide` then finds may ask for
    another split (more partitions for the rows counted) or for :func:`style_census`.

    The text date columns whose values validation is sure to read as the census did (:func:`_sure_dates`; of
    ``parse`` only, when given) go into the pieces parsed, as naive UTC timestamps (``parsed`` of the census
    names them): smaller pieces, and no second parse. A table's pieces must all hold a column alike: the caller
    splits again, with ``parse`` narrowed, the chunks whose columns were parsed where a later chunk's are not.
    """
    import pyarrow as pa

    found, sure = _census(table, source, config)
    parsed = tuple(c for c in sure if parse is None or c in parse)
    for col in parsed:
        table = table.set_column(table.schema.get_field_index(col), col,
                                 pa.array(sure.pop(col).to_numpy(), type=pa.timestamp("ns"), from_pandas=True))
    del sure
    return replace(found, parsed=parsed), split_rows(
        table, config.columns.file_name(source.table, "customer_id"), first, n)


def customer_partition(ids: pd.Series, partitions: int):
    """The partition of each row, from its customer id as validation reads it (``dataset.id_text``), so every
    table puts a customer's rows in the same partition, on every engine. The hash is the feature build's row
    hash (numpy over the Arrow buffers)."""
    import pyarrow.compute as pc

    key = pc.fill_null(dataset.arrow_column(dataset.id_text(ids).astype("string")), "")  # a missing id hashes as ""
    return (build._hashes({"id": key}) % np.uint64(partitions)).astype(np.intp)


def split_rows(table: pa.Table, id_column: str, first: int, n: int) -> list[pa.Table]:
    """Number a chunk's rows from ``first`` on and cut them into ``n`` pieces by the customer partition of
    ``id_column`` (row order kept within each)."""
    import pyarrow as pa

    if n == 1:
        return [table.append_column(ROW_COLUMN, pa.array(_row_numbers(np.arange(len(table)), first)))]
    # a dictionary column's chunks (the chunk's row groups) keep their dictionaries, one after another: a value
    # in two of them is in both (the pieces of a bucket are unified when it is validated, see _frame), not
    # found in a unification of the chunk's (0.10 s of CPU a chunk of 3.1M events, mostly the session ids)
    coded = {name: _Coded.of(table.column(name)) for name, type_ in
             zip(table.column_names, table.schema.types, strict=True) if pa.types.is_dictionary(type_)}
    # numpy sorts 8- and 16-bit ints stably by radix: one pass over the bytes of each (a chunk of 3.1M events into
    # 28 buckets: 16.5 against 23.1 ms)
    narrow = np.uint8 if n <= 2**8 else np.uint16 if n <= 2**16 else np.intp
    buckets = (coded[id_column].partitions(n, narrow) if id_column in coded
               else customer_partition(table.column(id_column).to_pandas(), n).astype(narrow, copy=False))
    order = np.argsort(buckets, kind="stable")
    cuts = np.concatenate([[0], np.cumsum(np.bincount(buckets, minlength=n))])
    # Each column taken in bucket order once (a take from columns of several chunks concatenates them, dictionaries
    # unified, at every call: one take per column, then a slice per bucket); a dictionary column's indices are
    # the values' places in their piece's dictionary, found in row order and then taken with the rows.
    columns, fields = [], []
    for name, field_ in zip(table.column_names, table.schema, strict=True):
        if name in coded:
            arrays = coded.pop(name).compacted(buckets, order, cuts, owned=name == id_column)
            fields.append(field_.with_type(arrays[0].type) if arrays else field_)
        elif first > 1 and len(table) and table.column(name).null_count == len(table) and (
                not pa.types.is_null(field_.type)):
            # every value missing (the demo's event durations in 77% of its rows): pieces of Arrow's null type,
            # which hold no buffer to take, spill and read back. The first chunk's pieces, which every bucket
            # has (spilled even when empty), keep the column's type: a bucket's pieces are concatenated into it
            # (validate_partition), as a CSV chunk's column without a value is.
            arrays = [pa.nulls(cuts[b + 1] - cuts[b]) for b in range(n)]
            fields.append(field_.with_type(pa.null()))
        else:
            arrays = _taken(table.column(name), buckets, order, cuts)
            fields.append(field_)
        columns.append(arrays)
    rows = pa.array(_row_numbers(order, first))  # in the order taken
    columns.append([rows.slice(cuts[b], cuts[b + 1] - cuts[b]) for b in range(n)])
    schema = pa.schema([*fields, pa.field(ROW_COLUMN, rows.type)], metadata=table.schema.metadata)
    return [pa.Table.from_arrays([c[b] for c in columns], schema=schema) for b in range(n)]


_TAKE_BLOCK = 1 << 16  # rows of a text column taken at once (see _taken)
_FEW = 127  # dictionaries of fewer values are cut by _Coded._few (their codes fit in a byte)


def _taken(column: pa.ChunkedArray, buckets: np.ndarray, order: np.ndarray, cuts: np.ndarray) -> list:
    """``column``'s rows of each bucket (``buckets``, ``order`` and ``cuts`` as :func:`split_rows` has them), in
    row order. Values of variable width (text) are taken a block of rows at a time, each block's rows by bucket,
    and each bucket's parts joined: a take of every row in bucket order reads the values' bytes from all over the
    chunk once per bucket (the order ids of 2.1M transactions into 28 buckets: 75 ms, by blocks of 65,536 rows
    41 ms). A column of fixed width is taken whole (timestamps: 4 ms, 14 by blocks)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n, type_ = len(cuts) - 1, column.type
    if not (pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_binary(type_)
            or pa.types.is_large_binary(type_)) or len(column) <= _TAKE_BLOCK:
        taken = pc.take(column, order, boundscheck=False)  # a permutation of the rows: no index to check
        return [taken.slice(cuts[b], cuts[b + 1] - cuts[b]) for b in range(n)]
    parts: list[list[pa.Array]] = [[] for _ in range(n)]
    for first in range(0, len(column), _TAKE_BLOCK):
        mine = buckets[first : first + _TAKE_BLOCK]
        at = np.concatenate([[0], np.cumsum(np.bincount(mine, minlength=n))])
        taken = column.slice(first, len(mine)).take(np.argsort(mine, kind="stable"))
        for b in np.flatnonzero(np.diff(at)):
            parts[b].extend(taken.slice(at[b], at[b + 1] - at[b]).chunks)
    return [pa.concat_arrays(p) if p else pa.array([], type=type_) for p in parts]


def _row_numbers(positions: np.ndarray, first: int) -> np.ndarray:
    """The row numbers of a chunk's rows at ``positions`` (``first``: its first row's), as 32-bit integers
    where they fit: half the bytes spilled and read back for the largest tables (validation reads them as
    int64, ``dataset.ROW_COLUMN``)."""
    if first + len(positions) < 2**32:
        return positions.astype(np.uint32) + np.uint32(first)
    return positions.astype(np.int64) + first


@dataclass(frozen=True)
class _Coded:
    """A dictionary column as numpy: its chunks' dictionaries one after another (``dictionary``; a value may be
    in it more than once), each row's code in it (-1: missing) and whether the row is there (None: every row
    is)."""

    column: pa.ChunkedArray
    dictionary: pa.Array
    codes: np.ndarray
    valid: np.ndarray | None

    @classmethod
    def of(cls, column: pa.ChunkedArray) -> _Coded:
        import pyarrow as pa

        chunks = column.chunks
        dictionary = (pa.concat_arrays([c.dictionary for c in chunks]) if len(chunks) > 1 else chunks[0].dictionary
                      if chunks else pa.array([], column.type.value_type))
        codes, row, offset = np.empty(len(column), dtype=np.int32), 0, 0
        for c in chunks:  # straight from the indices' buffers
            put_codes(c.indices, offset, codes[row : row + len(c)])
            row, offset = row + len(c), offset + len(c.dictionary)
        return cls(column, dictionary, codes, codes >= 0 if column.null_count else None)

    def partitions(self, n: int, dtype: type = np.intp) -> np.ndarray:
        """:func:`customer_partition` of each row's id (a missing id's too) as ``dtype``: each
        distinct id's, looked up by the row's code (from an array of ``dtype``: a 16-bit gather of a chunk's 3.1M
        rows took 5.3 ms where one of 64 bits and its conversion took 8.2)."""
        import pyarrow as pa

        # the dictionary's, then (the last: code -1) a missing id's, apart: a null among the values would have
        # id_text's checks of the text gather the valid values first
        found = np.append(customer_partition(self.dictionary.to_pandas(), n),
                          customer_partition(pa.nulls(1, self.dictionary.type).to_pandas(), n))
        return self.at(found.astype(dtype, copy=False))

    def at(self, table: np.ndarray) -> np.ndarray:
        """``table[codes]``, a missing row's (code -1) from the table's last place (``_io.codes.take``)."""
        return take(table, self.codes) if self.valid is None else take_codes(table, self.codes)

    def compacted(self, buckets: np.ndarray, order: np.ndarray, cuts: np.ndarray, owned: bool = False
                  ) -> list[pa.DictionaryArray]:
        """The column cut into the pieces of ``buckets`` (each row's, in row order; ``order``: the rows by bucket,
        bucket ``b``'s from ``cuts[b]`` to ``cuts[b + 1]``), each piece's dictionary keeping only the values its
        rows use, in dictionary order (a piece cut from a chunk holds the chunk's whole dictionaries: written out
        for every partition, and merged again for every partition). Where buckets x dictionary values are no more
        than the rows (event types, channels), the values each bucket uses are marked in an array of that size;
        else, for the customer ids (``owned``: each value in one bucket by construction) and where every value is
        used by one bucket only (sessions mostly), each value's place in its bucket comes from one stable sort of
        the used values by bucket (the session ids of a chunk, 445k values over 3.1M rows in 28 buckets: 37.6 ms,
        where marking them took 72.7); else, up to 4 times the rows, the values are marked; else the (bucket,
        value) pairs used are sorted. Each row's place among its piece's values is found in row order, then taken
        in bucket order."""
        n, size, valid, codes = len(cuts) - 1, len(self.dictionary), self.valid, self.codes  # a missing row: -1
        if not size:  # no values: every row is missing
            return self._cut(np.zeros(len(codes), dtype=np.int8), order, np.zeros(0, dtype=np.int64),
                             np.zeros(n + 1, dtype=np.int64), cuts)
        if size < _FEW and not owned:  # a few values (event types, channels): count each bucket's codes
            return self._few(order, cuts)
        if n * size <= len(codes) and not owned:  # a short dictionary: mark the values each bucket's rows use
            return self._marked(buckets, order, cuts)
        # each value's bucket: the last row's that uses it; a missing row's code (-1) writes the last place, which
        # is left out (the missing rows not left out first: 7.9 against 23.5 ms for the session ids of 3.1M events)
        owner = np.full(size + 1, n, dtype=np.promote_types(np.min_scalar_type(n), buckets.dtype))
        owner[codes] = buckets
        if not owned:
            mine = self.at(owner) == buckets
        if owned or (mine if valid is None else mine | ~valid).all():
            owner = owner[:size]  # each value in one bucket
            used = np.flatnonzero(owner < n)
            values = used[np.argsort(owner[used], kind="stable")]  # by bucket, in dictionary order within each
            starts = np.searchsorted(owner[values], np.arange(n + 1))
            # each value's place in its piece, of the pieces' index type; the last, a missing row's (code -1): 0
            place = np.zeros(size + 1, dtype=category_code_type(int(np.diff(starts).max())))
            place[values] = np.arange(len(values)) - starts[owner[values]]
            return self._cut(self.at(place), order, values, starts, cuts, zeroed=True)
        if n * size <= 4 * len(codes):
            return self._marked(buckets, order, cuts)
        keys = buckets.astype(np.int64) * size + codes
        pairs = kernel.distinct(keys if valid is None else keys[valid])
        starts = np.searchsorted(pairs, np.arange(n + 1) * size)
        return self._cut(np.searchsorted(pairs, keys) - starts[buckets], order, pairs % size, starts, cuts)

    def _few(self, order: np.ndarray, cuts: np.ndarray) -> list[pa.DictionaryArray]:
        """:meth:`compacted` of a dictionary of fewer than ``_FEW`` values: the rows' codes taken in bucket order
        once, as bytes, and the values each bucket uses counted from its rows (:func:`_used_codes`); a bucket's
        codes stay as they are where it uses every value (mostly), else are renumbered past the values it leaves
        out. (The event types of 3.1M events into 28 buckets: 4.0-5.2 against 9.9-13.9 ms marking (bucket,
        value) pairs in row order.)"""
        import pyarrow as pa

        taken = take(self.codes.astype(np.int8), order).view(np.uint8)  # a missing row's code (-1): 255
        valid = None if self.valid is None else take(self.valid, order)
        used = [_used_codes(taken[a:b], len(self.dictionary)) for a, b in itertools.pairwise(cuts)]
        # the narrowest indices every piece's dictionary fits: one byte
        kind = category_code_type(max((int(u.sum()) for u in used), default=0))
        pieces = []
        for (a, b), mine in zip(itertools.pairwise(cuts), used, strict=True):
            place = np.zeros(256, dtype=kind)  # each code's place among the values the piece uses; a missing row: 0
            place[: len(mine)] = np.cumsum(mine) - 1
            indices = taken[a:b].view(np.int8) if mine.all() and valid is None else take(place, taken[a:b])
            dictionary = self.dictionary if mine.all() else self.dictionary.filter(pa.array(mine))
            pieces.append(pa.DictionaryArray.from_arrays(
                _indices(indices.astype(kind, copy=False), None if valid is None else valid[a:b]), dictionary,
                ordered=self.column.type.ordered, safe=False))  # places among the piece's values
        return pieces

    def _marked(self, buckets: np.ndarray, order: np.ndarray, cuts: np.ndarray) -> list[pa.DictionaryArray]:
        """:meth:`compacted` by marking the values each bucket's rows use in an array of buckets x values."""
        n, size, valid, codes = len(cuts) - 1, len(self.dictionary), self.valid, self.codes
        pair = buckets.astype(np.int32 if n * size < 2**31 else np.intp) * size + codes
        mark = np.zeros(n * size, dtype=bool)
        mark[pair if valid is None else pair[valid]] = True
        if mark.all():  # every bucket uses every value (event types, channels): the codes stay as they are
            return self._cut(codes, order, np.tile(np.arange(size), n), np.arange(n + 1) * size, cuts)
        place = np.cumsum(mark.reshape(n, size), axis=1, dtype=np.int32).ravel() - 1
        pairs = np.flatnonzero(mark)
        return self._cut(place[pair], order, pairs % size, np.searchsorted(pairs, np.arange(n + 1) * size), cuts)

    def _cut(self, kept: np.ndarray, order: np.ndarray, values: np.ndarray, starts: np.ndarray, cuts: np.ndarray,
             zeroed: bool = False) -> list[pa.DictionaryArray]:
        """The pieces of :meth:`compacted`: bucket ``b``'s rows of ``kept`` (each row's place among the values its
        bucket uses, in row order; ``zeroed``: 0 at a missing row) with the dictionary values
        ``values[starts[b] : starts[b + 1]]``."""
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(cuts) - 1
        dictionary = pc.take(self.dictionary, pa.array(values, type=pa.int64()), boundscheck=False)  # places in it
        # the narrowest indices every piece's dictionary fits (event types and channels: one byte a row, not four)
        kept = kept.astype(category_code_type(int(np.diff(starts).max()) if n else 0), copy=False)
        valid = None
        if self.valid is not None:  # a missing row's place is any number: 0 there, a place in every piece
            if not zeroed:
                kept = np.where(self.valid, kept, kept.dtype.type(0))
            valid = take(self.valid, order)
        kept = take(kept, order)
        return [pa.DictionaryArray.from_arrays(
            _indices(kept[cuts[b]:cuts[b + 1]], None if valid is None else valid[cuts[b]:cuts[b + 1]]),
            dictionary.slice(starts[b], starts[b + 1] - starts[b]), ordered=self.column.type.ordered, safe=False)
            for b in range(n)]  # each row's place among its piece's values


_SAMPLE = 4096  # rows of a piece whose codes are counted first (see _used_codes)


def _used_codes(codes: np.ndarray, size: int) -> np.ndarray:
    """Which of ``size`` codes (below 255) occur in ``codes`` (uint8; 255: missing). The codes of about
    ``_SAMPLE`` rows spread over them are counted first: where those hold every code (mostly), the rest need not
    be counted (numpy widens bytes to count them: 4.7 ms for 3.1M)."""
    step = max(len(codes) // _SAMPLE, 1)
    if step > 1 and (np.bincount(codes[::step], minlength=256)[:size] > 0).all():
        return np.ones(size, dtype=bool)
    return np.bincount(codes, minlength=256)[:size] > 0


def _indices(values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """A piece's indices as Arrow, null where not ``valid``: the validity bitmap packed by numpy (``pa.array``'s
    mask took 248 us where this takes 8 for 112,000 rows)."""
    import pyarrow as pa

    nulls = 0 if valid is None else len(valid) - int(np.count_nonzero(valid))
    if not nulls:
        return pa.array(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values),
                                 [pa.py_buffer(np.packbits(valid, bitorder="little")), pa.py_buffer(values)],
                                 null_count=nulls)


def check_styles(spec: Spec, stats: dict[str, list[dict[str, DateCensus]]]) -> None:
    """Raise :func:`churnguard.dataset.mixed_styles_error` when a date column's censuses in its style (from
    :func:`split_chunk`, in file order) found dates in another style."""
    for t in CHECK_ORDER:
        for name, fmt in spec.styles.get(t, {}).items():
            whole = reduce(dataset.merge_census, [s[name] for s in stats.get(t, ())], DateCensus())
            if whole.mixed:
                raise dataset.mixed_styles_error(whole, spec.sources[t].name, name, fmt)


def validate_partition(pieces: dict[str, list[pa.Table]], spec: Spec, coded_ids: bool = False,
                       consume: bool = False) -> Tables:
    """Validate one customer partition (in reject mode: the ``on_bad_rows`` policy is applied over all of them);
    ``coded_ids``: the customer ids as integer codes (``dataset.validate_tables``), as scoring reads them;
    ``consume``: the lists of ``pieces`` are emptied as they are read, so each table's Arrow memory is let go
    while it becomes a frame.

    Returns the partition's tables; the rejects carry each row's number in its file (and the file, in a
    dataset) and ``_order``, its position in the whole input.
    """
    import pyarrow as pa

    frames = {}
    for t, p in pieces.items():
        table = pa.concat_tables(p, promote_options="permissive")
        if consume:
            p.clear()
        if EXTRA_FIELDS in table.column_names and table.column(EXTRA_FIELDS).null_count == len(table):
            table = table.drop_columns([EXTRA_FIELDS])  # no row longer than the header: nothing to flag
        frames[t] = _frame(table, consume)
        del table
    names = {t: s.name for t, s in spec.sources.items()}
    tables = dataset.validate_tables(frames["transactions"], frames.get("tickets"), frames.get("customers"),
                                     config=spec.config.model_copy(update={"on_bad_rows": "reject"}),
                                     sources=names, allow_empty=True, date_styles=spec.styles,
                                     events=frames.get("events"), coded_ids=coded_ids)
    rejects = tables.rejects.copy()
    if not rejects.empty:
        order = rejects["row"].to_numpy(dtype=np.int64)
        rejects["_order"] = order
        for t in rejects["table"].unique():
            mine, src = (rejects["table"] == t).to_numpy(), spec.sources[t]
            file_starts = np.asarray([spec.starts[t][src.chunk_file.index(f)] for f in range(len(src.files))])
            idx = np.searchsorted(file_starts, order[mine], side="right") - 1
            rejects.loc[mine, "row"] = order[mine] - file_starts[idx] + 1
            if len(src.files) > 1:
                rejects.loc[mine, "source"] = np.asarray(src.files, dtype=object)[idx]
    return replace(tables, rejects=rejects)


def _frame(table: pa.Table, consume: bool) -> pd.DataFrame:
    """``table.to_pandas()`` (``consume``: its memory let go as it is converted), with its dictionary columns
    made categoricals here: the same frame, for a fraction of what Arrow's conversion takes. A column of text
    has its pieces' dictionaries encoded together (``_io.codes.joint_levels``, as a Parquet file read whole is),
    each piece's indices mapped onto them into one array of codes in one pass (``_io.codes.put_mapped_codes``, in
    the codes' type the categorical keeps: pandas would convert them); another dictionary column (an
    ordered one, or of other values) has its dictionaries unified by Arrow. The pieces' dictionaries may hold
    a value more than once (:func:`split_rows`): each value is one category."""
    import pyarrow as pa

    coded = [name for name, type_ in zip(table.column_names, table.schema.types, strict=True)
             if pa.types.is_dictionary(type_)]
    if not coded:
        return table.to_pandas(split_blocks=consume, self_destruct=consume)
    at = {name: table.column_names.index(name) for name in coded}
    categoricals = {}
    for name in coded:
        categoricals[name] = _categorical(table.column(name))
        table = table.drop_columns([name])
    frame = table.to_pandas(split_blocks=consume, self_destruct=consume)
    del table
    for name in coded:  # in column order, so each goes back to its place
        frame.insert(at[name], name, categoricals.pop(name))
    return frame


def _categorical(column: pa.ChunkedArray) -> pd.Categorical:
    """A dictionary column as a categorical of its values (missing: -1), its values in order of first appearance
    in the chunks' dictionaries (each once)."""
    import pyarrow as pa

    type_ = column.type
    if not type_.ordered and (pa.types.is_string(type_.value_type) or pa.types.is_large_string(type_.value_type)):
        at, levels = joint_levels([chunk.dictionary for chunk in column.chunks])
        codes, row, offset = np.empty(len(column), dtype=category_code_type(len(levels))), 0, 0
        for chunk in column.chunks:  # each chunk's indices number its own dictionary's values: mapped in one pass
            put_mapped_codes(chunk.indices, at[offset : offset + len(chunk.dictionary)], codes[row : row + len(chunk)])
            row, offset = row + len(chunk), offset + len(chunk.dictionary)
        return pd.Categorical.from_codes(codes, dtype=distinct_categories(levels), validate=False)
    if type_.index_type.bit_width < 32:  # the pieces' narrow indices (see _cut) widened for the unification
        type_ = pa.dictionary(pa.int32(), type_.value_type, type_.ordered)
        column = column.cast(type_)
    if column.num_chunks == 1:  # Arrow unifies the dictionaries of two chunks or more: an empty one added
        column = pa.chunked_array([*column.chunks, column.chunk(0).slice(0, 0)])
    array = pa.table({"c": column}).unify_dictionaries().column("c").combine_chunks()
    codes = array.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    categories = pd.Index(array.dictionary.to_pandas())
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories, ordered=type_.ordered),
                                     validate=False)


@dataclass(frozen=True)
class Digest:
    """What the checks over all partitions need of one: per (table, column, reason) how many rows were set
    aside, the few rows a raise-mode message quotes, and the partition's customer id overlap."""

    counts: pd.DataFrame
    samples: pd.DataFrame
    overlap: IdOverlap = field(default_factory=IdOverlap)
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)  # rows data.exclude left out
    repeated: RepeatedRows = field(default_factory=RepeatedRows)  # transaction rows equal to another


def reject_digest(tables: Tables) -> Digest:
    """The :class:`Digest` of a validated partition."""
    rej, overlap, repeated = tables.rejects, dataset.id_overlap(tables), dataset.repeated_rows(tables)
    if rej.empty:
        return Digest(pd.DataFrame(columns=["table", "column", "reason", "n"]), rej, overlap, tables.excluded,
                      repeated)
    rej = rej.sort_values("_order", kind="stable")
    keys = ["table", "column", "reason"]
    counts = rej.groupby(keys, sort=False).size().rename("n").reset_index()
    first = rej.groupby(keys, sort=False).cumcount() < 3
    seen = ~rej.duplicated([*keys, "value"])
    first_values = seen & (seen.astype(int).groupby([rej[k] for k in keys], sort=False).cumsum() <= 3)
    return Digest(counts, rej[first | first_values], overlap, tables.excluded, repeated)


def bad_rows(spec: Spec, digests: list[Digest]) -> dict[str, int]:
    """The ``on_bad_rows`` policy over all partitions: DataError for bad rows under ``raise`` (or for a table
    without usable rows), with the counts of the whole file, then for transactions and customers that share
    almost no ids (``dataset.check_id_overlap``); else the rows set aside per table."""
    counts = concat_frames([d.counts for d in digests])
    samples = concat_frames([d.samples for d in digests])
    _log_excluded(spec, [d.excluded for d in digests])
    rejected = {}
    for t in filter(spec.sources.__contains__, CHECK_ORDER):
        mine = counts[counts["table"] == t]
        rejected[t] = int(mine["n"].sum())
        if rejected[t] and (spec.config.on_bad_rows == "raise" or rejected[t] == spec.rows[t]):
            raise _rows_error(t, spec, mine, samples[samples["table"] == t])
    overlap = reduce(dataset.merge_overlap, (d.overlap for d in digests), IdOverlap())
    dataset.check_id_overlap(overlap, {t: s.name for t, s in spec.sources.items()})
    note = dataset.repeated_rows_note(reduce(dataset.merge_repeated, (d.repeated for d in digests), RepeatedRows()),
                                      spec.sources["transactions"].name)
    if note is not None:
        logger.warning("%s", note)
    return rejected


def _log_excluded(spec: Spec, parts: list[dict[str, dict[str, int]]]) -> None:
    """Log the rows ``data.exclude`` left out of the whole input, per table and rule (as ``load_tables`` does)."""
    for t in filter(spec.sources.__contains__, CHECK_ORDER):
        total = sum((Counter(part.get(t, {})) for part in parts), Counter())  # rules in the order first seen
        if total:
            logger.warning("%s", dataset.exclusion_note(spec.sources[t].name, t, spec.rows[t], total))


def doomed(spec: Spec, digests: list[Digest]) -> bool:
    """Whether :func:`bad_rows` is sure to raise: bad rows were found and ``on_bad_rows`` is ``raise``."""
    return spec.config.on_bad_rows == "raise" and any(len(d.counts) for d in digests)


def _rows_error(table: str, spec: Spec, counts: pd.DataFrame, samples: pd.DataFrame) -> DataError:
    """:func:`churnguard.dataset.rows_error` for ``table``, with counts and rows over the whole input."""
    src, groups = spec.sources[table], []
    for (column, reason), group in counts.groupby(["column", "reason"]):
        rows = samples[(samples["column"] == column) & (samples["reason"] == reason)].sort_values("_order")
        where = [f"{Path(s).name}:{r}" if len(src.files) > 1 else str(r)
                 for s, r in zip(rows["source"], rows["row"], strict=True)]
        groups.append((column, reason, int(group["n"].sum()), rows["value"], where))
    return dataset.rows_error(src.name, table, spec.rows[table], groups)


def merge_rejects(spec: Spec, frames: list[pd.DataFrame], rejected: dict[str, int]) -> pd.DataFrame:
    """The partitions' rejects in the order ``load_tables`` reports them (table, then row), logged per table."""
    if not any(len(f) for f in frames):
        return pd.DataFrame(columns=REJECT_COLUMNS)
    rejects = concat_frames(frames)
    rank = {t: i for i, t in enumerate(CHECK_ORDER)}
    rejects = (rejects.assign(_rank=rejects["table"].map(rank))
               .sort_values(["_rank", "_order"], kind="stable")[REJECT_COLUMNS].reset_index(drop=True))
    for t, k in rejected.items():
        if k:
            logger.warning("%s: set aside %s of %s (see rejects)", spec.sources[t].name, f"{k:,}",
                           plural(spec.rows[t], f"{t} row"))
    return rejects


def concat_frames(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate, leaving out empty frames (they must not change dtypes); the first one if all are empty."""
    full = [f for f in frames if len(f)]
    if not full:
        return frames[0].iloc[:0]
    return full[0] if len(full) == 1 else pd.concat(full, ignore_index=True)


@dataclass(frozen=True)
class PopulationInputs:
    """What a partition's partial features give to :func:`learned_population`: the lifespan counts and oldest
    purchase age, the purchase features its customers' CLTV is made of, and the attribute summaries of its
    known customers' rows of the customers table (None without one). Customers never span partitions, so these
    merge into the whole population's."""

    lifespan: tuple[np.ndarray, float | None]
    cltv: dict[str, np.ndarray]
    attributes: dict | None


def population_inputs(partial: build.Partial, config: FeatureConfig) -> PopulationInputs:
    """The :class:`PopulationInputs` of a partition's partial features (with their lifespan counts)."""
    rows = partial.customer_rows
    return PopulationInputs(partial.lifespan, {name: partial.purchase[name] for name in kernel.cltv_inputs(config)},
                            None if rows is None else build.attribute_summaries(rows, config.max_categories))


def learned_population(inputs: list[PopulationInputs], config: FeatureConfig) -> Population:
    """The lifespan, attribute kinds and VIP cut-off over all partitions, the kernel's rules applied to the whole
    population (``features.build.finish_features`` learns the same of one table)."""
    oldest = [i.lifespan[1] for i in inputs if i.lifespan[1] is not None]
    lifespan = kernel.lifespan_from_counts(sum(i.lifespan[0] for i in inputs), max(oldest) if oldest else None,
                                           config)
    cltv = np.concatenate([kernel.cltv(i.cltv, lifespan, config) for i in inputs] or [np.zeros(0)])
    return Population(lifespan, kernel.vip_threshold(cltv, config.vip_quantile),
                      attributes=_merged_kinds([i.attributes for i in inputs], config.max_categories))


def _merged_kinds(summaries: list[dict | None], max_categories: int) -> dict | None:
    """The attribute kinds of the partitions' summaries merged (None without a customers table)."""
    if all(s is None for s in summaries):
        return None
    merged: dict = {}
    for part in (s for s in summaries if s is not None):
        for col, summary in part.items():
            merged[col] = summary if col not in merged else kernel.merge_summaries(merged[col], summary, max_categories)
    return kernel.attribute_kinds(merged)
