"""Reading and atomically writing tables. Format is chosen by file extension.

Work files (a write in progress, a run's spilled pieces, outputs waiting to be replaced together) live in one
named place: a :func:`work_dir`, ``.churnguard-work-<host>-<pid>-<random>`` in the output's directory, removed
when its block ends, and by the next run in that directory when the process that made it was killed.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
WORK_PREFIX = ".churnguard-work-"


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


@contextmanager
def work_dir(parent: str | Path) -> Iterator[Path]:
    """A private directory for this process's work files in ``parent`` (made when missing), removed with all
    it holds when the block ends, however it ends. Work directories in ``parent`` left by processes of this
    host that no longer run (killed with SIGKILL, say) are removed first (:func:`remove_stale_work`)."""
    parent = Path(parent)
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
