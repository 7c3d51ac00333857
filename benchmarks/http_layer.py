"""CPU per request of the HTTP server itself, and of the whole server, under uvicorn and under granian.

Starts a server on 127.0.0.1 with --workers processes, runs wrk at 1 and 16 clients (--seconds each, after a
1 s warm-up) with ``serve_load.py``'s request, and prints wrk's p50 / p99 and requests/s and the CPU time the
server's processes (all of them, every thread: the session's ``/proc/<pid>/stat``) spent per request. Two
apps:

- ``churnguard``: the app of ``churnguard serve`` (``app_from_env``, the model of ``serve_load.py
  --work-dir``); under uvicorn started by ``churnguard serve`` itself;
- ``empty``: an ASGI app that reads the body and sends a fixed 538-byte JSON answer (the size of
  churnguard's): what the HTTP server, the sockets and the event loop cost per request, without the app.

Servers: ``uvicorn`` (httptools, uvloop and churnguard's header-deadline protocol, as ``churnguard serve``
runs it) and ``granian`` (its Rust HTTP server, ASGI interface, uvloop; needs ``pip install granian``). Each
(server, app) pair runs once per round, alternating, so every pair sees the same machine. Run from the
repository root with ``PYTHONPATH=src:benchmarks``.

    python benchmarks/http_layer.py [--work-dir /tmp/serve_bench] [--seconds 8] [--rounds 3]
        [--servers uvicorn,granian] [--apps churnguard,empty]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from serve_load import _customer, _free_port, _wait, _wrk_load

_ANSWER = b'{"answer":"' + b"x" * 524 + b'"}'  # 538 bytes, as churnguard's answer to the request
_TICKS = os.sysconf("SC_CLK_TCK")


async def empty_app(scope, receive, send):
    """Reads the request body and answers ``_ANSWER``; ``/health`` too. Handles the lifespan."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        return await send({"type": "lifespan.shutdown.complete"})
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_ANSWER))]})
    await send({"type": "http.response.body", "body": _ANSWER})


def _empty_factory():
    return empty_app


def _session_cpu(sid: int) -> float:
    """CPU seconds (user + system) of the live processes of session ``sid``."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == sid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def _command(server: str, app: str, port: int, workers: int, model: Path) -> list[str]:
    py = sys.executable
    target = "churnguard.serving.app:app_from_env" if app == "churnguard" else "http_layer:_empty_factory"
    if server == "uvicorn" and app == "churnguard":
        return [py, "-m", "churnguard.cli", "serve", "--model", str(model), "--port", str(port), "--workers",
                str(workers), "--quiet"]
    if server == "uvicorn":  # as churnguard serve runs uvicorn
        code = ("import sys, uvicorn; from churnguard.serving.protocol import header_timeout_protocol; "
                "uvicorn.run(sys.argv[1], factory=True, host='127.0.0.1', port=int(sys.argv[2]), "
                "workers=int(sys.argv[3]), log_level='warning', access_log=False, timeout_keep_alive=5, "
                "http=header_timeout_protocol(10.0))")
        return [py, "-c", code, target, str(port), str(workers)]
    return [py, "-m", "granian", "--interface", "asgi", "--factory", "--loop", "uvloop", "--no-ws", "--host",
            "127.0.0.1", "--port", str(port), "--workers", str(workers), "--log-level", "warning",
            "--no-access-log", target]


def _run(server: str, app: str, args: argparse.Namespace, body: Path) -> None:
    port = _free_port()
    env = {**os.environ, "CHURNGUARD_SERVE_MODEL": str(args.work_dir / "model.zip"), "CHURNGUARD_API_TOKEN": ""}
    proc = subprocess.Popen(_command(server, app, port, args.workers, args.work_dir / "model.zip"), env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/health", proc)
        url = f"http://127.0.0.1:{port}/predict"
        for clients in (1, 16):
            _wrk_load(url, body, clients, 1)  # warm-up, not counted
            before = _session_cpu(proc.pid)
            p50, p99, rps, n = _wrk_load(url, body, clients, args.seconds)
            cpu = (_session_cpu(proc.pid) - before) / n * 1e6
            print(f"{server:<8} {app:<10} clients={clients:>2}  p50={p50:6.2f} ms  p99={p99:6.2f} ms  "
                  f"{rps:7.0f} req/s  {cpu:5.0f} us CPU per request", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/serve_bench"),
                        help="directory holding model.zip (written by serve_load.py --work-dir)")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--servers", default="uvicorn,granian")
    parser.add_argument("--apps", default="churnguard,empty")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body.json"
        body.write_text(json.dumps({"as_of": "2025-12-31", "customers": [_customer()]}))
        for _ in range(args.rounds):
            for app in args.apps.split(","):
                for server in args.servers.split(","):
                    _run(server, app, args, body)


if __name__ == "__main__":
    main()
