"""Load test of the HTTP server on loopback, next to `mlflow models serve` on the same model.

Trains a small demo model (or reuses the one in --work-dir), starts `churnguard serve` and `mlflow models serve`
on 127.0.0.1 with the same number of workers, and sends requests from 1 and 16 concurrent clients for a fixed
time each, printing p50 / p99 latency, requests/s and the throughput ratio. With ``--rounds N`` every phase runs
N times (the servers stay up): MLflow's rate moves a lot from one phase to the next (at 16 clients 59-195
req/s in one hold), so the ratio is also given against MLflow's best round, the comparison that holds whatever
round MLflow has. The load comes from `wrk` (a C load
generator, much lighter than the servers, which matters when both share the machine's cores) when it is on
PATH, else from a Python httpx generator. Traffic goes only to 127.0.0.1, every phase is bounded in time, and
both servers (with their worker processes) are stopped at the end.

    python benchmarks/serve_load.py [--seconds 10] [--rounds 1] [--workers 2] [--generator auto|wrk|python]
        [--work-dir DIR] [--server uvicorn|granian]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

CLIENTS = (1, 16)
CHURNGUARD, MLFLOW = "churnguard /predict (raw history)", "mlflow models serve /invocations"


def predict_scope(body: bytes) -> dict:
    """The ASGI scope of a ``POST /predict`` with the JSON ``body``, for calling the app in process."""
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "path": "/predict", "raw_path": b"/predict", "root_path": "", "scheme": "http", "query_string": b"",
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode())]}


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


def _stop(proc: subprocess.Popen) -> None:
    """Stop a server started in its own session, with the worker processes it spawned."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:  # workers that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _python_load(url: str, body: bytes, clients: int, seconds: float) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        async def worker() -> None:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - start
    lat = np.array(latencies) * 1000
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), len(lat) / elapsed, len(lat)


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_load(url: str, body_file: Path, clients: int, seconds: int) -> tuple[float, float, float, int]:
    """One wrk run (one thread, ``clients`` keep-alive connections) POSTing the JSON in ``body_file``."""
    script = body_file.with_suffix(".lua")
    script.write_text(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'local f = assert(io.open({json.dumps(str(body_file))}, "rb"))\n'
                      "wrk.body = f:read(\"*a\")\nf:close()\n")
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--timeout", "5s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    if "Socket errors" in out:  # e.g. requests over the 5 s timeout: reported, not fatal
        print("  wrk: " + next(line for line in out.splitlines() if "Socket errors" in line).strip(), flush=True)
    found = {pct: re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE) for pct in ("50", "99")}
    n = re.search(r"^\s*(\d+) requests in", out, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.MULTILINE)
    if not all(found.values()) or n is None or rps is None:
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    p50, p99 = (float(m.group(1)) * _UNIT_MS[m.group(2)] for m in found.values())
    return p50, p99, float(rps.group(1)), int(n.group(1))


def _customer() -> dict:
    tx = [{"timestamp": f"2025-{m:02d}-{d:02d}T11:00:00", "amount": 25.0 + m, "order_id": f"o{m}{d}"}
          for m in range(1, 11) for d in (3, 17)]
    tk = [{"opened_at": "2025-09-01T09:00:00", "first_response_at": "2025-09-02T15:00:00",
           "resolved_at": "2025-09-03T10:00:00", "csat": 2}]
    return {"customer_id": "bench-1", "transactions": tx, "tickets": tk,
            "attributes": {"loyalty_member": True, "nps": 6, "signup_date": "2024-05-01"}}


def _mlflow_body(model_path: Path, customer: dict, as_of: str) -> dict:
    """MLflow's request: the same customer's feature row (by churnguard's feature kernel), as the training
    run's MLflow model expects it."""
    from datetime import date, datetime

    from churnguard.features.kernel import categorical_levels
    from churnguard.features.records import CustomerRecords, records_features
    from churnguard.model import ChurnModel
    from churnguard.scoring import model_population

    model = ChurnModel.load(model_path)
    population = model_population(model)
    parse = {"timestamp", "opened_at", "first_response_at", "resolved_at"}
    tx, tk = ([{k: datetime.fromisoformat(v) if k in parse else v for k, v in row.items()} for row in rows]
              for rows in (customer["transactions"], customer["tickets"]))
    record = CustomerRecords(customer["customer_id"], tx, tk, customer["attributes"])
    _, cols = records_features([record], date.fromisoformat(as_of), model.info.config.features, population)
    levels = categorical_levels(population.attributes or {})
    row = []
    for name in model.feature_names_:  # absent attributes are unknown
        value = cols[name][0] if name in cols else None
        if name in levels and value is not None:
            value = levels[name][value] if value >= 0 else None
        elif value is not None:
            value = None if np.isnan(value) else float(value)
        row.append(value)
    return {"dataframe_split": {"columns": model.feature_names_, "data": [row]}}


def _churnguard_server(server: str, model: Path, port: int, workers: int) -> list[str]:
    """``churnguard serve`` (uvicorn), or the same app factory under granian (ASGI, uvloop, the same header
    deadline), for comparing the two servers."""
    if server == "uvicorn":
        return [str(Path(sys.executable).parent / "churnguard"), "serve", "--model", str(model), "--port",
                str(port), "--workers", str(workers), "--quiet"]
    return [sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop", "--no-ws",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
            "--no-access-log", "--http1-header-read-timeout", "10000", "churnguard.serving.app:app_from_env"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="duration of each load phase, whole seconds")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every phase this many times; the ratio is also given against MLflow's best round")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each server")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk (auto: when on PATH) or the Python httpx one")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the demo model and MLflow store here and reuse them on the next run")
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn",
                        help="churnguard's HTTP server: uvicorn as 'churnguard serve' runs it, or the same app "
                             "under granian (pip install granian)")
    args = parser.parse_args()
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    elif generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on PATH (Debian/Ubuntu: apt-get install wrk)")

    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{(work / 'mlflow.db').resolve()}"
        model = work / "model.zip"
        if not model.exists():
            subprocess.run([bin_dir / "churnguard", "train", "--model-out", str(model), "--tracking-uri", uri,
                            "--demo-customers", "3000"], check=True, capture_output=True)
        as_of = "2025-12-31"
        bodies = {CHURNGUARD: {"as_of": as_of, "customers": [_customer()]},
                  MLFLOW: _mlflow_body(model, _customer(), as_of)}
        body_files = {}
        for i, (name, body) in enumerate(bodies.items()):
            body_files[name] = Path(tmp) / f"body{i}.json"
            body_files[name].write_bytes(json.dumps(body).encode())

        cg_port, ml_port = _free_port(), _free_port()
        log_path = Path(tmp) / "servers.log"
        servers = []
        with log_path.open("w") as log:
            try:
                servers.append(subprocess.Popen(_churnguard_server(args.server, model, cg_port, args.workers),
                                                stdout=log, stderr=log, start_new_session=True,
                                                env={**os.environ, "CHURNGUARD_SERVE_MODEL": str(model),
                                                     "CHURNGUARD_API_TOKEN": ""}))
                env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
                       "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
                servers.append(subprocess.Popen(
                    [bin_dir / "mlflow", "models", "serve", "-m", "models:/churnguard@champion", "--env-manager",
                     "local", "-p", str(ml_port), "-h", "127.0.0.1", "--workers", str(args.workers)],
                    stdout=log, stderr=log, env=env, start_new_session=True))
                urls = {CHURNGUARD: f"http://127.0.0.1:{cg_port}", MLFLOW: f"http://127.0.0.1:{ml_port}"}
                try:
                    for name, proc in zip(urls, servers, strict=True):
                        _wait(f"{urls[name]}/health", proc)
                except RuntimeError:
                    log.flush()
                    print(log_path.read_text()[-3000:], file=sys.stderr)
                    raise
                urls = {CHURNGUARD: urls[CHURNGUARD] + "/predict", MLFLOW: urls[MLFLOW] + "/invocations"}
                for name, url in urls.items():  # both answer the same customer before any timing
                    r = httpx.post(url, content=body_files[name].read_bytes(),
                                   headers={"content-type": "application/json"}, timeout=30)
                    r.raise_for_status()
                    print(f"{name}: {r.text[:160]}", flush=True)
                print(f"load generator: {generator}, {args.seconds} s per phase, {args.workers} worker(s) each",
                      flush=True)
                results: dict[tuple[str, int], list[float]] = {}
                for _ in range(args.rounds):
                    for clients in CLIENTS:
                        for name, url in urls.items():
                            if generator == "wrk":
                                _wrk_load(url, body_files[name], clients, 1)  # warm-up, not counted
                                p50, p99, rps, n = _wrk_load(url, body_files[name], clients, args.seconds)
                            else:
                                body = body_files[name].read_bytes()
                                asyncio.run(_python_load(url, body, clients, 1))
                                p50, p99, rps, n = asyncio.run(_python_load(url, body, clients, args.seconds))
                            print(f"{name:<34} clients={clients:>2}  p50={p50:7.2f} ms  p99={p99:7.2f} ms  "
                                  f"{rps:8.1f} req/s  (n={n})", flush=True)
                            results.setdefault((name, clients), []).append(rps)
                for clients in CLIENTS:
                    ours, theirs = results[CHURNGUARD, clients], results[MLFLOW, clients]
                    line = f"throughput ratio churnguard/mlflow at {clients} client(s): {ours[-1] / theirs[-1]:.1f}x"
                    if args.rounds > 1:
                        line = (f"throughput ratio churnguard/mlflow at {clients} client(s), {args.rounds} rounds: "
                                f"medians {np.median(ours) / np.median(theirs):.1f}x; churnguard's median against "
                                f"MLflow's best round {np.median(ours) / max(theirs):.1f}x (churnguard "
                                f"{min(ours):,.0f}-{max(ours):,.0f} req/s, MLflow {min(theirs):,.1f}-{max(theirs):,.1f})")
                    print(line)
            finally:
                for proc in servers:
                    _stop(proc)


if __name__ == "__main__":
    main()
