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
- beyond the support (optional, :class:`BeyondSupport`): a customer silent longer than any customer the model
  learned from gets, instead, the chance of no purchase in the horizon of the purchases' seasonal Pareto/NBD
  (:class:`SeasonalParetoNBD`), which, unlike trees, follows a silence past the ones it saw; the day it is
  computed as of is the input's ``as_of`` column, else the day the model was trained as of. This part also
  imports SciPy (a requirement of LightGBM).
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
GRID = 16  # quantiles per Gamma distribution in the Pareto/NBD's mixing grid
_MONTH = 12 / 365.25  # a day in months
_CHUNK = 16_384  # customers per block of the Pareto/NBD's grid (a block holds about 100 MB of it)
_HISTORY = ("recency_days", "bg_age_days", "bg_frequency")  # the features a purchase history is read from


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
                  categories: Mapping[str, Sequence[Any]], rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`feature_matrix` from columns already typed: float64 numbers, and for categorical features
    integer codes into the training levels (-1 when unknown). Absent features are NaN. ``rows``: a mask of
    the columns' entries to take (``n`` of them)."""
    if rows is not None:
        return _gathered(columns, n, feature_names, categories, rows)
    absent = np.full(n, np.nan)
    stack = [columns.get(c, absent) for c in feature_names]
    for c in categories:  # codes: -1 is unknown
        if c in columns and c in feature_names:
            at = feature_names.index(c)
            stack[at] = np.where(stack[at] >= 0, stack[at], np.nan)
    return np.array(stack, dtype=np.float64).reshape(len(feature_names), n).T  # one copy, column-major


def _gathered(columns: Mapping[str, np.ndarray], n: int, feature_names: Sequence[str],
              categories: Mapping[str, Sequence[Any]], rows: np.ndarray) -> np.ndarray:
    """:func:`column_matrix` of the entries ``rows`` (a mask) of the columns, each number column's gathered
    straight into the matrix (not copied out first and then stacked: a 95 MB copy less for each of the 1M
    world's partitions: 0.07-0.08 against 0.15-0.18 s of CPU, benchmarks/HISTORY.md, twenty-first day)."""
    out = np.empty((len(feature_names), n))  # a row per feature: column-major once transposed
    for j, name in enumerate(feature_names):
        values = columns.get(name)
        if values is None:
            out[j] = np.nan
        elif name not in categories and np.asarray(values).dtype == np.float64:
            np.compress(rows, values, out=out[j])
        else:
            out[j] = column_matrix({name: np.asarray(values)[rows]}, n, [name], categories)[:, 0]
    return out.T


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


# -- the purchases' seasonal model, for customers silent longer than the model learned from --------------


def day_number(day: Any) -> int:
    """Days since 1970-01-01 of a date (a ``Timestamp``, ``datetime64`` or ISO text), its time of day dropped."""
    return int(np.datetime64(pd.Timestamp(day).normalize().date(), "D").astype(np.int64))


@dataclass(frozen=True)
class Histories:
    """Customers' purchase days (days since 1970-01-01): the first, the last and the number of repeat days."""

    first: np.ndarray
    last: np.ndarray
    repeats: np.ndarray

    @classmethod
    def of_features(cls, features: Mapping[str, Any], today: Any) -> Histories:
        """The histories of customers with a purchase from their features as of ``today`` (``bg_age_days``,
        ``recency_days``: ages of the first and newest purchase days; ``bg_frequency``: repeat days)."""
        day = day_number(today)
        return cls(day - np.asarray(features["bg_age_days"], dtype="float64").astype("int64"),
                   day - np.asarray(features["recency_days"], dtype="float64").astype("int64"),
                   np.asarray(features["bg_frequency"], dtype="float64"))

    def __getitem__(self, rows: Any) -> Histories:
        return Histories(self.first[rows], self.last[rows], self.repeats[rows])


def calendar_month(days: np.ndarray) -> np.ndarray:
    """0 for January .. 11 for December, of day numbers."""
    return np.asarray(days, dtype="int64").astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12


def clock_origin(first: np.ndarray) -> int:
    """The day the seasonal clock starts: 1970-01-01 (day 0), or the earliest of the ``first`` purchase days
    when before it; a fixed day, so a customer's clock readings, and their probability, are the same whichever
    customers are computed with them."""
    return min(0, int(np.min(first))) if len(first) else 0


def seasonal_clock(season: np.ndarray, months: np.ndarray) -> np.ndarray:
    """Seasonal months elapsed from the start of a run of days (their calendar ``months``,
    :func:`calendar_month`) to the start of each of them and of the day after the last."""
    return np.concatenate([[0.0], np.cumsum(season[months] * _MONTH)])


def gamma_grid(r: float, alpha: float, s: float, beta: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The mixing grid: ``k`` mid-quantiles of ``Gamma(r, alpha)`` (a column) and of ``Gamma(s, beta)`` (a row)."""
    from scipy.stats import gamma

    q = (np.arange(k) + 0.5) / k
    return gamma.ppf(q, r, scale=1 / alpha)[:, None], gamma.ppf(q, s, scale=1 / beta)[None, :]


def log_terms(lam: np.ndarray, mu: np.ndarray, clock: np.ndarray, h: Histories, origin: int, today: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per customer and grid point, the log-likelihood of the history ending alive at the end of ``today``,
    and ending gone between the last purchase and then (Pareto/NBD on the seasonal ``clock``)."""
    first, last, now = clock[h.first - origin], clock[h.last - origin], clock[today + 1 - origin]
    total = (lam + mu)[None]
    t, tx = (now - first)[:, None, None], (last - first)[:, None, None]
    base = h.repeats[:, None, None] * np.log(lam)[None]
    alive = base - total * t
    with np.errstate(divide="ignore"):  # bought today: no time to leave, log 0
        gone = base + np.log(mu / (lam + mu))[None] - total * tx + np.log(-np.expm1(-total * (t - tx)))
    return alive, gone


@dataclass(frozen=True)
class SeasonalParetoNBD:
    """A Pareto/NBD on a seasonal clock: while alive, a customer buys at rate ``lam * s(t)`` and leaves at rate
    ``mu * s(t)``, with ``lam ~ Gamma(r, alpha)`` and ``mu ~ Gamma(s, beta)`` across customers (time in months)
    and ``s(t)`` one value per calendar month, ``season`` January..December (mean 1). Fitted by
    ``churnguard.training.seasonal``."""

    r: float
    alpha: float
    s: float
    beta: float
    season: tuple[float, ...]

    def facts(self) -> dict[str, Any]:
        """For the summary, the model card and the model file (:meth:`from_facts` reads it back)."""
        return {"r": self.r, "alpha": self.alpha, "s": self.s, "beta": self.beta, "season": list(self.season)}

    @classmethod
    def from_facts(cls, data: Mapping[str, Any]) -> SeasonalParetoNBD:
        """Parse :meth:`facts`; a missing or bad field raises KeyError, TypeError or ValueError."""
        season = tuple(float(v) for v in data["season"])
        if len(season) != 12:
            raise ValueError(f"a season has 12 months, not {len(season)}")
        return cls(float(data["r"]), float(data["alpha"]), float(data["s"]), float(data["beta"]), season)

    def no_purchase(self, h: Histories, today: Any, horizon: int, grid: int = GRID) -> np.ndarray:
        """Each customer's chance of no purchase in the ``horizon`` days after ``today``: the posterior chance of
        "gone by today" plus "alive today and no purchase before leaving or the horizon's end", the horizon's
        months taking the season's value of the same calendar month. Computed in blocks of customers."""
        from scipy.special import logsumexp

        today = day_number(today)
        origin = clock_origin(h.first)
        clock = seasonal_clock(np.asarray(self.season), calendar_month(np.arange(origin, today + horizon + 2)))
        lam, mu = gamma_grid(self.r, self.alpha, self.s, self.beta, grid)
        span = clock[today + horizon + 1 - origin] - clock[today + 1 - origin]
        total = lam + mu
        quiet = np.log(mu / total * -np.expm1(-total * span) + np.exp(-total * span))[None]
        out = np.empty(len(h.first))
        for start in range(0, len(out), _CHUNK):
            alive, gone = log_terms(lam, mu, clock, h[start:start + _CHUNK], origin, today)
            gone = logsumexp(gone, axis=(1, 2))
            out[start:start + _CHUNK] = np.exp(np.logaddexp(gone, logsumexp(alive + quiet, axis=(1, 2)))
                                               - np.logaddexp(gone, logsumexp(alive, axis=(1, 2))))
        return out


@dataclass(frozen=True)
class BeyondSupport:
    """Who the purchases' model scores instead of the trees: customers silent longer than ``support_days``,
    the longest silence a customer the model learned from could have (trees do not extrapolate: they would
    get the probability of that silence, too low for them).

    Attributes:
        support_days: the longest silence (days since the last purchase) the model learned from.
        horizon_days: the model's horizon.
        as_of: the day the model was trained as of (ISO), used for an input without an ``as_of`` column.
        purchases: the purchases' seasonal model.
    """

    support_days: int
    horizon_days: int
    as_of: str
    purchases: SeasonalParetoNBD

    def rows(self, history: Mapping[str, np.ndarray], probability: np.ndarray) -> np.ndarray:
        """The customers (a mask) with a probability and a purchase history (``recency_days``, ``bg_age_days``
        and ``bg_frequency`` known) whose silence is beyond the support."""
        known = np.isfinite(history["bg_age_days"]) & np.isfinite(history["bg_frequency"])
        return ~np.isnan(probability) & known & (np.nan_to_num(history["recency_days"], nan=-1.0) > self.support_days)

    def apply(self, probability: np.ndarray, features: Mapping[str, Any], as_of: Any = None,
              horizon: int | None = None) -> np.ndarray:
        """``probability`` (one per customer of ``features``, NaN for a customer without one) with the
        customers beyond the support given the purchases' chance of no purchase in ``horizon`` days (the
        model's horizon by default) after ``as_of`` (one day, or one per customer; by default the features'
        ``as_of`` column, else :attr:`as_of`). Features without ``recency_days``, ``bg_age_days`` or
        ``bg_frequency`` leave it as it is."""
        if any(c not in features for c in _HISTORY):
            return probability
        history = {c: np.asarray(features[c], dtype="float64") for c in _HISTORY}
        beyond = self.rows(history, probability)
        if not beyond.any():
            return probability
        if as_of is None:
            as_of = features.get("as_of", self.as_of)
        stamps = pd.to_datetime([as_of] if np.ndim(as_of) == 0 else np.asarray(as_of))
        days = np.broadcast_to(stamps.to_numpy().astype("datetime64[D]"), beyond.shape)
        out = np.array(probability, dtype="float64")
        chosen = {c: v[beyond] for c, v in history.items()}
        rows, day = beyond.nonzero()[0], days[beyond]
        for today in np.unique(day):
            mine = day == today
            h = Histories.of_features({c: v[mine] for c, v in chosen.items()}, today)
            out[rows[mine]] = self.purchases.no_purchase(h, today, horizon or self.horizon_days)
        return out

    def apply_curve(self, probabilities: np.ndarray, features: Mapping[str, Any], horizons: Sequence[int],
                    as_of: Any = None) -> np.ndarray:
        """:meth:`apply` to each column of a churn curve (rows x ``horizons``); still non-increasing along each
        row, since the purchases' chance of no purchase falls with the horizon."""
        return np.column_stack([self.apply(probabilities[:, k], features, as_of, h) for k, h in enumerate(horizons)]
                               ) if len(horizons) else probabilities

    def to_dict(self) -> dict[str, Any]:
        """The JSON part (``model.json``'s ``beyond_support``)."""
        return {"support_days": self.support_days, "horizon_days": self.horizon_days, "as_of": self.as_of,
                "purchases": self.purchases.facts()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BeyondSupport:
        """Parse :meth:`to_dict`'s output; a missing or bad field raises KeyError, TypeError or ValueError."""
        return cls(int(data["support_days"]), int(data["horizon_days"]), str(pd.Timestamp(data["as_of"]).date()),
                   SeasonalParetoNBD.from_facts(data["purchases"]))


# -- the model file ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandaloneModel:
    """A churn model as the model file's ``model.json`` and ``booster.txt`` hold it.

    ``document`` is the whole parsed ``model.json`` (churnguard reads its settings and training info from it).
    The booster holds only the trees up to the best iteration, so LightGBM predicts with all of them.
    ``curve``: the churn curve, when the model was trained with several horizons. ``beyond``: who the purchases'
    model scores instead of the trees, when training fitted one (:class:`BeyondSupport`).
    """

    booster: Any
    feature_names: list[str]
    categories: dict[str, list[Any]]
    calibrator: Calibrator
    best_iteration: int
    document: Mapping[str, Any]
    curve: Curve | None = None
    beyond: BeyondSupport | None = None

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
        beyond = BeyondSupport.from_dict(doc["beyond_support"]) if doc.get("beyond_support") else None
        return cls(lgb.Booster(model_str=booster_txt.decode()), [str(c) for c in doc["feature_names"]], categories,
                   Calibrator.from_dict(doc["calibrator"]), int(doc["best_iteration"]), doc, curve, beyond)

    @classmethod
    def load(cls, path: str | Path) -> StandaloneModel:
        """Read a model file (no manifest checks: ``churnguard.model.ChurnModel.load`` makes them)."""
        with zipfile.ZipFile(path) as zf:
            curve = zf.read(CURVE_TXT) if CURVE_TXT in zf.namelist() else None
            return cls.from_members(zf.read(MODEL_JSON), zf.read(BOOSTER_TXT), curve)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn, one value per row of model features (an optional ``as_of`` column:
        the day each row's features are as of, for the customers :attr:`beyond` the support)."""
        raw = self.booster.predict(feature_matrix(features, self.feature_names, self.categories))
        proba = self.calibrator.probability(raw)
        return proba if self.beyond is None else self.beyond.apply(proba, features)

    def predict(self, features: pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """The MLflow model's output: :meth:`predict_proba`; with a curve, a frame of ``churn_probability``
        and one ``churn_probability_<h>d`` column per horizon."""
        proba = self.predict_proba(features)
        if self.curve is None:
            return proba
        curve = self.curve.predict(features)
        if self.beyond is not None:
            curve[:] = self.beyond.apply_curve(curve.to_numpy(), features, self.curve.horizons)
        return pd.concat([pd.DataFrame({"churn_probability": proba}, index=features.index), curve],
                         axis=1).reset_index(drop=True)
