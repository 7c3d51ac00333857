"""``churnguard serve`` started for real on a free port of 127.0.0.1, for the tests that talk HTTP to it."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(args: list[str], log_dir: Path, timeout: float = 120):
    """``churnguard serve`` with ``args`` on a free port of 127.0.0.1: yields its base URL and process."""
    port = free_port()
    log = (log_dir / f"server-{port}.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-c", "from churnguard.cli import main; main()", "serve", "--quiet",
                             "--port", str(port), *args], stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        proc.kill()
        proc.wait()
        log.seek(0)
        raise RuntimeError(f"server did not start: {log.read()}")
    try:
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        finally:
            log.close()
