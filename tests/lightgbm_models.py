"""Small LightGBM models whose trees split on one feature several times along a path, split categorical
features (one category and sets of them) and meet every kind of missing value: the cases the batch
contributions must decide as LightGBM does."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

K_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold
CATEGORICAL = (1, 2)


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five features: 0 a wavy effect (split again and again on one path), 1 a categorical with 12 codes
    (sets of codes per split), 2 one with 3 codes (one code per split), 3 a number that is often exactly
    zero, 4 small integers around zero with NaN."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([
        rng.normal(size=n),
        rng.integers(0, 12, n).astype(float),
        rng.integers(0, 3, n).astype(float),
        np.where(rng.random(n) < 0.3, 0.0, rng.normal(size=n)),
        np.where(rng.random(n) < 0.2, np.nan, rng.integers(-2, 3, n).astype(float)),
    ])
    logit = (np.sin(3 * x[:, 0]) + (x[:, 1] % 3 == 0) - 0.5 * x[:, 2] + 0.8 * (x[:, 3] == 0)
             + 0.4 * np.nan_to_num(x[:, 4], nan=1.5))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def _train(objective: str = "binary", rounds: int = 40, **params) -> tuple[lgb.Booster, np.ndarray]:
    x, y = _data()
    if objective == "regression":
        y = y + x[:, 0]
    base = {"objective": objective, "num_leaves": 16, "max_depth": 5, "min_data_in_leaf": 10,
            "learning_rate": 0.2, "max_cat_to_onehot": 4, "cat_smooth": 1, "cat_l2": 1, "min_data_per_group": 5, "verbose": -1,
            "num_threads": 1, "seed": 1}
    booster = lgb.train({**base, **params}, lgb.Dataset(x, y, categorical_feature=list(CATEGORICAL)),
                        num_boost_round=rounds)
    return booster, x


def _splits(booster: lgb.Booster) -> list[dict]:
    out, stack = [], [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            out.append(node)
            stack += [node["left_child"], node["right_child"]]
    return out
