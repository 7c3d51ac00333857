"""The machine's cores and memory: threads' share of the cores, malloc and Arrow's memory pool, OpenBLAS's
idle threads."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
