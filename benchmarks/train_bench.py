"""Training cost: time and peak memory of ``run_training`` on the cached benchmark data (rolling snapshots).

Loads and validates the cached Parquet tables (``benchmarks/_data.py``), then runs ``run_training`` with the
built-in config into a temporary SQLite MLflow store, timing each step through the ``on_step`` callback
(every snapshot, LightGBM, scoring the test snapshot, the scoring-time BG/NBD fit, saving, MLflow logging)
and reading the process's RSS (now and peak so far) at each of them. Prints rows per snapshot (population and
rows kept: ``snapshots.max_train_rows`` samples the training snapshots), training rows, test AUC next to the
baselines, and the process's peak RSS.
The model file is kept in ``benchmarks/.cache/models/`` for ``score_bench.py``.

``--max-snapshots`` lowers ``snapshots.max_snapshots`` (default: the config's 24) when the full config takes
too long, and ``--max-train-rows`` sets ``snapshots.max_train_rows`` (0: no cap); the output says so.

Run from the repository root::

    python benchmarks/train_bench.py [--customers 1000000] [--max-snapshots 6] [--max-train-rows 0]

Nothing fails on a slow run: the script prints measurements.
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

from _data import CACHE, add_data_args, ensure_data, fmt_mb, machine, peak_rss_mb


def model_path(customers: int, seed: int) -> Path:
    """Where the model trained on this world is kept (read by ``score_bench.py``)."""
    return CACHE / "models" / f"train-{customers}-seed{seed}.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--max-snapshots", type=int, default=None,
                        help="snapshots.max_snapshots (default: the config's value, 24)")
    parser.add_argument("--max-train-rows", type=int, default=None,
                        help="snapshots.max_train_rows (default: the config's value); 0 trains on every row")
    parser.add_argument("--model-out", type=Path, default=None,
                        help="model file (default: benchmarks/.cache/models/train-<customers>-seed<seed>.zip)")
    args = parser.parse_args()

    print(f"train_bench: {machine()}", flush=True)
    paths = ensure_data(args.customers, args.seed)
    model_out = args.model_out or model_path(args.customers, args.seed)

    import psutil

    from churnguard.config import load_config
    from churnguard.dataset import load_tables
    from churnguard.training import run as train

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

    steps: list[tuple[float, str]] = []
    rss: dict[str, tuple[float, float]] = {}

    process = psutil.Process()

    def on_step(msg: str) -> None:
        steps.append((time.perf_counter(), msg))
        rss[msg] = (process.memory_info().rss / 2**20, peak_rss_mb())
        print(f"  {time.perf_counter() - t_start:7.1f} s  {msg:<58} RSS {rss[msg][0]:8,.0f} MB, peak so far "
              f"{rss[msg][1]:8,.0f} MB", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.with_overrides(tracking={"tracking_uri": f"sqlite:///{Path(tmp) / 'mlflow.db'}"},
                                    snapshots={"max_snapshots": snapshots})
        if args.max_train_rows is not None:
            cfg = cfg.model_copy(update={"snapshots": cfg.snapshots.model_copy(
                update={"max_train_rows": args.max_train_rows or None})})
            print(f"NOTE: snapshots.max_train_rows = {cfg.snapshots.max_train_rows} (the default config has "
                  f"{config.snapshots.max_train_rows:,})", flush=True)
        print(f"run_training: {snapshots} snapshots, cadence {cfg.snapshots.cadence_days} days, horizon "
              f"{cfg.labels.horizon_days} days", flush=True)
        t_start = time.perf_counter()
        result = train.run_training(tables, cfg, model_out=model_out, on_step=on_step)
        t_total = time.perf_counter() - t_start

    # Durations: each step runs from the previous callback (or the start) to its own "... done" / next message.
    marks = [(t_start, "start"), *steps, (t_start + t_total, "end")]
    snap_times = [(msg.split()[1], b - a) for (a, _), (b, msg) in itertools.pairwise(marks)
                  if msg.startswith("snapshot ")]
    stage_times = [(msg, b - a) for (a, msg), (b, _) in itertools.pairwise(marks[1:])
                   if not msg.startswith("snapshot ")]
    s = result.summary
    print(f"\ntrain_bench results ({args.customers:,} customers, max_snapshots {snapshots}: {len(snap_times)} used):")
    print(f"  {'snapshot':<12} {'population':>10} {'rows used':>10} {'churn rate':>11} {'seconds':>9} "
          f"{'RSS after, MB':>14}  split")
    split = ({d: "backtest" for d in s["backtest_snapshots"]} | {d: "deployed" for d in s["deployed_snapshots"]}
             | {s["backtest_as_of"]: "deployed, tuning, backtest scored"})
    per_snapshot = s["rows_by_snapshot"]
    for day, secs in snap_times:
        info = per_snapshot.get(day, {})
        print(f"  {day:<12} {info.get('population', 0):>10,} {info.get('rows', 0):>10,} "
              f"{info.get('churn_rate', float('nan')):>11.3f} {secs:>9.1f} {rss[f'snapshot {day} done'][0]:>14,.0f}"
              f"  {split.get(day, '')}")
    t_snapshots = sum(t for _, t in snap_times)
    print(f"  all snapshots: {sum(v['population'] for v in per_snapshot.values()):,} labelled rows, "
          f"{sum(v['rows'] for v in per_snapshot.values()):,} kept, in {t_snapshots:.1f} s "
          f"({t_snapshots / max(len(snap_times), 1):.1f} s per snapshot)")
    cap = s["max_train_rows"]
    print(f"  train rows {s['train_rows']:,} of {s['train_rows_available']:,} (snapshots.max_train_rows = "
          f"{'none' if cap is None else f'{cap:,}'}; " + (f"a {s['train_sample_fraction']:.1%} sample per snapshot, "
          f"seed {s['train_sample_seed']}" if s["train_sampled"] else "not sampled") + "), backtest rows "
          f"{s['backtest_rows']:,}; {s['n_features']} features, best iteration "
          f"{s['best_iteration']}")
    print(f"  {'step':<58} {'seconds':>8}   {'RSS at start, MB':>16} {'peak so far, MB':>15}")
    for msg, secs in stage_times:
        print(f"  {msg:<58} {secs:8.1f}   {rss[msg][0]:>16,.0f} {rss[msg][1]:>15,.0f}")
    print(f"  {'load_tables (before run_training)':<58} {t_load:8.1f} s")
    print(f"  {'run_training total':<58} {t_total:8.1f} s ({t_total / 60:.1f} min)")
    print(f"  {'peak RSS of the process':<58} {fmt_mb(peak_rss_mb())} (after loading: {fmt_mb(rss_load)})")
    cards = result.scorecards
    print("  test AUC: " + ", ".join(f"{name} {card['roc_auc']:.4f}" for name, card in cards.items())
          + f"; PR AUC model {cards['model'].get('pr_auc', float('nan')):.4f}")
    print(f"  model file: {result.model_path}")
    sidecar = {"customers": args.customers, "seed": args.seed, "max_snapshots": snapshots,
               "max_train_rows": cfg.snapshots.max_train_rows, "train_rows": s["train_rows"],
               "seconds": round(t_total, 1), "peak_rss_mb": round(peak_rss_mb()),
               "test_roc_auc": cards["model"]["roc_auc"]}
    Path(str(result.model_path) + ".json").write_text(json.dumps(sidecar, indent=2))


if __name__ == "__main__":
    main()
