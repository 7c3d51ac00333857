"""Shared helpers of the benchmark scripts: the cached benchmark data set, timing and peak-memory figures.

The data is churnguard's synthetic retail world (``churnguard.demo``), generated once per size and seed and
cached as Parquet under ``benchmarks/.cache/demo-<customers>-seed<seed>/`` (git-ignored). The default is one
million customers (about 13M transactions and 1.4M tickets, ~14 s to generate, ~310 MB of Parquet); every
script takes ``--customers`` to run on a smaller world for a quick check. A ``meta.json`` written last marks
a complete cache entry, so an interrupted generation is redone rather than half reused.

Generate (or check) the cache on its own with::

    python benchmarks/_data.py [--customers 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

__all__ = [
    "CACHE",
    "DEFAULT_CUSTOMERS",
    "add_data_args",
    "ensure_data",
    "fmt_mb",
    "machine",
    "peak_rss_mb",
    "read_meta",
]

CACHE = Path(__file__).resolve().parent / ".cache"
DEFAULT_CUSTOMERS = 1_000_000
TABLES = ("transactions", "tickets", "customers")


def add_data_args(parser: argparse.ArgumentParser, customers: int = DEFAULT_CUSTOMERS) -> None:
    """Add ``--customers`` (default ``customers``) and ``--seed`` (the cached data set to use) to a script's
    parser."""
    parser.add_argument("--customers", type=int, default=customers,
                        help=f"customers in the generated world (default {customers:,}; e.g. 100000 for "
                             "a quick check)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated world (default 0)")


def data_dir(customers: int, seed: int = 0) -> Path:
    """Cache directory of the world with ``customers`` customers and ``seed``."""
    return CACHE / f"demo-{customers}-seed{seed}"


def read_meta(customers: int, seed: int = 0) -> dict | None:
    """The cache entry's ``meta.json`` (row counts, generation time), or None when it is not complete."""
    meta = data_dir(customers, seed) / "meta.json"
    return json.loads(meta.read_text()) if meta.is_file() else None


def ensure_data(customers: int, seed: int = 0, *, quiet: bool = False) -> dict[str, Path]:
    """Paths of the cached Parquet tables, generating and writing them first when absent.

    Args:
        customers: customers in the world (``generate_demo_data(customers, seed=seed)``).
        seed: the world's random seed.
        quiet: do not print what happens.

    Returns:
        Table name (``transactions``, ``tickets``, ``customers``) -> Parquet path.
    """
    out = data_dir(customers, seed)
    paths = {name: out / f"{name}.parquet" for name in TABLES}
    meta = read_meta(customers, seed)
    if meta is not None and all(p.is_file() for p in paths.values()):
        if not quiet:
            print(f"data: reusing {out} ({meta['transactions']:,} transactions, {meta['tickets']:,} tickets, "
                  f"{meta['customers']:,} customers)", flush=True)
        return paths

    from churnguard.demo import generate_demo_data, write_demo_data

    if out.exists():
        shutil.rmtree(out)  # an incomplete entry from an interrupted run
    if not quiet:
        print(f"data: generating {customers:,} customers (seed {seed}) into {out} ...", flush=True)
    t0 = time.perf_counter()
    data = generate_demo_data(customers, seed=seed)
    t_gen = time.perf_counter() - t0
    written = write_demo_data(data, out, fmt="parquet")
    t_write = time.perf_counter() - t0 - t_gen
    meta = {
        "customers": len(data.customers),
        "transactions": len(data.transactions),
        "tickets": len(data.tickets),
        "seed": seed,
        "generate_s": round(t_gen, 2),
        "write_s": round(t_write, 2),
        "bytes": {name: p.stat().st_size for name, p in written.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    if not quiet:
        mb = sum(meta["bytes"].values()) / 2**20
        print(f"data: {meta['transactions']:,} transactions, {meta['tickets']:,} tickets, "
              f"{meta['customers']:,} customers; generated in {t_gen:.1f} s, written in {t_write:.1f} s "
              f"({mb:,.0f} MB of Parquet)", flush=True)
    return paths


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: unlike ``getrusage(RUSAGE_SELF).ru_maxrss`` it starts
    afresh at ``exec``, so a worker started from a large parent does not report the parent's peak as its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # Linux reports KB, macOS bytes


def fmt_mb(mb: float) -> str:
    """``1234.5`` -> ``'1,235 MB (1.21 GB)'``."""
    return f"{mb:,.0f} MB ({mb / 1024:.2f} GB)"


def machine() -> str:
    """One line about the machine the figures come from."""
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GB RAM"
    except ImportError:
        mem = "RAM unknown"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {mem}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    args = parser.parse_args()
    ensure_data(args.customers, args.seed)


if __name__ == "__main__":
    main()
