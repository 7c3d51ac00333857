"""Training cost: time and peak memory of ``run_training`` on the cached benchmark data (rolling snapshots).

Loads and validates the cached Parquet tables (``benchmarks/_data.py``), then runs ``run_training`` with the
built-in config into a temporary SQLite MLflow store, timing each step through the ``on_step`` callback
(every snapshot, LightGBM, scoring the test snapshot, the scoring-time BG/NBD fit, saving, MLflow logging).
Prints rows per snapshot, total training rows, test AUC next to the baselines, and the process's peak RSS.
The model file is kept in ``benchmarks/.cache/models/`` for ``score_bench.py``.

``--max-snapshots`` lowers ``snapshots.max_snapshots`` (default: the config's 24) when the full config takes
too long; the output says so.

Run from the repository root::

    python benchmarks/train_bench.py [--customers 1000000] [--max-snapshots 6]

Nothing fails on a slow run: the script prints measurements.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
from pathlib import Path

from _data import CACHE, MODEL_KEY, add_data_args, ensure_data, fmt_mb, machine, peak_rss_mb


def model_path(customers: int, seed: int) -> Path:
    """Where the model trained on this world is kept (read by ``score_bench.py``)."""
    return CACHE / "models" / f"train-{customers}-seed{seed}.joblib"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--max-snapshots", type=int, default=None,
                        help="snapshots.max_snapshots (default: the config's value, 24)")
    # Accepted and ignored: estimate_lifespan_years is fast in the library now (score_bench.py still passes it).
    parser.add_argument("--fast-lifespan", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-out", type=Path, default=None,
                        help="model file (default: benchmarks/.cache/models/train-<customers>-seed<seed>.joblib)")
    args = parser.parse_args()

    os.environ.setdefault("CHURNGUARD_MODEL_KEY", MODEL_KEY)
    print(f"train_bench: {machine()}", flush=True)
    paths = ensure_data(args.customers, args.seed)
    model_out = args.model_out or model_path(args.customers, args.seed)

    import pandas as pd

    from churnguard import train
    from churnguard.config import load_config
    from churnguard.dataset import load_tables

    config = load_config()
    default_snapshots = config.snapshots.max_snapshots
    t0 = time.perf_counter()
    tables = load_tables(paths["transactions"], paths["tickets"], paths["customers"], config=config.data)
    t_load = time.perf_counter() - t0
    rss_load = peak_rss_mb()
    print(f"load_tables: {t_load:.1f} s ({len(tables.transactions):,} transactions, {len(tables.tickets):,} "
          f"tickets, {len(tables.customers):,} customers); peak RSS so far {fmt_mb(rss_load)}", flush=True)
    snapshots = args.max_snapshots or default_snapshots
    if snapshots != default_snapshots:
        print(f"NOTE: snapshots.max_snapshots = {snapshots} (the default config has {default_snapshots}) to keep "
              "the run short", flush=True)

    per_snapshot: dict[str, dict] = {}
    original_make = train.make_training_set

    def counting_make_training_set(*a, **kw):
        data = original_make(*a, **kw)
        for day, rows in data.groupby("as_of")["churned"]:
            per_snapshot[str(pd.Timestamp(day).date())] = {"rows": len(rows), "churn_rate": float(rows.mean())}
        per_snapshot["_bytes"] = {"rows": int(data.memory_usage(deep=True).sum())}
        return data

    train.make_training_set = counting_make_training_set  # run_training calls it through the module

    steps: list[tuple[float, str]] = []

    def on_step(msg: str) -> None:
        steps.append((time.perf_counter(), msg))
        print(f"  {time.perf_counter() - t_start:7.1f} s  {msg}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.with_overrides(tracking={"tracking_uri": f"sqlite:///{Path(tmp) / 'mlflow.db'}"},
                                    snapshots={"max_snapshots": snapshots})
        print(f"run_training: {snapshots} snapshots, cadence {cfg.snapshots.cadence_days} days, horizon "
              f"{cfg.labels.horizon_days} days", flush=True)
        t_start = time.perf_counter()
        result = train.run_training(tables, cfg, model_out=model_out, on_step=on_step)
        t_total = time.perf_counter() - t_start
    train.make_training_set = original_make

    # Durations: each step runs from the previous callback (or the start) to its own "... done" / next message.
    marks = [(t_start, "start"), *steps, (t_start + t_total, "end")]
    snap_times = [(msg.split()[1], b - a) for (a, _), (b, msg) in itertools.pairwise(marks)
                  if msg.startswith("snapshot ")]
    stage_times = [(msg, b - a) for (a, msg), (b, _) in itertools.pairwise(marks[1:])
                   if not msg.startswith("snapshot ")]
    s = result.summary
    print(f"\ntrain_bench results ({args.customers:,} customers, max_snapshots {snapshots}: {len(snap_times)} used):")
    print(f"  {'snapshot':<12} {'rows':>10} {'churn rate':>11} {'seconds':>9}  split")
    split = {d: "train" for d in s["train_snapshots"]} | {s["valid_snapshot"]: "valid", s["test_snapshot"]: "test"}
    for day, secs in snap_times:
        info = per_snapshot.get(day, {})
        print(f"  {day:<12} {info.get('rows', 0):>10,} {info.get('churn_rate', float('nan')):>11.3f} {secs:>9.1f}"
              f"  {split.get(day, '')}")
    total_rows = sum(v["rows"] for k, v in per_snapshot.items() if not k.startswith("_"))
    t_snapshots = sum(t for _, t in snap_times)
    print(f"  all snapshots: {total_rows:,} rows ({per_snapshot['_bytes']['rows'] / 2**20:,.0f} MB in memory) in "
          f"{t_snapshots:.1f} s ({t_snapshots / max(len(snap_times), 1):.1f} s per snapshot)")
    print(f"  train rows {s['train_rows']:,}, valid rows {s['valid_rows']:,}, test rows {s['test_rows']:,}; "
          f"{s['n_features']} features, best iteration {s['best_iteration']}")
    for msg, secs in stage_times:
        print(f"  {msg:<58} {secs:8.1f} s")
    print(f"  {'load_tables (before run_training)':<58} {t_load:8.1f} s")
    print(f"  {'run_training total':<58} {t_total:8.1f} s ({t_total / 60:.1f} min)")
    print(f"  {'peak RSS of the process':<58} {fmt_mb(peak_rss_mb())} (after loading: {fmt_mb(rss_load)})")
    cards = result.scorecards
    print("  test AUC: " + ", ".join(f"{name} {card['roc_auc']:.4f}" for name, card in cards.items())
          + f"; PR AUC model {cards['model'].get('pr_auc', float('nan')):.4f}")
    print(f"  model file: {result.model_path}")
    sidecar = {"customers": args.customers, "seed": args.seed, "max_snapshots": snapshots,
               "seconds": round(t_total, 1),
               "test_roc_auc": cards["model"]["roc_auc"]}
    Path(str(result.model_path) + ".json").write_text(json.dumps(sidecar, indent=2))


if __name__ == "__main__":
    main()
