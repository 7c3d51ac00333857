"""Load test of the HTTP server on loopback, next to `mlflow models serve` on the same model.

Trains a small demo model (or uses --model and --model-uri), starts both servers on 127.0.0.1, and sends
requests from 1 and 16 concurrent clients for a fixed time each, printing p50 / p99 latency and requests/s.
Traffic goes only to 127.0.0.1; every phase is bounded in time, and both servers are stopped at the end.

    python benchmarks/serve_load.py [--seconds 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


async def _load(url: str, body: dict, clients: int, seconds: float) -> tuple[np.ndarray, float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        async def worker() -> None:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = await client.post(url, json=body)
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - start
    return np.array(latencies) * 1000, len(latencies) / elapsed


def _report(name: str, clients: int, lat: np.ndarray, rps: float) -> None:
    print(f"{name:<34} clients={clients:>2}  p50={np.percentile(lat, 50):7.2f} ms  "
          f"p99={np.percentile(lat, 99):7.2f} ms  {rps:8.1f} req/s  (n={len(lat)})", flush=True)


def _customer() -> dict:
    tx = [{"timestamp": f"2025-{m:02d}-{d:02d}T11:00:00", "amount": 25.0 + m, "order_id": f"o{m}{d}"}
          for m in range(1, 11) for d in (3, 17)]
    tk = [{"opened_at": "2025-09-01T09:00:00", "first_response_at": "2025-09-02T15:00:00",
           "resolved_at": "2025-09-03T10:00:00", "csat": 2}]
    return {"customer_id": "bench-1", "transactions": tx, "tickets": tk,
            "attributes": {"loyalty_member": True, "nps": 6, "signup_date": "2024-05-01"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load phase")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    args = parser.parse_args()

    os.environ.setdefault("CHURNGUARD_MODEL_KEY", "benchmark-key")
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        model = tmp / "model.joblib"
        subprocess.run([bin_dir / "churnguard", "train", "--model-out", str(model), "--tracking-uri", uri,
                        "--demo-customers", "3000"], check=True, capture_output=True)
        from churnguard.config import load_playbook
        from churnguard.fastpath import FastScorer
        from churnguard.model import ChurnModel

        loaded = ChurnModel.load(model)
        c = _customer()
        feats = FastScorer(loaded, load_playbook()).features(c["customer_id"], c["transactions"], c["tickets"],
                                                              c["attributes"], "2025-12-31")
        values = [feats.get(n) for n in loaded.feature_names_]  # absent attributes are unknown
        row = [None if isinstance(v, float) and np.isnan(v) else v for v in values]
        mlflow_body = {"dataframe_split": {"columns": loaded.feature_names_, "data": [row]}}

        servers = []
        cg_port, ml_port = _free_port(), _free_port()
        log = open(tmp / "servers.log", "w")  # noqa: SIM115 - closed below
        cg = subprocess.Popen([bin_dir / "churnguard", "serve", "--model", str(model), "--port", str(cg_port),
                               "--workers", str(args.workers)], stdout=log, stderr=log)
        servers.append(cg)
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        ml = subprocess.Popen([bin_dir / "mlflow", "models", "serve", "-m", "models:/churnguard@champion",
                               "--env-manager", "local", "-p", str(ml_port), "-h", "127.0.0.1",
                               "--workers", str(args.workers)], stdout=log, stderr=log, env=env)
        servers.append(ml)
        try:
            try:
                _wait(f"http://127.0.0.1:{cg_port}/health", cg)
                _wait(f"http://127.0.0.1:{ml_port}/health", ml)
            except RuntimeError:
                log.flush()
                print((tmp / "servers.log").read_text()[-3000:], file=sys.stderr)
                raise
            body = {"as_of": "2025-12-31", "customers": [_customer()]}
            results = {}
            for clients in (1, 16):
                for name, url, payload in [
                    ("churnguard /predict (raw history)", f"http://127.0.0.1:{cg_port}/predict", body),
                    ("mlflow models serve /invocations", f"http://127.0.0.1:{ml_port}/invocations", mlflow_body),
                ]:
                    lat, rps = asyncio.run(_load(url, payload, clients, args.seconds))
                    _report(name, clients, lat, rps)
                    results[(name, clients)] = rps
            ratio = results[("churnguard /predict (raw history)", 16)] / results[("mlflow models serve /invocations", 16)]
            print(f"throughput ratio churnguard/mlflow at 16 clients: {ratio:.2f}x")
        finally:
            for p in servers:
                p.terminate()
            for p in servers:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
            log.close()


if __name__ == "__main__":
    main()
