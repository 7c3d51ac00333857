"""Feature build with the events table: what the engagement family costs next to purchases alone, and next to
one DuckDB pass over the same Parquet files.

Generates (once, cached under ``benchmarks/.cache``) the demo world with its events table for ``--customers``
customers (``generate_demo_data(..., events=True)``: about 135 events per customer over three years), writes
transactions and events as Parquet, then times, each in its own process so that its peak RSS is its own:

* ``load_tables`` + ``build_features`` on the transactions and customers, and with the events (read, validate, the
  kernel's 24 engagement features on top of the purchase features);
* DuckDB (one query per table, into pandas): recency, purchase count and net spend from the transactions, and
  from the events the last visit, events and visits in the last 30 and 90 days, email opens and clicks per
  customer, as of the same day. That is the practical limit of one pass over the columns.

Run from the repository root::

    python benchmarks/events_speed.py [--customers 1000000] [--as-of 2025-12-31] [--stages]

``--stages`` times instead the steps of the build with the events (read, validate, encode, engagement), in one
process, with the resident memory after each and its peak while it ran. Every time is printed as wall seconds and
the process's CPU seconds (all threads): on a shared machine the CPU time moves less with the others' load.

Nothing fails on a missed target: the script prints measurements.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
LABELS = {"purchases": "load_tables + build_features, transactions and customers",
          "events": "load_tables + build_features, with the events",
          "duckdb": "DuckDB: RFM query + events query"}


BLOCK = 200_000  # customers generated at a time (the generator holds about 5 GB for 200,000 with events)


def ensure_events_data(customers: int, seed: int) -> dict[str, Path]:
    """Paths of the cached transactions, customers and events Parquet files, generated first when absent: in
    blocks of ``BLOCK`` customers (block ``k`` > 0 with seed ``1000 seed + k`` and ids prefixed ``Bk-``), each block
    appended to the files as row groups, so memory stays that of one block."""
    out = CACHE / f"demo-events-{customers}-seed{seed}"
    paths = {name: out / f"{name}.parquet" for name in ("transactions", "customers", "events")}
    if (out / "meta.json").is_file():
        return paths
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churnguard.demo import generate_demo_data

    t0 = time.perf_counter()
    print(f"data: generating {customers:,} customers with events (seed {seed}) into {out} ...", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    writers, rows = {}, dict.fromkeys(paths, 0)
    try:
        for k, start in enumerate(range(0, customers, BLOCK)):
            demo = generate_demo_data(min(BLOCK, customers - start), seed=seed if k == 0 else seed * 1000 + k,
                                      events=True)
            for name, path in paths.items():
                frame = getattr(demo, name)
                if k:
                    frame = frame.assign(customer_id=f"B{k}-" + frame["customer_id"].astype(str))
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if name not in writers:
                    writers[name] = pq.ParquetWriter(path, table.schema)
                writers[name].write_table(table.cast(writers[name].schema))
                rows[name] += len(frame)
            del demo
    finally:
        for writer in writers.values():
            writer.close()
    meta = {**rows, "generate_and_write_s": round(time.perf_counter() - t0, 1)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return paths


def _duckdb(paths: dict[str, Path], as_of: str) -> int:
    import duckdb

    day = f"DATE '{as_of}'"
    rfm = f"""SELECT customer_id, date_diff('day', max(CAST("timestamp" AS DATE)) FILTER (WHERE amount > 0),
                     {day}) AS recency_days, count(*) FILTER (WHERE amount > 0) AS n_purchases,
                     sum(amount) AS net_spend
              FROM read_parquet('{paths["transactions"]}') WHERE "timestamp" < {day} + INTERVAL 1 DAY
              GROUP BY customer_id"""
    age = f"date_diff('day', CAST(\"timestamp\" AS DATE), {day})"
    visit = "event_type IN ('visit', 'page_view', 'app_session', 'cart_add')"
    events = f"""SELECT customer_id, min({age}) FILTER (WHERE {visit}) AS days_since_last_visit,
                        count(*) FILTER (WHERE {age} < 30) AS events_30d,
                        count(*) FILTER (WHERE {age} < 90) AS events_90d,
                        count(*) FILTER (WHERE {visit} AND {age} < 30) AS visits_30d,
                        count(*) FILTER (WHERE {visit} AND {age} < 90) AS visits_90d,
                        count(*) FILTER (WHERE event_type = 'email_open') AS email_opens,
                        count(*) FILTER (WHERE event_type = 'email_click') AS email_clicks,
                        sum(duration_seconds) FILTER (WHERE {age} < 90) AS seconds_90d
                 FROM read_parquet('{paths["events"]}') WHERE "timestamp" < {day} + INTERVAL 1 DAY
                 GROUP BY customer_id"""
    con = duckdb.connect()
    return len(con.execute(rfm).df()) + len(con.execute(events).df())


STAGES = (("read the events", "churnguard.dataset", "_read"),
          ("validate (reading the other tables in blocks)", "churnguard.dataset", "_validate"),
          ("encode ids and events", "churnguard.features.build", "_encode"),
          ("engagement features", "churnguard.features.build", "_engagement"))


class _PeakRss:
    """The process's resident memory sampled from ``/proc/self/statm`` every 5 ms on a thread: the highest value
    since the last :meth:`reset`."""

    def __init__(self) -> None:
        import os
        import threading

        self._page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.now())

    def reset(self) -> int:
        """The peak since the last reset, and a new start from the current value."""
        peak, self.peak = max(self.peak, self.now()), self.now()
        return peak

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def stage_times(paths: dict[str, Path], as_of: str) -> dict[str, tuple[float, float, float, float]]:
    """Of each step of the feature build with the events (the functions of ``STAGES`` timed in place; a step
    whose function this checkout lacks is left out): wall seconds, CPU seconds, resident MB when it ended and
    the peak while it ran (sampled); and of the whole."""
    import importlib

    from churnguard.config import load_config
    from churnguard.dataset import load_tables
    from churnguard.features import build_features

    rss = _PeakRss()
    found: dict[str, tuple[float, float, float, float]] = {}

    def timed(label, fn):
        def run(*args, **kwargs):
            outer = rss.reset()
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                peak = rss.reset()
                rss.peak = max(outer, peak)  # an enclosing step's peak includes this one's
                was = found.get(label, (0.0, 0.0, 0.0, 0.0))
                found[label] = (was[0] + seconds, was[1] + cpu, rss.now() / 2**20, max(was[3], peak / 2**20))
        return run

    for label, module, name in STAGES:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            setattr(mod, name, timed(label, getattr(mod, name)))
    config = load_config()
    rss.reset()
    start, cpu = time.perf_counter(), time.process_time()
    tables = load_tables(paths["transactions"], None, paths["customers"], config=config.data, events=paths["events"])
    build_features(tables, as_of, config.features)
    total = (time.perf_counter() - start, time.process_time() - cpu, rss.now() / 2**20,
             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    rss.close()
    return {label: found[label] for label, _, _ in STAGES if label in found} | {"total": total}


def measure(what: str, paths: dict[str, Path], as_of: str) -> dict:
    """One measurement in this process: seconds (imports done first), rows out and peak RSS."""
    import duckdb  # noqa: F401
    import pandas  # noqa: F401

    from churnguard.config import load_config
    from churnguard.dataset import load_tables
    from churnguard.features import build_features

    config = load_config()
    start, cpu = time.perf_counter(), time.process_time()
    if what == "duckdb":
        rows = _duckdb(paths, as_of)
    else:
        tables = load_tables(paths["transactions"], None, paths["customers"], config=config.data,
                             events=paths["events"] if what == "events" else None)
        rows = len(build_features(tables, as_of, config.features))
    return {"what": what, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "rows": rows,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", default="2025-12-31")
    parser.add_argument("--measure", choices=list(LABELS), help=argparse.SUPPRESS)
    parser.add_argument("--stages", action="store_true", help="only time the steps of the build with the events")
    args = parser.parse_args()
    paths = ensure_events_data(args.customers, args.seed)
    if args.stages:
        for label, (seconds, cpu, after, peak) in stage_times(paths, args.as_of).items():
            print(f"{label}: {seconds:.2f} s (CPU {cpu:.2f} s), RSS after {after:,.0f} MB, peak {peak:,.0f} MB")
        return
    if args.measure:
        print(json.dumps(measure(args.measure, paths, args.as_of)))
        return
    meta = json.loads((paths["events"].parent / "meta.json").read_text())
    print(f"{meta['customers']:,} customers, {meta['transactions']:,} transactions, {meta['events']:,} events; "
          f"Parquet {sum(p.stat().st_size for p in paths.values()) / 2**20:,.0f} MB", flush=True)
    results = {}
    for what in ("duckdb", "purchases", "events"):
        out = subprocess.run([sys.executable, __file__, "--customers", str(args.customers), "--seed",
                              str(args.seed), "--as-of", args.as_of, "--measure", what],
                             capture_output=True, text=True, check=False)
        if out.returncode:
            sys.exit(f"{what} failed:\n{out.stderr[-3000:]}")
        results[what] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[what]
        print(f"{LABELS[what]}: {r['seconds']:.2f} s (CPU {r['cpu_seconds']:.2f} s), "
              f"{r['seconds'] / results['duckdb']['seconds']:.1f}x DuckDB "
              f"(CPU {r['cpu_seconds'] / results['duckdb']['cpu_seconds']:.1f}x), peak RSS {r['peak_rss_mb']:,.0f} MB",
              flush=True)
    extra = results["events"]["seconds"] - results["purchases"]["seconds"]
    print(f"the events add {extra:.2f} s ({extra / meta['events'] * 1e9:.0f} ns per event)")


if __name__ == "__main__":
    main()
