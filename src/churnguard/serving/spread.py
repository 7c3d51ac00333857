"""Keep-alive connections spread evenly over the server's worker processes.

Worker processes share one listening socket, so connections opened together (a client's pool, a load
generator) often land unevenly, and a kept-alive connection stays where it landed: one worker then scores
batches of a dozen customers while another scores batches of two or three, paying the scoring call's fixed
cost over fewer requests. Asking one client in a hundred to reconnect, whatever the split, moves connections
both ways and leaves the split uneven as often as not.

Here each worker process writes its number of open connections into its slot of a small shared file
(:class:`Board`); a worker holding more than its share (the total over the number of workers, rounded up)
asks one client to reconnect (``Connection: close`` on its next answer), and another only once that one has
gone. A reconnecting client is taken by whichever worker accepts first; should it land on a crowded worker
again, that worker asks again. A worker within its share never asks. ``churnguard serve --workers N`` (N > 1)
makes the file (:func:`board_file`) and hands its path to the workers in ``CHURNGUARD_SERVE_SPREAD``.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from churnguard._io.files import process_alive

__all__ = ["ENV", "Board", "board_file", "current", "from_env"]

ENV = "CHURNGUARD_SERVE_SPREAD"  # "<workers>:<path of the board file>"
_SLOT = 2  # int64s per worker: its process id, its open connections


class Board:
    """This worker process's slot on the shared file at ``path``, made for ``workers`` processes.

    The slot is claimed under a file lock: the first one that is free or whose process is gone (a worker
    restarted by the server takes over its slot). :meth:`opened` and :meth:`closed` count this worker's
    connections; :meth:`crowded` says whether to ask the client being answered to reconnect."""

    def __init__(self, path: str | Path, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        with open(path, "r+b") as f:
            self._map = mmap.mmap(f.fileno(), workers * _SLOT * 8)
            self._counts = memoryview(self._map).cast("q")
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                self.slot = self._claim()
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        self.open = 0
        self.leaving = 0  # clients asked to reconnect that have not gone yet

    def _claim(self) -> int:
        for slot in range(self.workers):
            pid = self._counts[slot * _SLOT]
            if pid == 0 or not process_alive(pid):
                self._counts[slot * _SLOT], self._counts[slot * _SLOT + 1] = os.getpid(), 0
                return slot
        raise RuntimeError(f"all {self.workers} worker slots of the connection board are taken")

    def opened(self) -> None:
        self.open += 1
        self._counts[self.slot * _SLOT + 1] = self.open

    def closed(self) -> None:
        self.open -= 1
        self.leaving = max(self.leaving - 1, 0)
        self._counts[self.slot * _SLOT + 1] = self.open

    def crowded(self) -> bool:
        """True when this worker holds more connections than its share, not counting those already asked to
        reconnect: the client being answered is then asked to (and counted as leaving)."""
        total = sum(self._counts[1 :: _SLOT])
        if self.open - self.leaving > -(-total // self.workers):
            self.leaving += 1
            return True
        return False


_BOARD: Board | None = None


def current() -> Board | None:
    """This process's board (:func:`from_env`), or None when it serves alone."""
    return _BOARD


def from_env() -> Board | None:
    """This worker's board, from :data:`ENV` (made by :func:`board_file`), claimed once per process; None
    when the variable is not set (one worker, or a server started another way)."""
    global _BOARD
    given = os.environ.get(ENV)
    if _BOARD is None and given:
        workers, _, path = given.partition(":")
        _BOARD = Board(path, int(workers))
    return _BOARD


@contextlib.contextmanager
def board_file(workers: int) -> Iterator[str]:
    """A board file for ``workers`` processes, as the value of :data:`ENV`; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="churnguard-serve-") as tmp:
        path = Path(tmp) / "connections"
        path.write_bytes(bytes(workers * _SLOT * 8))
        yield f"{workers}:{path}"
