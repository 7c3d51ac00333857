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
``--transfer`` it also trains and scores the deployed model as ``quality_bench.py`` does and maps the model's
probabilities onto the fitted Pareto/NBD's by an isotonic regression over today's customers (no outcome
used): the model's ranking with the Pareto/NBD's level.

    python benchmarks/seasonal_pnbd.py --world 2              # about 1 minute on 2 cores
    python benchmarks/seasonal_pnbd.py --world 2 --transfer   # and the deployed model (about 1 minute more)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from quality_bench import FULL, START, _cut, run_world
from scipy.optimize import minimize
from scipy.stats import gamma
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from churnguard.config import load_config
from churnguard.demo import _SEASON, generate_demo_data
from churnguard.labels import make_labels
from churnguard.training.evaluation import expected_calibration_error


@dataclass(frozen=True)
class Histories:
    """Purchase days as day numbers from the file's first purchase day: each customer's first and last, their
    repeat days' count, the calendar month of every day up to the horizon's end, today and the horizon's end."""

    ids: np.ndarray
    first: np.ndarray
    last: np.ndarray
    repeats: np.ndarray
    repeat_months: np.ndarray  # repeat purchase days per calendar month, all customers
    month_of_day: np.ndarray
    today: int
    end: int


def histories(transactions: pd.DataFrame, today: pd.Timestamp, horizon: int) -> Histories:
    bought = transactions[transactions["amount"] > 0]
    days = pd.DataFrame({"c": bought["customer_id"].to_numpy(), "d": bought["timestamp"].dt.normalize().to_numpy()})
    days = days.drop_duplicates()
    per = days.groupby("c")["d"].agg(["min", "max", "count"])
    day0 = days["d"].min()
    later = days.merge(per[["min"]], left_on="c", right_index=True)
    repeat_months = np.bincount(later.loc[later["d"] > later["min"], "d"].dt.month - 1, minlength=12)
    now = (today.normalize() - day0).days
    calendar = pd.date_range(day0, periods=now + horizon + 2)
    return Histories(per.index.to_numpy(), (per["min"] - day0).dt.days.to_numpy(), (per["max"] - day0).dt.days.to_numpy(),
                     per["count"].to_numpy() - 1.0, repeat_months.astype(float), calendar.month.to_numpy() - 1,
                     now, now + horizon)


class SeasonalParetoNBD:
    """Maximum likelihood over ``(log r, log alpha, log s, log beta, log season[1:] - log season[0])``."""

    def __init__(self, h: Histories, k: int = 24):
        self.h, self.q = h, (np.arange(k) + 0.5) / k

    @staticmethod
    def season(theta: np.ndarray) -> np.ndarray:
        s = np.exp(np.concatenate([[0.0], theta[4:]])) if len(theta) > 4 else np.ones(12)
        return s / s.mean()

    def _terms(self, theta: np.ndarray, season: np.ndarray):
        r, alpha, s, beta = np.exp(theta[:4])
        lam = gamma.ppf(self.q, r, scale=1 / alpha)[:, None]
        mu = gamma.ppf(self.q, s, scale=1 / beta)[None, :]
        clock = np.concatenate([[0.0], np.cumsum(season[self.h.month_of_day] * 12 / 365.25)])  # months
        first, last = clock[self.h.first], clock[self.h.last]
        total = (lam + mu)[None]
        x, tx, t = self.h.repeats[:, None, None], (last - first)[:, None, None], (clock[self.h.today + 1] - first)[:, None, None]
        base = np.exp(x * np.log(lam[None]))
        alive = base * np.exp(-total * t)
        gone = base * mu[None] / total * (np.exp(-total * tx) - np.exp(-total * t))
        return alive, gone, lam, mu, clock[self.h.end + 1] - clock[self.h.today + 1]

    def nll(self, theta: np.ndarray, season: np.ndarray | None = None) -> float:
        fitted = season is None
        season = self.season(theta) if fitted else season
        alive, gone, *_ = self._terms(theta, season)
        ll = np.log((alive + gone).mean(axis=(1, 2)) + 1e-300).sum()
        return -(ll + (self.h.repeat_months * np.log(season)).sum() if fitted else ll)

    def fit(self, season: np.ndarray | None = None, fit_season: bool = False) -> np.ndarray:
        start = minimize(self.nll, np.log([1.0, 2.0, 1.0, 30.0]), args=(season if season is not None else np.ones(12),),
                         method="L-BFGS-B").x
        return minimize(self.nll, np.concatenate([start, np.zeros(11)]), method="L-BFGS-B").x if fit_season else start

    def no_purchase(self, theta: np.ndarray, season: np.ndarray) -> np.ndarray:
        """Each customer's chance of no purchase in the horizon."""
        alive, gone, lam, mu, horizon = self._terms(theta, season)
        total = lam + mu
        quiet = mu / total * (1 - np.exp(-total * horizon)) + np.exp(-total * horizon)
        return (gone + alive * quiet[None]).sum(axis=(1, 2)) / (alive + gone).sum(axis=(1, 2))


def _line(name: str, y: np.ndarray, p: np.ndarray) -> str:
    return (f"  {name:<44} {roc_auc_score(y, p):.3f}  {expected_calibration_error(y, p):.3f}  {p.mean():.3f}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=int, default=2, help="a world of quality_bench.py's list, by number from 1")
    parser.add_argument("--grid", type=int, default=24, help="quantiles per Gamma distribution in the mixing grid")
    parser.add_argument("--transfer", action="store_true", help="also the deployed model, and its ranking with "
                        "the Pareto/NBD's level")
    args = parser.parse_args(argv)
    world = FULL[args.world - 1]
    today = START + pd.DateOffset(months=world.months) - pd.Timedelta(days=1)
    full = generate_demo_data(world.customers, seed=world.seed, start=str(START.date()),
                              end=str((today + pd.Timedelta(days=world.horizon)).date()), churn_scale=world.churn_scale)
    outcome = make_labels(full.transactions, today, world.horizon, load_config().labels.lookback_days)
    h = histories(_cut(full, today).transactions, today, world.horizon)
    pnbd = SeasonalParetoNBD(h, args.grid)
    flat, fitted = pnbd.fit(), pnbd.fit(fit_season=True)
    truth = _SEASON / _SEASON.mean()
    hindsight = pnbd.fit(season=truth)
    season = pnbd.season(fitted)
    print(f"{world.name}: {len(outcome):,} customers in the lookback window, churn rate {outcome['churned'].mean():.3f}")
    print("  season, January..December, fitted:    " + " ".join(f"{v:.2f}" for v in season))
    print("                  the simulation's:      " + " ".join(f"{v:.2f}" for v in truth))
    p = pd.DataFrame({"customer_id": h.ids, "flat": pnbd.no_purchase(flat, np.ones(12)),
                      "fitted": pnbd.no_purchase(fitted, season), "hindsight": pnbd.no_purchase(hindsight, truth)})
    frame = outcome[["customer_id", "churned"]].merge(p, on="customer_id")
    y = frame["churned"].to_numpy()
    print(f"  {'scorer':<44} auc    ece    mean_p")
    print(_line("Pareto/NBD, flat season", y, frame["flat"].to_numpy()))
    print(_line("Pareto/NBD, season fitted from the file", y, frame["fitted"].to_numpy()))
    print(_line("Pareto/NBD, the simulation's season (hindsight)", y, frame["hindsight"].to_numpy()))
    if args.transfer:
        with tempfile.TemporaryDirectory() as tmp:
            scored = run_world(world, Path(tmp))["frame"][["customer_id", "churn_probability"]]
        both = frame.merge(scored, on="customer_id")
        y, model = both["churned"].to_numpy(), both["churn_probability"].to_numpy()
        level = IsotonicRegression(out_of_bounds="clip").fit(model, both["fitted"].to_numpy()).predict(model)
        print(_line("deployed model", y, model))
        print(_line("deployed model's ranking, Pareto/NBD's level", y, level))


if __name__ == "__main__":
    main(sys.argv[1:])
