"""How much campaign data the uplift model needs: the held-out Qini of the uplift ranking against the churn-risk
ranking and random ones, on demo worlds of several sizes and seeds (each world's own campaign, 50% control).

    flock /tmp/bench.lock python benchmarks/uplift_bench.py --sizes 2000,5000,10000,20000 --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from churnguard.config import load_config
from churnguard.dataset import validate_campaigns, validate_tables
from churnguard.demo import generate_demo_data
from churnguard.uplift import train_uplift


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,5000,10000,20000")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    cfg = load_config()
    print("| customers | campaign customers | Qini uplift | Qini risk | Qini random | uplift > risk | train s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in map(int, args.sizes.split(",")):
        cards, rows, secs = [], [], []
        for seed in map(int, args.seeds.split(",")):
            demo = generate_demo_data(n, seed=seed, campaign=True)
            tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=cfg.data)
            campaigns = validate_campaigns(demo.campaigns, config=cfg.data)
            began = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                result = train_uplift(tables, campaigns, cfg, model_out=Path(tmp) / "u.zip", track=False)
            secs.append(time.perf_counter() - began)
            cards.append([result.scorecard[k]["qini"] for k in ("uplift", "risk", "random")])
            rows.append(len(campaigns))
        c = np.array(cards)
        wins = int((c[:, 0] > c[:, 1]).sum())
        print(f"| {n:,} | {int(np.mean(rows)):,} | {c[:, 0].mean():+.4f} | {c[:, 1].mean():+.4f} | "
              f"{c[:, 2].mean():+.4f} | {wins}/{len(c)} | {np.mean(secs):.1f} |", flush=True)


if __name__ == "__main__":
    main()
