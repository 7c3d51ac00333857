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

    python benchmarks/quality_bench.py            # 5 worlds, 4 of >= 10k customers
    python benchmarks/quality_bench.py --quick    # 3 small worlds, a few minutes on 2 cores
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
from churnguard.training.evaluation import baseline_probabilities, expected_calibration_error, level_sentence
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


def _rfm_lightgbm(tables, model: ChurnModel, today: pd.Timestamp, frame: pd.DataFrame) -> np.ndarray:
    """A plain LightGBM on recency, frequency and monetary value, trained on the deployed model's snapshots."""
    import lightgbm as lgb

    info = model.require_info()
    days = [pd.Timestamp(d) for d in info.summary["deployed_snapshots"]]
    train = make_training_set(tables, features=info.config.features, labels=info.config.labels,
                              snapshots=info.config.snapshots, last_date=today, dates=days)
    clf = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, verbose=-1, random_state=0)
    clf.fit(train[list(RFM)], train["churned"])
    return clf.predict_proba(frame[list(RFM)])[:, 1]


def run_world(world: World, work: Path) -> dict[str, object]:
    """Train and score one world from its files; every scorer's metrics on what happened next."""
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
    rows["lgbm_rfm"] = _metrics(y, _rfm_lightgbm(tables, model, today, frame), n)
    return {"world": world, "scorers": rows, "evaluation": info.evaluation, "churn_rate": float(y.mean()),
            "claimed": info.scorecards["model"], "level": info.summary,
            "population": n, "train_s": trained, "snapshots": len(info.summary["deployed_snapshots"]),
            "schedule": f"{info.config.snapshots.min_history_days}d/{info.config.snapshots.cadence_days}d"}


def _report(result: dict[str, object]) -> str:
    world, rows = result["world"], result["scorers"]
    head = (f"{world.name}: {result['population']:,} customers in the lookback window, churn rate "
            f"{result['churn_rate']:.3f}; {result['snapshots']} snapshots ({result['schedule']}), scorecard by "
            f"{result['evaluation']}, trained in {result['train_s']:.0f} s")
    lines = [head, "  scorer     auc    pr_auc brier  ece    mean_p coverage"]
    for name, m in rows.items():
        lines.append(f"  {name:<10} {m['auc']:.3f}  {m['pr_auc']:.3f}  {m['brier']:.3f}  {m['ece']:.3f}  "
                     f"{m['mean_p']:.3f}  {m['coverage']:.1%}")
    claimed = result["claimed"]
    lines.append(f"  the training run's own scorecard ({result['evaluation']}): auc {claimed['roc_auc']:.3f}, ece "
                 f"{claimed['ece']:.3f}, churn rate {claimed['positive_rate']:.3f}")
    lines.append(f"  {level_sentence(result['level'])}")
    model = rows["model"]
    beats = all(model["auc"] > m["auc"] for name, m in rows.items() if name != "model")
    met = beats and model["ece"] <= 0.02 and model["coverage"] == 1.0
    target = "n/a (< 10k customers)" if world.customers < TARGET_CUSTOMERS else ("met" if met else "NOT met")
    lines.append(f"  target (beats every baseline on AUC, ECE <= 0.02, coverage 100%): {target}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 small worlds instead of 5")
    parser.add_argument("--worlds", help="only these worlds of the list, by number from 1, e.g. 3,4,5")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # one tiny world: does it run
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    worlds = (World(600, 1, 1.0, 12, 30),) if args.smoke else QUICK if args.quick else FULL
    if args.worlds:
        worlds = tuple(worlds[int(i) - 1] for i in args.worlds.split(","))
    for world in worlds:
        with tempfile.TemporaryDirectory() as tmp:
            print(_report(run_world(world, Path(tmp))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
