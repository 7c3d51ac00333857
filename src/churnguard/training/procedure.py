"""The training procedure, written once for every engine: which snapshots a model learns from, how its number of
trees and its calibration are chosen, and the backtest that judges it as it will be used.

For "today" T and horizon h, the labelled snapshots end at T - h (the newest day whose outcome window is
complete) and go back ``cadence_days`` at a time (:func:`~churnguard.training.snapshots.snapshot_dates`),
with the days on T's date in earlier years among them (:func:`season_days`).

* Trees: a tuning model learns from the snapshots whose outcome windows end by the newest one (d + h <= T - h)
  and early-stops on the newest snapshot, which it has not seen. This chooses the number of trees.
* Deployment: LightGBM is refitted with the same settings and that many trees on every labelled snapshot, the
  newest included. The deployed model learns from the newest labelled customers.
* Calibration: cross-fitted across the snapshots (:func:`crossfit_scores`): the customers are split into
  ``CROSSFIT_FOLDS`` groups, and each group's rows are scored by LightGBM refitted as above on the other
  customers' rows, so every calibration score comes from a model that never saw that customer. The rows are
  those of the snapshots at T's time of year in earlier years (:func:`calibration_days`), since churn is
  seasonal and the calibration is read at T; the map (``model.calibration``) is fitted on them.
* Level: the cross-fitted scores of every snapshot, calibrated, give each snapshot's churn level relative to
  the calibration; each correction of :mod:`churnguard.training.level` forecasts it at T (``Fit.levels``),
  and where the source gives the purchase days (``purchase_days``) the purchase intensity of T's outcome
  window a year earlier gives the ``intensity`` correction (``Fit.intensity``).
  The backtest chooses the correction (:func:`run_backtest`) and the deployed model applies it
  (:func:`with_level`): a shift of the calibrated log-odds or a power of the probability, either of which
  keeps the order of the customers.
* Backtest: the same procedure with today moved back by one horizon (T - h): its model learns from snapshots up
  to T - 2h and scores the customers of T - h, whose outcome (T - h, T] is known. That is the scorecard, with
  the level correction that scores best there (none unless one improves the ECE).

Short histories (:func:`~churnguard.training.snapshots.fit_schedule` adapts the schedule first): when no snapshot
ends its outcome window by the newest one, the number of trees is chosen by early stopping on a third of the
customers (all their snapshots) with a model of the others'. When no later period is left for a backtest, the
scorecard comes from cross-validation grouped by customer (:func:`grouped_cv`): the customers are split into
``CV_FOLDS`` groups, and each group's customers of the newest snapshot are scored by the procedure run on the
other customers' rows of every snapshot. It shows how well the model ranks customers it never saw, not how it
ages: those customers lived through the same period as the ones it learned from.

An engine supplies the rows (:class:`RowSource`): the local engine builds them in memory
(:mod:`churnguard.training.run`), the Dask engine per partition on a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from churnguard._text import plural
from churnguard.model._modelcore import BeyondSupport, Calibrator, feature_matrix
from churnguard.model.calibration import fit_calibrator
from churnguard.model.churn_model import ChurnModel, feature_columns
from churnguard.training.evaluation import (
    baseline_calibrators,
    baseline_probabilities,
    holdout_scorecards,
    scorecard,
)
from churnguard.training.level import (
    Intensity,
    apply_level,
    choose_level,
    intensity_power,
    level_candidates,
    snapshot_offsets,
)
from churnguard.training.seasonal import Histories, SeasonalParetoNBD, purchases_level
from churnguard.training.snapshots import has_backtest, snapshot_dates

if TYPE_CHECKING:
    from churnguard.config import Config, LabelConfig, ModelConfig, SnapshotConfig

__all__ = ["CROSSFIT_FOLDS", "CV_FOLDS", "MIN_CUSTOMERS", "MIN_OUTCOME", "SEASON_DAYS", "Backtest", "Fit", "Plan",
           "RowSource", "calibration_days", "check_learnable", "crossfit_scores", "customer_groups",
           "few_outcomes_note",
           "fit_procedure", "fit_rounds", "grouped_cv", "judge", "level_calibrator", "new_model", "plan_intensity",
           "plan_training", "refit", "run_backtest", "season_days", "season_snapshots", "with_level"]

CROSSFIT_FOLDS = 3  # customer groups of the cross-fitted calibration (and of tuning without a later snapshot)
CV_FOLDS = 5  # customer groups of the grouped cross-validation that scores a model without a backtest
MIN_CUSTOMERS = 100  # labelled customers on the newest snapshot, below which there is nothing to learn from
MIN_OUTCOME = 10  # ... and churners, and customers who stayed
SEASON_DAYS = 46  # a snapshot within this many days of today's date in an earlier year calibrates today's model


@dataclass(frozen=True)
class Plan:
    """The snapshot days of one run of the procedure as of ``today``.

    Attributes:
        today: the last day whose data the run may use.
        snapshots: every labelled snapshot, oldest first; the newest is ``today - horizon``. The deployed
            model learns from all of them.
        tune_train: the snapshots whose outcome windows end by ``tune_day``: the tuning model learns from them.
            Empty when none does: the tuning model then early-stops on a third of the customers.
        tune_day: the newest snapshot: the tuning model early-stops on it.
        season: the snapshots on today's date one or more years earlier (:func:`season_days`), among
            ``snapshots``: the level correction ``season`` reads them.
        first_day: the first day of the data (None: unknown, no ``intensity`` correction).
    """

    today: pd.Timestamp
    snapshots: tuple[pd.Timestamp, ...]
    tune_train: tuple[pd.Timestamp, ...]
    tune_day: pd.Timestamp
    season: tuple[pd.Timestamp, ...] = ()
    first_day: pd.Timestamp | None = None

    @property
    def horizon(self) -> int:
        """The label horizon in days: the newest snapshot is ``today - horizon``."""
        return (self.today - self.tune_day).days

    @property
    def refit_only(self) -> tuple[pd.Timestamp, ...]:
        """The snapshots besides the tuning day (those whose rows may be sampled)."""
        return tuple(d for d in self.snapshots if d != self.tune_day)


def plan_training(first_day: pd.Timestamp, today: pd.Timestamp, labels: LabelConfig,
                  snapshots: SnapshotConfig) -> Plan:
    """The :class:`Plan` of a run as of ``today`` on data from ``first_day``.

    Raises:
        ValueError: the data spans too little time for a single snapshot.
    """
    grid = snapshot_dates(first_day, today, labels, snapshots)
    season = season_days(today, grid)
    days = sorted({*grid, *season})
    tune_day, gap = days[-1], pd.Timedelta(days=labels.horizon_days)
    return Plan(today, tuple(days), tuple(d for d in days if d + gap <= tune_day), tune_day, season, first_day)


def season_days(today: pd.Timestamp, grid: list[pd.Timestamp]) -> tuple[pd.Timestamp, ...]:
    """``today``'s date 1, 2, ... years earlier within the span of the snapshot ``grid`` (oldest first):
    labelled snapshots at exactly today's time of year, which the cadence rarely hits. Their churn level is
    the closest the history holds to that of the period after today."""
    days = (today - pd.DateOffset(years=k) for k in range(1, (today - grid[0]).days // 365 + 1))
    return tuple(sorted(d for d in days if grid[0] <= d < grid[-1]))


class RowSource(Protocol):
    """What an engine gives :func:`fit_procedure`: labelled snapshot rows (features and ``churned``)."""

    def whole(self, day: pd.Timestamp) -> pd.DataFrame:
        """Every labelled customer of the snapshot ``day`` (never sampled)."""

    def tuning_rows(self, plan: Plan) -> pd.DataFrame:
        """The rows of ``plan.tune_train`` the tuning model learns from."""

    def booster(self, plan: Plan, tuned: ChurnModel) -> Any:
        """LightGBM trained for ``tuned.best_iteration_`` rounds, with ``tuned``'s inputs, on every snapshot of
        ``plan`` (e.g. :func:`fit_rounds`)."""

    def crossfit_rows(self, plan: Plan) -> pd.DataFrame:
        """Rows of every snapshot of ``plan`` (``customer_id`` and ``as_of`` among the columns) that the
        calibration is cross-fitted on, in this process: the rows the deployed model learns from, or a
        sample of them."""

    # Optional: ``purchase_days(last) -> PurchaseDays`` (:class:`~churnguard.training.level.PurchaseDays`
    # up to ``last``), which the ``intensity`` correction reads; a source without it has no such correction.


@dataclass(frozen=True)
class Fit:
    """The procedure's model (without a level correction), the Brier score of the cross-fitted scores it is
    calibrated on, before and after calibration, each snapshot's level (``offsets``, see
    :func:`~churnguard.training.level.snapshot_offsets`) and each correction's shift at ``plan.today``
    (``levels``, :func:`~churnguard.training.level.level_candidates`), and the ``intensity`` correction at
    ``plan.today`` (None when the data does not allow it, :func:`~churnguard.training.level.intensity_power`)."""

    model: ChurnModel
    calibration_brier_raw: float
    calibration_brier: float
    offsets: pd.DataFrame = field(default_factory=pd.DataFrame)
    levels: Mapping[str, float] = field(default_factory=lambda: {"none": 0.0})
    intensity: Intensity | None = None


def new_model(mc: ModelConfig) -> ChurnModel:
    """An unfitted :class:`ChurnModel` with the configured settings."""
    return ChurnModel(mc.params, mc.num_boost_round, mc.early_stopping_rounds, mc.calibration, mc.seed,
                      dict(mc.monotone_constraints))


def fit_procedure(source: RowSource, plan: Plan, mc: ModelConfig) -> Fit:
    """Choose the number of trees on ``plan.tune_day`` with a model of ``plan.tune_train`` (without them, on a
    third of the customers), refit with that many trees on every snapshot of ``plan``, and calibrate on
    cross-fitted scores (see the module docstring)."""
    tuned = _tune(source, plan, mc)
    rows = source.crossfit_rows(plan)
    raw, y = crossfit_scores(rows, plan.snapshots, tuned, mc)
    days = rows["as_of"].to_numpy()
    on = np.isin(days, np.array(calibration_days(plan), dtype=days.dtype))
    calibrator = fit_calibrator(mc.calibration, raw[on], y[on])
    p = calibrator.probability(raw)
    briers = float(np.mean((raw[on] - y[on]) ** 2)), float(np.mean((p[on] - y[on]) ** 2))
    offsets = snapshot_offsets(p, y, days)
    model = refit(tuned, source.booster(plan, tuned))
    model.calibrator_ = calibrator
    return Fit(model, *briers, offsets, level_candidates(offsets, plan.today, plan.season),
               plan_intensity(source, plan))


def plan_intensity(source: Any, plan: Plan, measured: bool = False, horizon: int | None = None
                   ) -> Intensity | None:
    """The ``intensity`` correction of ``plan`` at ``horizon`` (default: the plan's)
    (:func:`~churnguard.training.level.intensity_power`, on the purchase days up to ``plan.today``; with
    ``measured``, up to the end of the outcome window after it, which it then reads), relative to the
    snapshots at today's time of year (:func:`season_snapshots`), else to the newest one: the level the
    calibration ties to today. None when ``source`` gives no purchase days or the data does not allow it."""
    purchases = getattr(source, "purchase_days", None)
    if purchases is None or plan.first_day is None:
        return None
    h = plan.horizon if horizon is None else horizon
    last = plan.today + pd.Timedelta(days=h) if measured else plan.today
    days = season_snapshots(plan) or (plan.tune_day,)
    return intensity_power(purchases(last), plan.today, h, days, plan.first_day, measured)


def level_calibrator(calibrator: Calibrator, fit: Fit, level: str) -> Calibrator:
    """``calibrator`` with the level correction ``level`` of ``fit`` (its shift, or for ``intensity`` its
    power, at ``fit``'s today; none when the data does not allow it)."""
    return apply_level(calibrator, level, fit.levels, fit.intensity)


def with_level(fit: Fit, level: str) -> ChurnModel:
    """Set the level correction ``level`` in ``fit``'s model's calibrator (:func:`level_calibrator`) and
    return the model."""
    fit.model.calibrator_ = level_calibrator(fit.model.calibrator_, fit, level)
    return fit.model


def _tune(source: RowSource, plan: Plan, mc: ModelConfig) -> ChurnModel:
    """The tuning model: early-stopped on ``plan.tune_day`` after learning from ``plan.tune_train``; without
    those, early-stopped on one of ``CROSSFIT_FOLDS`` customer groups (every snapshot of theirs) after learning
    from the others'."""
    if plan.tune_train:
        tune, train = source.whole(plan.tune_day), source.tuning_rows(plan)
    else:
        rows = source.crossfit_rows(plan)
        held = customer_groups(rows, CROSSFIT_FOLDS) == 0
        tune, train = rows[held], rows[~held]
    return new_model(mc).fit(train, train["churned"], tune, tune["churned"])


def customer_groups(frame: pd.DataFrame, folds: int) -> np.ndarray:
    """Each row's group in ``0..folds-1``, by a hash of its ``customer_id``: a customer's rows share a group."""
    return pd.util.hash_pandas_object(frame["customer_id"].astype(str), index=False).to_numpy() % folds


def calibration_days(plan: Plan) -> tuple[pd.Timestamp, ...]:
    """The snapshots of ``plan`` within ``SEASON_DAYS`` of ``plan.today``'s date one or more years earlier
    (:func:`season_snapshots`); every snapshot when none is (less than a year of them)."""
    return season_snapshots(plan) or plan.snapshots


def season_snapshots(plan: Plan) -> tuple[pd.Timestamp, ...]:
    """The snapshots of ``plan`` within ``SEASON_DAYS`` of ``plan.today``'s date one or more years earlier."""
    def in_season(day: pd.Timestamp) -> bool:
        gap = (plan.today - day).days
        years = round(gap / 365.25)
        return years >= 1 and abs(gap - years * 365.25) <= SEASON_DAYS

    return tuple(d for d in plan.snapshots if in_season(d))


def crossfit_scores(frame: pd.DataFrame, days: tuple[pd.Timestamp, ...], tuned: ChurnModel, mc: ModelConfig,
                    folds: int = CROSSFIT_FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold LightGBM probabilities and outcomes of the rows of ``frame`` on ``days``: customers are
    split into ``folds`` groups by a hash of their id, and each group's rows are scored by LightGBM trained
    with ``tuned``'s settings and number of trees (:func:`fit_rounds`) on the other groups' rows of every
    day."""
    group = customer_groups(frame, folds)
    scored = frame["as_of"].isin(days).to_numpy()
    raw = np.full(len(frame), np.nan)
    for k in range(folds):
        rows = scored & (group == k)
        if rows.any():
            model = refit(tuned, fit_rounds(mc, frame[group != k], tuned))
            raw[rows] = model.predict_raw(frame[rows])
    return raw[scored], frame["churned"].to_numpy(dtype="float64")[scored]


def refit(tuned: ChurnModel, booster: Any) -> ChurnModel:
    """``tuned``'s settings, inputs, calibration and tuning curves with ``booster``'s trees."""
    model = replace(tuned)  # the settings; fitted state is set below
    model.feature_names_, model.categories_ = tuned.feature_names_, tuned.categories_
    model.booster_, model.best_iteration_ = booster, int(booster.current_iteration())
    model.evals_result_ = tuned.evals_result_  # the tuning run's curves: where the number of trees was chosen
    model.calibrator_ = tuned.calibrator_
    return model


def fit_rounds(mc: ModelConfig, frame: pd.DataFrame, tuned: ChurnModel) -> Any:
    """LightGBM trained in this process for ``tuned.best_iteration_`` rounds on ``frame``, with ``tuned``'s
    inputs (features, category levels), as :meth:`ChurnModel.fit` builds its training set."""
    import lightgbm as lgb

    names, categories = tuned.feature_names_, tuned.categories_
    if feature_columns(frame) != names:
        raise ValueError("the refit rows have other feature columns than the tuning rows")
    params = tuned.lightgbm_params(names)
    categorical = [i for i, c in enumerate(names) if c in categories]
    data = lgb.Dataset(feature_matrix(frame, names, categories), label=frame["churned"].to_numpy(dtype="float32"),
                       feature_name=names, categorical_feature=categorical, params=params, free_raw_data=True)
    data.construct()
    data.pandas_categorical = [categories[names[i]] for i in categorical]
    return lgb.train(params, data, num_boost_round=tuned.best_iteration_)


@dataclass(frozen=True)
class Backtest:
    """The procedure judged as it will be used: run as of ``plan.today`` and scored on that day's customers;
    or, where no later period is left for that, by cross-validation grouped by customer (:func:`grouped_cv`).

    Attributes:
        plan: the backtest run's plan (its ``today`` is the scored day, ``backtest_as_of``); under grouped
            cross-validation the deployed model's, whose newest snapshot is the scored day.
        fit: the backtest's model; None under grouped cross-validation (one model per group).
        test: the scored customers' rows (features and what they did next, ``churned``).
        scorecards: scorer (``model``, ``recency``, ``bgnbd``) -> metric -> value on ``test``.
        probabilities: each scorer's probabilities on ``test``.
        raw: the model's uncalibrated probabilities on ``test``.
        evaluation: ``backtest`` or ``grouped_cv``.
        level: the level correction chosen on ``test`` (:func:`~churnguard.training.level.choose_level`), with
            which ``scorecards`` and ``probabilities`` score the model; ``none`` under grouped
            cross-validation, which scores customers of the periods the model learned from.
        level_ece: each correction's ECE on ``test`` (empty under grouped cross-validation).
        intensity: the ``intensity`` correction the backtest scored: its own (``fit.intensity``), or, when its
            window a year earlier is before the data, the one of its outcome window as measured; None without.
        purchases: under grouped cross-validation, the purchases' seasonal model whose level the deployed model
            takes (:mod:`churnguard.training.seasonal`; level ``purchases``); None without purchase days.
    """

    plan: Plan
    fit: Fit | None
    test: pd.DataFrame
    scorecards: dict[str, dict[str, float]]
    probabilities: dict[str, np.ndarray]
    raw: np.ndarray
    evaluation: str = "backtest"
    level: str = "none"
    level_ece: Mapping[str, float] = field(default_factory=dict)
    intensity: Intensity | None = None
    purchases: SeasonalParetoNBD | None = None

    @property
    def as_of(self) -> pd.Timestamp:
        """The scored day: the customers of ``test`` are those of this day."""
        return self.plan.today if self.evaluation == "backtest" else self.plan.tune_day


def run_backtest(source: RowSource, first_day: pd.Timestamp, as_of: pd.Timestamp, config: Config) -> Backtest:
    """The procedure run as of ``as_of`` (only data up to it), then scored on the customers of ``as_of``
    against what they did in the horizon after it; the baselines are calibrated on the backtest's tuning day,
    as its model is; the model with the level correction that scores best on them (none unless one lowers the
    ECE; the ``intensity`` one read from the outcome window as measured when its window a year earlier is
    before the data). ``source`` must hold data up to ``as_of + horizon``."""
    plan = plan_training(first_day, as_of, config.labels, config.snapshots)
    fit = fit_procedure(source, plan, config.model)
    if fit.intensity is None:
        fit = replace(fit, intensity=plan_intensity(source, plan, measured=True))
    test = source.whole(as_of)
    raw, calibrator = fit.model.predict_raw(test), fit.model.calibrator_
    names = [*fit.levels, *(["intensity"] if fit.intensity is not None else [])]
    level, eces = choose_level(test["churned"].to_numpy(), {
        name: level_calibrator(calibrator, fit, name).probability(raw) for name in names})
    cards, _, probs = holdout_scorecards(with_level(fit, level), source.whole(plan.tune_day), test)
    return Backtest(plan, fit, test, cards, probs, raw, level=level, level_ece=eces, intensity=fit.intensity)


def judge(source: RowSource, first_day: pd.Timestamp, plan: Plan, config: Config) -> Backtest:
    """The scorecard of the procedure that made ``plan``'s model: its backtest (:func:`run_backtest`) when the
    data leaves room for one, else :func:`grouped_cv`; first :func:`check_learnable` on the newest snapshot.

    Raises:
        ValueError: there is nothing to learn from (:func:`check_learnable`).
    """
    check_learnable(source.whole(plan.tune_day), plan.tune_day, config.labels.horizon_days)
    if has_backtest(first_day, plan.today, config.labels, config.snapshots):
        return run_backtest(source, first_day, plan.today - pd.Timedelta(days=config.labels.horizon_days), config)
    return grouped_cv(source, plan, config)


def check_learnable(newest: pd.DataFrame, day: pd.Timestamp, horizon: int) -> None:
    """Raise unless the newest snapshot's rows hold ``MIN_CUSTOMERS`` customers, ``MIN_OUTCOME`` of whom
    churned and as many stayed, with advice that changes that."""
    n, churned = len(newest), int(newest["churned"].sum())
    if n < MIN_CUSTOMERS:
        raise ValueError(
            f"nothing to learn from: {plural(n, 'customer')} bought in the lookback window before {day.date()}, the newest "
            f"day whose {horizon}-day outcome is known; training needs at least {MIN_CUSTOMERS}. Provide the data "
            "of more customers")
    few, advice = min(churned, n - churned), _ADVICE[churned < MIN_OUTCOME]
    if few < MIN_OUTCOME:
        raise ValueError(
            f"nothing to learn from: of the {plural(n, 'customer')} of {day.date()}, only {few} "
            f"{'churned' if churned < MIN_OUTCOME else 'stayed'} within {horizon} days; training needs at least "
            f"{MIN_OUTCOME} who churned and {MIN_OUTCOME} who stayed. Try {advice}")


def few_outcomes_note(churned: np.ndarray) -> str:
    """A sentence for a scorecard judged on fewer than ``MIN_CUSTOMERS`` customers or ``MIN_OUTCOME`` churners or
    customers who stayed (``churned``: one flag per customer scored): its figures rest on too few outcomes to
    trust; empty when there are enough."""
    n = len(churned)
    k = int(np.asarray(churned, dtype=bool).sum())
    if n >= MIN_CUSTOMERS and min(k, n - k) >= MIN_OUTCOME:
        return ""
    return (f"judged on {n:,} customers, {k:,} of whom churned and {n - k:,} stayed: too few outcomes for a "
            f"reliable scorecard (at least {MIN_CUSTOMERS} customers, {MIN_OUTCOME} of each, as training needs)")


_ADVICE = {True: "a shorter --horizon-days (more customers go that long without buying)",
           False: ("a longer --horizon-days, with the history it needs, or a shorter labels.lookback_days (a "
                   "population of more recent buyers)")}


def grouped_cv(source: RowSource, plan: Plan, config: Config, folds: int = CV_FOLDS) -> Backtest:
    """The scorecard of ``plan``'s procedure without a later period: the customers of every snapshot
    (``source.crossfit_rows``) are split into ``folds`` groups (:func:`customer_groups`), and each group's
    rows of the newest snapshot are scored by :func:`fit_procedure` run on the other groups' rows, the
    baselines calibrated on the other groups' rows of that snapshot."""
    rows = source.crossfit_rows(plan).reset_index(drop=True)
    group, scored = customer_groups(rows, folds), (rows["as_of"] == plan.tune_day).to_numpy()
    test = rows[scored].reset_index(drop=True)
    probs = {name: np.full(len(test), np.nan) for name in ("model", "recency", "bgnbd")}
    raw = np.full(len(test), np.nan)
    for k in range(folds):
        held = group[scored] == k
        if held.any():
            fit = fit_procedure(_Fold(rows[group != k], config.model), plan, config.model)
            raw[held] = fit.model.predict_raw(test[held])
            calibrators = baseline_calibrators(rows[(group != k) & scored])
            for name, p in {"model": fit.model.predict_proba(test[held]),
                            **baseline_probabilities(test[held], calibrators)}.items():
                probs[name][held] = p
    y = test["churned"].to_numpy()
    cards = {name: scorecard(y, p) for name, p in probs.items()}
    purchases = getattr(source, "purchase_days", None)
    seasonal = None if purchases is None else purchases_level(purchases(plan.today), seed=config.model.seed)
    return Backtest(plan, None, test, cards, probs, raw, evaluation="grouped_cv",
                    level="none" if seasonal is None else "purchases", purchases=seasonal)


def deployed_model(fit: Fit, backtest: Backtest, customers: pd.DataFrame, horizon: int, *, support_days: int,
                   lookback_days: int) -> ChurnModel:
    """``fit``'s model with the level the backtest chose (:func:`with_level`); with the purchases' seasonal
    model (``backtest.purchases``), its calibrator is the isotonic map of the model's raw scores onto that
    model's chances of no purchase over today's ``customers`` (features as of ``backtest.plan.today``), and
    the customers silent longer than ``support_days`` (the longest silence it learned from, when shorter than
    ``lookback_days``) get that model's chance itself (``ChurnModel.beyond_``)."""
    model = with_level(fit, backtest.level)
    if backtest.purchases is not None:
        customers, today = customers[customers["bg_frequency"].notna()], backtest.plan.today
        target = backtest.purchases.no_purchase(Histories.of_features(customers, today), today, horizon)
        model.calibrator_ = fit_calibrator("isotonic", model.predict_raw(customers), target)
        if support_days < lookback_days:
            model.beyond_ = BeyondSupport(support_days, horizon, str(today.date()), backtest.purchases)
    return model


@dataclass(frozen=True, eq=False)
class _Fold:
    """:class:`RowSource` of some customers' rows of every snapshot, held in memory (for :func:`grouped_cv`)."""

    rows: pd.DataFrame
    mc: ModelConfig

    def whole(self, day: pd.Timestamp) -> pd.DataFrame:
        return self.rows[self.rows["as_of"] == day]

    def tuning_rows(self, plan: Plan) -> pd.DataFrame:
        return self.rows[self.rows["as_of"].isin(plan.tune_train)]

    def booster(self, plan: Plan, tuned: ChurnModel) -> Any:
        return fit_rounds(self.mc, self.rows, tuned)

    def crossfit_rows(self, plan: Plan) -> pd.DataFrame:
        return self.rows
