"""The churn model's predict-time rules and the reader of its model file, written once.

:class:`churnguard.model.ChurnModel` uses them, and the MLflow model ships this file (``code_paths``) with the
model file as its artifact, so it predicts the same probabilities without churnguard: it imports only the
standard library, numpy, pandas and (when loading) LightGBM.

- inputs: the training features in training order; a categorical is its position in the training levels,
  missing or unseen levels and missing columns are unknown (NaN); numbers are coerced to float64 (text that is
  not a number is unknown).
- the churn curve (optional, :class:`Curve`): one LightGBM model whose inputs are the features plus
  ``horizon_days``, with a calibrator per horizon; each customer's probabilities over the horizons never rise
  (no purchase within 180 days implies none within 30), by construction and after calibration
  (:func:`monotone_curve`).
- calibration: Platt's sigmoid on the logit of LightGBM's probability (strictly increasing: it keeps the
  model's order), or isotonic steps (``np.interp``, which tie every customer on a step) clipped to
  ``[PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR]``; then the level correction (``Calibrator.shift``: added to
  the log-odds, the same for every customer; ``Calibrator.power``: the probability raised to it, a purchase
  intensity ratio; both keep the order); the probability returned is clipped to ``[0, 1]``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROBABILITY_FLOOR = 0.005  # isotonic probabilities stay within [0.005, 0.995]
MODEL_JSON = "model.json"  # features, levels, best iteration, calibrator, settings, training info
BOOSTER_TXT = "booster.txt"  # LightGBM's text model, up to the best iteration
CURVE_TXT = "curve_booster.txt"  # the churn curve's LightGBM text model (only in a model with a curve)
HORIZON_FEATURE = "horizon_days"  # the churn curve model's input that holds the horizon


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p kept 1e-7 away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype="float64"), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """Monotone map from LightGBM's probability to a calibrated one.

    ``sigmoid``: ``1 / (1 + exp(-(coef * logit(raw) + intercept)))``, strictly increasing in ``raw`` when
    ``coef > 0``, so customers keep the model's order and tie only where their raw scores tie. ``isotonic``:
    steps through the points (``x``, ``y``), clipped to ``[PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR]``.
    ``shift``: the churn level of the period scored, added to the calibrated log-odds (0: none); ``power``:
    the calibrated probability raised to it (1: none), the Poisson view of a period whose purchase intensity
    differs from the one the calibration saw (``P(no purchase) = exp(-rate)``, so a rate ``r`` times as high
    gives ``p ** r``). Both are chosen by :mod:`churnguard.training.level`; both keep the order.
    """

    kind: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    coef: float = 1.0
    intercept: float = 0.0
    shift: float = 0.0
    power: float = 1.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.kind == "isotonic":
            # Isotonic steps at the ends rest on few customers; never claim certainty from them.
            p = np.clip(np.interp(raw, self.x, self.y), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
            p = p if self.shift == 0.0 else 1.0 / (1.0 + np.exp(-(logit(p) + self.shift)))
        else:
            with np.errstate(over="ignore"):  # a steep fit's exp(710+) is inf: the probability is 0.0, rightly
                p = 1.0 / (1.0 + np.exp(-(self.coef * logit(raw) + self.intercept + self.shift)))
        return p if self.power == 1.0 else p**self.power

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """The churn probability the model returns for LightGBM's probabilities ``raw``."""
        return np.clip(self(raw), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values; :meth:`from_dict` round-trips them exactly (JSON writes floats with ``repr``)."""
        return {**asdict(self), "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        """Parse :meth:`to_dict`'s output (``shift`` 0 and ``power`` 1 when absent: a model without a level
        correction); a missing or bad field raises KeyError, TypeError or ValueError."""
        return cls(str(data["kind"]), tuple(map(float, data["x"])), tuple(map(float, data["y"])),
                   float(data["coef"]), float(data["intercept"]), float(data.get("shift", 0.0)),
                   float(data.get("power", 1.0)))


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
    absent = np.full(n, np.nan)
    stack = [absent if c not in columns else np.where(columns[c] >= 0, columns[c], np.nan) if c in categories
             else columns[c] for c in feature_names]
    return np.array(stack, dtype=np.float64).reshape(len(feature_names), n).T  # one copy, column-major


def curve_column(horizon: int) -> str:
    """The output column of the churn probability within ``horizon`` days, e.g. ``churn_probability_30d``."""
    return f"churn_probability_{horizon}d"


def monotone_curve(probabilities: np.ndarray) -> np.ndarray:
    """Each row (one customer, columns in increasing horizon) made non-increasing: the running minimum from
    the shortest horizon on. Per-horizon calibration can cross a curve that the model kept monotone; the
    probability of no purchase within a longer window can never exceed that within a shorter one."""
    return np.minimum.accumulate(np.asarray(probabilities, dtype="float64"), axis=1)


@dataclass(frozen=True)
class Curve:
    """The churn curve: LightGBM over the features and ``horizon_days`` (monotone non-increasing in it), and a
    calibrator per horizon.

    Attributes:
        booster: the LightGBM booster (every tree is used).
        feature_names: its inputs in training order, ``HORIZON_FEATURE`` among them.
        categories: the levels of its categorical inputs.
        horizons: the horizons in days, increasing.
        calibrators: one per horizon, in the order of ``horizons``.
    """

    booster: Any
    feature_names: list[str]
    categories: dict[str, list[Any]]
    horizons: tuple[int, ...]
    calibrators: tuple[Calibrator, ...]

    @property
    def columns(self) -> list[str]:
        """The output columns, in the order of :attr:`horizons`."""
        return [curve_column(h) for h in self.horizons]

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated churn probabilities (rows x horizons, non-increasing along each row) of the inputs
        ``matrix`` (:func:`column_matrix` over :attr:`feature_names`; the horizon column is filled here)."""
        if len(matrix) == 0:
            return np.zeros((0, len(self.horizons)))
        raw = self.raw(matrix)
        return monotone_curve(np.column_stack([c.probability(r) for c, r in zip(self.calibrators, raw, strict=True)]))

    def raw(self, matrix: np.ndarray) -> np.ndarray:
        """LightGBM's probabilities (horizons x rows, before calibration) of the inputs ``matrix``."""
        n, at = len(matrix), self.feature_names.index(HORIZON_FEATURE)
        stacked = np.tile(np.asarray(matrix, dtype="float64"), (len(self.horizons), 1))
        stacked[:, at] = np.repeat(np.asarray(self.horizons, dtype="float64"), n)
        threads = {"num_threads": 1} if n <= 16 else {}
        return self.booster.predict(stacked, **threads).reshape(len(self.horizons), n)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """:meth:`probabilities` of rows of features (as :func:`feature_matrix` reads them), one column per
        horizon."""
        matrix = feature_matrix(features, self.feature_names, self.categories)
        return pd.DataFrame(self.probabilities(matrix), columns=self.columns, index=features.index)

    def to_dict(self) -> dict[str, Any]:
        """The JSON part (``model.json``'s ``curve``); the booster is written as ``CURVE_TXT``."""
        return {"feature_names": list(self.feature_names),
                "categories": {c: list(v) for c, v in self.categories.items()},
                "horizons": list(self.horizons), "calibrators": [c.to_dict() for c in self.calibrators]}

    @classmethod
    def from_members(cls, data: Mapping[str, Any], booster_txt: bytes) -> Curve:
        """Parse :meth:`to_dict`'s output and the booster's text.

        Raises:
            KeyError, TypeError, ValueError, lightgbm.basic.LightGBMError: they do not hold a churn curve.
        """
        import lightgbm as lgb

        horizons = tuple(int(h) for h in data["horizons"])
        calibrators = tuple(Calibrator.from_dict(c) for c in data["calibrators"])
        names = [str(c) for c in data["feature_names"]]
        if len(calibrators) != len(horizons) or list(horizons) != sorted(set(horizons)) or HORIZON_FEATURE not in names:
            raise ValueError("the churn curve's horizons, calibrators or inputs do not match")
        return cls(lgb.Booster(model_str=booster_txt.decode()), names,
                   {str(c): list(v) for c, v in data["categories"].items()}, horizons, calibrators)


# -- the model file ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandaloneModel:
    """A churn model as the model file's ``model.json`` and ``booster.txt`` hold it.

    ``document`` is the whole parsed ``model.json`` (churnguard reads its settings and training info from it).
    The booster holds only the trees up to the best iteration, so LightGBM predicts with all of them.
    ``curve``: the churn curve, when the model was trained with several horizons.
    """

    booster: Any
    feature_names: list[str]
    categories: dict[str, list[Any]]
    calibrator: Calibrator
    best_iteration: int
    document: Mapping[str, Any]
    curve: Curve | None = None

    @classmethod
    def from_members(cls, model_json: bytes, booster_txt: bytes, curve_txt: bytes | None = None) -> StandaloneModel:
        """Parse the members (``curve_txt``: the curve's booster, needed when ``model.json`` has a ``curve``).

        Raises:
            KeyError, TypeError, ValueError, lightgbm.basic.LightGBMError: they do not hold a churn model.
        """
        import lightgbm as lgb

        doc = json.loads(model_json)
        categories = {str(c): list(levels) for c, levels in doc["categories"].items()}
        if "curve" in doc and curve_txt is None:
            raise KeyError(CURVE_TXT)
        curve = Curve.from_members(doc["curve"], curve_txt) if "curve" in doc else None
        return cls(lgb.Booster(model_str=booster_txt.decode()), [str(c) for c in doc["feature_names"]], categories,
                   Calibrator.from_dict(doc["calibrator"]), int(doc["best_iteration"]), doc, curve)

    @classmethod
    def load(cls, path: str | Path) -> StandaloneModel:
        """Read a model file (no manifest checks: ``churnguard.model.ChurnModel.load`` makes them)."""
        with zipfile.ZipFile(path) as zf:
            curve = zf.read(CURVE_TXT) if CURVE_TXT in zf.namelist() else None
            return cls.from_members(zf.read(MODEL_JSON), zf.read(BOOSTER_TXT), curve)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn, one value per row of model features."""
        raw = self.booster.predict(feature_matrix(features, self.feature_names, self.categories))
        return self.calibrator.probability(raw)

    def predict(self, features: pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """The MLflow model's output: :meth:`predict_proba`; with a curve, a frame of ``churn_probability``
        and one ``churn_probability_<h>d`` column per horizon."""
        proba = self.predict_proba(features)
        if self.curve is None:
            return proba
        return pd.concat([pd.DataFrame({"churn_probability": proba}, index=features.index),
                          self.curve.predict(features)], axis=1).reset_index(drop=True)
