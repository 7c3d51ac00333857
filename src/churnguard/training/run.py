"""The training run: snapshots -> time split -> calibrated LightGBM -> scorecard -> model file -> MLflow; and
the later evaluation of a model file on a past snapshot.

Each engine builds the training, validation and test rows its own way (this module in memory,
:func:`churnguard.engines.dask.train_dask` per partition on a cluster), fits the model, and hands the rows to
:func:`finish_training`, which does the rest once for both: the scorecards against the baselines, the summary,
what the model file keeps (:func:`model_metadata`), the file itself and the MLflow run
(:mod:`churnguard.training.tracking`).

Training rows: when the training snapshots hold more labelled rows than ``snapshots.max_train_rows``, each
training snapshot keeps a seeded random sample of its customers, in proportion to its size
(:func:`churnguard.training.snapshots.sample_sizes`), drawn as the snapshot is built so the full set is never in
memory. The validation and test snapshots are never sampled. The run's summary, MLflow params and model card
say how many rows were used of how many. The time split is :func:`~churnguard.training.snapshots.split_by_time`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard import __version__
from churnguard.features import build_features, to_day
from churnguard.features.kernel import bgnbd_features
from churnguard.labels import make_labels
from churnguard.model.churn_model import ChurnModel
from churnguard.model.info import ModelInfo
from churnguard.population import Population
from churnguard.reporting.monitoring import reference_profile
from churnguard.training.bgnbd import fit_bgnbd
from churnguard.training.evaluation import (
    baseline_probabilities,
    compare_to_baselines,
    holdout_scorecards,
    scorecard,
)
from churnguard.training.snapshots import _Snapshots, sample_sizes, snapshot_dates, split_by_time
from churnguard.training.tracking import log_evaluation_run, log_training_run

if TYPE_CHECKING:
    from churnguard.btyd import BGNBDParams
    from churnguard.config import Config, ModelConfig, TrackingConfig
    from churnguard.dataset import Tables

__all__ = ["TrainResult", "TrainingRows", "data_fingerprint", "fingerprint", "finish_training", "model_metadata",
           "new_model", "run_evaluation", "run_training", "sampling_summary"]

logger = logging.getLogger(__name__)

CALENDAR_FEATURES = ("as_of_month",)  # differ between any two dates by design: not drift


@dataclass
class TrainResult:
    """What a training run produced and where it went."""

    model: ChurnModel
    model_path: Path
    scorecards: dict[str, dict[str, float]]
    verdict: str
    beats_baselines: bool
    summary: dict[str, Any]
    run_id: str | None = None
    tracking_uri: str | None = None
    registered_version: str | None = None
    champion: bool = False
    artifacts: list[str] = field(default_factory=list)


@dataclass
class TrainingRows:
    """What an engine hands to :func:`finish_training`: the held-out rows and what it learned of the data."""

    valid: pd.DataFrame  # the validation snapshot's rows (features, ``churned``), whole
    test: pd.DataFrame  # the test snapshot's, whole
    days: tuple[list[pd.Timestamp], pd.Timestamp, pd.Timestamp]  # train days, validation day, test day
    first_day: pd.Timestamp  # of the data
    last: pd.Timestamp  # "today", the last day used
    counts: dict[str, int]  # valid ``transactions`` and ``tickets``, ``customers``, ``rejected_rows``
    train_rows: int
    train_churn_rate: float
    feature_dtypes: dict[str, Any]  # each training column's
    today: Population  # at ``last``, for scoring: lifespan, VIP cut-off and BG/NBD parameters
    bgnbd_by_snapshot: dict[str, BGNBDParams]  # fitted at each snapshot, by day
    data_fingerprint: str  # :func:`data_fingerprint` of the data
    facts: dict[str, Any]  # the engine's own entries for the summary (how the rows were sampled, ...)


def new_model(mc: ModelConfig) -> ChurnModel:
    """An unfitted :class:`ChurnModel` with the configured settings."""
    return ChurnModel(mc.params, mc.num_boost_round, mc.early_stopping_rounds, mc.calibration, mc.seed,
                      dict(mc.monotone_constraints))


def run_training(
    tables: Tables,
    config: Config,
    *,
    model_out: str | Path,
    as_of: str | pd.Timestamp | None = None,
    config_text: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, evaluate and save a churn model, and record the run in MLflow.

    Args:
        tables: validated inputs.
        config: the whole configuration (each step receives its part).
        model_out: where the model file is written (atomically).
        as_of: "today": the last day whose data may be used (default: the last transaction day).
        config_text: the YAML the config came from, logged as an artifact.
        on_step: progress callback, called with a short description before each step.
    """
    step = on_step or (lambda _msg: None)
    last = to_day(as_of) if as_of is not None else tables.last_date()
    horizon = config.labels.horizon_days
    first_day = tables.transactions["timestamp"].min()
    days = split_by_time(snapshot_dates(first_day, last, config.labels, config.snapshots), horizon)
    bg_params: dict[str, BGNBDParams] = {}

    def with_bgnbd(feats: pd.DataFrame, as_of_day: pd.Timestamp) -> pd.DataFrame:
        params = fit_bgnbd(feats)  # on every customer seen by then, not only the labelled ones
        bg_params[str(as_of_day.date())] = params
        return feats.assign(**bgnbd_features(feats, params, horizon))

    snaps = _Snapshots(tables, config.features, config.labels, last, enrich=with_bgnbd)
    train, valid, test, facts = _snapshot_rows(snaps, days, config, step)
    step("training LightGBM")
    model = new_model(config.model).fit(train, train["churned"], valid, valid["churned"])
    train_rows, train_churn_rate = len(train), float(train["churned"].mean())
    dtypes = {c: train[c].dtype for c in model.feature_names_}
    del train
    step("fitting the scoring-time BG/NBD and value thresholds")
    today = snaps.features_at(last)  # build_features(tables, last, ...) on the encoding already made
    del snaps
    population = Population(today.attrs["lifespan_years"],
                            float(today["cltv"].quantile(config.features.vip_quantile)), fit_bgnbd(today))
    counts = {"transactions": len(tables.transactions), "tickets": 0 if tables.tickets is None else len(tables.tickets),
              "customers": len(tables.customer_ids()), "rejected_rows": len(tables.rejects)}
    rows = TrainingRows(valid, test, days, first_day, last, counts, train_rows, train_churn_rate, dtypes, population,
                        bg_params, data_fingerprint(tables), facts)
    return finish_training(model, rows, config, model_out=model_out, config_text=config_text, on_step=step)


def _snapshot_rows(snaps: _Snapshots, days: tuple[list[pd.Timestamp], pd.Timestamp, pd.Timestamp], config: Config,
                   step: Callable[[str], None]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The training, validation and test rows, and the summary's facts of how the training rows were chosen
    (sampled, when over ``snapshots.max_train_rows``, as each snapshot is built: the whole set is never held)."""
    train_days, valid_day, test_day = days
    used = [*train_days, valid_day, test_day]
    population = {d: snaps.population(d) for d in train_days}
    keep = sample_sizes(population, config.snapshots.max_train_rows)
    if keep != population:
        logger.info("the training snapshots hold %d labelled rows, more than snapshots.max_train_rows = %d: "
                    "training on a seeded sample of each snapshot's customers", sum(population.values()),
                    config.snapshots.max_train_rows)
    train_parts, held = [], {}
    for day in used:
        rows = snaps.rows(day, keep.get(day), seed=config.model.seed)
        step(f"snapshot {day.date()} done")
        if day in keep:
            train_parts.append(rows)
        else:
            held[day] = rows
    rows_by_snapshot = {str(d.date()): {"population": population.get(d, len(r)), "rows": len(r),
                                        "churn_rate": float(r["churned"].mean())}
                        for d, r in zip(used, [*train_parts, held[valid_day], held[test_day]], strict=True)}
    facts = {**sampling_summary(sum(population.values()), sum(keep.values()), config.snapshots.max_train_rows,
                                config.model.seed), "rows_by_snapshot": rows_by_snapshot}
    return pd.concat(train_parts, ignore_index=True), held[valid_day], held[test_day], facts


def sampling_summary(available: int, used: int, max_rows: int | None, seed: int) -> dict[str, Any]:
    """How the training rows were chosen, for the summary, the MLflow params and the model card."""
    return {"max_train_rows": max_rows, "train_rows_available": available, "train_sampled": used < available,
            "train_sample_fraction": used / available if available else 1.0, "train_sample_seed": seed}


def finish_training(model: ChurnModel, rows: TrainingRows, config: Config, *, model_out: str | Path,
                    config_text: str | None = None, track: bool = True,
                    on_step: Callable[[str], None] | None = None) -> TrainResult:
    """The steps after the model is fitted, the same for every engine: the scorecards of the model and the
    baselines on the test snapshot, the summary, the model's :class:`ModelInfo`, the model file and (with
    ``track``) the MLflow run."""
    step = on_step or (lambda _msg: None)
    step("scoring the test snapshot")
    scorecards, baseline_calibrators, probs = holdout_scorecards(model, rows.valid, rows.test,
                                                                 config.model.calibration)
    beats, verdict = compare_to_baselines(scorecards)
    summary = _summary(model, rows, config)
    model.info = model_metadata(config, rows, summary=summary, scorecards=scorecards, verdict=verdict,
                                baseline_calibrators=baseline_calibrators, probabilities=probs["model"],
                                feature_names=model.feature_names_)
    step("saving the model file")
    result = TrainResult(model, Path(model.save(model_out)), scorecards, verdict, beats, summary)
    if track:
        step("recording the MLflow run")
        log_training_run(result, config, config_text, rows.test, probs)
    return result


def _summary(model: ChurnModel, rows: TrainingRows, config: Config) -> dict[str, Any]:
    """The run's facts: data, split, rows, churn rates, trees, validation Brier before and after calibration."""
    train_days, valid_day, test_day = rows.days
    y_valid = rows.valid["churned"].to_numpy()
    return {
        "data_first_day": str(rows.first_day.date()),
        "as_of": str(rows.last.date()),
        "horizon_days": config.labels.horizon_days,
        **rows.counts,
        "train_snapshots": [str(d.date()) for d in train_days],
        "valid_snapshot": str(valid_day.date()),
        "test_snapshot": str(test_day.date()),
        "train_rows": rows.train_rows,
        "valid_rows": len(y_valid),
        "test_rows": len(rows.test),
        "train_churn_rate": rows.train_churn_rate,
        "test_churn_rate": float(rows.test["churned"].mean()),
        "best_iteration": model.best_iteration_,
        "n_features": len(model.feature_names_),
        "valid_brier_uncalibrated": float(np.mean((model.predict_raw(rows.valid) - y_valid) ** 2)),
        "valid_brier_calibrated": float(np.mean((model.predict_proba(rows.valid) - y_valid) ** 2)),
        "lifespan_years": rows.today.lifespan_years,
        **rows.facts,
    }


def model_metadata(config: Config, rows: TrainingRows, *, summary: dict[str, Any],
                   scorecards: dict[str, dict[str, float]], verdict: str, baseline_calibrators: dict[str, Any],
                   probabilities: np.ndarray, feature_names: list[str]) -> ModelInfo:
    """What a trained model keeps in its file, the same for every engine: the config, the training window and
    summary, the scorecards, the population state (lifespan, VIP threshold, scoring-time BG/NBD parameters,
    horizon), the baselines' calibrators, the input dtypes and the drift reference (the newest labelled
    population, the test snapshot, and its ``probabilities``)."""
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
        bgnbd_params_by_snapshot=dict(rows.bgnbd_by_snapshot),
        baseline_calibrators=dict(baseline_calibrators),
        data_fingerprint=rows.data_fingerprint,
        git_commit=_git_commit(),
        feature_dtypes={c: str(rows.feature_dtypes[c]) for c in feature_names},
        # Reference distributions for drift checks: the newest labelled population and its scores.
        drift_profiles={
            **{c: reference_profile(rows.test[c]) for c in feature_names if c not in CALENDAR_FEATURES},
            "churn_probability": reference_profile(pd.Series(probabilities)),
        },
    )


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
                       for frame in (tables.transactions, tables.tickets, tables.customers))


def run_evaluation(
    model_path: str | Path, tables: Tables, as_of: str | pd.Timestamp, *, tracking: TrackingConfig | None = None
) -> dict[str, dict[str, float]]:
    """Score a past snapshot whose outcome is known and return (and log) the scorecard vs the baselines.

    The snapshot's features are built as training built its snapshots' (lifespan and VIP cut-off from the
    data up to ``as_of``), with the model's scoring-time BG/NBD parameters."""
    model = ChurnModel.load(model_path)
    info = model.require_info()
    as_of = to_day(as_of)
    horizon = info.population.horizon_days
    if as_of + pd.Timedelta(days=horizon) > tables.last_date():
        raise ValueError(
            f"as_of {as_of.date()}: its {horizon}-day outcome window ends after the last day in the data "
            f"({tables.last_date().date()}); pick an earlier as_of"
        )
    feats = build_features(tables, as_of, info.config.features)
    feats = feats.assign(**bgnbd_features(feats, info.population.bgnbd, horizon))
    labels = make_labels(tables.transactions, as_of, horizon, info.config.labels.lookback_days)
    rows = feats.merge(labels.drop(columns="as_of"), on="customer_id")
    probs = {"model": model.predict_proba(rows), **baseline_probabilities(rows, info.baseline_calibrators)}
    cards = {name: scorecard(rows["churned"].to_numpy(), p) for name, p in probs.items()}
    if tracking is not None:
        log_evaluation_run(tracking, as_of=as_of, rows=len(rows), scorecards=cards, model_path=model_path,
                        data_fingerprint=data_fingerprint(tables))
    return cards

