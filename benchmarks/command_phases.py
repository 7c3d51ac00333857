"""The phases of ``churnguard features`` timed in one process: imports, ``load_tables``, ``build_features``, the
customers left out (``unseen_customers``) and writing the file, each with its wall time, CPU time (all threads)
and the process's peak RSS so far. The calls are the local engine's, as the command makes them.

Run from the repository root, with the checkout to time on ``PYTHONPATH``::

    PYTHONPATH=src python benchmarks/command_phases.py [--customers 1000000] [--as-of 2025-12-31]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

_clock = [time.perf_counter(), time.process_time()]


def _lap(name: str) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:>12}: wall {wall - _clock[0]:5.2f} s, CPU {cpu - _clock[1]:5.2f} s, peak RSS {peak:,.0f} MB",
          flush=True)
    _clock[:] = [wall, cpu]


def main() -> None:
    from _data import add_data_args, ensure_data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--as-of", default="2025-12-31", help="feature cut-off day (default: the last day)")
    args = parser.parse_args()
    paths = ensure_data(args.customers, args.seed, quiet=True)
    _clock[:] = [time.perf_counter(), time.process_time()]

    from churnguard._io.write import write_table
    from churnguard.config import load_config
    from churnguard.dataset import load_tables
    from churnguard.features import build_features, to_day
    from churnguard.scoring.score import unscored_rejects, unseen_customers

    config = load_config()
    _lap("imports")
    tables = load_tables(paths["transactions"], paths["tickets"], paths["customers"], config=config.data,
                         feature_inputs_only=True)
    _lap("load_tables")
    feats = build_features(tables, args.as_of, config.features)
    _lap("build")
    unscored_rejects(tables.rejects, unseen_customers(tables, feats["customer_id"]), to_day(args.as_of))
    _lap("unseen")
    with tempfile.TemporaryDirectory() as tmp:
        write_table(feats, Path(tmp) / "features.parquet")
        _lap("write")


if __name__ == "__main__":
    main()
