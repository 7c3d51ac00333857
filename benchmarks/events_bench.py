"""The training run's scorecard on the demo world with and without its events table.

The demo's events lead its churn: most customers' visits and email opens fall over the two months before the
month they stop buying in (``churnguard.demo``). The same tables are trained on twice, once without and once
with the events, and the backtest scorecard of each run is printed with the time it took.

    python benchmarks/events_bench.py --customers 2000 --snapshots 12
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from churnguard.config import load_config
from churnguard.dataset import validate_tables
from churnguard.demo import generate_demo_data
from churnguard.training.run import run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--snapshots", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    demo = generate_demo_data(args.customers, seed=args.seed, events=True)
    tmp = Path(tempfile.mkdtemp())
    cfg = load_config().with_overrides(tracking={"tracking_uri": f"sqlite:///{tmp / 'ml.db'}"},
                                       snapshots={"max_snapshots": args.snapshots})
    print(f"{args.customers:,} customers, {len(demo.events):,} events, {args.snapshots} snapshots")
    for name, events in (("without events", None), ("with events", demo.events)):
        began = time.perf_counter()
        tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=cfg.data, events=events)
        result = run_training(tables, cfg, model_out=tmp / f"{name.replace(' ', '_')}.zip")
        card, s = result.scorecards["model"], result.summary
        eces = ", ".join(f"{k} {v:.4f}" for k, v in s["level_backtest_ece"].items())
        print(f"{name:>15}: AUC {card['roc_auc']:.4f}, PR-AUC {card['pr_auc']:.4f}, Brier {card['brier']:.4f}, "
              f"ECE {card['ece']:.4f}, n {card['n']:.0f} ({time.perf_counter() - began:.0f} s); level correction "
              f"{s['level_correction']} (backtest ECE: {eces})", flush=True)


if __name__ == "__main__":
    main()
