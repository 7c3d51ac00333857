"""The retention team's pages over a large scores file: start-up, one page, a filtered page, a customer page
and the filtered CSV download, on the real server on 127.0.0.1.

Trains a demo model (or reuses the one in ``--work-dir``), scores the demo customers, copies their rows
(customer ids suffixed) up to ``--rows`` rows into one Parquet scores file, starts ``churnguard serve --scores``
on it and times each request (best and median of ``--repeat``), the server's start (until ``/health``
answers and the first page is drawn) and its resident memory afterwards.

Run from the repository root::

    python benchmarks/pages_bench.py [--rows 1000000] [--repeat 5] [--work-dir /tmp/pages-bench]

Nothing fails on a slow figure: the script prints measurements.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.live_server import serve

QUERIES = {
    "first page (probability, highest first)": "/",
    "page 2 of the high band by expected value": "/?risk_band=high&sort=expected_value&page=2",
    "last page, by customer id": "/?sort=customer_id&dir=asc&page=999999",
    "at-risk VIP customers (two filters)": "/?lifecycle_stage=at_risk&value_tier=vip",
}


def _churnguard(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "churnguard.cli", *args], check=True, capture_output=True)


def _demo_scores(work: Path, customers: int) -> tuple[Path, Path]:
    """The demo model and its scores of the demo customers (made once per work directory)."""
    model, scores = work / "model.zip", work / "scores.parquet"
    data = work / "data"
    if not scores.exists():
        _churnguard("demo-data", "-o", str(data), "-n", str(customers))
        tables = ["-t", str(data / "transactions.csv"), "--tickets", str(data / "tickets.csv"),
                  "--customers", str(data / "customers.csv")]
        _churnguard("train", *tables, "--model-out", str(model), "--tracking-uri",
                    f"sqlite:///{(work / 'mlflow.db').resolve()}")
        _churnguard("score", "--model", str(model), *tables, "--out", str(scores), "--budget", "20000")
    return model, scores


def _big(scores: Path, rows: int, out: Path) -> pd.DataFrame:
    base = pd.read_parquet(scores)
    copies = -(-rows // len(base))
    big = pd.concat([base.assign(customer_id=base["customer_id"].astype(str) + f"-{k:04d}")
                     for k in range(copies)], ignore_index=True).iloc[:rows]
    big.to_parquet(out)
    return big


def _timed(client: httpx.Client, url: str, repeat: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
        size = len(r.content)
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the scores file")
    parser.add_argument("--customers", type=int, default=3000, help="demo customers behind the rows")
    parser.add_argument("--repeat", type=int, default=5, help="requests per page")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the model and scores here for reuse")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model, scores = _demo_scores(work, args.customers)
        path = work / f"big_{args.rows}.parquet"
        big = _big(scores, args.rows, path)
        print(f"scores file: {len(big):,} rows, {path.stat().st_size / 1e6:.0f} MB Parquet", flush=True)
        started = time.perf_counter()
        with serve(["--model", str(model), "--scores", str(path)], work, timeout=600) as (base, proc), \
                httpx.Client(base_url=base, timeout=120) as client:
            client.get("/").raise_for_status()
            ready = time.perf_counter() - started
            print(f"start-up until the first page: {ready:.1f} s", flush=True)
            rows = []
            customer = str(big.sort_values("churn_probability")["customer_id"].iloc[-1])
            pages = {**QUERIES, "customer page": f"/customers/{customer}"}
            for label, url in pages.items():
                times, size = _timed(client, url, args.repeat)
                rows.append((label, min(times), statistics.median(times), size))
            high = int((big["risk_band"].astype(str) == "high").sum())
            times, size = _timed(client, "/export.csv?risk_band=high", max(1, args.repeat // 2))
            rows.append((f"CSV of the high band ({high:,} rows)", min(times), statistics.median(times), size))
            rss = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{proc.pid}/status").read_text()).group(1))
    print("\n| request | best | median | bytes |\n|---|---:|---:|---:|")
    for label, best, median, size in rows:
        print(f"| {label} | {best * 1000:,.0f} ms | {median * 1000:,.0f} ms | {size:,} |")
    print(f"\nserver resident memory after the requests: {rss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
