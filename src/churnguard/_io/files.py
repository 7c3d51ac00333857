"""Where outputs go: atomic writes, work directories removed however a run ends, stops asked by a signal."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
