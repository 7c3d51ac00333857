"""The churn curve: the probability that a customer makes no purchase within each of several horizons, from one
LightGBM model whose inputs are the features plus the horizon (``horizon_days``).

Churn within ``h`` days is "no purchase in ``(as_of, as_of + h]``", so a customer who churns within 180 days
churns within 30 too: each customer's curve can only fall as the horizon grows. The model keeps it so by
construction (LightGBM's monotone constraint -1 on ``horizon_days``: with every other input fixed, a longer
horizon never raises the score); each horizon then gets its own calibration, and the calibrated curve is made
non-increasing again by a running minimum (:func:`churnguard.model._modelcore.monotone_curve`).

Rows: each labelled snapshot row once per horizon ``h`` whose outcome window ``(d, d + h]`` has ended by the
day the rows are cut at, with ``horizon_days = h`` and ``churned`` = no purchase in that window. The other
inputs (BG/NBD ones included) are the main model's, the same at every horizon.

The procedure is the main model's (:mod:`churnguard.training.procedure`), with the snapshots of its plan:

* Trees: a tuning model learns the rows whose windows end by the validation day (the newest snapshot whose
  longest window has ended by today) and early-stops on that day's customers at every horizon.
* Deployment: LightGBM refitted with that many trees on every snapshot's rows whose windows end by today.
* Calibration: a calibrator per horizon, fitted on the cross-fitted scores
  (:func:`~churnguard.training.procedure.crossfit_scores`) of the calibration days' rows at that horizon.
* Level: per horizon, the corrections of :mod:`churnguard.training.level` (each snapshot's level at that
  horizon from the cross-fitted scores, forecast at today; the purchase intensity of that horizon's window).
* Backtest: the same procedure as of today minus the longest horizon, scored on that day's customers against
  what they did in each horizon after it: per horizon, the level correction with the lowest ECE (none unless
  one lowers it; ``intensity`` read from the outcome window as measured when its window a year earlier is
  before the data) and a scorecard. The deployed curve applies each horizon's chosen correction, forecast
  from its own snapshots; the running minimum keeps every curve non-increasing after it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from churnguard.model._modelcore import HORIZON_FEATURE, Curve, feature_matrix
from churnguard.model.calibration import fit_calibrator
from churnguard.model.info import CurveCard
from churnguard.training.evaluation import scorecard
from churnguard.training.level import Intensity, apply_level, choose_level, level_candidates, snapshot_offsets
from churnguard.training.procedure import (
    Plan,
    calibration_days,
    crossfit_scores,
    fit_rounds,
    new_model,
    plan_intensity,
    plan_training,
)

if TYPE_CHECKING:
    from churnguard.config import Config, ModelConfig

__all__ = ["CurveFit", "CurveRows", "curve_backtest_plan", "curve_rows", "fit_curve", "train_curve"]

logger = logging.getLogger(__name__)


class CurveRows(Protocol):
    """What the curve needs of an engine's rows (the local engine's :class:`~churnguard.training.run.LocalRows`)."""

    def whole(self, day: pd.Timestamp) -> pd.DataFrame:
        """Every labelled customer of the snapshot ``day`` (features and ``churned``)."""

    def crossfit_rows(self, plan: Plan) -> pd.DataFrame:
        """The rows of every snapshot of ``plan`` the deployed model learns from."""

    def churned(self, day: pd.Timestamp, horizon: int) -> pd.Series:
        """Per labelled customer of ``day`` (index ``customer_id``), 1 when they made no purchase in
        ``(day, day + horizon]``, else 0."""


@dataclass(frozen=True)
class CurveFit:
    """A fitted churn curve (without a level correction), the day its trees were chosen on, its rows, and per
    horizon the Brier score of its cross-fitted scores before and after calibration, each level correction's
    shift at the plan's today (:func:`~churnguard.training.level.level_candidates`) and the ``intensity``
    correction (None where the data does not allow it)."""

    curve: Curve
    validation_day: pd.Timestamp
    train_rows: int
    brier_raw: dict[int, float]
    brier: dict[int, float]
    levels: dict[int, dict[str, float]] = field(default_factory=dict)
    intensity: dict[int, Intensity | None] = field(default_factory=dict)

    def names(self, h: int) -> list[str]:
        """The level corrections that horizon ``h`` allows."""
        return [*self.levels.get(h, {"none": 0.0}), *(["intensity"] if self.intensity.get(h) else [])]

    def calibrator(self, h: int, name: str):
        """Horizon ``h``'s calibrator with the level correction ``name``."""
        base = self.curve.calibrators[self.curve.horizons.index(h)]
        return apply_level(base, name, self.levels.get(h, {}), self.intensity.get(h))

    def with_levels(self, chosen: dict[int, str]) -> Curve:
        """The curve with each horizon's chosen level correction."""
        return replace(self.curve, calibrators=tuple(self.calibrator(h, chosen[h]) for h in self.curve.horizons))


def curve_rows(frame: pd.DataFrame, source: CurveRows, horizons: tuple[int, ...], until: pd.Timestamp
               ) -> pd.DataFrame:
    """The rows of ``frame`` (``customer_id``, ``as_of``, features) once per horizon ``h`` whose window
    ``(as_of, as_of + h]`` ends by ``until``, with ``horizon_days = h`` and ``churned`` within ``h``."""
    parts = []
    for h in horizons:
        for day, rows in frame.groupby("as_of", sort=True):
            if day + pd.Timedelta(days=h) > until:
                continue
            churned = source.churned(day, h).reindex(rows["customer_id"].to_numpy())
            if churned.isna().any():
                raise ValueError(f"snapshot {day.date()}: rows of customers outside its labelled population")
            parts.append(rows.assign(churned=churned.to_numpy(dtype="int8"), **{HORIZON_FEATURE: float(h)}))
    if not parts:
        raise ValueError(f"no snapshot has an outcome window of {horizons[0]} days ending by {until.date()}")
    return pd.concat(parts, ignore_index=True)


def _curve_config(mc: ModelConfig) -> ModelConfig:
    """``mc`` with the horizon's monotone constraint: a longer window never raises the probability."""
    return mc.model_copy(update={"monotone_constraints": {**mc.monotone_constraints, HORIZON_FEATURE: -1}})


def _ready(plan: Plan, longest: int) -> list[pd.Timestamp]:
    """The snapshots of ``plan`` whose window of ``longest`` days has ended by ``plan.today``."""
    return [d for d in plan.snapshots if d + pd.Timedelta(days=longest) <= plan.today]


def _trainable(plan: Plan, shortest: int, longest: int) -> bool:
    """Whether :func:`fit_curve` has rows to learn from: a snapshot whose longest window has ended by
    ``plan.today`` (the tuning day), and one before it whose shortest window has ended by that day."""
    ready = _ready(plan, longest)
    return bool(ready) and any(d + pd.Timedelta(days=shortest) <= ready[-1] for d in plan.snapshots)


def fit_curve(source: CurveRows, plan: Plan, mc: ModelConfig, horizons: tuple[int, ...]) -> CurveFit:
    """The churn curve of ``plan``'s snapshots (see the module docstring).

    Raises:
        ValueError: no snapshot of ``plan`` has its longest window ended by ``plan.today``.
    """
    longest = pd.Timedelta(days=max(horizons))
    ready = _ready(plan, max(horizons))
    if not ready:
        raise ValueError(f"no training snapshot before {(plan.today - longest).date()}: the data is too short "
                         f"for a {max(horizons)}-day horizon of the churn curve; use shorter horizons")
    day, mc = ready[-1], _curve_config(mc)
    frame = source.crossfit_rows(plan)
    train = curve_rows(frame, source, horizons, day)
    valid = curve_rows(source.whole(day), source, horizons, plan.today)
    tuned = new_model(mc).fit(train, train["churned"], valid, valid["churned"])
    del train, valid
    deploy = curve_rows(frame, source, horizons, plan.today)
    raw, y = crossfit_scores(deploy, plan.snapshots, tuned, mc)
    calibrators, brier_raw, brier, levels, intensity = [], {}, {}, {}, {}
    on_days = deploy["as_of"].isin(calibration_days(plan)).to_numpy()
    for h in horizons:
        rows = deploy[HORIZON_FEATURE].to_numpy() == h
        fitted = rows & on_days if (rows & on_days).any() else rows  # the season's rows, else every row of h
        calibrators.append(fit_calibrator(mc.calibration, raw[fitted], y[fitted]))
        brier_raw[h] = float(np.mean((raw[fitted] - y[fitted]) ** 2))
        brier[h] = float(np.mean((calibrators[-1].probability(raw[fitted]) - y[fitted]) ** 2))
        offsets = snapshot_offsets(calibrators[-1].probability(raw[rows]), y[rows], deploy["as_of"].to_numpy()[rows])
        levels[h] = level_candidates(offsets, plan.today, plan.season)
        intensity[h] = plan_intensity(source, plan, horizon=h)
    booster = fit_rounds(mc, deploy, tuned)
    curve = Curve(booster, list(tuned.feature_names_), dict(tuned.categories_), horizons, tuple(calibrators))
    return CurveFit(curve, day, len(deploy), brier_raw, brier, levels, intensity)


def curve_backtest_plan(first_day: pd.Timestamp, today: pd.Timestamp, config: Config) -> Plan:
    """The plan of the curve's backtest: the training procedure as of ``today`` minus the longest horizon.

    Raises:
        ValueError: the data before that day is too short to train on (no plan, or it or ``today``'s plan has
            no rows for :func:`fit_curve`: :func:`_trainable`), naming the longest horizon it allows; checked
            before any training.
    """
    horizons, labels, snapshots = config.labels.horizons, config.labels, config.snapshots
    as_of = today - pd.Timedelta(days=max(horizons))

    def plan_for(h: int) -> Plan | None:
        try:
            back = plan_training(first_day, today - pd.Timedelta(days=h), labels, snapshots)
            now = plan_training(first_day, today, labels, snapshots)
        except ValueError:
            return None
        shortest = min(min(horizons), h)
        return back if _trainable(back, shortest, h) and _trainable(now, shortest, h) else None

    if (found := plan_for(max(horizons))) is not None:
        return found

    def fits(h: int) -> bool:
        return plan_for(h) is not None

    low, high = 0, max(horizons)  # the longest horizon that fits, by bisection (fits(0) may fail too)
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    advice = (f"choose horizons of at most {low:,} days (--horizons, labels.horizons)" if low > 0
              else "the data is too short for a churn curve's backtest: provide more history")
    raise ValueError(f"the churn curve is backtested as of {as_of.date()}, its longest horizon ({max(horizons):,} "
                     f"days) before {pd.Timestamp(today).date()}, and the data from {pd.Timestamp(first_day).date()} "
                     f"is too short to train on up to that day; {advice}")


def train_curve(source: CurveRows, first_day: pd.Timestamp, plan: Plan, config: Config) -> tuple[Curve, CurveCard]:
    """The deployed churn curve of ``plan`` and its card: the backtest (the same procedure as of
    ``plan.today`` minus the longest horizon, scored per horizon on that day's customers, with the level
    correction it chooses per horizon) and the calibration and level correction of each horizon. ``source``
    must hold data up to ``plan.today``."""
    horizons = config.labels.horizons
    back_plan = curve_backtest_plan(first_day, plan.today, config)
    as_of = back_plan.today
    backtest = fit_curve(source, back_plan, config.model, horizons)
    backtest = replace(backtest, intensity={  # without its own, the window after as_of as measured
        h: found or plan_intensity(source, back_plan, measured=True, horizon=h)
        for h, found in backtest.intensity.items()})
    test = source.whole(as_of)
    outcomes = {h: source.churned(as_of, h).reindex(test["customer_id"].to_numpy()).to_numpy() for h in horizons}
    chosen, eces = _choose_levels(backtest, test, outcomes)
    probabilities = backtest.with_levels(chosen).predict(test)
    cards = {h: scorecard(outcomes[h], probabilities[c].to_numpy())
             for h, c in zip(horizons, backtest.curve.columns, strict=True)}
    fit = fit_curve(source, plan, config.model, horizons)
    curve = fit.with_levels(chosen)
    calibration = {h: {**c.to_dict(), "brier_raw": fit.brier_raw[h], "brier": fit.brier[h],
                       "level_correction": chosen[h], "level_backtest_ece": eces[h],
                       "level_intensity": {} if fit.intensity[h] is None else fit.intensity[h].facts()}
                   for h, c in zip(horizons, curve.calibrators, strict=True)}
    card = CurveCard(horizons=horizons, backtest_as_of=str(as_of.date()), validation_day=str(fit.validation_day.date()),
                     train_rows=fit.train_rows, scorecards=cards, calibration=calibration)
    return curve, card


def _choose_levels(backtest: CurveFit, test: pd.DataFrame, outcomes: dict[int, np.ndarray]
                   ) -> tuple[dict[int, str], dict[int, dict[str, float]]]:
    """Per horizon, the level correction of ``backtest`` with the lowest ECE on its customers ``test`` against
    their ``outcomes`` at that horizon (none unless one is lower), and each one's ECE."""
    curve = backtest.curve
    raw = curve.raw(feature_matrix(test, curve.feature_names, curve.categories))
    chosen, eces = {}, {}
    for i, h in enumerate(curve.horizons):
        chosen[h], eces[h] = choose_level(outcomes[h], {name: backtest.calibrator(h, name).probability(raw[i])
                                                        for name in backtest.names(h)})
    return chosen, eces
