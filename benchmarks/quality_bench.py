"""How good the deployed model is on generated worlds that differ from the demo, judged on what happened next.

Each world is ``churnguard.demo``'s simulation with its own seed, size, churn rate (``churn_scale``) and
history (12, 24 or 36 months up to "today"), simulated one horizon past today. The shop's files hold the data
up to today only: ``train`` (the library call of ``churnguard train``, :func:`churnguard.engines.train_from_files`)
learns from them and ``score`` (:func:`churnguard.engines.score_from_files`) scores today's customers. The
customers who bought in the lookback window before today are then compared with what they did in the horizon
after it, in the simulation's later data that neither command saw.

Per world it prints AUC, PR-AUC, Brier, ECE, the mean probability (to set beside the churn rate) and coverage
(the share of those customers who got a probability) of the deployed model, of the recency and BG/NBD
baselines as the model file calibrates them, and of a plain LightGBM (200 trees at learning rate 0.05,
otherwise its default settings) on recency, frequency and monetary value, trained on the deployed model's own
snapshots; the training run's own scorecard and how it was made (backtest or grouped cross-validation); and
the level correction the training run chose, with each correction's ECE on its backtest (the model card's
sentence).

With ``--support`` it also prints where the model's probabilities miss, by the customers' silence (days since
their last purchase): today's customers, their churn rate and mean probability against the training rows of
the deployed model's snapshots; and, for a history shorter than the lookback window, the customers silent
longer than any training customer could be (the newest snapshot's history), with what the in-support
customers would get from features computed over that much history only (an observation window) and the ECE
if those beyond were scored at their own churn rate (hindsight): how much of the miss each part explains.

    python benchmarks/quality_bench.py            # 5 worlds, 4 of >= 10k customers
    python benchmarks/quality_bench.py --quick    # 3 small worlds, a few minutes on 2 cores
    python benchmarks/quality_bench.py --worlds 2 --support
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from churnguard.config import default_config_text, load_config, load_playbook
from churnguard.dataset import validate_tables
from churnguard.demo import DemoData, generate_demo_data, write_demo_data
from churnguard.engines import score_from_files, train_from_files
from churnguard.features import build_features
from churnguard.features.kernel import bgnbd_features
from churnguard.labels import make_labels
from churnguard.model import ChurnModel
from churnguard.training.evaluation import (
    baseline_probabilities,
    expected_calibration_error,
    level_sentence,
    support_sentence,
)
from churnguard.training.snapshots import make_training_set

RFM = ("recency_days", "n_orders", "gross_spend")
START = pd.Timestamp("2022-01-01")
TARGET_CUSTOMERS = 10_000


@dataclass(frozen=True)
class World:
    """One generated shop: ``months`` of history up to today, a churn hazard ``churn_scale`` times the
    demo's, and the horizon it asks for."""

    customers: int
    seed: int
    churn_scale: float
    months: int
    horizon: int

    @property
    def name(self) -> str:
        return f"{self.customers // 1000}k s{self.seed} x{self.churn_scale:g} {self.months}m h{self.horizon}"


FULL = (
    World(10_000, 101, 1.0, 12, 30), World(12_000, 103, 1.5, 12, 182), World(10_000, 105, 1.3, 24, 90),
    World(6_000, 104, 0.6, 36, 90), World(10_000, 109, 0.5, 36, 182),
)
QUICK = (World(1_000, 201, 1.2, 12, 182), World(1_200, 202, 0.8, 24, 90), World(1_000, 203, 1.0, 36, 30))


def _cut(data: DemoData, today: pd.Timestamp) -> DemoData:
    """What the shop's files hold on ``today``: nothing that happened after it."""
    end = today + pd.Timedelta(days=1)
    tickets = data.tickets[data.tickets["opened_at"] < end].copy()
    tickets.loc[tickets["resolved_at"] >= end, "csat"] = np.nan  # answered after today's file was written
    for col in ("first_response_at", "resolved_at"):
        tickets.loc[tickets[col] >= end, col] = pd.NaT
    return DemoData(data.transactions[data.transactions["timestamp"] < end], tickets, data.customers)


def _metrics(y: np.ndarray, p: np.ndarray, population: int) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    return {"auc": roc_auc_score(y, p), "pr_auc": average_precision_score(y, p), "brier": brier_score_loss(y, p),
            "ece": expected_calibration_error(y, p), "mean_p": float(np.mean(p)), "coverage": len(y) / population}


def _training_rows(tables, model: ChurnModel, today: pd.Timestamp) -> pd.DataFrame:
    """The rows of the deployed model's snapshots (without the BG/NBD columns)."""
    info = model.require_info()
    days = [pd.Timestamp(d) for d in info.summary["deployed_snapshots"]]
    return make_training_set(tables, features=info.config.features, labels=info.config.labels,
                             snapshots=info.config.snapshots, last_date=today, dates=days)


def _rfm_lightgbm(train: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    """A plain LightGBM on recency, frequency and monetary value, trained on the deployed model's snapshot rows."""
    import lightgbm as lgb

    clf = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, verbose=-1, random_state=0)
    clf.fit(train[list(RFM)], train["churned"])
    return clf.predict_proba(frame[list(RFM)])[:, 1]


def run_world(world: World, work: Path, support: bool = False) -> dict[str, object]:
    """Train and score one world from its files; every scorer's metrics on what happened next (with
    ``support``, also :func:`_support`'s breakdown)."""
    today = START + pd.DateOffset(months=world.months) - pd.Timedelta(days=1)
    full = generate_demo_data(world.customers, seed=world.seed, start=str(START.date()),
                              end=str((today + pd.Timedelta(days=world.horizon)).date()), churn_scale=world.churn_scale)
    shop = _cut(full, today)
    paths = write_demo_data(shop, work / "data", fmt="parquet")
    config = load_config().with_overrides(labels={"horizon_days": world.horizon},
                                          tracking={"tracking_uri": f"sqlite:///{work / 'mlflow.db'}"})
    began = time.perf_counter()
    result, _ = train_from_files("local", paths["transactions"], paths["tickets"], paths["customers"], config=config,
                                 config_text=default_config_text(), model_out=work / "model.zip",
                                 as_of=str(today.date()))
    trained = time.perf_counter() - began
    model = ChurnModel.load(result.model_path)
    score_from_files("local", model, paths["transactions"], paths["tickets"], paths["customers"],
                     out=work / "scores.parquet", playbook=load_playbook(), as_of=str(today.date()),
                     control_fraction=0.0)
    scores = pd.read_parquet(work / "scores.parquet", columns=["customer_id", "churn_probability"])
    outcome = make_labels(full.transactions, today, world.horizon, config.labels.lookback_days)
    info = model.require_info()
    tables = validate_tables(shop.transactions, shop.tickets, shop.customers, config=config.data)
    feats = build_features(tables, today, info.config.features)
    feats = feats.assign(**bgnbd_features(feats, info.population.bgnbd, world.horizon))
    frame = outcome[["customer_id", "churned"]].merge(feats, on="customer_id").merge(scores, on="customer_id")
    y, n = frame["churned"].to_numpy(), len(outcome)
    scored = frame["churn_probability"].notna().to_numpy()
    rows = {"model": _metrics(y[scored], frame["churn_probability"].to_numpy()[scored], n)}
    for name, p in baseline_probabilities(frame, info.baseline_calibrators).items():
        rows[name] = _metrics(y, p, n)
    train = _training_rows(tables, model, today)
    rows["lgbm_rfm"] = _metrics(y, _rfm_lightgbm(train, frame), n)
    extra = {"support": _support(frame, train, shop, model, today)} if support else {}
    return {**extra, "world": world, "frame": frame, "scorers": rows, "evaluation": info.evaluation, "churn_rate": float(y.mean()),
            "claimed": info.scorecards["model"], "level": info.summary,
            "population": n, "train_s": trained, "snapshots": len(info.summary["deployed_snapshots"]),
            "trees": model.best_iteration_,
            "schedule": f"{info.config.snapshots.min_history_days}d/{info.config.snapshots.cadence_days}d"}


SILENCE_EDGES = (0, 30, 60, 90, 120, 150, 180, 240, 300, 365)


def _by_silence(frame: pd.DataFrame, train: pd.DataFrame) -> list[str]:
    """Today's customers (churn rate, mean probability) and the training rows (churn rate) by silence."""
    bins = pd.IntervalIndex.from_breaks(SILENCE_EDGES, closed="left")
    today = frame.groupby(pd.cut(frame["recency_days"], bins), observed=False)
    past = train.groupby(pd.cut(train["recency_days"], bins), observed=False)["churned"]
    lines = ["  silence (days)  today: customers  churn rate  mean p   training rows  churn rate"]
    for b, n, rate, p, m, r in zip(bins, today.size(), today["churned"].mean(), today["churn_probability"].mean(),
                                   past.size(), past.mean(), strict=True):
        lines.append(f"  [{b.left:>3}, {b.right:>3})      {n:>16,}  {rate:>10.3f}  {p:>6.3f}   {m:>13,}  {r:>10.3f}")
    medians = ", ".join(f"{c} {frame[c].median():g} / {train[c].median():g}"
                        for c in ("n_orders", "bg_age_days", "tenure_days", "gross_spend"))
    return [*lines, f"  medians today / training rows: {medians}"]


def _support(frame: pd.DataFrame, train: pd.DataFrame, shop: DemoData, model: ChurnModel,
             today: pd.Timestamp) -> list[str]:
    """Where the probabilities miss by silence, and for a history shorter than the lookback window what the
    customers silent longer than the newest snapshot's history (the support) and an observation window of that
    length account for (see the module docstring)."""
    info = model.require_info()
    lines = _by_silence(frame, train)
    span = (pd.Timestamp(info.summary["tune_snapshot"]) - pd.Timestamp(info.summary["data_first_day"])).days
    if span >= info.config.labels.lookback_days:
        return [*lines, "  the training snapshots hold silences as long as the lookback window: no customer is beyond"]
    y, p = frame["churned"].to_numpy(), frame["churn_probability"].to_numpy()
    beyond = frame["recency_days"].to_numpy() > span
    hindsight = np.where(beyond, y[beyond].mean(), p)
    lines.append(f"  beyond the support (silent more than {span} days, the newest snapshot's history): "
                 f"{beyond.sum():,} of {len(y):,} ({beyond.mean():.1%}), churn rate {y[beyond].mean():.3f}, mean p "
                 f"{p[beyond].mean():.3f}; ECE overall {expected_calibration_error(y, p):.3f}, with those beyond "
                 f"at their churn rate {expected_calibration_error(y, hindsight):.3f}")
    lines.append(f"  within the support, as scored: {_tenths(y[~beyond], p[~beyond])}")
    single = (frame["bg_frequency"].to_numpy()[beyond] == 0).mean()
    lines.append(f"  those beyond ({single:.0%} of them without a repeat purchase) extrapolated from the edge: " + "; ".join(
        f"{name}: ECE {expected_calibration_error(y, q):.3f}, their mean p {q[beyond].mean():.3f}"
        for name, q in _extrapolations(frame, train, model, span).items()))
    window = _windowed(frame[~beyond], shop, model, today, span)
    lines.append(f"  within, on features over the last {span} days only: {_tenths(y[~beyond], window)}, mean p "
                 f"{window.mean():.3f} vs churn rate "
                 f"{y[~beyond].mean():.3f} (on all their history: {p[~beyond].mean():.3f})")
    power = info.summary.get("level_intensity", {}).get("power")
    if power is not None and info.summary["level_power"] == 1.0:
        lines.append(f"  ... and raised to the intensity power {power:.3f} (not applied): "
                     f"{_tenths(y[~beyond], window ** power)}")
    return lines


def _tenths(y: np.ndarray, p: np.ndarray) -> str:
    """ECE, and the mean probability against the churn rate in the lowest and highest tenth by probability."""
    order = np.argsort(p, kind="stable")
    low, high = order[: len(p) // 10], order[-(len(p) // 10):]
    return (f"ECE {expected_calibration_error(y, p):.3f}, lowest tenth {p[low].mean():.3f} vs {y[low].mean():.3f}, "
            f"highest {p[high].mean():.3f} vs {y[high].mean():.3f}")


def _extrapolations(frame: pd.DataFrame, train: pd.DataFrame, model: ChurnModel, span: int) -> dict[str, np.ndarray]:
    """Two ways to carry the probabilities of the customers silent longer than ``span`` days beyond the edge
    of the training silences: the log-odds growing with each day beyond it at the slope of a logistic
    regression of the training rows' outcome on their silence, over the last 30, 60 and 90 days before the
    edge; and the chance of a purchase at the edge times the BG/NBD probability of being alive now over that
    at the edge (the last purchase moved to the edge; 1 for a customer with no repeat purchase)."""
    from sklearn.linear_model import LogisticRegression

    from churnguard import btyd

    p, r = frame["churn_probability"].to_numpy(), frame["recency_days"].to_numpy()
    beyond, out = r > span, {}
    for band in (30, 60, 90):
        near = train["recency_days"].to_numpy() > span - band
        fit = LogisticRegression(C=1e6).fit(train["recency_days"].to_numpy()[near, None], train["churned"][near])
        log_odds = np.log(p / (1 - p)) + max(fit.coef_[0, 0], 0.0) * np.clip(r - span, 0, None)
        out[f"slope over {band} days"] = 1 / (1 + np.exp(-log_odds))
    x, t = frame["bg_frequency"].to_numpy(), frame["bg_age_days"].to_numpy() / 7
    tx = frame["bg_recency_days"].to_numpy() / 7
    params = model.require_info().population.bgnbd
    alive = btyd.prob_alive(params, x, tx, t, validate=False)
    at_edge = btyd.prob_alive(params, x, np.clip(t - span / 7, tx, t), t, validate=False)
    out["BG/NBD P(alive)"] = np.where(beyond, 1 - (1 - p) * alive / at_edge, p)
    return out


def _windowed(frame: pd.DataFrame, shop: DemoData, model: ChurnModel, today: pd.Timestamp, days: int) -> np.ndarray:
    """The model's probabilities for ``frame``'s customers from their events of the last ``days`` days only."""
    info = model.require_info()
    start = today - pd.Timedelta(days=days)
    tables = validate_tables(shop.transactions[shop.transactions["timestamp"] >= start],
                             shop.tickets[shop.tickets["opened_at"] >= start], shop.customers, config=info.config.data)
    feats = build_features(tables, today, info.config.features)
    feats = feats.assign(**bgnbd_features(feats, info.population.bgnbd, info.population.horizon_days))
    return model.predict_proba(frame[["customer_id"]].merge(feats, on="customer_id", how="left"))


def _report(result: dict[str, object]) -> str:
    world, rows = result["world"], result["scorers"]
    head = (f"{world.name}: {result['population']:,} customers in the lookback window, churn rate "
            f"{result['churn_rate']:.3f}; {result['snapshots']} snapshots ({result['schedule']}), scorecard by "
            f"{result['evaluation']}, {result['trees']} trees, trained in {result['train_s']:.0f} s")
    lines = [head, "  scorer     auc     pr_auc  brier   ece     mean_p coverage"]
    for name, m in rows.items():
        lines.append(f"  {name:<10} {m['auc']:.4f}  {m['pr_auc']:.4f}  {m['brier']:.4f}  {m['ece']:.4f}  "
                     f"{m['mean_p']:.3f}  {m['coverage']:.1%}")
    claimed = result["claimed"]
    lines.append(f"  the training run's own scorecard ({result['evaluation']}): auc {claimed['roc_auc']:.3f}, ece "
                 f"{claimed['ece']:.3f}, churn rate {claimed['positive_rate']:.3f}")
    lines.append(f"  {level_sentence(result['level'])}")
    if result["level"].get("beyond_support_share"):
        lines.append(f"  {support_sentence(result['level'])}")
    model = rows["model"]
    beats = all(model["auc"] > m["auc"] for name, m in rows.items() if name != "model")
    met = beats and model["ece"] <= 0.02 and model["coverage"] == 1.0
    target = "n/a (< 10k customers)" if world.customers < TARGET_CUSTOMERS else ("met" if met else "NOT met")
    lines.append(f"  target (beats every baseline on AUC, ECE <= 0.02, coverage 100%): {target}")
    return "\n".join([*lines, *result.get("support", [])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 small worlds instead of 5")
    parser.add_argument("--worlds", help="only these worlds of the list, by number from 1, e.g. 3,4,5")
    parser.add_argument("--support", action="store_true",
                        help="also where the model misses, by silence, and the customers beyond the training's support")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # one tiny world: does it run
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    worlds = (World(600, 1, 1.0, 12, 30),) if args.smoke else QUICK if args.quick else FULL
    if args.worlds:
        worlds = tuple(worlds[int(i) - 1] for i in args.worlds.split(","))
    for world in worlds:
        with tempfile.TemporaryDirectory() as tmp:
            print(_report(run_world(world, Path(tmp), args.support)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
