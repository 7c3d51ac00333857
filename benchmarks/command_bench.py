"""Wall time, CPU time and peak RSS of one ``churnguard`` command line, run in a child process.

The child runs ``churnguard.cli.main`` with the given arguments, importing churnguard from ``--src`` (default:
this checkout's ``src``), so two checkouts can be timed alike; its resources come from the kernel's accounting
of that child alone (``os.wait4``). Run from the repository root, e.g.::

    python benchmarks/command_bench.py [--src /tmp/wt-base/src] -- features --transactions T --tickets K \\
        --customers C --as-of 2025-12-31 --out /tmp/features.parquet
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parent.parent / "src",
                        help="the src directory to import churnguard from")
    parser.add_argument("--profile", action="store_true",
                        help="run the command under cProfile (by CPU time) and print churnguard's functions by "
                             "cumulative time")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="the command's arguments, after --")
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    env = {**os.environ, "PYTHONPATH": str(args.src), "PYTHONWARNINGS": "ignore"}
    code = f"import sys; sys.argv = {['churnguard', *argv]!r}\nfrom churnguard.cli import main\nmain()\n"
    if args.profile:
        code = (f"import cProfile, pstats, sys, time\nsys.argv = {['churnguard', *argv]!r}\n"
                "p = cProfile.Profile(time.process_time)\ntry:\n    p.runcall(__import__('churnguard.cli').cli.main)\n"
                "except SystemExit:\n    pass\npstats.Stats(p).sort_stats('cumulative').print_stats(r'churnguard', 45)\n")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    print(out.decode(errors="replace")[-12000 if args.profile else -600:])
    print(f"{args.src}: churnguard {' '.join(argv[:1])}: wall {wall:.2f} s, CPU {usage.ru_utime + usage.ru_stime:.2f} s "
          f"(user {usage.ru_utime:.2f}, sys {usage.ru_stime:.2f}), peak RSS {usage.ru_maxrss / 1024:,.0f} MB, exit "
          f"{os.waitstatus_to_exitcode(status)}, {usage.ru_minflt:,} minor page faults")


if __name__ == "__main__":
    main()
