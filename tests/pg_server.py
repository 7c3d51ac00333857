"""A throwaway PostgreSQL server for the tests: initdb in a temp dir, password authentication on 127.0.0.1 and a
free port, stopped and removed at the end. Run as root, the server runs as the ``postgres`` user (initdb refuses
root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER = "churn"
PASSWORD = "s3cret-test-only"


@dataclass(frozen=True)
class Server:
    port: int
    home: Path

    def url(self, db: str = "postgres", **query: str) -> str:
        from urllib.parse import urlencode

        return f"postgresql://{USER}@127.0.0.1:{self.port}/{db}" + (f"?{urlencode(query)}" if query else "")


def pg_bin() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return Path(dirs[-1]) if dirs else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def running_server(bindir: Path) -> Iterator[Server]:
    """Start a server; stop it and remove its files on exit."""
    home = Path(tempfile.mkdtemp(prefix="churnguard-pg-"))
    data, pwfile = home / "data", home / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        shutil.chown(pwfile, "postgres")
    port = _free_port()
    subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                              "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"]), check=True, capture_output=True)
    opts = f"-p {port} -k {home} -h 127.0.0.1 -c fsync=off"
    subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l",
                              str(home / "log"), "start"]), check=True, capture_output=True)
    try:
        yield Server(port, home)
    finally:
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
