"""Reading and atomically writing tables. Format is chosen by file extension."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed, so a
    crash mid-write never leaves a half-written file under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _text_cells(values: pd.Series, pattern: str) -> np.ndarray | None:
    """Which cells of a text column match ``pattern`` at their start (None for a column of no text)."""
    if values.dtype != object and values.dtype.kind in "biufcmM":
        return None
    try:
        return values.astype(object).str.match(pattern, na=False).to_numpy(dtype=bool)
    except AttributeError:  # no text in the column
        return None


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a leading apostrophe on every text cell a spreadsheet would run as a formula (starting with
    ``= + - @``, a tab or a carriage return, after any apostrophes), so opening a CSV never runs one; numbers
    are left alone. :func:`spreadsheet_restored` undoes it."""
    out = df.copy(deep=False)
    for name in out.columns:
        risky = _text_cells(out[name], _FORMULA)
        if risky is not None and risky.any():
            cells = out[name].to_numpy(dtype=object, copy=True)
            cells[risky] = [f"'{v}" for v in cells[risky]]
            out[name] = cells
    return out


def spreadsheet_restored(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`spreadsheet_safe` undone: one leading apostrophe taken off the text cells it was put on."""
    out = df.copy(deep=False)
    for name in out.columns:
        marked = _text_cells(out[name], "'" + _FORMULA)
        if marked is not None and marked.any():
            cells = out[name].to_numpy(dtype=object, copy=True)
            cells[marked] = [v[1:] for v in cells[marked]]
            out[name] = cells
    return out


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to CSV or Parquet (by extension), atomically."""
    path = Path(path)
    write = df.to_csv if table_suffix(path) == ".csv" else df.to_parquet
    with atomic_path(path) as tmp:
        write(tmp, index=False)
    return path


@contextmanager
def appending_table(path: str | Path) -> Iterator[Callable[[pd.DataFrame], None]]:
    """Yield a function that appends a frame to ``path``, CSV for a ``.csv`` name and Parquet for any other (the
    first frame sets the header or schema); the file is written atomically: all of it when the block ends, or
    nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    csv = path.suffix.lower() == ".csv"
    writer, written = None, False
    with atomic_path(path) as tmp, ExitStack() as closing:  # the Parquet writer is closed before the move
        def append(frame: pd.DataFrame) -> None:
            nonlocal writer, written
            if csv:
                frame.to_csv(tmp, index=False, mode="a" if written else "w", header=not written)
            else:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                writer = writer or closing.enter_context(pq.ParquetWriter(tmp, table.schema))
                writer.write_table(table.cast(writer.schema))
            written = True

        yield append


def read_table(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV (every column as text, so validation sees the raw values) or Parquet file; with
    ``columns``, only those of the file's columns (the others are not read)."""
    import pandas as pd

    path = Path(path)
    if table_suffix(path) == ".csv":
        usecols = None if columns is None else set(columns).__contains__
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], usecols=usecols)
    return pd.read_parquet(path, columns=columns)
