"""Reading a transactions table from PostgreSQL: ``churnguard.sources.read_source`` (ADBC, Arrow record
batches), ``load_tables`` (read + validation, as ``score`` reads it) and ``load_tables`` + ``build_features``
(the table into the features, as ``churnguard features`` runs) against ``COPY (SELECT the same columns) TO
STDOUT`` through psql, on a throwaway server (``tests/pg_server.py``) holding ``--rows`` generated rows.

Each measurement runs in its own process, so its peak RSS is its own::

    flock /tmp/bench.lock $PY benchmarks/db_bench.py --rows 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
COLUMNS = ["customer_id", "timestamp", "amount", "order_id"]
AS_OF = "2025-12-31"  # after the last generated day (2023-01-01 + 999 days)
LABELS = {"read": "read_source (ADBC -> Arrow -> pandas)", "load": "load_tables (read + validate)",
          "features": "load_tables + build_features"}
FILL = """
CREATE TABLE transactions AS
SELECT 'C' || lpad((i % {customers})::text, 8, '0') AS customer_id,
       timestamp '2023-01-01' + (i % 1000) * interval '1 day' + (i % 86400) * interval '1 second' AS timestamp,
       round((random() * 200 - 20)::numeric, 2)::float8 AS amount,
       'O' || i AS order_id
FROM generate_series(1, {rows}) AS i
"""


def _measure(what: str, url: str) -> dict:
    """One measurement in this process: seconds (imports done first) and peak RSS."""
    import adbc_driver_postgresql.dbapi  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    from churnguard.config import load_config
    from churnguard.dataset import load_tables
    from churnguard.features import build_features
    from churnguard.sources import parse_source, read_source

    src, config = parse_source(url), load_config()
    start = time.perf_counter()
    if what == "read":
        rows = len(read_source(src, COLUMNS))
    elif what == "load":
        rows = len(load_tables(src, config=config.data, feature_inputs_only=True).transactions)
    else:
        rows = len(build_features(load_tables(src, config=config.data), AS_OF, config.features))
    seconds = time.perf_counter() - start
    return {"what": what, "rows": rows, "seconds": seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _copy_seconds(bindir: Path, server, env: dict) -> float:
    sql = f"COPY (SELECT {', '.join(COLUMNS)} FROM transactions) TO STDOUT"
    start = time.perf_counter()
    subprocess.run([str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "churn", "-d",
                    "postgres", "-c", sql], stdout=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - start


def _child(what: str, url: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", what, "--url", url], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=500_000)
    parser.add_argument("--measure", choices=list(LABELS))
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(_measure(args.measure, args.url)))
        return
    import adbc_driver_postgresql.dbapi as pg
    from tests.pg_server import PASSWORD, pg_bin, running_server

    bindir = pg_bin()
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    os.environ["PGPASSWORD"] = PASSWORD
    with running_server(bindir) as server:
        start = time.perf_counter()
        with pg.connect(server.url()) as conn, conn.cursor() as cur:
            cur.execute(FILL.format(rows=args.rows, customers=args.customers))
            conn.commit()
        print(f"table: {args.rows:,} rows, {args.customers:,} customers, filled in "
              f"{time.perf_counter() - start:.1f} s")
        copy = min(_copy_seconds(bindir, server, env) for _ in range(2))
        url = server.url(table="transactions")
        results = [_child(what, url, env) for what in LABELS]
    print(f"COPY ... TO STDOUT (psql, to /dev/null), best of 2: {copy:.2f} s")
    for r in results:
        unit = "customers" if r["what"] == "features" else "rows"
        print(f"{LABELS[r['what']]}: {r['seconds']:.2f} s, {r['seconds'] / copy:.2f}x COPY, peak RSS "
              f"{r['peak_rss_mb']:,.0f} MB ({r['rows']:,} {unit})")


if __name__ == "__main__":
    main()
