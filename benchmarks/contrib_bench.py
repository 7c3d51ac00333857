"""The batch TreeSHAP contributions alone: ``TreeContributions`` on the model inputs of every scored customer.

Builds the inputs once -- the cached world's features as of its last day (``load_tables`` and
``build_features`` as ``churnguard score`` calls them, the model's population), the customers of the model's
population, their model matrix (``scoring.score._matrix``) -- and caches them as ``.npy`` next to the data.
Then, for each source tree given (this checkout's ``src`` and ``--reference`` ones, alternating for
``--rounds``), a child process loads the model and the matrix and times
``tree_contributions(model)(matrix, raw_score=True)``: wall, CPU (every thread) and the peak RSS the call adds
(and the CPU of building the walk, with the model's per-leaf tables where the checkout has them),
and the phases of the call (``--phases``: the codes, the key passes, LightGBM's calls on the representatives,
the adding; measured by wrapping them, so the total is a little higher). The children write the contributions
and raw scores; the script says whether they are the same to the bit for every tree given.

The model is ``score_bench.py``'s (``benchmarks/.cache/models/train-100000-seed<seed>.zip``).

``--parts N`` calls one walk on N consecutive parts of the rows in turn, as ``churnguard score`` does per
partition (a walk keeps the patterns it has seen, so the later parts ask LightGBM for fewer).

Run from the repository root::

    python benchmarks/contrib_bench.py [--customers 1000000] [--reference /tmp/wt-base/src] [--rounds 2] [--parts 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _data import CACHE, add_data_args, data_dir, ensure_data

_HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, resource, sys, time
from collections import Counter
import numpy as np
from churnguard.model import ChurnModel
from churnguard.model import explain as E

model_path, matrix_path, out_path, phases = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
parts = int(sys.argv[6])
if sys.argv[5] != "0" and hasattr(E, "_THREADS"):
    E._THREADS = int(sys.argv[5])
model = ChurnModel.load(model_path)
x = np.load(matrix_path)
built = time.process_time()
tc = E.tree_contributions(model)  # as scoring builds it (with the per-leaf tables where the checkout has them)
built = time.process_time() - built
spent, patterns = Counter(), []
if phases:
    def timed(name, fn):
        def call(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
        return call
    tc._codes, tc._dense, tc._hashed = timed("codes", tc._codes), timed("dense keys", tc._dense), timed(
        "hashed keys", tc._hashed)
    predict = tc.booster.predict
    def counted(rows, **k):
        if k.get("pred_contrib"):
            patterns.append(len(rows))
        return predict(rows, **k)
    tc.booster = type("B", (), {"predict": staticmethod(timed("LightGBM calls", counted)),
                                "__getattr__": lambda s, n: getattr(model.booster_, n)})()
    if getattr(tc, "tables", None) is not None:  # the representatives' numbers from the per-leaf tables
        tabulated = tc._tabulated
        def from_tables(tree, rows):
            patterns.append(len(rows))
            return tabulated(tree, rows)
        tc._tabulated = timed("per-leaf tables", from_tables)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t, c = time.perf_counter(), time.process_time()
done = [tc(part, raw_score=True) for part in np.array_split(x, parts)]  # one walk, called per part
out, score = np.concatenate([d[0] for d in done]), np.concatenate([d[1] for d in done])
wall, cpu = time.perf_counter() - t, time.process_time() - c
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
np.save(out_path, out)
np.save(out_path + ".score.npy", score)
print(json.dumps({"rows": len(x), "trees": len(tc.trees), "wall": wall, "cpu": cpu, "built": built, "rss_before": before,
                  "rss_peak": peak, "phases": dict(spent), "calls": len(patterns), "patterns": sum(patterns)}))
"""


def _matrix_path(customers: int, seed: int, model: Path) -> Path:
    return data_dir(customers, seed) / f"contrib-matrix-{model.stem}.npy"


def _matrix(customers: int, seed: int, model: Path) -> Path:
    """The model inputs of the world's scored customers, cached as ``.npy``."""
    path = _matrix_path(customers, seed, model)
    if path.is_file():
        return path
    import numpy as np

    from churnguard.dataset import load_tables
    from churnguard.features import build_features
    from churnguard.model import ChurnModel
    from churnguard.scoring import rules
    from churnguard.scoring.score import _matrix as model_matrix
    from churnguard.scoring.score import frame_columns, model_population

    paths = ensure_data(customers, seed, quiet=True)
    m = ChurnModel.load(model)
    info = m.require_info()
    tables = load_tables(paths["transactions"], paths["tickets"], paths["customers"], config=info.config.data,
                         feature_inputs_only=True)
    feats = build_features(tables, tables.last_date(), info.config.features, model_population(m))
    cols, levels = frame_columns(feats)
    stage = rules.lifecycle_stage(np.asarray(cols["recency_days"], dtype="float64"), cols["bg_age_days"],
                                  info.config.labels.lookback_days)
    x = model_matrix(m.feature_names_, m.categories_, cols, levels, rules.in_population(stage))
    np.save(path, np.ascontiguousarray(x, dtype="float64"))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--reference", type=Path, action="append", default=[],
                        help="another checkout's src directory to time against (repeatable)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (default 1)")
    parser.add_argument("--phases", action="store_true", help="also time the phases of the call")
    parser.add_argument("--threads", default="0",
                        help="comma-separated thread counts to run each tree with, where it has the setting "
                             "(default 0: the module's own)")
    parser.add_argument("--parts", type=int, default=1,
                        help="call the walk on this many consecutive parts of the rows, one after another, as the "
                             "partitioned engines call it (default 1: all rows in one call)")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: score_bench.py's)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model = args.model or CACHE / "models" / f"train-100000-seed{args.seed}.zip"
    if args.build_only:
        _matrix(args.customers, args.seed, model)
        return
    # built in a child: a process's peak RSS is inherited by the processes it starts, so this one stays small
    subprocess.run([sys.executable, __file__, "--build-only", "--customers", str(args.customers), "--seed",
                    str(args.seed), "--model", str(model)], check=True)
    matrix = _matrix_path(args.customers, args.seed, model)
    trees = [_HERE.parent / "src", *args.reference]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(src, threads) for src in trees for threads in args.threads.split(",")]
        for r in range(args.rounds):
            for k, (src, threads) in enumerate(runs):
                out = str(Path(tmp) / f"contrib-{k}.npy")
                done = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(matrix), out,
                                       "1" if args.phases else "0", threads, str(args.parts)],
                                      env={**env, "PYTHONPATH": str(src)}, check=True, capture_output=True, text=True)
                got = json.loads(done.stdout.strip().splitlines()[-1])
                phases = ", ".join(f"{name} {s:.2f} s" for name, s in got["phases"].items())
                label = f"{src}" + (f" ({threads} threads)" if threads != "0" else "")
                print(f"round {r + 1} {label}: {got['rows']:,} rows in {args.parts} part(s) x {got['trees']} trees: wall {got['wall']:.2f} s, "
                      f"CPU {got['cpu']:.2f} s (the walk built before it: {got['built']:.2f} s), peak RSS {got['rss_peak']:,.0f} MB (before the call "
                      f"{got['rss_before']:,.0f} MB)" + (f"; {phases}; {got['patterns']:,} representatives in "
                                                        f"{got['calls']} calls (pred_contrib or the tables)" if phases else ""),
                      flush=True)
        if len(runs) > 1:
            import numpy as np

            base, base_score = np.load(Path(tmp) / "contrib-0.npy"), np.load(Path(tmp) / "contrib-0.npy.score.npy")
            for k, (src, threads) in enumerate(runs[1:], start=1):
                same = (np.array_equal(base, np.load(Path(tmp) / f"contrib-{k}.npy"))
                        and np.array_equal(base_score, np.load(Path(tmp) / f"contrib-{k}.npy.score.npy")))
                print(f"contributions and raw scores of the first run and {src} ({threads} threads): "
                      f"{'identical to the bit' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
