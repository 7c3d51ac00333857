"""The training run: snapshots -> time split -> calibrated LightGBM -> scorecard -> model file -> MLflow.

This is the only module that talks to MLflow. By default runs go to a SQLite store ``mlflow.db`` in the
working directory with artifacts in ``./mlartifacts`` beside it (no server to start); ``$MLFLOW_TRACKING_URI``
or ``tracking.tracking_uri`` / ``--tracking-uri`` point elsewhere.

Training rows: when the training snapshots hold more labelled rows than ``snapshots.max_train_rows``, each
training snapshot keeps a seeded random sample of its customers, in proportion to its size
(:func:`churnguard.training.snapshots.sample_sizes`), drawn as the snapshot is built so the full set is never in
memory. The validation and test snapshots are never sampled. The run's summary, MLflow params and model card
say how many rows were used of how many.

Time split (the model is judged as it would have been used): the newest complete snapshot is the test set;
the validation snapshot is the newest one whose label window ends on or before the test day; training uses
the snapshots whose label windows end on or before the validation day. No label the model learns from was
observable after the day it is validated or tested on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard import __version__, btyd
from churnguard.features import build_features, to_day
from churnguard.labels import make_labels
from churnguard.model.churn_model import ChurnModel, _Calibrator
from churnguard.model.info import ModelInfo
from churnguard.population import Population
from churnguard.reporting.monitoring import reference_profile
from churnguard.training.evaluation import (
    compare_to_baselines,
    plot_calibration,
    plot_feature_importance,
    plot_lift_gain,
    plot_score_distribution,
    plot_training_curve,
    scorecard,
    scorecard_markdown,
)
from churnguard.training.snapshots import _Snapshots, sample_sizes, snapshot_dates

if TYPE_CHECKING:
    from churnguard.config import Config, TrackingConfig
    from churnguard.dataset import Tables

__all__ = [
    "TrainResult",
    "add_bgnbd_features",
    "fit_bgnbd",
    "model_metadata",
    "resolve_tracking_uri",
    "run_evaluation",
    "run_training",
    "split_by_time",
]

logger = logging.getLogger(__name__)

BASELINES = ("recency", "bgnbd")
CALENDAR_FEATURES = ("as_of_month",)  # differ between any two dates by design: not drift
_WEEK = 7.0


# -- BG/NBD features ---------------------------------------------------------------------------------------


def fit_bgnbd(features: pd.DataFrame) -> btyd.BGNBDParams:
    """Fit BG/NBD on every customer with a purchase, in weeks, compressing identical histories."""
    has = features["bg_frequency"].notna()
    rows = pd.DataFrame(
        {
            "x": features.loc[has, "bg_frequency"],
            "tx": features.loc[has, "bg_recency_days"] / _WEEK,
            "T": features.loc[has, "bg_age_days"] / _WEEK,
        }
    )
    counts = rows.value_counts().reset_index(name="n")
    return btyd.fit_bgnbd(counts["x"].to_numpy(), counts["tx"].to_numpy(), counts["T"].to_numpy(),
                          weights=counts["n"].to_numpy())


def add_bgnbd_features(features: pd.DataFrame, params: btyd.BGNBDParams, horizon_days: int) -> pd.DataFrame:
    """Add ``bg_expected_purchases`` over the horizon and ``bg_p_alive`` (NaN for customers with no purchase)."""
    from churnguard.features.kernel import bgnbd_features

    return features.assign(**bgnbd_features({c: features[c].to_numpy(dtype="float64") for c in
                                             ("bg_frequency", "bg_recency_days", "bg_age_days")}, params, horizon_days))


# -- the time split and the baselines -------------------------------------------------------------------------


def split_by_time(dates: list[pd.Timestamp], horizon_days: int) -> tuple[list[pd.Timestamp], pd.Timestamp, pd.Timestamp]:
    """(train days, validation day, test day) such that no label window overlaps a later split's day."""
    dates = sorted(dates)
    gap = pd.Timedelta(days=horizon_days)
    test = dates[-1]
    valid_candidates = [d for d in dates if d + gap <= test]
    if not valid_candidates:
        raise ValueError(f"no snapshot ends its label window before the test day {test.date()}: add more snapshots")
    valid = valid_candidates[-1]
    train = [d for d in dates if d + gap <= valid]
    if not train:
        raise ValueError(
            f"no snapshot ends its label window before the validation day {valid.date()}: the data is too short "
            "for a time split; raise snapshots.max_snapshots or provide more history"
        )
    return train, valid, test


def holdout_scorecards(model: ChurnModel, valid: pd.DataFrame, test: pd.DataFrame, calibration: str
                    ) -> tuple[dict[str, dict[str, float]], dict[str, _Calibrator], dict[str, np.ndarray]]:
    """Scorecards of the model and the baselines on the test snapshot, the baselines calibrated on the
    validation snapshot like the model; also the baselines' calibrators and every scorer's probabilities."""
    y_valid, y_test = valid["churned"].to_numpy(), test["churned"].to_numpy()
    probs = {"model": model.predict_proba(test)}
    calibrators = {}
    for name, score in _baseline_scores(valid).items():
        calibrators[name] = _Calibrator.fit(calibration, np.nan_to_num(score, nan=np.nanmax(score)), y_valid)
    for name, score in _baseline_scores(test).items():
        probs[name] = calibrators[name](np.nan_to_num(score, nan=np.nanmax(score)))
    return {name: scorecard(y_test, p) for name, p in probs.items()}, calibrators, probs


def _baseline_scores(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Higher = more likely to churn. Recency: days since last purchase. BG/NBD: fewer expected purchases."""
    return {
        "recency": frame["recency_days"].to_numpy(dtype="float64"),
        "bgnbd": -frame["bg_expected_purchases"].to_numpy(dtype="float64"),
    }


# -- tracking -------------------------------------------------------------------------------------------------


def resolve_tracking_uri(configured: str | None) -> str:
    """Explicit setting, else $MLFLOW_TRACKING_URI, else a SQLite file in the working directory."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def _experiment_id(client, name: str, tracking_uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        location = (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def data_fingerprint(tables: Tables) -> str:
    """A short, order-independent hash of the validated inputs."""
    h = hashlib.sha256()
    for frame in (tables.transactions, tables.tickets, tables.customers):
        if frame is not None:
            h.update(np.sort(pd.util.hash_pandas_object(frame, index=False).to_numpy()).tobytes())
    return h.hexdigest()[:16]


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
    dates = snapshot_dates(tables.transactions["timestamp"].min(), last, config.labels, config.snapshots)
    train_days, valid_day, test_day = split_by_time(dates, horizon)
    used = [*train_days, valid_day, test_day]
    bg_params: dict[str, btyd.BGNBDParams] = {}

    def with_bgnbd(feats: pd.DataFrame, as_of_day: pd.Timestamp) -> pd.DataFrame:
        params = fit_bgnbd(feats)  # on every customer seen by then, not only the labelled ones
        bg_params[str(as_of_day.date())] = params
        return add_bgnbd_features(feats, params, horizon)

    snaps = _Snapshots(tables, config.features, config.labels, last, enrich=with_bgnbd)
    population = {d: snaps.population(d) for d in train_days}
    keep = sample_sizes(population, config.snapshots.max_train_rows)
    sampled = keep != population
    if sampled:
        logger.info("the training snapshots hold %d labelled rows, more than snapshots.max_train_rows = %d: "
                    "training on a seeded sample of each snapshot's customers", sum(population.values()),
                    config.snapshots.max_train_rows)
    # Training rows are sampled (when over the cap) as each snapshot is built, so the whole set is never held;
    # the validation and test snapshots are kept whole.
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
    train = pd.concat(train_parts, ignore_index=True)
    del train_parts
    valid, test = held[valid_day], held[test_day]

    step("training LightGBM")
    mc = config.model
    model = ChurnModel(mc.params, mc.num_boost_round, mc.early_stopping_rounds, mc.calibration, mc.seed,
                       dict(mc.monotone_constraints))
    model.fit(train, train["churned"], valid, valid["churned"])
    train_facts = {"rows": len(train), "churn_rate": float(train["churned"].mean()),
                   "dtypes": {c: train[c].dtype for c in model.feature_names_}}
    del train

    step("scoring the test snapshot")
    y_valid, y_test = valid["churned"].to_numpy(), test["churned"].to_numpy()
    scorecards, baseline_calibrators, probs = holdout_scorecards(model, valid, test, mc.calibration)
    beats, verdict = compare_to_baselines(scorecards)
    brier_raw = float(np.mean((model.predict_raw(valid) - y_valid) ** 2))
    brier_cal = float(np.mean((model.predict_proba(valid) - y_valid) ** 2))
    del valid

    step("fitting the scoring-time BG/NBD and value thresholds")
    today = snaps.features_at(last)  # build_features(tables, last, ...) on the encoding already made
    del snaps
    final_bg = fit_bgnbd(today)
    summary = {
        "data_first_day": str(tables.transactions["timestamp"].min().date()),
        "as_of": str(last.date()),
        "horizon_days": horizon,
        "transactions": len(tables.transactions),
        "tickets": 0 if tables.tickets is None else len(tables.tickets),
        "customers": len(tables.customer_ids()),
        "rejected_rows": len(tables.rejects),
        "train_snapshots": [str(d.date()) for d in train_days],
        "valid_snapshot": str(valid_day.date()),
        "test_snapshot": str(test_day.date()),
        "train_rows": train_facts["rows"],
        "valid_rows": len(y_valid),
        "test_rows": len(test),
        "train_churn_rate": train_facts["churn_rate"],
        "test_churn_rate": float(test["churned"].mean()),
        "best_iteration": model.best_iteration_,
        "n_features": len(model.feature_names_),
        "valid_brier_uncalibrated": brier_raw,
        "valid_brier_calibrated": brier_cal,
        "lifespan_years": today.attrs.get("lifespan_years"),
        **_sampling_summary(population, keep, config.snapshots.max_train_rows, mc.seed),
        "rows_by_snapshot": rows_by_snapshot,
    }
    model.info = model_metadata(
        config, summary=summary, scorecards=scorecards, verdict=verdict, bgnbd_params=final_bg,
        bgnbd_params_by_snapshot=bg_params, vip_cltv_threshold=float(today["cltv"].quantile(config.features.vip_quantile)),
        baseline_calibrators=baseline_calibrators, data_fingerprint=data_fingerprint(tables),
        feature_dtypes=train_facts["dtypes"], drift_reference=test, probabilities=probs["model"],
        feature_names=model.feature_names_,
    )
    step("saving the model file")
    model_path = model.save(model_out)
    result = TrainResult(model, Path(model_path), scorecards, verdict, beats, summary)
    step("recording the MLflow run")
    _log_training_run(result, config, config_text, test, probs, y_test)
    return result


def _sampling_summary(population: dict[pd.Timestamp, int], keep: dict[pd.Timestamp, int], max_rows: int | None,
                      seed: int) -> dict[str, Any]:
    """How the training rows were chosen, for the summary, the MLflow params and the model card."""
    available, used = sum(population.values()), sum(keep.values())
    return {
        "max_train_rows": max_rows,
        "train_rows_available": available,
        "train_sampled": used < available,
        "train_sample_fraction": used / available if available else 1.0,
        "train_sample_seed": seed,
    }


def model_metadata(
    config: Config,
    *,
    summary: dict[str, Any],
    scorecards: dict[str, dict[str, float]],
    verdict: str,
    bgnbd_params: btyd.BGNBDParams,
    bgnbd_params_by_snapshot: dict[str, btyd.BGNBDParams],
    vip_cltv_threshold: float,
    baseline_calibrators: dict[str, _Calibrator],
    data_fingerprint: str,
    feature_dtypes: dict[str, Any],
    drift_reference: pd.DataFrame,
    probabilities: np.ndarray,
    feature_names: list[str],
) -> ModelInfo:
    """What a trained model keeps in its file, the same for every engine: the config, the training window and
    summary, the scorecards, the population state (lifespan, VIP threshold, scoring-time BG/NBD parameters,
    horizon), the baselines' calibrators, the input dtypes and the drift reference (the newest labelled
    population, ``drift_reference``, and its probabilities)."""
    config_json = config.model_dump(mode="json")
    # Names this model in every score it writes: its training day and a digest of its data and config.
    digest = hashlib.sha256((data_fingerprint + json.dumps(config_json, sort_keys=True)).encode()).hexdigest()
    return ModelInfo(
        package_version=__version__,
        model_version=f"{summary['as_of']}-{digest[:8]}",
        config=config,
        population=Population(lifespan_years=float(summary["lifespan_years"]),
                              vip_cltv_threshold=float(vip_cltv_threshold), bgnbd=bgnbd_params,
                              horizon_days=config.labels.horizon_days),
        training_window={"first_day": summary["data_first_day"], "as_of": summary["as_of"]},
        summary=summary,
        scorecards=scorecards,
        verdict=verdict,
        bgnbd_params_by_snapshot=dict(bgnbd_params_by_snapshot),
        baseline_calibrators=dict(baseline_calibrators),
        data_fingerprint=data_fingerprint,
        git_commit=_git_commit(),
        feature_dtypes={c: str(feature_dtypes[c]) for c in feature_names},
        # Reference distributions for drift checks: the newest labelled population and its scores.
        drift_profiles={
            **{c: reference_profile(drift_reference[c]) for c in feature_names if c not in CALENDAR_FEATURES},
            "churn_probability": reference_profile(pd.Series(probabilities)),
        },
    )


def _log_training_curves(client: Any, run_id: str, curves: dict[str, dict[str, list[float]]]) -> None:
    """The boosting curves as step-wise metrics, in batches (one call per point costs seconds on SQLite)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(f"{ds}_{metric}", float(v), now, i)
              for ds, by_metric in curves.items() for metric, values in by_metric.items()
              for i, v in enumerate(values)]
    for start in range(0, len(points), 1000):  # MLflow's limit of metrics per batch
        client.log_batch(run_id, metrics=points[start:start + 1000])


def _model_card(result: TrainResult) -> str:
    s = result.summary
    sampling = []
    if s.get("train_sampled"):
        sampling.append(f"- training rows sampled: {s['train_rows']:,} of {s['train_rows_available']:,} "
                        f"({s['train_sample_fraction']:.1%} of each training snapshot's customers, seed "
                        f"{s['train_sample_seed']}; snapshots.max_train_rows = {s['max_train_rows']:,})")
    return "\n".join(
        [
            "# churnguard model card",
            "",
            f"- package version: {__version__}",
            f"- data: {s['data_first_day']} to {s['as_of']}, {s['transactions']:,} transactions, {s['customers']:,} customers",
            f"- label: no purchase in the {s['horizon_days']} days after each snapshot",
            f"- train snapshots: {', '.join(s['train_snapshots'])} ({s['train_rows']:,} rows, churn rate {s['train_churn_rate']:.3f})",
            *sampling,
            f"- validation snapshot: {s['valid_snapshot']} ({s['valid_rows']:,} rows; early stopping and calibration)",
            f"- test snapshot: {s['test_snapshot']} ({s['test_rows']:,} rows, churn rate {s['test_churn_rate']:.3f})",
            f"- validation Brier: {s['valid_brier_uncalibrated']:.4f} uncalibrated, {s['valid_brier_calibrated']:.4f} calibrated",
            "",
            "## Scorecard (held-out test snapshot)",
            "",
            scorecard_markdown(result.scorecards),
            "",
            result.verdict,
            "",
        ]
    )


def _log_training_run(result, config, config_text, test, probs, y_test) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    tc: TrackingConfig = config.tracking
    uri = resolve_tracking_uri(tc.tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp_id = _experiment_id(client, tc.experiment, uri)
    model = result.model
    s = result.summary
    with mlflow.start_run(experiment_id=exp_id) as run, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        flat = {f"{k}": v for k, v in s.items() if not isinstance(v, list | dict)}
        flat["train_snapshots"] = ",".join(s["train_snapshots"])
        mlflow.log_params({**flat, **{f"lgbm_{k}": v for k, v in config.model.params.items()},
                           "calibration": config.model.calibration, "cadence_days": config.snapshots.cadence_days,
                           "lookback_days": config.labels.lookback_days})
        for name, card in result.scorecards.items():
            mlflow.log_metrics({f"{'test' if name == 'model' else name}_{k}": float(v) for k, v in card.items()})
        mlflow.log_metrics({"valid_brier_uncalibrated": s["valid_brier_uncalibrated"],
                            "valid_brier_calibrated": s["valid_brier_calibrated"]})
        _log_training_curves(client, run.info.run_id, model.evals_result_)
        model_info = model.require_info()
        mlflow.set_tags({"data_fingerprint": model_info.data_fingerprint, "churnguard_version": __version__,
                         "model_version": model_info.model_version, "git_commit": model_info.git_commit or "unknown",
                         "beats_baselines": str(result.beats_baselines)})
        imp = model.feature_importance()
        plots = [
            plot_feature_importance(list(imp.index), imp.to_numpy(), tmp / "feature_importance.png"),
            plot_calibration(y_test, {"uncalibrated": model.predict_raw(test), "calibrated": probs["model"]},
                             tmp / "calibration_curve.png"),
            plot_lift_gain(y_test, probs, tmp / "lift_gain.png"),
            plot_score_distribution(y_test, probs["model"], tmp / "score_distribution.png"),
            plot_training_curve({k: v["binary_logloss"] for k, v in model.evals_result_.items()},
                                tmp / "training_curve.png"),
        ]
        (tmp / "model_card.md").write_text(_model_card(result))
        (tmp / "model_card.json").write_text(json.dumps(model_info.to_dict(), indent=2, default=str))
        (tmp / "config.yaml").write_text(config_text or json.dumps(config.model_dump(mode="json"), indent=2))
        imp.rename("gain").to_csv(tmp / "feature_importance.csv")
        for p in [*plots, tmp / "model_card.md", tmp / "model_card.json", tmp / "config.yaml", tmp / "feature_importance.csv"]:
            mlflow.log_artifact(str(p))
            result.artifacts.append(Path(p).name)
        example = _pyfunc_input(model, test.head(5))
        info = _log_pyfunc(result, example)
        result.run_id = run.info.run_id
    result.tracking_uri = uri
    version = mlflow.register_model(info.model_uri, tc.registered_model)
    result.registered_version = str(version.version)
    result.champion = _maybe_promote(client, tc, version.version, result.scorecards["model"]["roc_auc"])


def _log_pyfunc(result: TrainResult, example: pd.DataFrame):
    """Log the pyfunc that returns probabilities, with its signature, input example and pinned requirements.

    Self-contained: LightGBM's text model and a JSON spec as artifacts, ``_modelcore.py`` as its code, so it
    loads and serves with mlflow, lightgbm, numpy and pandas alone (no churnguard, no signing key)."""
    import mlflow
    from mlflow.models import infer_signature

    from churnguard.model import _modelcore

    model = result.model
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = _modelcore.write_model_files(
            tmp, booster_text=model.booster_.model_to_string(num_iteration=model.best_iteration_),
            feature_names=model.feature_names_, categories=model.categories_, calibrator=model.calibrator_)
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("_pyfunc.py")),
            artifacts=artifacts,
            code_paths=[_modelcore.__file__],
            signature=infer_signature(example, model.predict_proba(example)),
            input_example=example,
            pip_requirements=[f"{p}=={_version(p)}" for p in ("lightgbm", "numpy", "pandas", "mlflow")],
        )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _pyfunc_input(model: ChurnModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Model inputs with categoricals as plain strings, as a JSON caller would send them."""
    x = model.prepare(frame)
    for c in model.categories_:
        x[c] = x[c].astype("object")
    return x.reset_index(drop=True)


def _maybe_promote(client, tc: TrackingConfig, version: str, test_auc: float) -> bool:
    """Point the alias at the new version unless the current champion's test AUC is higher."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(tc.registered_model, tc.alias)
    except MlflowException:
        current = None
    if current is not None:
        champion_auc = client.get_run(current.run_id).data.metrics.get("test_roc_auc", float("-inf"))
        if test_auc < champion_auc:
            logger.warning("new model test AUC %.4f < champion's %.4f: alias %r stays on version %s",
                           test_auc, champion_auc, tc.alias, current.version)
            return False
    client.set_registered_model_alias(tc.registered_model, tc.alias, version)
    return True


# -- evaluate later ----------------------------------------------------------------------------------------


def run_evaluation(
    model_path: str | Path, tables: Tables, as_of: str | pd.Timestamp, *, tracking: TrackingConfig | None = None
) -> dict[str, dict[str, float]]:
    """Score a past snapshot whose outcome is known and return (and log) the scorecard vs the baselines."""
    model = ChurnModel.load(model_path)
    info = model.require_info()
    as_of = to_day(as_of)
    horizon = info.population.horizon_days
    if as_of + pd.Timedelta(days=horizon) > tables.last_date():
        raise ValueError(
            f"as_of {as_of.date()}: its {horizon}-day outcome window ends after the last day in the data "
            f"({tables.last_date().date()}); pick an earlier as_of"
        )
    cfg = info.config
    feats = build_features(tables, as_of, cfg.features)
    feats = add_bgnbd_features(feats, info.population.bgnbd, horizon)
    labels = make_labels(tables.transactions, as_of, horizon, cfg.labels.lookback_days)
    rows = feats.merge(labels.drop(columns="as_of"), on="customer_id")
    y = rows["churned"].to_numpy()
    probs = {"model": model.predict_proba(rows)}
    for name, score in _baseline_scores(rows).items():
        probs[name] = info.baseline_calibrators[name](np.nan_to_num(score, nan=np.nanmax(score)))
    cards = {name: scorecard(y, p) for name, p in probs.items()}
    if tracking is not None:
        import mlflow

        uri = resolve_tracking_uri(tracking.tracking_uri)
        mlflow.set_tracking_uri(uri)
        from mlflow.tracking import MlflowClient

        exp_id = _experiment_id(MlflowClient(uri), tracking.experiment, uri)
        with mlflow.start_run(experiment_id=exp_id, run_name=f"evaluate-{as_of.date()}"):
            mlflow.set_tags({"kind": "evaluation", "model_file": str(model_path),
                             "data_fingerprint": data_fingerprint(tables)})
            mlflow.log_params({"as_of": str(as_of.date()), "rows": len(rows)})
            for name, card in cards.items():
                mlflow.log_metrics({f"{'eval' if name == 'model' else name}_{k}": float(v) for k, v in card.items()})
    return cards
