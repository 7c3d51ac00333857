"""A probe for the short-history worlds of ``quality_bench.py``: a Pareto/NBD whose clock runs with a season
fitted from the shop's own file.

World 2 (12 months of history, a 182-day horizon) is calibrated by no model trained on labelled snapshots: its
labels can only come from the first half-year (their horizons end by today), whose 182 days after include the
November-December peak, while today's horizon is January-June. This probe leaves the labels aside and models
the purchases themselves:

* each customer buys at rate ``lam * s(t)`` while alive and leaves at rate ``mu * s(t)`` (Pareto/NBD in
  "operational time"), with ``lam ~ Gamma(r, alpha)`` and ``mu ~ Gamma(s, beta)`` across customers;
* ``s(t)`` is one value per calendar month (mean 1), fitted jointly with the four parameters by maximum
  likelihood on every customer's purchase days up to today (the months of the repeat purchase days enter as
  ``sum C_m log s_m``); the horizon's months reuse the fitted value of the same calendar month;
* the mixing over ``lam`` and ``mu`` is a K x K grid of the Gamma distributions' mid-quantiles;
* a customer's chance of no purchase in the horizon is the posterior over the grid of "gone by today" plus
  "alive today and no purchase before leaving or the horizon's end".

It prints, per world, the fitted season beside the simulation's (``churnguard.demo``'s, known here only
because the world is simulated), and AUC, ECE and mean probability on what happened next for: the same model
with a flat season, with the fitted season, and with the simulation's season (hindsight). With
``--transfer`` it also trains and scores the deployed model as ``quality_bench.py`` does, maps its
probabilities onto the fitted Pareto/NBD's by an isotonic regression over today's customers (no outcome
used: the model's ranking with the Pareto/NBD's level, what training does without a backtest), and gives the
customers silent longer than any the model learned from (``support_days``) the Pareto/NBD's own probability.
Training does both now (``churnguard.model._modelcore.BeyondSupport``), so the deployed model's line is the
package's answer, and the two lines after it apply the steps once more to its probabilities.

    python benchmarks/seasonal_pnbd.py --world 2              # about 1 minute on 2 cores
    python benchmarks/seasonal_pnbd.py --world 2 --transfer   # and the deployed model (about 1 minute more)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from quality_bench import FULL, START, _cut, run_world
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from churnguard.config import load_config
from churnguard.demo import _SEASON, generate_demo_data
from churnguard.features.kernel import day_numbers
from churnguard.labels import make_labels
from churnguard.training.evaluation import expected_calibration_error
from churnguard.training.level import PurchaseDays
from churnguard.training.seasonal import GRID, SAMPLE, fit_seasonal_pnbd, purchase_histories


def purchase_days(transactions: pd.DataFrame, today: pd.Timestamp) -> tuple[PurchaseDays, np.ndarray]:
    """The purchase days up to ``today`` and the customer id of each code."""
    bought = transactions[transactions["amount"] > 0]
    codes, ids = pd.factorize(bought["customer_id"])
    return PurchaseDays.of(codes, day_numbers(bought["timestamp"].to_numpy()), today), np.asarray(ids)


def _line(name: str, y: np.ndarray, p: np.ndarray) -> str:
    return (f"  {name:<44} {roc_auc_score(y, p):.3f}  {expected_calibration_error(y, p):.3f}  {p.mean():.3f}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=int, default=2, help="a world of quality_bench.py's list, by number from 1")
    parser.add_argument("--grid", type=int, default=GRID, help="quantiles per Gamma distribution in the mixing grid")
    parser.add_argument("--sample", type=int, default=SAMPLE, help="customers the parameters are fitted on")
    parser.add_argument("--transfer", action="store_true", help="also the deployed model, and its ranking with "
                        "the Pareto/NBD's level")
    args = parser.parse_args(argv)
    world = FULL[args.world - 1]
    today = START + pd.DateOffset(months=world.months) - pd.Timedelta(days=1)
    full = generate_demo_data(world.customers, seed=world.seed, start=str(START.date()),
                              end=str((today + pd.Timedelta(days=world.horizon)).date()), churn_scale=world.churn_scale)
    outcome = make_labels(full.transactions, today, world.horizon, load_config().labels.lookback_days)
    purchases, ids = purchase_days(_cut(full, today).transactions, today)
    h, _ = purchase_histories(purchases)
    fits = {"flat": fit_seasonal_pnbd(purchases, sample=args.sample, grid=args.grid, season=np.ones(12)),
            "fitted": fit_seasonal_pnbd(purchases, sample=args.sample, grid=args.grid),
            "hindsight": fit_seasonal_pnbd(purchases, sample=args.sample, grid=args.grid, season=_SEASON)}
    truth = _SEASON / _SEASON.mean()
    print(f"{world.name}: {len(outcome):,} customers in the lookback window, churn rate {outcome['churned'].mean():.3f}")
    print("  season, January..December, fitted:    " + " ".join(f"{v:.2f}" for v in fits["fitted"].season))
    print("                  the simulation's:      " + " ".join(f"{v:.2f}" for v in truth))
    p = pd.DataFrame({"customer_id": ids[np.unique(purchases.customer)],
                      **{name: m.no_purchase(h, today, world.horizon, args.grid) for name, m in fits.items()}})
    frame = outcome[["customer_id", "churned"]].merge(p, on="customer_id")
    y = frame["churned"].to_numpy()
    print(f"  {'scorer':<44} auc    ece    mean_p")
    print(_line("Pareto/NBD, flat season", y, frame["flat"].to_numpy()))
    print(_line("Pareto/NBD, season fitted from the file", y, frame["fitted"].to_numpy()))
    print(_line("Pareto/NBD, the simulation's season (hindsight)", y, frame["hindsight"].to_numpy()))
    if args.transfer:
        with tempfile.TemporaryDirectory() as tmp:
            run = run_world(world, Path(tmp))
        scored = run["frame"][["customer_id", "churn_probability", "recency_days"]]
        both = frame.merge(scored, on="customer_id")
        y, model = both["churned"].to_numpy(), both["churn_probability"].to_numpy()
        print(_line("deployed model", y, model))
        print(_line("its ranking onto the Pareto/NBD's level (isotonic)", y, IsotonicRegression(
            out_of_bounds="clip").fit(model, both["fitted"].to_numpy()).predict(model)))
        support = run["level"].get("support_days")
        if support is not None:
            beyond = both["recency_days"].to_numpy() > support
            mixed = np.where(beyond, both["fitted"].to_numpy(), model)
            print(_line(f"deployed, silent over {support} days at the Pareto/NBD's", y, mixed)
                  + f"  ({beyond.sum():,} customers)")

if __name__ == "__main__":
    main(sys.argv[1:])
