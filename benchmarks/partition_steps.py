"""The steps of a partitioned ``churnguard features`` run timed in one process: the command line runs as it
would, with the local engine's census and split, validation and partial features, finishing and merge each
timed (CPU of all threads, wall, minor page faults), then the process's totals and peak RSS. ``--functions``
also adds up the CPU of the id-code functions (``features.build._encode_ids``, ``dataset.validate._shared``,
``dataset.values.joint_codes``; the last is also counted within ``_shared``).

Run from the repository root, with the checkout to time on ``PYTHONPATH``::

    PYTHONPATH=src python benchmarks/partition_steps.py [--functions] -- features --transactions T \\
        --tickets K --customers C --as-of 2025-12-31 --out /dev/shm/features.parquet
"""

from __future__ import annotations

import functools
import resource
import sys
import time


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _timed(module, name: str, into: dict) -> None:
    """Replace ``module.name`` by a wrapper that adds each call's CPU, wall time and faults to ``into[name]``."""
    inner = getattr(module, name)

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        cpu, wall, faults = time.process_time(), time.perf_counter(), _faults()
        try:
            return inner(*args, **kwargs)
        finally:
            into.setdefault(name, []).append((time.process_time() - cpu, time.perf_counter() - wall,
                                              _faults() - faults))

    setattr(module, name, wrapper)


def main() -> None:
    argv = sys.argv[1:]
    functions = "--functions" in argv[: argv.index("--") if "--" in argv else len(argv)]
    argv = argv[argv.index("--") + 1 :] if "--" in argv else [a for a in argv if a != "--functions"]
    from churnguard.cli import main as cli
    from churnguard.dataset import validate
    from churnguard.engines import local
    from churnguard.features import build

    steps, calls = {}, {}
    for name in ("_census_and_split", "_validate_buckets", "_finish_buckets", "_merge_parts"):
        _timed(local, name, steps)
    if functions:
        _timed(build, "_encode_ids", calls)
        _timed(validate, "_shared", calls)
        _timed(validate, "joint_codes", calls)  # as validation calls it
    sys.argv = ["churnguard", *argv]
    try:
        cli()
    except SystemExit:
        pass
    for name, runs in steps.items():
        print(name, "; ".join(f"CPU {c:.2f} s, wall {w:.2f} s, {f:,} minor faults" for c, w, f in runs))
    if functions:
        print("functions:", ", ".join(f"{n} CPU {sum(c for c, _, _ in r):.3f} s" for n, r in calls.items()))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"process: CPU {usage.ru_utime + usage.ru_stime:.2f} s, {usage.ru_minflt:,} minor faults, peak RSS "
          f"{usage.ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
