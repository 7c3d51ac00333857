"""Uplift targeting against risk targeting on the demo world's simulated truth.

The uplift model is trained on the ``make demo`` world (5,000 customers, seed 7); a churn model file (``--model``,
e.g. the test suite's: 1,500 customers, seed 3, 12 snapshots) scores other demo worlds as of their later
campaign's day, once alone (risk targeting: expected value) and once with the uplift model, with a playbook of
the campaign's two actions and the same budget. Each contacted customer gets the outcome the simulation drew for
the chosen action, the others their outcome without contact; printed: customers kept net of those put off.

    flock /tmp/bench.lock python benchmarks/uplift_targeting.py --model models/churn_model.zip
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from churnguard.config import load_config
from churnguard.dataset import validate_campaigns, validate_tables
from churnguard.demo import generate_demo_data
from churnguard.demo_campaign import CAMPAIGN_PLAYBOOK, campaign_truth, retained
from churnguard.model import ChurnModel
from churnguard.scoring import score_tables
from churnguard.uplift import train_uplift
from churnguard.uplift.score import score_with_uplift


def _world(n: int, seed: int):
    cfg = load_config()
    demo = generate_demo_data(n, seed=seed, campaign=True)
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=cfg.data)
    return demo, tables, validate_campaigns(demo.campaigns, config=cfg.data)


def _shares(scores: pd.DataFrame, truth: pd.DataFrame) -> str:
    """The shares of lapsed and of price-sensitive customers among the campaign customers contacted."""
    chosen = truth.reindex(scores.loc[scores["selected"].to_numpy(dtype=bool), "customer_id"]).dropna(
        subset=["lapsed"])
    return ", ".join(f"{chosen[c].astype(float).mean():.0%}" for c in ("lapsed", "price_sensitive"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--seeds", default="8,9,10")
    parser.add_argument("--budgets", default="1000,3000,10000")
    args = parser.parse_args()
    model = ChurnModel.load(args.model)
    _, tables, campaigns = _world(5000, 7)
    with tempfile.TemporaryDirectory() as tmp:
        uplift = train_uplift(tables, campaigns, load_config(), model_out=Path(tmp) / "u.zip", track=False).model
    print("| budget | world seed | contacts (risk / uplift) | kept by risk targeting | kept by uplift targeting | "
          "lapsed, price-sensitive among contacts (risk / uplift) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for budget in map(float, args.budgets.split(",")):
        for seed in map(int, args.seeds.split(",")):
            demo, tables, campaigns = _world(5000, seed)
            day = campaigns["sent_at"].max()  # the later of the world's two campaigns
            truth = campaign_truth(demo.campaign_truth, day)
            risk = score_tables(model, tables, day, CAMPAIGN_PLAYBOOK, budget=budget, control_fraction=0.0).scores
            up = score_with_uplift(model, uplift, tables, day, CAMPAIGN_PLAYBOOK, budget=budget,
                                   control_fraction=0.0).scores
            nobody = int(truth["bought_untreated"].sum())  # "kept": buyers beyond those without any contact
            print(f"| {budget:,.0f} | {seed} | {int(np.sum(risk['selected']))} / {int(np.sum(up['selected']))} | "
                  f"{retained(risk, truth) - nobody} | {retained(up, truth) - nobody} | {_shares(risk, truth)} / "
                  f"{_shares(up, truth)} |", flush=True)


if __name__ == "__main__":
    main()
