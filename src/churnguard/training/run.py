"""The training run: the procedure of :mod:`churnguard.training.procedure` (a backtest, then the deployed model)
-> scorecard -> model file -> MLflow; and the later evaluation of a model file on a past snapshot.

Each engine supplies the snapshot rows its own way (:class:`LocalRows` here, in memory;
:func:`churnguard.engines.dask.train_dask` per partition on a cluster) and runs the same procedure, then hands
the models and rows to :func:`finish_training`, which does the rest once for both: the verdict on the
backtest's scorecards, the summary, what the model file keeps (:func:`model_metadata`), the file itself and the
MLflow run (:mod:`churnguard.training.tracking`).

Training rows: when a run's snapshots (besides its tuning day, never sampled) hold more labelled rows than
``snapshots.max_train_rows``, each keeps a seeded random sample of its customers, in proportion to its size
(:func:`churnguard.training.snapshots.sample_sizes`), drawn as the snapshot is built. The backtest and the
deployed model are sampled each on its own, so the backtest is the same whether it runs in training or in
:func:`run_evaluation`. The run's summary, MLflow params and model card say how many rows were used of how many.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard import __version__
from churnguard._io.files import work_dir
from churnguard.features import build_features, to_day
from churnguard.features.kernel import bgnbd_features
from churnguard.labels import _active_and_churned, make_labels
from churnguard.model.churn_model import ChurnModel, ModelFileError
from churnguard.model.info import CurveCard, ModelInfo
from churnguard.population import Population
from churnguard.reporting.monitoring import drift_population, reference_profile
from churnguard.training.bgnbd import fit_bgnbd
from churnguard.training.curve import curve_backtest_plan, train_curve
from churnguard.training.evaluation import (
    baseline_calibrators,
    baseline_probabilities,
    compare_to_baselines,
    scorecard,
)
from churnguard.training.level import PurchaseDays
from churnguard.training.procedure import (
    CV_FOLDS,
    Backtest,
    Fit,
    Plan,
    calibration_days,
    check_learnable,
    deployed_model,
    few_outcomes_note,
    fit_procedure,
    fit_rounds,
    judge,
    level_calibrator,
    new_model,
    plan_training,
    run_backtest,
)
from churnguard.training.promotion import (
    Champion,
    Promotion,
    decide_promotion,
    same_procedure,
    score_champion,
)
from churnguard.training.result import TrainResult
from churnguard.training.seasonal import MIN_CUSTOMERS as PURCHASES_MIN_CUSTOMERS
from churnguard.training.snapshots import _Snapshots, fit_schedule, has_backtest, sample_sizes
from churnguard.training.tracking import (
    MODEL_ARTIFACT,
    champion_file,
    check_tracking,
    log_evaluation_run,
    log_training_run,
)

if TYPE_CHECKING:
    from churnguard.btyd import BGNBDParams
    from churnguard.config import Config, SnapshotConfig, TrackingConfig
    from churnguard.dataset import Tables
    from churnguard.model._modelcore import Curve
    from churnguard.training.procedure import RowSource

__all__ = ["Evaluation", "LocalRows", "TrainResult", "TrainingRows", "backtest_day", "data_fingerprint",
           "drift_reference", "fingerprint", "finish_training", "judging_step", "level_facts", "model_metadata",
           "new_model", "promotion_decision", "run_evaluation", "run_training", "sampling_summary",
           "schedule_facts", "support_days", "support_facts", "with_schedule"]

logger = logging.getLogger(__name__)

CALENDAR_FEATURES = ("as_of_month",)  # differ between any two dates by design: not drift


@dataclass
class TrainingRows:
    """What an engine hands to :func:`finish_training` besides the models: the newest snapshot and what it
    learned of the data."""

    plan: Plan  # the deployed model's
    newest: pd.DataFrame  # the newest labelled snapshot's rows (features, ``churned``), whole
    reference: pd.DataFrame  # today's customers with a purchase in the lookback window: the drift reference
    first_day: pd.Timestamp  # of the data
    counts: dict[str, int]  # valid ``transactions`` and ``tickets``, ``customers``, ``rejected_rows``
    train_rows: int  # the deployed model's
    train_churn_rate: float
    feature_dtypes: dict[str, Any]  # each training column's
    today: Population  # at ``plan.today``, for scoring: lifespan, VIP cut-off and BG/NBD parameters
    bgnbd_by_snapshot: dict[str, BGNBDParams]  # fitted at each snapshot, by day
    data_fingerprint: str  # :func:`data_fingerprint` of the data
    facts: dict[str, Any]  # the engine's own entries for the summary (how the rows were sampled, ...)


def run_training(
    tables: Tables,
    config: Config,
    *,
    model_out: str | Path,
    as_of: str | pd.Timestamp | None = None,
    config_text: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, backtest and save a churn model, and record the run in MLflow
    (:mod:`churnguard.training.procedure`).

    Args:
        tables: validated inputs.
        config: the whole configuration (each step receives its part).
        model_out: where the model file is written (atomically).
        as_of: "today": the last day whose data may be used (default: the last transaction day).
        config_text: the YAML the config came from, logged as an artifact.
        on_step: progress callback, called with a short description before each step.
    """
    check_tracking(config.tracking)  # a store MLflow refuses stops the run now, not after the training
    step = on_step or (lambda _msg: None)
    last = to_day(as_of) if as_of is not None else tables.last_date()
    first_day = tables.transactions["timestamp"].min()
    configured, config = config, with_schedule(config, first_day, last)
    plan = plan_training(first_day, last, config.labels, config.snapshots)
    if config.labels.horizons:
        curve_backtest_plan(first_day, last, config)  # a curve too long for the data stops now, not after the model
    source = LocalRows(tables, config, last, step)
    step(judging_step(first_day, last, config))
    backtest = judge(source, first_day, plan, config)
    step("training the deployed model on every labelled snapshot")
    fit = fit_procedure(source, plan, config.model)
    step("fitting the scoring-time BG/NBD and value thresholds")
    today = source.snaps.features_at(last)  # build_features(tables, last, ...) on the encoding already made
    population = Population(today.attrs["lifespan_years"],
                            float(today["cltv"].quantile(config.features.vip_quantile)), fit_bgnbd(today))
    reference = drift_population(today, config.labels.lookback_days, seed=config.model.seed)
    reference = reference.assign(**bgnbd_features(reference, population.bgnbd, config.labels.horizon_days))
    del today
    counts = {"transactions": len(tables.transactions), "tickets": 0 if tables.tickets is None else len(tables.tickets),
              "customers": len(tables.customer_ids()), "rejected_rows": len(tables.rejects)}
    train_rows, churned = source.training_counts(plan)
    rows = TrainingRows(plan, source.whole(plan.tune_day), reference, first_day, counts, train_rows, churned / train_rows,
                        source.dtypes(fit.model.feature_names_), population, source.bgnbd, data_fingerprint(tables),
                        {**source.facts(plan), **schedule_facts(configured.snapshots, config.snapshots)})
    curve = None
    if config.labels.horizons:
        step(f"the churn curve over {', '.join(map(str, config.labels.horizons))} days: backtest, then deployed")
        curve = train_curve(source, first_day, plan, config)

    def rows_for(other: Config) -> RowSource:
        return source if same_procedure(other, config) else LocalRows(tables, other, last, step)

    return finish_training(fit, backtest, rows, config, model_out=model_out, config_text=config_text, on_step=step,
                           rows_for=rows_for, curve=curve)


def backtest_day(today: pd.Timestamp, config: Config) -> pd.Timestamp:
    """The day the backtest scores: one horizon before ``today`` (the newest labelled snapshot)."""
    return today - pd.Timedelta(days=config.labels.horizon_days)


def with_schedule(config: Config, first_day: pd.Timestamp, today: pd.Timestamp) -> Config:
    """``config`` with the snapshot schedule of data from ``first_day`` to ``today``
    (:func:`~churnguard.training.snapshots.fit_schedule`): the model file keeps the schedule it used."""
    schedule = fit_schedule(first_day, today, config.labels, config.snapshots)
    return config if schedule == config.snapshots else config.model_copy(update={"snapshots": schedule})


def judging_step(first_day: pd.Timestamp, today: pd.Timestamp, config: Config) -> str:
    """The progress line of :func:`~churnguard.training.procedure.judge`."""
    if has_backtest(first_day, today, config.labels, config.snapshots):
        return f"backtest: the same procedure as of {backtest_day(today, config).date()}"
    return ("grouped cross-validation: the data leaves no later period for a backtest; then the purchases' "
            "seasonal model for the level of the period after today")


def schedule_facts(configured: SnapshotConfig, used: SnapshotConfig) -> dict[str, Any]:
    """The summary's facts of the snapshot schedule: the one used and whether it was adapted to the data."""
    return {"min_history_days": used.min_history_days, "cadence_days": used.cadence_days,
            "max_snapshots": used.max_snapshots, "schedule_adapted": used != configured}


class LocalRows:
    """:class:`~churnguard.training.procedure.RowSource` in memory: one integer encoding of the tables, each
    snapshot built once per sample size and kept for the run.

    When a plan's snapshots besides its tuning day hold more labelled rows than ``snapshots.max_train_rows``,
    each of them keeps a seeded sample of its customers in proportion to its size
    (:func:`~churnguard.training.snapshots.sample_sizes`), drawn as the snapshot is built."""

    def __init__(self, tables: Tables, config: Config, last: pd.Timestamp, step: Callable[[str], None]) -> None:
        self.config, self.step, self.horizon = config, step, config.labels.horizon_days
        self.bgnbd: dict[str, BGNBDParams] = {}
        self.snaps = _Snapshots(tables, config.features, config.labels, last, enrich=self._with_bgnbd)
        self._rows: dict[tuple[pd.Timestamp, int | None], pd.DataFrame] = {}
        self._population: dict[pd.Timestamp, int] = {}

    def _with_bgnbd(self, feats: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
        params = fit_bgnbd(feats)  # on every customer seen by then, not only the labelled ones
        self.bgnbd[str(day.date())] = params
        return feats.assign(**bgnbd_features(feats, params, self.horizon))

    def population(self, day: pd.Timestamp) -> int:
        if day not in self._population:
            self._population[day] = self.snaps.population(day)
        return self._population[day]

    def keep(self, plan: Plan) -> dict[pd.Timestamp, int]:
        """Rows kept of each snapshot of ``plan`` besides its tuning day."""
        counts = {d: self.population(d) for d in plan.refit_only}
        keep = sample_sizes(counts, self.config.snapshots.max_train_rows)
        if keep != counts:
            logger.info("the snapshots hold %d labelled rows, more than snapshots.max_train_rows = %d: training on "
                        "a seeded sample of each snapshot's customers", sum(counts.values()),
                        self.config.snapshots.max_train_rows)
        return keep

    def rows(self, day: pd.Timestamp, keep: int | None = None) -> pd.DataFrame:
        key = (day, keep if keep is not None and keep < self.population(day) else None)
        if key not in self._rows:
            self._rows[key] = self.snaps.rows(day, key[1], seed=self.config.model.seed)
            self.step(f"snapshot {day.date()} done")
        return self._rows[key]

    def whole(self, day: pd.Timestamp) -> pd.DataFrame:
        return self.rows(day)

    def _training(self, plan: Plan, days: Iterable[pd.Timestamp]) -> list[pd.DataFrame]:
        keep = self.keep(plan)
        return [self.rows(d, keep[d]) if d in keep else self.whole(d) for d in days]

    def tuning_rows(self, plan: Plan) -> pd.DataFrame:
        return pd.concat(self._training(plan, plan.tune_train), ignore_index=True)

    def booster(self, plan: Plan, tuned: ChurnModel) -> Any:
        frame = pd.concat(self._training(plan, plan.snapshots), ignore_index=True)
        return fit_rounds(self.config.model, frame, tuned)

    def crossfit_rows(self, plan: Plan) -> pd.DataFrame:
        return pd.concat(self._training(plan, plan.snapshots), ignore_index=True)

    def churned(self, day: pd.Timestamp, horizon: int) -> pd.Series:
        """Per labelled customer of ``day`` (index ``customer_id``), 1 when they made no purchase in
        ``(day, day + horizon]``: the label rule at another horizon (the churn curve's)."""
        if day + pd.Timedelta(days=horizon) > self.snaps.last:
            raise ValueError(f"snapshot {day.date()}: its {horizon}-day window ends after {self.snaps.last.date()}")
        encoded = self.snaps.encoded
        active, churned = _active_and_churned(encoded, day, horizon, self.config.labels.lookback_days)
        return pd.Series(churned[active].astype("int8"), index=encoded.ids[active])

    def purchase_days(self, last: pd.Timestamp) -> PurchaseDays:
        """The customers' purchase days up to ``last`` (the ``intensity`` level correction's input)."""
        encoded = self.snaps.encoded
        bought = encoded.amount > 0
        return PurchaseDays.of(encoded.tx_id[bought], encoded.tx_day[bought], min(last, self.snaps.last))

    def training_counts(self, plan: Plan) -> tuple[int, int]:
        """Rows and churners the deployed model of ``plan`` learned from."""
        frames = self._training(plan, plan.snapshots)
        return sum(len(f) for f in frames), sum(int(f["churned"].sum()) for f in frames)

    def dtypes(self, names: list[str]) -> dict[str, Any]:
        frame = self.whole(next(iter(self._rows))[0])
        return {c: frame[c].dtype for c in names}

    def facts(self, plan: Plan) -> dict[str, Any]:
        """The summary's facts of how the deployed model's rows were chosen."""
        keep = self.keep(plan)
        frames = dict(zip(plan.snapshots, self._training(plan, plan.snapshots), strict=True))
        by_day = {str(d.date()): {"population": self.population(d), "rows": len(f),
                                  "churn_rate": float(f["churned"].mean())} for d, f in frames.items()}
        available = sum(self.population(d) for d in keep)
        return {**sampling_summary(available, sum(keep.values()), self.config.snapshots.max_train_rows,
                                   self.config.model.seed), "rows_by_snapshot": by_day}


def sampling_summary(available: int, used: int, max_rows: int | None, seed: int) -> dict[str, Any]:
    """How the training rows were chosen, for the summary, the MLflow params and the model card."""
    return {"max_train_rows": max_rows, "train_rows_available": available, "train_sampled": used < available,
            "train_sample_fraction": used / available if available else 1.0, "train_sample_seed": seed}


def finish_training(fit: Fit, backtest: Backtest, rows: TrainingRows, config: Config, *, model_out: str | Path,
                    rows_for: Callable[[Config], RowSource], config_text: str | None = None, track: bool = True,
                    on_step: Callable[[str], None] | None = None,
                    curve: tuple[Curve, CurveCard] | None = None) -> TrainResult:
    """The steps after the models are fitted, the same for every engine: the verdict on the backtest's
    scorecards, the summary, the deployed model's :class:`ModelInfo` (with the baselines calibrated on the
    newest snapshot), the MLflow run (with ``track``), with the registry's decision
    (:mod:`churnguard.training.promotion`: ``rows_for(c)`` gives a row source of config ``c`` on this run's data,
    to score the champion), and the model file ``model_out``, written (atomically) once the run is recorded:
    an interrupted run leaves the previous file, never a new file without its run. ``curve``: the churn curve
    and its card (:func:`churnguard.training.curve.train_curve`), kept with the model. The deployed model
    carries the level correction the backtest chose (:func:`~churnguard.training.procedure.deployed_model`)."""
    step = on_step or (lambda _msg: None)
    lookback = config.labels.lookback_days
    model = deployed_model(fit, backtest, rows.reference, config.labels.horizon_days, lookback_days=lookback,
                           support_days=support_days(rows.first_day, rows.plan.tune_day, lookback))
    if curve is not None:
        model.curve_ = curve[0]
    beats, verdict = compare_to_baselines(backtest.scorecards)
    summary = _summary(fit, backtest, rows, config)
    calibrators = baseline_calibrators(rows.newest)
    model.info = model_metadata(config, rows, summary=summary, scorecards=backtest.scorecards, verdict=verdict,
                                baseline_calibrators=calibrators, probabilities=model.predict_proba(rows.reference),
                                feature_names=model.feature_names_, curve=None if curve is None else curve[1])
    result = TrainResult(model, Path(model_out), backtest.scorecards, verdict, beats, summary)
    with work_dir(result.model_path.parent) as work:  # the file goes to model_out once the run is recorded
        staged = model.save(work / MODEL_ARTIFACT)
        if track:
            step(f"scoring the current {config.tracking.alias} on {backtest.as_of.date()}")
            promotion = promotion_decision(backtest, beats, verdict, config, rows_for, rows.first_day)
            step("recording the MLflow run")
            log_training_run(result, config, config_text, backtest, promotion, staged)
        step("saving the model file")
        os.replace(staged, result.model_path)
    return result


def promotion_decision(backtest: Backtest, beats: bool, verdict: str, config: Config,
                       rows_for: Callable[[Config], RowSource], first_day: pd.Timestamp) -> Promotion:
    """Whether the new model replaces the registry's champion, scored on the backtest day
    (:func:`~churnguard.training.promotion.score_champion`); a champion whose file cannot be read cannot be
    compared (no promotion, with the reason)."""
    with tempfile.TemporaryDirectory() as tmp:
        found = champion_file(config.tracking, tmp)
        if found is None:
            champion = None
        else:
            try:
                model = ChurnModel.load(found[1])
            except ModelFileError as exc:
                champion = Champion(found[0], None, f"its model file cannot be read: {exc}")
            else:
                champion = score_champion(model, found[0], backtest, config, rows_for, first_day)
    return decide_promotion(beats, verdict, backtest.scorecards["model"], champion, config.tracking.alias)


def _summary(fit: Fit, backtest: Backtest, rows: TrainingRows, config: Config) -> dict[str, Any]:
    """The run's facts: data, the deployed model's snapshots and rows, the backtest, trees, the calibration's
    snapshots and the Brier score of its cross-fitted scores before and after it."""
    plan = rows.plan
    def days(ds: Iterable[pd.Timestamp]) -> list[str]:
        return [str(d.date()) for d in ds]

    return {
        "data_first_day": str(rows.first_day.date()),
        "as_of": str(plan.today.date()),
        "horizon_days": config.labels.horizon_days,
        **rows.counts,
        "deployed_snapshots": days(plan.snapshots),
        "tune_train_snapshots": days(plan.tune_train),
        "tune_snapshot": str(plan.tune_day.date()),
        "train_rows": rows.train_rows,
        "train_churn_rate": rows.train_churn_rate,
        **_evaluation_facts(backtest),
        "best_iteration": fit.model.best_iteration_,
        "n_features": len(fit.model.feature_names_),
        "calibration": config.model.calibration,
        "calibration_snapshots": days(calibration_days(plan)),
        "calibration_brier_raw": fit.calibration_brier_raw,
        "calibration_brier": fit.calibration_brier,
        **level_facts(fit, backtest),
        **support_facts(rows.first_day, plan.tune_day, config.labels.lookback_days,
                        rows.reference["recency_days"].to_numpy()),
        "lifespan_years": rows.today.lifespan_years,
        **rows.facts,
    }


def support_days(first_day: pd.Timestamp, newest: pd.Timestamp, lookback_days: int) -> int:
    """The longest silence (days since the last purchase) a labelled customer of snapshots up to ``newest`` can
    have: the history before it (from the data's ``first_day``), at most ``lookback_days``."""
    return min(lookback_days, (to_day(newest) - to_day(first_day)).days)


def support_facts(first_day: pd.Timestamp, newest: pd.Timestamp, lookback_days: int,
                  recency: np.ndarray) -> dict[str, Any]:
    """The silences the deployed model learned from, and today's customers silent longer.

    ``support_days``: the longest silence (days since the last purchase) a labelled customer of the
    snapshots can have: the history before the newest snapshot ``newest`` (from the data's ``first_day``),
    at most ``lookback_days``. ``beyond_support_share``: the share of today's customers (their
    ``recency_days``: the drift reference, a sample when there are many) silent longer. Trees do not
    extrapolate: those customers get the probability of the longest silences the model learned from. Both come
    from data up to today only."""
    support = support_days(first_day, newest, lookback_days)
    beyond = np.asarray(recency, dtype="float64") > support
    return {"support_days": support, "beyond_support_share": float(beyond.mean()) if len(beyond) else 0.0,
            "lookback_days": lookback_days}


def level_facts(fit: Fit, backtest: Backtest) -> dict[str, Any]:
    """The summary's facts of the level correction: ``level_correction`` (the one the backtest chose),
    ``level_shift`` and ``level_power`` (what it does to the deployed model's calibrated probabilities), each
    correction's shift at today and ECE on the backtest, the ``intensity`` correction's windows at today and
    on the backtest (empty without), and each snapshot's level (log-odds offset from the calibration)."""
    offsets, applied = fit.offsets, level_calibrator(fit.model.calibrator_, fit, backtest.level)
    return {"level_correction": backtest.level, "level_shift": applied.shift, "level_power": applied.power,
            "level_candidates": dict(fit.levels), "level_backtest_ece": dict(backtest.level_ece),
            "level_intensity": {} if fit.intensity is None else fit.intensity.facts(),
            "level_backtest_intensity": {} if backtest.intensity is None else backtest.intensity.facts(),
            "level_purchases": {} if backtest.purchases is None else backtest.purchases.facts(),
            "level_purchases_min_customers": PURCHASES_MIN_CUSTOMERS,
            "level_offsets": {str(d.date()): float(v) for d, v in offsets["offset"].items()} if len(offsets) else {}}


def _evaluation_facts(backtest: Backtest) -> dict[str, Any]:
    """The summary's facts of how the scorecard was made: ``evaluation`` (``backtest`` or ``grouped_cv``), the
    scored day, its customers and churn rate, and the backtest's own snapshots and trees."""
    test, bt = backtest.test, backtest.plan
    facts = {"evaluation": backtest.evaluation, f"{backtest.evaluation}_as_of": str(backtest.as_of.date()),
             f"{backtest.evaluation}_rows": len(test),
             f"{backtest.evaluation}_churn_rate": float(test["churned"].mean())}
    if backtest.fit is None:
        return {**facts, "grouped_cv_folds": CV_FOLDS}
    return {**facts, "backtest_snapshots": [str(d.date()) for d in bt.snapshots],
            "backtest_tune_snapshot": str(bt.tune_day.date()),
            "backtest_best_iteration": backtest.fit.model.best_iteration_}


def model_metadata(config: Config, rows: TrainingRows, *, summary: dict[str, Any],
                   scorecards: dict[str, dict[str, float]], verdict: str, baseline_calibrators: dict[str, Any],
                   probabilities: np.ndarray, feature_names: list[str], curve: CurveCard | None = None) -> ModelInfo:
    """What a trained model keeps in its file, the same for every engine: the config, the training window and
    summary, the backtest's scorecards, the population state (lifespan, VIP threshold, scoring-time BG/NBD
    parameters, horizon), the baselines' calibrators, the input dtypes and the drift reference (today's
    customers, :func:`~churnguard.reporting.monitoring.drift_population`, and the model's ``probabilities``) and
    the churn curve's card (``curve``)."""
    config_json = config.model_dump(mode="json")
    # Names this model in every score it writes: its training day and a digest of its data and config.
    digest = hashlib.sha256((rows.data_fingerprint + json.dumps(config_json, sort_keys=True)).encode()).hexdigest()
    today = rows.today
    return ModelInfo(
        package_version=__version__,
        model_version=f"{summary['as_of']}-{digest[:8]}",
        config=config,
        population=Population(lifespan_years=float(today.lifespan_years),
                              vip_cltv_threshold=float(today.vip_cltv_threshold), bgnbd=today.bgnbd,
                              horizon_days=config.labels.horizon_days),
        training_window={"first_day": summary["data_first_day"], "as_of": summary["as_of"]},
        summary=summary,
        scorecards=scorecards,
        verdict=verdict,
        evaluation=summary["evaluation"],
        bgnbd_params_by_snapshot=dict(rows.bgnbd_by_snapshot),
        baseline_calibrators=dict(baseline_calibrators),
        data_fingerprint=rows.data_fingerprint,
        git_commit=_git_commit(),
        feature_dtypes={c: str(rows.feature_dtypes[c]) for c in feature_names},
        drift_profiles=drift_reference(rows.reference, probabilities, feature_names),
        curve=curve,
    )


def drift_reference(reference: pd.DataFrame, probabilities: np.ndarray, feature_names: list[str]) -> dict[str, Any]:
    """Reference profiles for drift checks: each model feature (not the calendar ones) of the ``reference``
    customers, and the model's probabilities for them."""
    return {**{c: reference_profile(reference[c]) for c in feature_names if c not in CALENDAR_FEATURES},
            "churn_probability": reference_profile(pd.Series(probabilities))}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint(row_hashes: Iterable[np.ndarray | None]) -> str:
    """A short, order-independent hash of tables given by their rows' hashes (None for a table not given)."""
    h = hashlib.sha256()
    for hashes in row_hashes:
        if hashes is not None:
            h.update(np.sort(hashes).tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(tables: Tables) -> str:
    """:func:`fingerprint` of the validated inputs."""
    return fingerprint(None if frame is None else pd.util.hash_pandas_object(frame, index=False).to_numpy()
                       for frame in (tables.transactions, tables.tickets, tables.customers, tables.events))


@dataclass(frozen=True)
class Evaluation:
    """A scorecard of a past day: ``kind`` is ``model`` (the model file scored a day after its training data)
    or ``backtest`` (the model learned from that day's outcomes, so its training procedure was run again with
    only the data up to the day); ``note`` says which, for people."""

    as_of: pd.Timestamp
    scorecards: dict[str, dict[str, float]]
    kind: str
    note: str


def _with_note(text: str, churned: np.ndarray) -> str:
    few = few_outcomes_note(churned)
    return f"{text}; {few}" if few else text


def run_evaluation(
    model_path: str | Path, tables: Tables, as_of: str | pd.Timestamp, *, tracking: TrackingConfig | None = None,
    model: ChurnModel | None = None,
) -> Evaluation:
    """The scorecard of a past day whose outcome is known, against the baselines (logged when ``tracking``).

    A day on or after the model's training day is scored with the model file, its features built as training
    built them, with the model's scoring-time BG/NBD parameters (fitted by then). On an earlier day the model
    has seen the outcomes, so the training procedure is run again as of that day with the model's config
    (:func:`~churnguard.training.procedure.run_backtest`): on the training data, the backtest day gives the
    training run's scorecard exactly. ``model``: the file already loaded, when the caller has it."""
    if tracking is not None:
        check_tracking(tracking)
    model = model if model is not None else ChurnModel.load(model_path)
    info = model.require_info()
    as_of, today = to_day(as_of), to_day(info.training_window["as_of"])
    horizon = info.population.horizon_days
    if as_of + pd.Timedelta(days=horizon) > tables.last_date():
        raise ValueError(
            f"as_of {as_of.date()}: its {horizon}-day outcome window ends after the last day in the data "
            f"({tables.last_date().date()}); pick an earlier as_of"
        )
    if as_of < today:
        source = LocalRows(tables, info.config, as_of + pd.Timedelta(days=horizon), lambda _msg: None)
        first_day = tables.transactions["timestamp"].min()
        tune_day = plan_training(first_day, as_of, info.config.labels, info.config.snapshots).tune_day
        check_learnable(source.whole(tune_day), tune_day, horizon)  # the procedure refuses as train refuses
        bt = run_backtest(source, first_day, as_of, info.config)
        result = Evaluation(as_of, bt.scorecards, "backtest", _with_note((
            f"{as_of.date()} is before the model's training day {today.date()}: the model learned from outcomes "
            f"after it, so this is a backtest of its training procedure run with the data up to {as_of.date()}"),
            bt.test["churned"].to_numpy()))
        rows = len(bt.test)
    else:
        feats = build_features(tables, as_of, info.config.features)
        feats = feats.assign(**bgnbd_features(feats, info.population.bgnbd, horizon))
        labels = make_labels(tables.transactions, as_of, horizon, info.config.labels.lookback_days)
        frame = feats.merge(labels.drop(columns="as_of"), on="customer_id")
        probs = {"model": model.predict_proba(frame), **baseline_probabilities(frame, info.baseline_calibrators)}
        cards = {name: scorecard(frame["churned"].to_numpy(), p) for name, p in probs.items()}
        result = Evaluation(as_of, cards, "model", _with_note(f"the model file scored on {as_of.date()}",
                                                              frame["churned"].to_numpy()))
        rows = len(frame)
    if tracking is not None:
        log_evaluation_run(tracking, as_of=as_of, rows=rows, scorecards=result.scorecards, model_path=model_path,
                           data_fingerprint=data_fingerprint(tables), kind=result.kind)
    return result
