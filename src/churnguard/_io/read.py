"""Reading input tables: CSV (every column as text, in blocks) and Parquet (text columns as codes, a row group
at a time)."""

from __future__ import annotations

import csv
import functools
import gzip
import io
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from churnguard._io.codes import dictionary_offset, encode_text, joint_categorical, put_codes
from churnguard._io.files import table_suffix

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq


# Column that read_rows adds to a CSV file's rows: the text of a row with more fields than the header (its
# fields then read as missing, but for the ``keep`` columns), else missing.
EXTRA_FIELDS = "_extra_fields"


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file's text is written: its encoding and field separator (``data.encoding``, ``data.delimiter``)."""

    encoding: str = "utf-8"
    delimiter: str = ","

    @property
    def text_encoding(self) -> str:
        """The codec to decode with: UTF-8 skips a byte order mark."""
        return "utf-8-sig" if self.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else self.encoding


UTF8 = CsvDialect()


def input_format(path: str | Path) -> str:
    """``csv`` (``.csv``, ``.csv.gz``) or ``parquet`` (``.parquet``, ``.pq``) for an input table's name;
    ValueError naming any other suffix (the caller names the file)."""
    name = Path(path).name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    suffix = "".join(Path(name).suffixes[-2:]) or "(none)"
    raise ValueError(f"unsupported file type {suffix!r}; use .csv, .csv.gz or .parquet")


def open_bytes(path: str | Path) -> IO[bytes]:
    """The bytes of a file, decompressed for a ``.gz`` name."""
    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def header_line(path: str | Path, dialect: CsvDialect = UTF8) -> bytes:
    """A CSV file's first line (the header), after checking that the file holds text in ``dialect.encoding``.

    Raises:
        ValueError: the file is UTF-16 (or other text with NUL bytes), or its header is not in the encoding.
    """
    with open_bytes(path) as fh:
        start = fh.read(4096)
        fh.seek(0)
        line = fh.readline()
    if not start.strip():
        return b""
    if start.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in start:
        raise ValueError("the file is not UTF-8 text (it looks like UTF-16, or it is binary); "
                         "save it as CSV in UTF-8")
    try:
        line.decode(dialect.text_encoding)
    except UnicodeDecodeError as exc:
        raise ValueError(f"the header is not {dialect.encoding} text ({exc}); save the file as CSV in UTF-8 or "
                         "set data.encoding (e.g. latin-1)") from None
    return line


def header_names(line: bytes, dialect: CsvDialect = UTF8) -> list[str]:
    """The column names of a CSV header line as written (a repeated name stays repeated)."""
    return next(csv.reader([line.decode(dialect.text_encoding, "replace")], delimiter=dialect.delimiter), [])


def column_names(line: bytes, dialect: CsvDialect = UTF8) -> list[str]:
    """The column names of a CSV header line as pandas reads them (blank names become ``Unnamed: i``)."""
    return list(_column_names(line, dialect))


@functools.lru_cache(maxsize=64)
def _column_names(line: bytes, dialect: CsvDialect) -> tuple[str, ...]:
    """:func:`column_names`, read by pandas once per header (each chunk of a file has its file's header)."""
    import pandas as pd

    return tuple(pd.read_csv(io.BytesIO(line), dtype=str, nrows=0, encoding=dialect.text_encoding,
                             sep=dialect.delimiter).columns)


def read_rows(path: str | Path, columns: list[str] | None = None, keep: tuple[str, ...] = (),
              dialect: CsvDialect = UTF8, categorical: tuple[str, ...] = (), few: tuple[str, ...] = (),
              hashed: tuple[str, ...] = ()) -> pd.DataFrame:
    """An input table as validation reads it: CSV (``.csv.gz`` too) with every column as text and the column
    :data:`EXTRA_FIELDS` (see :func:`csv_rows`), or Parquet; with ``columns``, only those of the file's columns.
    A Parquet file's text columns named in ``categorical`` come as pandas categoricals (:func:`read_parquet`).
    """
    import pandas as pd

    path = Path(path)
    if input_format(path) == "parquet":
        return read_parquet(path, columns, categorical, few, hashed)
    line = header_line(path, dialect)
    if not line:
        raise pd.errors.EmptyDataError("the file is empty")
    return csv_rows(lambda: open_bytes(path), column_names(line, dialect), columns, keep, dialect)


def read_parquet(path: str | Path, columns: list[str] | None = None, categorical: tuple[str, ...] = (),
                 few: tuple[str, ...] = (), hashed: tuple[str, ...] = ()) -> pd.DataFrame:
    """A Parquet file as ``pandas.read_parquet`` reads it (same columns, index and types), through Arrow's own
    conversion, which takes half the time of pandas' for text columns.

    The text columns named in ``categorical`` come as pandas categoricals: one integer code per row and each
    distinct value once (``few``: columns of few distinct values, whose codes then take one byte; ``hashed``:
    columns of many, encoded as :func:`read_coded` says). Such a file is read a row group at a time
    (:func:`_row_groups`) into arrays made once for the whole file, so neither the text of a whole column nor a
    second copy of a number column is ever in memory.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    text = [c for c in categorical if c in schema.names and (columns is None or c in columns)
            and (pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type))]
    if not text:
        return pq.read_table(path, columns=columns, use_pandas_metadata=True).to_pandas()
    names = [c for c in (schema.names if columns is None else columns) if c in schema.names]
    index = [c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
    filled = {c: kind for c in names if c not in text and not index
              and (kind := _fill_dtype(schema.field(c).type)) is not None}
    rest = [c for c in names if c not in text and c not in filled]
    frame = pq.read_table(path, columns=rest, use_pandas_metadata=True).to_pandas(
        split_blocks=True, self_destruct=True) if rest else None
    read = _row_groups(path, text, few, filled, [c for c in hashed if c in text])
    rows = pd.RangeIndex(pq.ParquetFile(path).metadata.num_rows) if frame is None else frame.index
    data = {c: frame[c] for c in rest if c in frame} | {
        c: pd.Series(values, index=rows, copy=False) for c, values in read.items()}  # the arrays as they are
    return pd.DataFrame({c: data[c] for c in names if c in data}, index=rows, copy=False)


def _fill_dtype(kind: pa.DataType) -> np.dtype | None:
    """The numpy type pandas gives an Arrow column when a numpy array of it holds every value as pandas would,
    nulls included: floating point numbers (NaN) and timestamps without a time zone (NaT); None otherwise."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_float32(kind) or pa.types.is_float64(kind):
        return np.dtype(kind.to_pandas_dtype())
    if pa.types.is_timestamp(kind) and kind.tz is None:
        return np.dtype(f"datetime64[{kind.unit}]")
    return None


# Row groups read ahead, each on its own thread. One: two gave no gain (Arrow decodes a group's columns on
# several threads already), and each holds a group in memory.
_READERS = 1


def _row_groups(path: str | Path, text: list[str], few: tuple[str, ...], filled: dict[str, np.dtype],
                hashed: list[str]) -> dict:
    """Columns of a Parquet file read a row group at a time (the next group read on another thread) into
    arrays made once for the file: ``filled``, numpy arrays of the given types; ``text``, pandas categoricals.

    A text column is read as the file's own dictionaries (a row group's dictionary page: no value is decoded
    as text per row, nor hashed again), or, of ``hashed``, as one dictionary per group (:func:`read_coded`). The
    file's distinct dictionaries are numbered one after another (a
    dictionary equal to the one before, or for a ``few`` column to any one before, is counted once), and each
    row's code is written as its position in them less the group's first one used (so that codes stay small);
    the dictionaries are then encoded together (:func:`joint_categorical`). The codes of a ``few`` column take
    one byte while a group's values fit."""
    import numpy as np
    import pyarrow.parquet as pq

    n_groups = pq.ParquetFile(path).num_row_groups
    rows = pq.ParquetFile(path).metadata.num_rows
    codes = {c: np.empty(rows, dtype=np.int8 if c in few else np.int32) for c in text}
    values = {c: np.empty(rows, dtype=dtype) for c, dtype in filled.items()}
    found: dict[str, list[tuple[pa.Array, int]]] = {c: [] for c in text}  # distinct dictionaries, their offsets
    spans: dict[str, list[tuple[int, int, int]]] = {c: [] for c in text}  # per group: first row, its codes' range
    local = threading.local()

    def group(g: int) -> pa.Table:
        if not hasattr(local, "file"):  # a reader of its own for each thread
            local.file = coded_file(path, text, hashed)
        return read_coded(local.file, [g], [*text, *filled], hashed)

    first = 0
    with ThreadPoolExecutor(_READERS, thread_name_prefix="churnguard-read") as pool:
        ahead = deque(pool.submit(group, g) for g in range(min(_READERS, n_groups)))
        for g in range(n_groups):
            table = ahead.popleft().result()
            if g + _READERS < n_groups:
                ahead.append(pool.submit(group, g + _READERS))
            for name in text:
                chunks = table.column(name).chunks
                at = [dictionary_offset(found[name], chunk.dictionary, everyone=name in few) for chunk in chunks]
                lo = min(at, default=0)
                hi = max((a + len(chunk.dictionary) for a, chunk in zip(at, chunks, strict=True)), default=0)
                if codes[name].dtype == np.int8 and hi - lo > np.iinfo(np.int8).max:
                    codes[name] = codes[name].astype(np.int32)
                row = first
                for offset, chunk in zip(at, chunks, strict=True):
                    put_codes(chunk.indices, offset - lo, codes[name][row : row + len(chunk)])
                    row += len(chunk)
                spans[name].append((first, lo, hi))
            for name in filled:
                row = first
                for chunk in table.column(name).chunks:
                    values[name][row : row + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
                    row += len(chunk)
            first += table.num_rows
            del table
    # One column's dictionaries at a time: encoding two at once on two threads held both hash tables (0.8 GB
    # more at 1M customers' events) for no CPU saved on a busy machine.
    return {c: joint_categorical(codes.pop(c), [d for d, _ in found.pop(c)], spans.pop(c)) if c in text
            else values.pop(c) for c in [*text, *filled]}


def coded_file(path: str | Path, coded: list[str], hashed: list[str]) -> pq.ParquetFile:
    """A Parquet file opened to read its text columns ``coded`` as its own dictionaries, but those of ``hashed``
    (see :func:`read_coded`)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, read_dictionary=[c for c in coded if c not in hashed])


def read_coded(file: pq.ParquetFile, groups: list[int], columns: list[str], hashed: list[str]) -> pa.Table:
    """Row groups ``groups`` of ``file`` (opened by :func:`coded_file`), the text columns ``hashed`` read as text
    and dictionary-encoded here by Arrow's hash, one dictionary for the rows read: the same values and indices
    as the file's dictionaries read a group at a time, where a group's values are written in order of first
    appearance, as Arrow writes them.

    The customer ids of a large events file (``dataset.contract._HASHED``): a row group holds more distinct ids than its
    dictionary page does (Arrow's writer: 1 MB, about 87,000 ids of 8 characters), the pages after it are
    stored plain, and Arrow's dictionary reader puts their values into its dictionary one at a time (12 row
    groups of the 1M-customer world's events, best of 3: 0.76 s of CPU read as dictionaries; 0.23 s read as
    text, 0.31 s cast and encoded). A chunk of several groups then also has one dictionary, not one per group:
    11 chunks of that file, 2.1M values for the split to cut where the groups' dictionaries held 5.1M."""
    import pyarrow as pa

    table = (file.read_row_groups(groups, columns=columns) if groups
             else file.schema_arrow.empty_table().select(columns))
    for name in (c for c in hashed if c in table.column_names):
        column = table.column(name)
        text = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()  # Arrow reads one chunk
        if text.nbytes < 2**31:  # the values come in the reader's type; hashing costs about the same (11 chunks of
            # these ids: 0.02 + 0.92 s against 1.08 s as read; 14 others: 2.17 against 1.95 s)
            text = text.cast(pa.string())
        coded = encode_text(text, pa.string())  # the dictionary's values as the reader's
        table = table.set_column(table.column_names.index(name), name, pa.chunked_array([coded]))
    return table


def csv_rows(open_data: Callable[[], IO[bytes]], names: list[str], columns: list[str] | None = None,
             keep: tuple[str, ...] = (), dialect: CsvDialect = UTF8) -> pd.DataFrame:
    """CSV rows (``open_data``: a new stream of the header line and the rows each time it is called), every
    column as text, blank cells missing, plus :data:`EXTRA_FIELDS`: for a row with more fields than the ``names``
    of the header, its text (its fields are then missing, but for the ``keep`` columns); else missing.
    ``columns``: only those of the names, in file order."""
    import pandas as pd

    wanted = [n for n in names if columns is None or n in columns]
    if first_record_width(open_data, dialect) <= len(names):  # pandas takes a longer first row as an index
        try:
            with open_data() as fh:  # all columns: with usecols, pandas ignores surplus fields
                frame = pd.read_csv(fh, dtype=str, keep_default_na=False, na_values=[""], header=0, names=names,
                                    index_col=False, encoding=dialect.text_encoding, sep=dialect.delimiter)
            return frame[wanted].assign(**{EXTRA_FIELDS: pd.Series(pd.NA, index=frame.index, dtype="str")})
        except pd.errors.ParserError as exc:
            if "Expected" not in str(exc):
                raise
    return _csv_rows_by_record(open_data, names, wanted, keep, dialect)


class CsvNotBlockwise(Exception):
    """Arrow's CSV reader cannot read a file as :func:`csv_rows` does (a row of another width than the header,
    text not in the encoding, ...): it is read whole by :func:`csv_rows`, which reads or reports it as before."""


def csv_blocks(path: str | Path, names: list[str], columns: list[str], dialect: CsvDialect = UTF8,
               block_bytes: int = 1 << 26) -> Iterator[pd.DataFrame]:
    """A CSV file's rows as :func:`csv_rows` reads them (``columns`` of the header's ``names``, every one as
    text, blank cells missing; no :data:`EXTRA_FIELDS`), about ``block_bytes`` of the file at a time, by Arrow's
    streaming CSV reader (``.csv.gz`` decompressed as it is read; the next block is parsed while the caller works
    on the one it was given).

    Raises:
        CsvNotBlockwise: a row has more or fewer fields than the header, or the text is not in the encoding;
            raised when the block holding it is reached, so the caller drops what it made of earlier blocks.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    options = _arrow_csv_options(names, columns, dialect, block_bytes)
    try:
        with pa.input_stream(str(path), compression="gzip" if str(path).lower().endswith(".gz") else None) as stream:
            for batch in pcsv.open_csv(stream, **options):
                yield pa.Table.from_batches([batch]).to_pandas(split_blocks=True, self_destruct=True)
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        raise CsvNotBlockwise(str(exc)) from None


def csv_table(rows: pa.Buffer, names: list[str], columns: list[str], dialect: CsvDialect = UTF8,
              block_bytes: int | None = None) -> pa.Table:
    """CSV ``rows`` (the lines after a header of ``names``) as :func:`csv_blocks` reads a file, in one Arrow
    table of ``columns`` (each one of the ``names``) as large strings, the type :func:`csv_rows`' frame has in
    Arrow.

    Arrow's reader parses the text in blocks (of ``block_bytes``; default: Arrow's) on several threads. The blocks
    are first cut at line ends found by a plain search, not through the quotes (64 MB of transactions: 0.07 s of
    CPU against 0.10 s). Each block is parsed from a row's start, so a cut inside a quoted value with a line break
    leaves that block's last row unfinished, which Arrow refuses: no block is read otherwise. Then the rows are
    read again, the row ends found through the quotes.

    Raises:
        CsvNotBlockwise: as :func:`csv_blocks`: the caller reads the rows with :func:`csv_rows` instead.
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    for quoted_line_ends in (False, True):
        options = _arrow_csv_options(names, columns, dialect, block_bytes, header=False,
                                     newlines_in_values=quoted_line_ends)
        try:
            table = pcsv.read_csv(pa.BufferReader(rows), **options)
            break
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            if quoted_line_ends:
                raise CsvNotBlockwise(str(exc)) from None
    return table.cast(pa.schema([(c, pa.large_string()) for c in table.column_names]))


def _arrow_csv_options(names: list[str], columns: list[str], dialect: CsvDialect, block_bytes: int | None = None,
                       header: bool = True, newlines_in_values: bool = True) -> dict:
    """Arrow's CSV options that read a file's ``columns`` as :func:`csv_rows` does: the header's ``names``,
    every column as text, blank cells missing, in the file's encoding and delimiter (``header``: the text starts
    with the header line, which is skipped; ``newlines_in_values`` False: blocks are cut at any line end, see
    :func:`csv_table`)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    encoding = dialect.text_encoding
    read = pcsv.ReadOptions(column_names=names, skip_rows=int(header),
                            encoding="utf8" if encoding == "utf-8-sig" else encoding,
                            **({"block_size": block_bytes} if block_bytes else {}))
    return {"read_options": read,
            "parse_options": pcsv.ParseOptions(delimiter=dialect.delimiter, newlines_in_values=newlines_in_values),
            "convert_options": pcsv.ConvertOptions(
                include_columns=columns, column_types=dict.fromkeys(columns, pa.string()), null_values=[""],
                strings_can_be_null=True, quoted_strings_can_be_null=True)}


def _records(fh: IO[bytes], dialect: CsvDialect) -> Iterator[list[str]]:
    """The CSV records of a byte stream in ``dialect``."""
    return csv.reader(io.TextIOWrapper(fh, encoding=dialect.text_encoding, newline=""), delimiter=dialect.delimiter)


def first_record_width(open_data: Callable[[], IO[bytes]], dialect: CsvDialect = UTF8) -> int:
    """How many fields the first non-blank record after the header has (0: none)."""
    with open_data() as fh:
        reader = _records(fh, dialect)
        next(reader, None)
        return next((len(r) for r in reader if r), 0)


def _csv_rows_by_record(open_data: Callable[[], IO[bytes]], names: list[str], wanted: list[str],
                        keep: tuple[str, ...], dialect: CsvDialect = UTF8) -> pd.DataFrame:
    """:func:`csv_rows` record by record (the way for a file with rows longer than its header)."""
    import pandas as pd

    n, kept = len(names), [i for i, name in enumerate(names) if name in keep]
    rows, extra = [], []
    with open_data() as fh:
        reader = _records(fh, dialect)
        next(reader, None)
        for record in filter(None, reader):  # blank lines are no rows, as pandas reads them
            if len(record) > n:
                extra.append(dialect.delimiter.join(record))
                record = [record[i] if i in kept else "" for i in range(n)]
            else:
                extra.append(None)
                record = record + [""] * (n - len(record))
            rows.append(record)
    frame = pd.DataFrame(rows, columns=names, dtype=object)[wanted] if rows else pd.DataFrame(columns=wanted)
    frame = frame.replace("", None).astype("str") if rows else frame.astype("str")
    return frame.assign(**{EXTRA_FIELDS: pd.Series(extra, index=frame.index, dtype="str")})


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV (every column as text, so validation sees the raw values) or Parquet file; with
    ``columns``, only those of the file's columns (the others are not read)."""
    import pandas as pd

    path = Path(path)
    if table_suffix(path) == ".csv":
        usecols = None if columns is None else set(columns).__contains__
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], usecols=usecols)
    return read_parquet(path, columns)


def parquet_blocks(path: str | Path, columns: list[str] | None = None, rows: int = 2**20) -> Iterator[pd.DataFrame]:
    """A Parquet file's rows as :func:`read_parquet` reads them (without ``categorical``), ``rows`` at a time;
    the next block is read on a second thread while the caller works on the one it was given."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    batches = pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns, use_pandas_metadata=True)

    def following() -> pd.DataFrame | None:
        batch = next(batches, None)
        return None if batch is None else pa.Table.from_batches([batch]).to_pandas(split_blocks=True,
                                                                                    self_destruct=True)

    with ThreadPoolExecutor(1, thread_name_prefix="churnguard-read") as pool:
        ahead = pool.submit(following)
        while (frame := ahead.result()) is not None:
            ahead = pool.submit(following)
            yield frame
