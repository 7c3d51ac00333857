"""Batch scoring: wall time and peak RSS of ``churnguard score`` on the cached benchmark data.

Runs the real command line -- ``churnguard score --model M --transactions ... --tickets ... --customers ...
--out <tmp>/scores.parquet --partitions P`` -- as a child process, once per ``--partitions`` value, and reads
its peak RSS from the kernel's resource usage of that child (``os.wait4``). The scoring is the whole chain
from raw history: reading and validating the files, point-in-time features, calibrated probabilities,
three reasons per customer (TreeSHAP, ``model.explain``), playbook actions and the budget selection, written
to Parquet.

The model is always the one ``train_bench.py --customers 100000 --max-snapshots 12`` writes with the built-in
config (``benchmarks/.cache/models/train-100000-seed<seed>.zip``; trained first when absent, under a
minute), whatever ``--customers`` is scored, so figures at different sizes share one model; or give
``--model``. Delete that file after changing the model defaults. This parent process imports nothing heavy, so the
child starts small and the peak RSS it reports is its own.

Run from the repository root::

    python benchmarks/score_bench.py [--customers 1000000] [--partitions 1,4] [--profile]

Targets: 1M customers in <= 60 s with peak RSS <= 4 GB. Nothing fails on a missed target: the script prints
measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _data import CACHE, add_data_args, ensure_data, fmt_mb, machine

TARGET_SECONDS = 60.0
TARGET_RSS_MB = 4 * 1024.0
_HERE = Path(__file__).resolve().parent


def _model(args: argparse.Namespace) -> Path:
    if args.model is not None:
        return args.model
    path = CACHE / "models" / f"train-100000-seed{args.seed}.zip"
    if not path.is_file():
        print(f"no model in {path.parent}: training one on 100,000 customers (train_bench.py)", flush=True)
        subprocess.run([sys.executable, str(_HERE / "train_bench.py"), "--customers", "100000", "--seed",
                        str(args.seed), "--max-snapshots", "12", "--model-out", str(path)],
                       check=True, stdout=subprocess.DEVNULL)
    return path


def run_score(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float, int]:
    """Run ``cmd``; (wall seconds, peak RSS MB, CPU seconds, exit code) of that child alone."""
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--partitions", default="1,4",
                        help="comma-separated --partitions values to run, 'auto' for the command's default")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: see the docstring)")
    parser.add_argument("--profile", action="store_true",
                        help="also run the first partitions value under cProfile and print the top functions")
    args = parser.parse_args()

    print(f"score_bench: {machine()}", flush=True)
    paths = ensure_data(args.customers, args.seed)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    model = _model(args)
    sidecar = Path(str(model) + ".json")
    about = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    print(f"model: {model}" + (f" (trained by train_bench.py: {about['customers']:,} customers, max_snapshots "
                               f"{about['max_snapshots']}, test AUC {about['test_roc_auc']:.4f})" if about else ""),
          flush=True)
    churnguard = str(Path(sys.executable).parent / "churnguard")
    results = []
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        for value in [v.strip() for v in args.partitions.split(",") if v.strip()]:
            out = Path(tmp) / f"scores-{value}.parquet"
            cmd = [churnguard, "score", "--model", str(model), "--transactions", str(paths["transactions"]),
                   "--tickets", str(paths["tickets"]), "--customers", str(paths["customers"]), "--out", str(out)]
            if value != "auto":
                cmd += ["--partitions", value]
            print(f"running: churnguard score ... {'--partitions ' + value if value != 'auto' else '(auto)'}",
                  flush=True)
            log = Path(tmp) / f"score-{value}.log"
            wall, rss, cpu, code = run_score(cmd, env, log)
            text = log.read_text(errors="replace")
            if code != 0:
                print(f"  failed with exit code {code}:\n{text[-2000:]}", flush=True)
                continue
            found = re.search(r"([\d,]+) scored", text)
            scored = int(found.group(1).replace(",", "")) if found else 0
            results.append((value, wall, rss, cpu, scored, out.stat().st_size))
            print(f"  {wall:.1f} s, peak RSS {fmt_mb(rss)}, CPU {cpu:.1f} s, {scored:,} customers scored", flush=True)
            out.unlink(missing_ok=True)

        if args.profile and results:
            first = results[0][0]
            prof = Path(tmp) / "score.prof"
            out = Path(tmp) / "scores-profile.parquet"
            argv = ["churnguard", "score", "--model", str(model), "--transactions", str(paths["transactions"]),
                    "--tickets", str(paths["tickets"]), "--customers", str(paths["customers"]), "--out", str(out)]
            if first != "auto":
                argv += ["--partitions", first]
            code = (f"import cProfile, sys; sys.argv = {argv!r}\n"
                    "from churnguard.cli import main\n"
                    f"p = cProfile.Profile()\ntry:\n    p.runcall(main)\nexcept SystemExit:\n    pass\n"
                    f"p.dump_stats({str(prof)!r})\n")
            print(f"profiling: churnguard score --partitions {first} under cProfile ...", flush=True)
            subprocess.run([sys.executable, "-c", code], env=env, check=False, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            if prof.is_file():
                import pstats

                print("cProfile, top functions by cumulative time (profiling overhead included):")
                pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(
                    r"churnguard/(features|scoring|model|engines)/\w+\.py|churnguard/dataset\.py"
                    r"|lightgbm/basic\.py:.*(predict)", 25)

    print(f"\nscore_bench results ({args.customers:,} customers; targets: <= {TARGET_SECONDS:.0f} s, peak RSS <= "
          f"{TARGET_RSS_MB / 1024:.0f} GB):")
    print(f"  {'partitions':>10} {'wall s':>8} {'peak RSS':>22} {'CPU s':>7} {'customers/s':>12}  verdict")
    for value, wall, rss, cpu, scored, _size in results:
        verdict = []
        verdict.append("time ok" if wall <= TARGET_SECONDS else f"time {wall / TARGET_SECONDS:.1f}x the target")
        verdict.append("memory ok" if rss <= TARGET_RSS_MB else f"memory {rss / TARGET_RSS_MB:.1f}x the target")
        print(f"  {value:>10} {wall:>8.1f} {fmt_mb(rss):>22} {cpu:>7.1f} {scored / wall:>12,.0f}  {', '.join(verdict)}")


if __name__ == "__main__":
    main()
