"""Wall time, CPU time and peak RSS of DuckDB's RFM query (``features_bench.duckdb_sql``) over one transactions
file, CSV or Parquet, in this process: the reference a ``command_bench.py`` run is compared with. Run from the
repository root::

    python benchmarks/duckdb_rfm.py benchmarks/.cache/demo-1000000-seed0/csv/transactions.csv
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from features_bench import duckdb_sql


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transactions", type=Path, help="the transactions file (.csv or .parquet)")
    parser.add_argument("--as-of", default="2025-12-31", help="cut-off day of the query")
    args = parser.parse_args()
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    t0, c0 = time.perf_counter(), time.process_time()
    rows = len(con.execute(duckdb_sql(args.transactions, args.as_of)).df())
    print(f"duckdb {args.transactions}: {rows:,} customers, wall {time.perf_counter() - t0:.2f} s, CPU "
          f"{time.process_time() - c0:.2f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
