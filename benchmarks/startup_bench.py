"""Command-line start-up: wall time of ``churnguard --help`` next to ``python -c pass``.

Runs each command ``--runs`` times (after one untimed warm-up run, so the files are in the page cache) and
prints the median and minimum wall time. ``python -c pass`` is the floor any Python command line pays;
``python -c "import churnguard.cli"`` separates import time from typer's help rendering. With ``--importtime``
the slowest imports of ``churnguard.cli`` (``python -X importtime``) are listed too.

This script reads no data, so unlike the other benchmarks it has no ``--customers`` option.

Run from the repository root::

    python benchmarks/startup_bench.py [--runs 10] [--importtime]

Target: ``churnguard --help`` <= 0.5 s. Nothing fails on a missed target: the script prints measurements.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _data import machine

TARGET_SECONDS = 0.5


def wall_times(cmd: list[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs of ``cmd`` (output discarded), after one warm-up run."""
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def slowest_imports(python: str, module: str, top: int = 8) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the slowest imports of ``module``."""
    err = subprocess.run([python, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True,
                         check=True).stderr
    rows = []
    for line in err.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    parser.add_argument("--importtime", action="store_true", help="list the slowest imports of churnguard.cli")
    args = parser.parse_args()

    python = sys.executable
    churnguard = str(Path(python).parent / "churnguard")
    print(f"startup_bench: {machine()}; {args.runs} runs each after a warm-up", flush=True)
    commands = [
        ("python -c pass", [python, "-c", "pass"]),
        ('python -c "import churnguard.cli"', [python, "-c", "import churnguard.cli"]),
        ("churnguard --help", [churnguard, "--help"]),
    ]
    results = {}
    print(f"  {'command':<36} {'median s':>9} {'min s':>7} {'max s':>7}")
    for label, cmd in commands:
        times = wall_times(cmd, args.runs)
        results[label] = times
        print(f"  {label:<36} {statistics.median(times):>9.3f} {min(times):>7.3f} {max(times):>7.3f}", flush=True)
    help_median = statistics.median(results["churnguard --help"])
    floor = statistics.median(results["python -c pass"])
    verdict = "met" if help_median <= TARGET_SECONDS else f"missed by {help_median - TARGET_SECONDS:.2f} s"
    print(f"churnguard --help: median {help_median:.3f} s, {help_median - floor:.3f} s above the interpreter's "
          f"own start-up; target <= {TARGET_SECONDS} s: {verdict}")
    if args.importtime:
        print("slowest imports of churnguard.cli (cumulative, -X importtime, one run):")
        for us, module in slowest_imports(python, "churnguard.cli"):
            print(f"  {us / 1000:8.1f} ms  {module}")


if __name__ == "__main__":
    main()
