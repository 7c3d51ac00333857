"""Would a chain of short-step models calibrate a long horizon on a short history? A probe of quality_bench's worlds.

World 2 of ``quality_bench.py`` (12 months of history, a 182-day horizon) misses ECE <= 0.02: its deployed
model learns from snapshots with at most 182 days of history before them, a few weeks apart. A discrete-time
chain uses every window the history holds instead: one LightGBM model of "no purchase in the next ``--step``
days" trained on snapshots every ``--every`` days up to today minus one step (so with silences up to nearly the
whole history), and a customer's chance of no purchase over the horizon as the product of that model's answers
at today, today + step, ... (the features at each later day computed from the history up to today, i.e. as they
would be if the customer did not buy; the last step's answer raised to the share of a step left). It then
prints, per step, the mean answer against what the customers still silent at that step did next, and the
chain's AUC and ECE on today's customers against what they did over the horizon. Not part of the package: a
probe of whether such a model would meet the target, on the same simulation as ``quality_bench.py``.

    python benchmarks/step_chain.py --world 2
    python benchmarks/step_chain.py --world 2 --month     # the window's calendar month as a feature
    python benchmarks/step_chain.py --world 5 --every 28
"""

from __future__ import annotations

import argparse
import math

import lightgbm as lgb
import pandas as pd
from quality_bench import FULL, START, _cut
from sklearn.metrics import roc_auc_score

from churnguard.config import load_config
from churnguard.dataset import validate_tables
from churnguard.demo import generate_demo_data
from churnguard.features import build_features
from churnguard.labels import make_labels
from churnguard.training.evaluation import expected_calibration_error
from churnguard.training.snapshots import make_training_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2, help="quality_bench.py's world, by number from 1")
    parser.add_argument("--step", type=int, default=30, help="days per step of the chain")
    parser.add_argument("--every", type=int, default=7, help="days between training snapshots")
    parser.add_argument("--month", action="store_true", help="the calendar month of a step's window as a feature")
    args = parser.parse_args()
    world = FULL[args.world - 1]
    today = START + pd.DateOffset(months=world.months) - pd.Timedelta(days=1)
    full = generate_demo_data(world.customers, seed=world.seed, start=str(START.date()),
                              end=str((today + pd.Timedelta(days=world.horizon)).date()),
                              churn_scale=world.churn_scale)
    shop = _cut(full, today)
    config = load_config().with_overrides(labels={"horizon_days": args.step})
    tables = validate_tables(shop.transactions, shop.tickets, shop.customers, config=config.data)
    first = shop.transactions["timestamp"].min().normalize()
    dates = list(pd.date_range(first + pd.Timedelta(days=30), today - pd.Timedelta(days=args.step),
                               freq=f"{args.every}D"))
    train = make_training_set(tables, features=config.features, labels=config.labels, snapshots=config.snapshots,
                              last_date=today, dates=dates)
    columns = [c for c in train.columns if c not in {"customer_id", "as_of", "churned"}
               and train[c].dtype.kind in "fiub"]

    def inputs(frame: pd.DataFrame, days: pd.Series | pd.Timestamp) -> pd.DataFrame:
        x = frame[columns].astype("float64")
        if args.month:
            middle = pd.to_datetime(days) + pd.Timedelta(days=args.step / 2)
            x = x.assign(window_month=middle.month if isinstance(middle, pd.Timestamp) else middle.dt.month)
        return x

    step = lgb.LGBMClassifier(n_estimators=400, learning_rate=0.03, min_child_samples=100, subsample=0.8,
                              subsample_freq=1, colsample_bytree=0.8, verbose=-1, random_state=0)
    step.fit(inputs(train, train["as_of"]), train["churned"].astype(int))
    print(f"world {args.world} ({world.name}), today {today.date()}: {len(train):,} training rows from "
          f"{len(dates)} snapshots {dates[0].date()} .. {dates[-1].date()}, no purchase within {args.step} days in "
          f"{train['churned'].mean():.3f} of them")

    outcome = make_labels(full.transactions, today, world.horizon, config.labels.lookback_days)
    ids = outcome["customer_id"]
    tx = full.transactions
    chance = pd.Series(1.0, index=ids)
    print(f"{'step':>4} {'day':>10} {'still silent':>12} {'no purchase next':>16} {'mean answer':>11}")
    for k in range(math.ceil(world.horizon / args.step)):
        day = today + pd.Timedelta(days=args.step * k)
        features = build_features(tables, day, config.features).set_index("customer_id").reindex(ids)
        answer = pd.Series(step.predict_proba(inputs(features, day))[:, 1], index=ids)
        chance *= answer ** min(1.0, (world.horizon - args.step * k) / args.step)
        bought = tx[(tx["timestamp"] >= today + pd.Timedelta(days=1)) & (tx["timestamp"] < day + pd.Timedelta(days=1))]
        silent = ~ids.isin(bought["customer_id"]).to_numpy()
        window = tx[(tx["timestamp"] >= day + pd.Timedelta(days=1))
                    & (tx["timestamp"] < day + pd.Timedelta(days=args.step + 1))]
        none = ~ids[silent].isin(window["customer_id"]).to_numpy()
        print(f"{k:>4} {day.date()!s:>10} {silent.sum():>12,} {none.mean():>16.3f} {answer[silent].mean():>11.3f}")
    y, p = outcome["churned"].to_numpy().astype(int), chance.to_numpy()
    print(f"the chain over {world.horizon} days: {len(y):,} customers, churn rate {y.mean():.3f}, mean probability "
          f"{p.mean():.3f}, AUC {roc_auc_score(y, p):.3f}, ECE {expected_calibration_error(y, p):.4f}")


if __name__ == "__main__":
    main()
