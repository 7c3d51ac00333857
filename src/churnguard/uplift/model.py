"""The uplift model: per action, how much contact changes a customer's chance of buying within the horizon.

A T-learner on LightGBM. One classifier learns the chance of buying without contact, P(buy | features), on the
control customers of every action: they were not contacted, so which action they were drawn for changes nothing
of their outcome, and pooling them halves the noise of that side (1 - it is also the churn risk the scorecard
ranks by). For each action with at least ``min_customers`` contacted and ``min_customers`` control customers, one
classifier learns P(buy | features) on its contacted customers; a customer's uplift is the difference of the two.
An action with fewer customers gets no model: every customer's uplift is the action's measured average effect (the
``uplift`` of ``campaign-readout``), and the model says so in :attr:`UpliftModel.effects_`. An action without a
contacted or without a control customer has no measurable effect: its uplift is NaN, and scoring never chooses it
by uplift (``churnguard.uplift.score.best_actions``).

The model file is a zip of ``uplift.json`` (features, levels, effects, population, feature config) and LightGBM's
text model of each classifier: loading it parses JSON and LightGBM text only.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnguard._io.files import atomic_write_bytes
from churnguard.model._modelcore import feature_matrix

__all__ = ["DEFAULT_PARAMS", "Effect", "UpliftModel", "UpliftModelError", "feature_columns"]

UPLIFT_JSON = "uplift.json"
FORMAT = "churnguard-uplift-1"
BASELINE = "(untreated)"  # the pooled control classifier's name in the file
# Small, strongly regularised trees: each arm has a few hundred customers, and the difference of two
# overfitted models is mostly noise.
DEFAULT_PARAMS: dict[str, Any] = {"objective": "binary", "learning_rate": 0.03, "num_leaves": 4,
                                  "min_data_in_leaf": 60, "feature_fraction": 0.8, "bagging_fraction": 0.8,
                                  "bagging_freq": 1, "lambda_l2": 10.0, "verbosity": -1, "num_threads": 1}
_ROUNDS = 150
_SKIP = {"customer_id", "as_of", "as_of_month", "value_tier",  # ids, the calendar month, a label of cltv
         "sent_at", "action", "treated", "bought", "cost", "campaign_id"}  # the campaign row's own columns


class UpliftModelError(ValueError):
    """An uplift model file is missing, not one, or damaged."""


@dataclass(frozen=True)
class Effect:
    """What the model knows of one action: ``kind`` ``model`` (a T-learner) or ``average`` (too few customers:
    the measured average effect ``average`` for everyone), the customers it learned from, and why."""

    action: str
    kind: str
    n_treated: int
    n_control: int
    average: float
    note: str = ""


def feature_columns(features: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """The inputs of a features frame (numbers and categoricals, not ids, the month or the value tier) and the
    levels of its categoricals."""
    names, categories = [], {}
    for c in features.columns:
        if c in _SKIP:
            continue
        if isinstance(features[c].dtype, pd.CategoricalDtype):
            names.append(c)
            categories[c] = [str(v) for v in features[c].cat.categories]
        elif pd.api.types.is_numeric_dtype(features[c]) or pd.api.types.is_bool_dtype(features[c]):
            names.append(c)
    return names, categories


class UpliftModel:
    """T-learner per action (see the module docstring); scikit-learn's contract: learned state ends in ``_``."""

    def __init__(self, *, min_customers: int = 200, params: Mapping[str, Any] | None = None, rounds: int = _ROUNDS,
                 seed: int = 0) -> None:
        self.min_customers, self.params, self.rounds, self.seed = min_customers, params, rounds, seed

    def fit(self, features: pd.DataFrame, treated: np.ndarray, bought: np.ndarray, action: np.ndarray,
            averages: Mapping[str, float]) -> UpliftModel:
        """Learn from campaign customers: their features as of ``sent_at``, whether they were contacted, whether
        they bought within the horizon and the action drawn; ``averages``: each action's measured average effect.

        Raises:
            ValueError: no control customers or no contacted customers at all (nothing to compare), or arrays of
                different lengths.
        """
        treated, bought, action = (np.asarray(a) for a in (treated, bought, action))
        if not len(features) == len(treated) == len(bought) == len(action):
            raise ValueError("features, treated, bought and action must have one entry per customer")
        if treated.all():
            raise ValueError("no control customers: without a group held out there is no effect to learn")
        treated, bought = treated.astype(bool), bought.astype(bool)
        if not treated.any():
            raise ValueError("no contacted customers: every campaign customer is in the control group (treated "
                             "false), so there is no effect of contact to learn")
        self.feature_names_, self.categories_ = feature_columns(features)
        x = feature_matrix(features, self.feature_names_, self.categories_)
        self.effects_: dict[str, Effect] = {}
        self.boosters_: dict[str, Any] = {BASELINE: self._booster(x[~treated], bought[~treated])}
        for name in sorted(set(action.tolist())):
            arm = action == name
            n1, n0 = int((arm & treated).sum()), int((arm & ~treated).sum())
            average = float(averages.get(name, np.nan))
            if not min(n1, n0):
                note = (f"no {'contacted' if n1 == 0 else 'control'} customers (contacted {n1:,}, control {n0:,}): "
                        "its effect cannot be measured,\n    so no customer gets it by uplift")
                self.effects_[name] = Effect(name, "average", n1, n0, np.nan, note)
                continue
            if min(n1, n0) < self.min_customers:
                note = (f"too few customers to learn who it keeps (contacted {n1:,}, control {n0:,}; need "
                        f"{self.min_customers:,} each):\n    everyone gets the measured average effect")
                self.effects_[name] = Effect(name, "average", n1, n0, average, note)
                continue
            self.effects_[name] = Effect(name, "model", n1, n0, average)
            self.boosters_[name] = self._booster(x[arm & treated], bought[arm & treated])
        return self

    def _booster(self, x: np.ndarray, y: np.ndarray) -> Any:
        import lightgbm as lgb

        params = {**DEFAULT_PARAMS, **(self.params or {}), "seed": self.seed}
        data = lgb.Dataset(x, y.astype(np.float64), feature_name=self.feature_names_,
                           categorical_feature=list(self.categories_), free_raw_data=True)
        return lgb.train(params, data, num_boost_round=self.rounds)

    def _check_fitted(self) -> None:
        if not hasattr(self, "effects_"):
            raise RuntimeError("the uplift model is not fitted: call fit() or UpliftModel.load() first")

    @property
    def actions(self) -> list[str]:
        """The actions the model speaks for, sorted."""
        self._check_fitted()
        return sorted(self.effects_)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Per customer (row of ``features``) and action (column), the change in the chance of buying within the
        horizon that contact with the action makes."""
        self._check_fitted()
        x = feature_matrix(features, self.feature_names_, self.categories_)
        untreated = self.boosters_[BASELINE].predict(x)
        out = {name: np.full(len(features), e.average) if e.kind == "average" else self.boosters_[name].predict(x) - untreated
               for name, e in self.effects_.items()}
        return pd.DataFrame(out, index=features.index)[self.actions]

    def buy_probability(self, features: pd.DataFrame) -> np.ndarray:
        """Per customer, the chance of buying within the horizon without contact (1 - churn risk)."""
        self._check_fitted()
        return self.boosters_[BASELINE].predict(feature_matrix(features, self.feature_names_, self.categories_))

    def save(self, path: str | Path, *, info: Mapping[str, Any]) -> Path:
        """Write the model file atomically, with ``info`` (population, feature config, horizon, scorecard)."""
        self._check_fitted()
        document = {"format": FORMAT, "feature_names": self.feature_names_, "categories": self.categories_,
                    "effects": [asdict(e) for e in self.effects_.values()], "min_customers": self.min_customers,
                    "boosters": sorted(self.boosters_), "info": dict(info)}
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(UPLIFT_JSON, json.dumps(document, indent=1, default=str))
            for i, name in enumerate(sorted(self.boosters_)):
                zf.writestr(f"booster_{i}.txt", self.boosters_[name].model_to_string())
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> UpliftModel:
        """Read a model file written by :meth:`save` (``info`` in :attr:`info_`).

        Raises:
            UpliftModelError: the file is missing, not an uplift model, or damaged.
        """
        import lightgbm as lgb

        path = Path(path)
        if not path.is_file():
            raise UpliftModelError(f"{path}: uplift model file not found")
        try:
            with zipfile.ZipFile(path) as zf:
                if UPLIFT_JSON not in zf.namelist() and "manifest.json" in zf.namelist():  # a ChurnModel's file
                    raise UpliftModelError(f"{path}: this is a churn model ('churnguard train'), not an uplift "
                                           "model; train one with 'churnguard train-uplift'")
                document = json.loads(zf.read(UPLIFT_JSON))
                if document.get("format") != FORMAT:
                    raise ValueError(f"format {document.get('format')!r}, expected {FORMAT!r}")
                boosters = {name: lgb.Booster(model_str=zf.read(f"booster_{i}.txt").decode())
                            for i, name in enumerate(document["boosters"])}
        except UpliftModelError:
            raise
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, lgb.basic.LightGBMError) as exc:
            raise UpliftModelError(f"{path}: not a churnguard uplift model ({type(exc).__name__}: {exc}); "
                                   "train one with 'churnguard train-uplift'") from None
        model = cls(min_customers=document["min_customers"])
        model.feature_names_, model.categories_ = document["feature_names"], document["categories"]
        model.effects_ = {e["action"]: Effect(**e) for e in document["effects"]}
        model.boosters_, model.info_ = boosters, document["info"]
        return model
