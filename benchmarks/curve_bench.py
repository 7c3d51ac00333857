"""The churn curve against one model per horizon, on the same backtest day.

Generates the demo world ``churnguard train`` uses without files (5,000 customers, seed 7), then, as of the
curve's backtest day (the last day minus the longest horizon):

* the curve: :func:`churnguard.training.curve.fit_curve` on the main-horizon plan of that day, one model over
  the features and ``horizon_days``;
* one model per horizon: the main procedure (:func:`churnguard.training.procedure.run_backtest`) with
  ``labels.horizon_days`` set to that horizon;

and prints, per horizon, each one's ROC-AUC and ECE on that day's customers, and how many customers' curves
rise somewhere (a longer window given a higher churn probability than a shorter one) with separate models.

    python benchmarks/curve_bench.py [--customers 5000] [--horizons 30,60,90,180]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from churnguard.config import load_config
from churnguard.dataset import validate_tables
from churnguard.demo import generate_demo_data
from churnguard.training.curve import fit_curve
from churnguard.training.evaluation import scorecard
from churnguard.training.procedure import plan_training, run_backtest
from churnguard.training.run import LocalRows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--horizons", default="30,60,90,180")
    args = parser.parse_args()
    horizons = tuple(sorted(int(h) for h in args.horizons.split(",")))
    demo = generate_demo_data(args.customers, seed=7)
    config = load_config().with_overrides(labels={"horizons": list(horizons)})
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=config.data)
    last, first = tables.last_date(), tables.transactions["timestamp"].min()
    day = last - pd.Timedelta(days=max(horizons))
    source = LocalRows(tables, config, last, lambda _msg: None)
    start = time.perf_counter()
    fit = fit_curve(source, plan_training(first, day, config.labels, config.snapshots), config.model, horizons)
    curve_seconds = time.perf_counter() - start
    test = source.whole(day)
    curve = fit.curve.predict(test).to_numpy()
    separate, seconds = [], 0.0
    for h in horizons:
        other = config.with_overrides(labels={"horizon_days": h, "horizons": []})
        start = time.perf_counter()
        bt = run_backtest(LocalRows(tables, other, last, lambda _msg: None), first, day, other)
        seconds += time.perf_counter() - start
        separate.append(pd.Series(bt.fit.model.predict_proba(bt.test), index=bt.test["customer_id"]))
    separate = np.column_stack([s.reindex(test["customer_id"]).to_numpy() for s in separate])
    print(f"backtest day {day.date()}, {len(test):,} customers; curve fitted in {curve_seconds:.1f} s, "
          f"{len(horizons)} separate models in {seconds:.1f} s")
    print("| horizon | churn rate | curve ROC-AUC | separate ROC-AUC | curve ECE | separate ECE |")
    print("|---:|---:|---:|---:|---:|---:|")
    for k, h in enumerate(horizons):
        y = source.churned(day, h).reindex(test["customer_id"]).to_numpy()
        a, b = scorecard(y, curve[:, k]), scorecard(y, separate[:, k])
        print(f"| {h} d | {y.mean():.3f} | {a['roc_auc']:.3f} | {b['roc_auc']:.3f} | {a['ece']:.3f} | {b['ece']:.3f} |")
    rising = (np.diff(separate, axis=1) > 0).any(axis=1)
    print(f"curves that rise somewhere: curve {(np.diff(curve, axis=1) > 0).any(axis=1).sum():,}, "
          f"separate models {rising.sum():,} of {len(test):,} ({rising.mean():.1%})")


if __name__ == "__main__":
    main()
