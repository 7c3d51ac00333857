"""The churn model's predict-time rules, written once: input preparation and calibration.

:class:`churnguard.model.ChurnModel` uses them, and the MLflow model logged by the training run ships this file
(``code_paths``) next to LightGBM's text model and a JSON file, so the registered model predicts the same
probabilities on a machine without churnguard. It therefore imports only numpy, pandas and (when loading a
booster) LightGBM, never churnguard.

The rules:

- inputs: the training features in training order; a categorical is its position in the training levels,
  missing or unseen levels and missing columns are unknown (NaN); numbers are coerced to float64 (text that is
  not a number is unknown).
- calibration: isotonic steps (``np.interp``) clipped to ``[PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR]``, or
  Platt's sigmoid on the logit of LightGBM's probability; the probability returned is clipped to ``[0, 1]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROBABILITY_FLOOR = 0.005  # isotonic probabilities stay within [0.005, 0.995]
SPEC_FORMAT = 1
BOOSTER_FILE = "booster.txt"
SPEC_FILE = "model_spec.json"


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p kept 1e-7 away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """Monotone map from LightGBM's probability to a calibrated one: isotonic steps or Platt's sigmoid."""

    kind: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    coef: float = 1.0
    intercept: float = 0.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.kind == "isotonic":
            # Isotonic steps at the ends rest on few customers; never claim certainty from them.
            return np.clip(np.interp(raw, self.x, self.y), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
        return 1.0 / (1.0 + np.exp(-(self.coef * logit(raw) + self.intercept)))

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """The churn probability the model returns for LightGBM's probabilities ``raw``."""
        return np.clip(self(raw), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        return cls(str(data["kind"]), tuple(map(float, data.get("x", ()))), tuple(map(float, data.get("y", ()))),
                   float(data.get("coef", 1.0)), float(data.get("intercept", 0.0)))


def category_codes(values: pd.Series, levels: Sequence[Any]) -> np.ndarray:
    """Each value's position in the training ``levels``; -1 when missing or not one of them."""
    if isinstance(values.dtype, pd.CategoricalDtype) and list(values.cat.categories) == list(levels):
        return values.cat.codes.to_numpy(dtype=np.int64)
    values = values.astype("object")
    known = values.isin(levels)  # unseen levels are unknown, like missing ones
    return pd.Categorical(values.where(known, None), categories=levels).codes.astype(np.int64)


def numbers(values: pd.Series) -> np.ndarray:
    """A numeric feature as float64; missing values and text that is not a number become NaN."""
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def feature_matrix(features: pd.DataFrame, feature_names: Sequence[str],
                   categories: Mapping[str, Sequence[Any]]) -> np.ndarray:
    """The model inputs as one float64 array (rows x features, column-major), what LightGBM predicts from:
    categoricals as their position in the training levels, NaN when unknown."""
    columns = {c: category_codes(features[c], categories[c]) if c in categories else numbers(features[c])
               for c in feature_names if c in features.columns}
    return column_matrix(columns, len(features), feature_names, categories)


def column_matrix(columns: Mapping[str, np.ndarray], n: int, feature_names: Sequence[str],
                  categories: Mapping[str, Sequence[Any]]) -> np.ndarray:
    """:func:`feature_matrix` from columns already typed: float64 numbers, and for categorical features
    integer codes into the training levels (-1 when unknown). Absent features are NaN."""
    out = np.full((n, len(feature_names)), np.nan, dtype=np.float64, order="F")
    for j, c in enumerate(feature_names):
        if c not in columns:
            continue
        values = columns[c]
        out[:, j] = np.where(values >= 0, values, np.nan) if c in categories else values
    return out


# -- the files of the MLflow model ---------------------------------------------------------------------------


def write_model_files(directory: str | Path, *, booster_text: str, feature_names: Sequence[str],
                      categories: Mapping[str, Sequence[Any]], calibrator: Calibrator) -> dict[str, str]:
    """Write LightGBM's text model and the JSON spec (features, levels, calibrator) into ``directory``;
    returns their paths by artifact name."""
    directory = Path(directory)
    booster, spec = directory / BOOSTER_FILE, directory / SPEC_FILE
    booster.write_text(booster_text)
    spec.write_text(json.dumps({
        "format": SPEC_FORMAT,
        "feature_names": list(feature_names),
        "categories": {c: list(levels) for c, levels in categories.items()},
        "calibrator": calibrator.to_dict(),
    }, indent=2))
    return {"booster": str(booster), "spec": str(spec)}


class StandaloneModel:
    """A churn model read from :func:`write_model_files`' files: LightGBM, the input rules and the calibrator.

    The booster file holds only the trees up to the best iteration, so LightGBM predicts with all of them.
    """

    def __init__(self, booster: Any, feature_names: Sequence[str], categories: Mapping[str, Sequence[Any]],
                 calibrator: Calibrator) -> None:
        self.booster = booster
        self.feature_names = list(feature_names)
        self.categories = {c: list(levels) for c, levels in categories.items()}
        self.calibrator = calibrator

    @classmethod
    def load(cls, booster_path: str | Path, spec_path: str | Path) -> StandaloneModel:
        import lightgbm as lgb

        spec = json.loads(Path(spec_path).read_text())
        if spec.get("format") != SPEC_FORMAT:
            raise ValueError(f"{spec_path}: model spec format {spec.get('format')}, expected {SPEC_FORMAT}")
        return cls(lgb.Booster(model_file=str(booster_path)), spec["feature_names"], spec["categories"],
                   Calibrator.from_dict(spec["calibrator"]))

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn, one value per row of model features."""
        raw = self.booster.predict(feature_matrix(features, self.feature_names, self.categories))
        return self.calibrator.probability(raw)
