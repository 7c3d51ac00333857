"""Reading and atomically writing tables. Format is chosen by file extension.

Work files (a write in progress, a run's spilled pieces, outputs waiting to be replaced together) live in one
named place: a :func:`work_dir`, ``.churnguard-work-<host>-<pid>-<random>`` in the output's directory, removed
when its block ends, and by the next run in that directory when the process that made it was killed.
"""

from __future__ import annotations

import csv
import errno
import functools
import gzip
import io
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
# Column that read_rows adds to a CSV file's rows: the text of a row with more fields than the header (its
# fields then read as missing, but for the ``keep`` columns), else missing.
EXTRA_FIELDS = "_extra_fields"
WORK_PREFIX = ".churnguard-work-"


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


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path in a :func:`work_dir` beside ``path``; on success it replaces ``path``, on error
    it is removed, so a crash mid-write never leaves a half-written file under the final name."""
    path = Path(path)
    with work_dir(path.parent) as work:
        tmp = work / path.name
        tmp.touch()
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # the permissions open() would give, not the work directory's
        os.replace(tmp, path)


def check_output_dir(folder: str | Path) -> None:
    """ValueError when ``folder``, where an output is to be written (made when missing), cannot be a directory:
    it, or the nearest of its parents that exists, is a file (mkdir's FileExistsError named neither)."""
    for part in (Path(folder), *Path(folder).parents):
        if part.exists():
            if not part.is_dir():
                raise ValueError(f"cannot write in {folder}: {part} is a file, not a directory; choose another "
                                 "output path")
            return


@contextmanager
def work_dir(parent: str | Path) -> Iterator[Path]:
    """A private directory for this process's work files in ``parent`` (made when missing), removed with all
    it holds when the block ends, however it ends. Work directories in ``parent`` left by processes of this
    host that no longer run (killed with SIGKILL, say) are removed first (:func:`remove_stale_work`)."""
    parent = Path(parent)
    check_output_dir(parent)
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_work(parent)
    path = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{socket.gethostname()}-{os.getpid()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_stale_work(parent: str | Path) -> list[Path]:
    """Remove the work directories in ``parent`` whose process (on this host) is gone; the ones removed."""
    removed = []
    for path in Path(parent).glob(f"{WORK_PREFIX}*"):
        host, _, pid = path.name.removeprefix(WORK_PREFIX).rpartition("-")[0].rpartition("-")
        if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def replaced_together(*paths: str | Path) -> Iterator[tuple[Path, ...]]:
    """Yield a private path for each of ``paths`` (same file name, in a :func:`work_dir` beside the first).

    When the block ends without error every one of ``paths`` is replaced by what was written to its private
    path, or removed when nothing was (so no file of an earlier run stays beside the new ones), with SIGINT and
    SIGTERM held off until the last one is in place. On error, or a signal, none of ``paths`` changes."""
    finals = [Path(p) for p in paths]
    with work_dir(finals[0].parent) as work:
        staged = tuple(work / f"{i}.{p.name}" for i, p in enumerate(finals))
        yield staged
        raise_if_stopped()
        with _signals_held():
            for s, p in zip(staged, finals, strict=True):
                if s.exists():
                    _move(s, p)
                else:
                    p.unlink(missing_ok=True)


def _move(src: Path, dst: Path) -> None:
    """Put ``src`` in place of ``dst`` atomically (copied first when they are on different file systems)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


_STOPPED: list[int] = []  # the signal that asked this process to stop (see ``stop_on_signal``)


def stop_on_signal(signum: int, _frame: object) -> None:
    """A SIGTERM handler: end the command as an error would (``SystemExit(128 + signum)``), and remember it, so
    that :func:`raise_if_stopped` ends it at the next output or record even where a library swallowed the exit
    (code that turns any exception into a warning, e.g. a check that runs the model)."""
    _STOPPED.append(signum)
    raise SystemExit(128 + signum)


def raise_if_stopped() -> None:
    """``SystemExit(128 + signum)`` when a stop was asked (:func:`stop_on_signal`) and the exit was lost."""
    if _STOPPED:
        raise SystemExit(128 + _STOPPED[0])


@contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait until the block ends (then take their usual course); only in the main thread,
    the one Python runs signal handlers in."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, _frame: got.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if got:
            signal.raise_signal(got[0])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def table_suffix(path: Path) -> str:
    """The table file type of ``path`` (``.csv``, ``.parquet`` or ``.pq``); ValueError for any other."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv or .parquet")
    return suffix


_FORMULA = r"'*[=+\-@\t\r]"  # what a spreadsheet runs as a formula, after any apostrophes already added
_FORMULA_STARTS = ("'", "=", "+", "-", "@", "\t", "\r")  # the first characters it can match


def _text_cells(values: pd.Series, pattern: str, starts: tuple[str, ...]) -> np.ndarray | None:
    """Which cells of a text column match ``pattern`` at their start (None for a column of no text). The cells
    are first sifted, as Arrow text (a categorical column: its categories), by ``starts``, the first characters
    ``pattern`` can match; only those that pass are matched one Python object at a time (1M scores rows' text
    columns took 3.4-3.9 s matched whole so, 0.4-0.7 s sifted first)."""
    import numpy as np
    import pandas as pd

    if values.dtype != object and values.dtype.kind in "biufcmM":
        return None
    if isinstance(values.dtype, pd.CategoricalDtype):
        found = _text_cells(pd.Series(values.cat.categories), pattern, starts)
        codes = values.cat.codes.to_numpy()
        return None if found is None else np.where(codes >= 0, found[codes], False)
    maybe = values.astype("str").str.startswith(starts, na=False).to_numpy(dtype=bool)
    out = np.zeros(len(values), dtype=bool)
    if maybe.any():
        try:  # a number in an object column passed as its text: only text cells match
            out[maybe] = values[maybe].astype(object).str.match(pattern, na=False).to_numpy(dtype=bool)
        except AttributeError:  # no text among them
            return None
    return out


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a leading apostrophe on every text cell a spreadsheet would run as a formula (starting with
    ``= + - @``, a tab or a carriage return, after any apostrophes), so opening a CSV never runs one; numbers
    are left alone. :func:`spreadsheet_restored` undoes it."""
    out = df.copy(deep=False)
    for name in out.columns:
        risky = _text_cells(out[name], _FORMULA, _FORMULA_STARTS)
        if risky is not None and risky.any():
            cells = out[name].to_numpy(dtype=object, copy=True)
            cells[risky] = [f"'{v}" for v in cells[risky]]
            out[name] = cells
    return out


def spreadsheet_restored(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`spreadsheet_safe` undone: one leading apostrophe taken off the text cells it was put on."""
    out = df.copy(deep=False)
    for name in out.columns:
        marked = _text_cells(out[name], "'" + _FORMULA, ("'",))
        if marked is not None and marked.any():
            cells = out[name].to_numpy(dtype=object, copy=True)
            cells[marked] = [v[1:] for v in cells[marked]]
            out[name] = cells
    return out


# glibc's largest mmap threshold, which keep_freed_memory sets: a block of ``malloc`` up to this size comes from the
# heap, where freed memory is reused; a larger one is always a fresh mapping, whose pages the kernel faults in and
# clears on first touch, and which goes back to the system when freed.
LARGEST_HEAP_BLOCK = 32 << 20


def keep_freed_memory() -> None:
    """Ask glibc's ``malloc`` to keep the memory this process frees for its next arrays rather than hand it back
    to the system and fault fresh pages in again (the kernel clearing new pages was a tenth of a 1M ``score``):
    blocks up to 32 MB from the heap, up to 512 MB of freed heap kept, and one heap (arena) for every thread, so
    that what one thread frees is there for the others' next arrays (by default each thread that allocates gets
    an arena of its own, up to 8 a core: Arrow's, numpy's and the checks' threads; at 1M customers one arena
    took 70-190 MB less peak RSS in ``features`` and ``score``, benchmarks/HISTORY.md, twelfth day). Call it
    before any thread allocates. Nothing happens under another C library."""
    mallopt = _mallopt()
    if mallopt is None:
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8  # glibc's malloc.h
    mallopt(m_mmap_threshold, LARGEST_HEAP_BLOCK)
    mallopt(m_trim_threshold, 512 << 20)
    mallopt(m_arena_max, 1)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_CORE_SHARE = threading.local()


def core_share() -> int | None:
    """The cores work on this thread may spread over, when :func:`cores_shared` runs it (else None: all)."""
    return getattr(_CORE_SHARE, "cores", None)


def cores_shared(job: Callable, ways: int) -> Callable:
    """``job``, run with :func:`core_share` giving its thread a ``ways``-th of the cores (at least one): for jobs
    run that many at once, so that each spreads its own work over its share only."""
    share = max(1, usable_cores() // ways)

    def shared(*args: object, **kwargs: object) -> object:
        before = getattr(_CORE_SHARE, "cores", None)
        _CORE_SHARE.cores = share
        try:
            return job(*args, **kwargs)
        finally:
            _CORE_SHARE.cores = before

    return shared


BLAS_SPIN = "16"  # OpenBLAS's wait for more work before its threads sleep: 2**16 cycles, about 25 µs


def short_blas_spin() -> None:
    """Have OpenBLAS's threads (numpy's and scipy's) sleep soon after they run out of work: by default each waits
    2**28 cycles for the next (about 0.1 s) in a busy loop, as soon as the library loads, whether any BLAS work
    comes or not (``features`` does none: its profile showed the wait, ``blas_thread_server``, at 0.85% of its
    CPU). The same threads still share any work that comes, so results are as before. Call it before numpy
    is imported; a setting of ``OPENBLAS_THREAD_TIMEOUT`` in the environment is left as it is."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", BLAS_SPIN)


@contextmanager
def arrow_from_malloc() -> Iterator[None]:
    """Within the block, Arrow allocates from glibc's ``malloc`` (its system pool) instead of its default pool
    (mimalloc), so that what one partition of a build frees is kept for the next one's arrays
    (:func:`keep_freed_memory`), not handed back and faulted in again; its pool as before after the block (the
    arrays made in it are freed to ``malloc`` when they go). Arrow's pool is one for the process: blocks that
    overlap (builds on several threads) share the switch, made by the first to enter and undone by the last to
    leave, in whatever order they leave. Nothing changes under another C library."""
    import pyarrow as pa

    if _mallopt() is None:
        yield
        return
    with _POOL_SWITCH.lock:
        if _POOL_SWITCH.depth == 0:
            _POOL_SWITCH.before = pa.default_memory_pool()
            pa.set_memory_pool(pa.system_memory_pool())
        _POOL_SWITCH.depth += 1
    try:
        yield
    finally:
        with _POOL_SWITCH.lock:
            _POOL_SWITCH.depth -= 1
            if _POOL_SWITCH.depth == 0:
                pa.set_memory_pool(_POOL_SWITCH.before)
                _POOL_SWITCH.before = None


@dataclass
class _PoolSwitch:
    """The blocks of :func:`arrow_from_malloc` open now, and Arrow's pool before the first of them."""

    lock: threading.Lock
    depth: int = 0
    before: object = None


_POOL_SWITCH = _PoolSwitch(threading.Lock())


def _mallopt() -> Callable | None:
    """glibc's ``mallopt``; None under another C library."""
    import ctypes

    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt: not glibc
        return None


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to CSV or Parquet (by extension), atomically; Parquet as :func:`appending_table` writes it."""
    path = Path(path)
    if table_suffix(path) != ".csv":
        with appending_table(path) as append:
            append(df)
        return path
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


_DICTIONARY_SAMPLE = 1 << 16  # rows whose distinct values decide a float column's Parquet encoding


def _dictionary_columns(table: pa.Table) -> list[str]:
    """The columns Parquet's dictionary encoding pays for: all but the floating-point ones whose first rows are
    mostly distinct (amounts, ratios, hours), whose dictionary would only be built to be dropped at the page
    limit (1M x 54 features: 1.16 s and 121 MB with dictionaries for all, 0.78 s and 115 MB so)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    head = table.slice(0, _DICTIONARY_SAMPLE)

    def few(column: pa.ChunkedArray) -> bool:  # at most 1 in 16 of the sample distinct
        # a first eighth with more distinct values than that decides it (it has no more than the whole)
        return all(pc.count_distinct(rows).as_py() * 16 <= len(head)
                   for rows in (column.slice(0, len(head) // 8), column))

    return [f.name for f in table.schema if not pa.types.is_floating(f.type) or few(head.column(f.name))]


@contextmanager
def appending_table(path: str | Path) -> Iterator[Callable[..., None]]:
    """Yield a function that appends a frame to ``path``, CSV for a ``.csv`` name and Parquet for any other (the
    first frame sets the header or schema, and in Parquet its ``attrs``, kept as ``DataFrame.to_parquet`` keeps
    them); the file is written atomically: all of it when the block ends, or nothing. An Arrow table made
    from a frame (``Table.from_pandas``, its schema's pandas metadata kept) is appended as that frame, without
    going through pandas, with ``attrs`` as given. Each frame is written on a thread of its own while the caller
    makes the next (the caller must not change a frame once appended); an error writing it is raised by the next
    append or at the end of the block, which waits for the last write."""
    import json
    from concurrent.futures import wait

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    csv = path.suffix.lower() == ".csv"
    writer, written, pending = None, False, None
    with atomic_path(path) as tmp, ExitStack() as closing:  # the Parquet writer is closed before the move
        def write(frame: pd.DataFrame | pa.Table, attrs: dict | None) -> None:
            nonlocal writer, written
            if csv:
                frame = frame.to_pandas() if isinstance(frame, pa.Table) else frame
                frame.to_csv(tmp, index=False, mode="a" if written else "w", header=not written)
            else:
                table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
                attrs = attrs if isinstance(frame, pa.Table) else frame.attrs
                if writer is None and attrs:
                    table = table.replace_schema_metadata({**table.schema.metadata,
                                                           "PANDAS_ATTRS": json.dumps(attrs)})
                writer = writer or closing.enter_context(pq.ParquetWriter(tmp, table.schema,
                                                                          use_dictionary=_dictionary_columns(table)))
                writer.write_table(table.cast(writer.schema))
            written = True

        def append(frame: pd.DataFrame | pa.Table, attrs: dict | None = None) -> None:
            nonlocal pending
            if pending is not None:
                pending.result()
            pending = behind.submit(write, frame, attrs)

        with ThreadPoolExecutor(1, thread_name_prefix="churnguard-write") as behind:
            try:
                yield append
            finally:  # the last write done before the writer is closed, whether the block ends well or not
                if pending is not None:
                    wait([pending])
            if pending is not None:
                pending.result()


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
                at = [_dictionary_offset(found[name], chunk.dictionary, everyone=name in few) for chunk in chunks]
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


def encode_text(values: pa.Array, kind: pa.DataType) -> pa.DictionaryArray:
    """``pc.dictionary_encode`` of a text array (its indices int32), the dictionary's values of type ``kind``
    (``string`` or ``large_string``), by :func:`text_codes`."""
    import pyarrow as pa

    (indices,), dictionary = text_codes(values)
    return pa.DictionaryArray.from_arrays(indices, dictionary.cast(kind), safe=False)  # the encoding's indices


def text_codes(values: pa.Array | pa.ChunkedArray) -> tuple[list[pa.Array], pa.Array]:
    """``pc.dictionary_encode`` of text (an array, or a chunked array encoded as one): the indices (one array
    per chunk) and the distinct values in order of first occurrence. Where every value is there and has the
    same number of bytes (ids written to one width: the demo's customer and session ids, UUIDs), their bytes
    are encoded as values of that fixed size instead (:func:`fixed_bytes`), which Arrow hashes and compares
    without offsets: the same values, each the same bytes, so the same indices and values, given back as
    ``large_string`` (3.1M customer ids of 11 characters: 35 against 47 ms; a partition's 4.3M transaction
    ids of the 1M-customer world: 0.27-0.30 against 0.38-0.41 s). Otherwise the values keep the input's type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fixed = fixed_bytes(values)
    if fixed is not None and fixed.type.byte_width in _WORDS:  # the bytes as one unsigned integer each
        fixed = _as_words(fixed)
    coded = pc.dictionary_encode(values if fixed is None else fixed)
    chunks = [coded] if isinstance(coded, pa.Array) else coded.chunks  # a chunk's dictionary holds the earlier's
    if not chunks:
        return [], pa.array([], type=values.type)
    dictionary = chunks[-1].dictionary
    return [c.indices for c in chunks], dictionary if fixed is None else fixed_text(dictionary)


_WORDS = {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}  # fixed widths Arrow hashes as integers


def _as_words(fixed: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Fixed-size binary values of 1, 2, 4 or 8 bytes as unsigned integers of the same bytes, without a copy:
    equal values are equal integers, which Arrow hashes faster (``encode_text`` of 3.1M customer ids of 8 bytes,
    three row groups of the 1M-customer world's events: 27.7 against 40.4 ms, best of 5)."""
    import pyarrow as pa

    kind = pa.type_for_alias(_WORDS[fixed.type.byte_width])
    if isinstance(fixed, pa.ChunkedArray):
        return pa.chunked_array([_as_words(c) for c in fixed.chunks], type=kind)
    return pa.Array.from_buffers(kind, len(fixed), [None, fixed.buffers()[1]], offset=fixed.offset)


def fixed_bytes(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
    """A text array's values as fixed-size binary values of the same bytes, without a copy, when every value
    is there and has the same number of bytes; else None. Of a chunked array, its chunks so, when all hold
    values of one width (an empty chunk has any; all empty: None)."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        widths = {_fixed_width(c) for c in values.chunks if len(c)}
        if len(widths) != 1 or None in widths:
            return None
        (width,) = widths
        return pa.chunked_array([_as_fixed(c, width) for c in values.chunks], type=pa.binary(width))
    width = _fixed_width(values)
    return None if width is None else _as_fixed(values, width)


def _as_fixed(values: pa.Array, width: int) -> pa.Array:
    """The bytes of a text array whose values all have ``width`` bytes, as fixed-size binary values."""
    import pyarrow as pa

    if not len(values):
        return pa.array([], type=pa.binary(width))
    return pa.Array.from_buffers(pa.binary(width), len(values), [None, values.buffers()[2].slice(
        int(text_offsets(values)[0]), width * len(values))])


def fixed_text(values: pa.Array) -> pa.Array:
    """Fixed-size binary values (:func:`fixed_bytes`' type, or :func:`_as_words`') as the ``large_string``
    values of the same bytes."""
    import numpy as np
    import pyarrow as pa

    width = values.type.byte_width
    offsets = np.arange(len(values) + 1, dtype=np.int64) * width  # one value after another
    data = values.buffers()[1].slice(values.offset * width, width * len(values))
    return pa.Array.from_buffers(pa.large_string(), len(values), [None, pa.py_buffer(offsets), data])


def text_offsets(values: pa.Array) -> np.ndarray:
    """A text (or binary) array's offsets, ``len(values) + 1`` of them, read from its buffer without a copy
    (int64 for the large types, else int32)."""
    import numpy as np
    import pyarrow as pa

    width = np.int64 if pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type) else np.int32
    if not len(values):
        return np.zeros(1, dtype=width)
    return np.frombuffer(values.buffers()[1], dtype=width, count=len(values) + 1,
                         offset=values.offset * np.dtype(width).itemsize)


def _fixed_width(values: pa.Array) -> int | None:
    """The number of bytes of every value of a text array when all have the same number (more than none) and
    none is missing; else None."""
    import numpy as np

    if not len(values) or values.null_count:
        return None
    offsets = text_offsets(values)
    width = int(offsets[1] - offsets[0])
    if width <= 0 or int(offsets[-1] - offsets[0]) != width * len(values):
        return None
    return width if bool((np.diff(offsets) == width).all()) else None


def _dictionary_offset(seen: list[tuple[pa.Array, int]], dictionary: pa.Array, everyone: bool) -> int:
    """Where ``dictionary``'s values start among the distinct dictionaries ``seen`` so far (each with its
    offset), appended to them unless equal to the last one (``everyone``: to any one)."""
    for known, offset in (seen if everyone else seen[-1:]):
        if len(known) == len(dictionary) and known.equals(dictionary):
            return offset
    offset = seen[-1][1] + len(seen[-1][0]) if seen else 0
    seen.append((dictionary, offset))
    return offset


def _held_indices(indices: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """A dictionary chunk's indices straight from their buffer (a null's slot holds any number) and, when it
    has nulls, its validity as 0/1 bytes."""
    import numpy as np

    width = np.dtype(indices.type.to_pandas_dtype())
    held = np.frombuffer(indices.buffers()[1], dtype=width, count=len(indices), offset=indices.offset * width.itemsize)
    if not indices.null_count:
        return held, None
    bits = np.frombuffer(indices.buffers()[0], dtype=np.uint8)
    return held, np.unpackbits(bits, count=indices.offset + len(indices), bitorder="little")[indices.offset :]


def put_codes(indices: pa.Array, offset: int, out: np.ndarray) -> None:
    """Write a dictionary chunk's indices plus ``offset`` into ``out`` (-1 where null), straight from the
    indices' buffer."""
    import numpy as np

    held, valid = _held_indices(indices)
    if valid is None:
        np.add(held, offset, out=out, casting="unsafe")
        return
    # (index + offset + 1) * valid - 1 is -1 at a null, without a masked write.
    shifted = held + (offset + 1)  # a null's number may overflow: it is multiplied by 0
    shifted *= valid
    np.subtract(shifted, 1, out=out, casting="unsafe")


def joint_categorical(codes: np.ndarray, dictionaries: list[pa.Array], spans: list[tuple[int, int, int]]
                       ) -> pd.Categorical:
    """One categorical of codes into several dictionaries (``spans``: from each first row on, the codes number
    the values of ``dictionaries`` one after another from position ``lo`` to ``hi``; -1 null): the dictionaries'
    values are encoded together, in order of first appearance, and each group's codes mapped onto them in place
    (unless they are already those positions)."""
    import numpy as np
    import pandas as pd

    at, levels = joint_levels(dictionaries)
    if len(levels) > np.iinfo(codes.dtype).max:
        codes = codes.astype(np.int32)
    for (row, lo, hi), stop in zip(spans, [r for r, _, _ in spans[1:]] + [len(codes)], strict=True):
        if not np.array_equal(at[lo:hi], np.arange(hi - lo)):  # a small map per group: it stays in cache
            codes[row:stop] = np.append(at[lo:hi], np.int32(-1)).astype(codes.dtype)[codes[row:stop]]
    return pd.Categorical.from_codes(codes, dtype=distinct_categories(levels), validate=False)


def joint_levels(dictionaries: list[pa.Array]) -> tuple[np.ndarray, pd.Index]:
    """The values of text ``dictionaries`` encoded together, in order of first appearance: each value's
    position among the distinct ones (int32, the dictionaries one after another; -1: null) and the distinct
    values (an Arrow-backed text index)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    # One array, not a chunked one: combining a dictionary-encoded chunked array is not implemented in every
    # pyarrow the project supports.
    joint = encode_text(pa.concat_arrays([d.cast(pa.large_string()) for d in dictionaries]) if dictionaries
                        else pa.array([], type=pa.large_string()), pa.large_string())
    at = pc.fill_null(joint.indices, -1).to_numpy().astype(np.int32)
    return at, pd.Index(pd.array(joint.dictionary, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


def category_code_type(levels: int) -> np.dtype:
    """The integer type pandas holds the codes of a categorical of ``levels`` categories in (it converts others):
    also the indices of a split piece's dictionary of ``levels`` values (``engines.partitions``)."""
    import numpy as np

    return np.dtype(np.int8 if levels < 127 else np.int16 if levels < 32767 else np.int32)


def put_mapped_codes(indices: pa.Array, table: np.ndarray, out: np.ndarray) -> None:
    """Write ``table`` at a dictionary chunk's indices into ``out`` (-1 where null), straight from the indices'
    buffer, in one pass over the rows: a chunk's values' places among values encoded together."""
    import numpy as np

    held, valid = _held_indices(indices)
    table = np.append(table, -1).astype(out.dtype)  # the last: a null's
    if valid is not None:  # (index + 1) * valid - 1 is -1 at a null
        held = held.astype(np.intp) + 1
        held *= valid
        held -= 1
    np.take(table, held, out=out)


def take(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``values[indices]`` (``indices``: non-negative, each below ``len(values)``) by Arrow's take, which reads
    indices of any integer type as they are, where numpy converts them to ``intp`` first and then gathers
    through its general indexing (4.8M int16 indices into 36,000 int32 values: 2.0 against 6.3 ms; 3.1M int32
    indices into 150,000 bytes: 1.0 against 3.6 ms). Read-only, in Arrow's memory."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if values.dtype == np.bool_:  # Arrow's booleans are bits: taken as bytes
        return take(values.view(np.uint8), indices).view(np.bool_)
    return pc.take(pa.array(values), pa.array(indices), boundscheck=False).to_numpy()


def take_codes(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``table[codes]`` of integer ``codes`` from -1 (a missing value's: the table's last place, as numpy reads -1)
    to ``len(table) - 2`` (the last place is the missing value's only), by :func:`take`."""
    import numpy as np

    return take(np.roll(table, 1), codes + np.int32(1))  # the last place first


def distinct_categories(levels: pd.Index) -> pd.CategoricalDtype:
    """The categorical type of ``levels``, values known to be distinct (a dictionary's). pandas' own check
    that they are hashes them as Python strings and keeps that table with the type: hundreds of MB for
    millions of session ids, held as long as the table."""
    import pandas as pd

    fast = getattr(pd.CategoricalDtype, "_from_fastpath", None)
    return fast(levels, False) if fast is not None else pd.CategoricalDtype(levels)


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
