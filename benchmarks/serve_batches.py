"""Customers per scoring call and worker CPU per request of the HTTP server under load.

Starts the server on 127.0.0.1 as ``churnguard serve`` does (``app_from_env``, the same protocol, --workers
processes), with ``_Batcher._score_batch`` wrapped to count each worker's batches and customers and to note
the worker's CPU time (``time.process_time``, written every 0.2 s) and the CPU time spent in the scoring
calls (``time.thread_time`` around each) and its open connections (sampled every 0.2 s), then runs wrk at 1 and 16 clients (--seconds each, after a
1 s warm-up) with ``serve_load.py``'s request and prints, per phase, wrk's p50 / p99 and requests/s and, per
worker, its connections (on average), the requests it scored, the customers per scoring call and its CPU microseconds per request, and how
many of them the scoring calls took (the rest: HTTP, validation, the answer, the event loop). Needs
the model of ``serve_load.py --work-dir`` and wrk on PATH; run from the repository root with
``PYTHONPATH=src:benchmarks``.

    python benchmarks/serve_batches.py [--work-dir /tmp/serve_bench] [--seconds 8] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve_load import _customer, _free_port, _wait, _wrk_load

_STATS = "CHURNGUARD_BENCH_STATS"  # the directory each worker writes its counts to


def counting_app():
    """``app_from_env`` with the batcher's calls counted; a thread writes the worker's counts every 0.2 s."""
    import threading

    from churnguard.serving import app as serving
    from churnguard.serving import protocol

    score_batch, counts = serving._Batcher._score_batch, {"batches": 0, "customers": 0, "scoring": 0.0}
    counts |= {"open": 0, "open_sum": 0, "samples": 0}  # the worker's connections, sampled every 0.2 s
    out = Path(os.environ[_STATS]) / f"{os.getpid()}.json"
    made, lost = protocol.HeaderDeadline.connection_made, protocol.HeaderDeadline.connection_lost

    def connection_made(self, transport):
        counts["open"] += 1
        return made(self, transport)

    def connection_lost(self, exc):
        counts["open"] -= 1
        return lost(self, exc)

    def counted(self, batch):
        counts["batches"] += 1
        counts["customers"] += sum(len(customers) for customers, _ in batch)
        start = time.thread_time()  # the scoring thread's CPU: the loop's own for a batch scored inline
        try:
            return score_batch(self, batch)
        finally:
            counts["scoring"] += time.thread_time() - start

    def write() -> None:
        while True:
            counts["open_sum"] += counts["open"]
            counts["samples"] += 1
            out.with_suffix(".tmp").write_text(json.dumps({**counts, "cpu": time.process_time()}))
            out.with_suffix(".tmp").replace(out)  # whole: the reader never sees a file half written
            time.sleep(0.2)

    serving._Batcher._score_batch = counted
    protocol.HeaderDeadline.connection_made, protocol.HeaderDeadline.connection_lost = connection_made, connection_lost
    threading.Thread(target=write, daemon=True).start()
    return serving.app_from_env()


def _serve(port: int, workers: int) -> None:
    import uvicorn

    from churnguard.serving.protocol import header_timeout_protocol

    try:  # the workers' shared connection counts, as `churnguard serve` sets them up (checkouts that have it)
        from churnguard.serving import spread
    except ImportError:
        spread = None
    with spread.board_file(workers) if spread and workers > 1 else contextlib.nullcontext() as board:
        if board is not None:
            os.environ[spread.ENV] = board
        uvicorn.run("serve_batches:counting_app", factory=True, host="127.0.0.1", port=port, workers=workers,
                    log_level="warning", access_log=False, timeout_keep_alive=5, http=header_timeout_protocol(10.0))


def _counts(stats: Path) -> dict[str, dict]:
    return {f.stem: json.loads(f.read_text()) for f in stats.glob("*.json")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/serve_bench"),
                        help="directory holding model.zip (written by serve_load.py --work-dir)")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)  # the server's own process
    args = parser.parse_args()
    if args.serve_port:
        return _serve(args.serve_port, args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        stats, body = Path(tmp) / "stats", Path(tmp) / "body.json"
        stats.mkdir()
        body.write_text(json.dumps({"as_of": "2025-12-31", "customers": [_customer()]}))
        port = _free_port()
        env = {**os.environ, _STATS: str(stats), "CHURNGUARD_SERVE_MODEL": str(args.work_dir / "model.zip")}
        server = subprocess.Popen([sys.executable, __file__, "--serve-port", str(port), "--workers",
                                   str(args.workers)], env=env, start_new_session=True)
        try:
            _wait(f"http://127.0.0.1:{port}/health", server)
            deadline = time.monotonic() + 120  # every worker loaded (one answering /health is not all of them)
            while len(_counts(stats)) < args.workers and time.monotonic() < deadline:
                time.sleep(0.2)
            url = f"http://127.0.0.1:{port}/predict"
            for clients in (1, 16):
                _wrk_load(url, body, clients, 1)  # warm-up, not counted
                time.sleep(0.5)  # the workers' counts of the warm-up written
                before = _counts(stats)
                p50, p99, rps, _ = _wrk_load(url, body, clients, args.seconds)
                time.sleep(0.5)
                line = f"clients={clients:>2}  p50={p50:6.2f} ms  p99={p99:6.2f} ms  {rps:7.0f} req/s"
                for pid, after in sorted(_counts(stats).items()):
                    was = before.get(pid)
                    if was is None:  # not started before the phase: its CPU would include the model's loading
                        line += f" | worker {pid}: started during the phase, not counted"
                        continue
                    batches, customers = after["batches"] - was["batches"], after["customers"] - was["customers"]
                    samples = after["samples"] - was["samples"]
                    if batches:
                        line += (f" | worker {pid}: {(after['open_sum'] - was['open_sum']) / samples:.1f} "
                                 f"connections, {customers} requests, {customers / batches:.2f} per call, "
                                 f"{(after['cpu'] - was['cpu']) / customers * 1e6:.0f} us CPU each, "
                                 f"{(after['scoring'] - was['scoring']) / customers * 1e6:.0f} us of it scoring")
                print(line, flush=True)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
