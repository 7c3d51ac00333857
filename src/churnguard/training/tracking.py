"""MLflow: where runs go, and what a training run and an evaluation run record. The only module that imports
mlflow (besides ``_pyfunc.py``, which MLflow itself runs when it loads the logged model).

By default runs go to a SQLite store ``mlflow.db`` in the working directory with artifacts in ``./mlartifacts``
beside it (no server to start); ``$MLFLOW_TRACKING_URI`` or ``tracking.tracking_uri`` / ``--tracking-uri``
point elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnguard import __version__
from churnguard.training.evaluation import (
    model_card,
    plot_calibration,
    plot_feature_importance,
    plot_lift_gain,
    plot_score_distribution,
    plot_training_curve,
)

if TYPE_CHECKING:
    from churnguard.config import Config, TrackingConfig
    from churnguard.model.churn_model import ChurnModel
    from churnguard.training.procedure import Backtest
    from churnguard.training.promotion import Promotion
    from churnguard.training.run import TrainResult

__all__ = ["champion_file", "log_evaluation_run", "log_training_run", "resolve_tracking_uri"]

logger = logging.getLogger(__name__)


def resolve_tracking_uri(configured: str | None) -> str:
    """Explicit setting, else $MLFLOW_TRACKING_URI, else a SQLite file in the working directory."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def _connect(tc: TrackingConfig) -> tuple[str, Any, str]:
    """The tracking URI (set as MLflow's), a client and the experiment's id (created when missing)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tc.tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(tc.experiment)
    if exp is not None:
        return uri, client, exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
    return uri, client, client.create_experiment(tc.experiment, artifact_location=location)


def champion_file(tc: TrackingConfig, into: str | Path) -> tuple[str, Path] | None:
    """The version the alias points at and its model file, downloaded into the folder ``into``; None when
    the registered model or the alias does not exist yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    _, client, _ = _connect(tc)
    try:
        current = client.get_model_version_by_alias(tc.registered_model, tc.alias)
    except MlflowException:
        return None
    local = mlflow.artifacts.download_artifacts(f"models:/{tc.registered_model}/{current.version}", dst_path=str(into))
    return str(current.version), Path(local) / "artifacts" / "churn_model.zip"


def log_training_run(result: TrainResult, config: Config, config_text: str | None, backtest: Backtest,
                     promotion: Promotion) -> None:
    """Record a training run: params (``deployed_snapshots``, ``backtest_as_of``, ...), the backtest's
    scorecards as metrics (``test_`` for the model), the tuning curves, tags (``promoted`` and ``promotion``,
    the reason), charts (of each scorer on the backtest's customers) and the model card, the pyfunc model;
    register it, and point the alias at it when ``promotion`` says so. Fills ``result``'s tracking fields."""
    import mlflow

    tc = config.tracking
    uri, client, exp_id = _connect(tc)
    model, s = result.model, result.summary
    with mlflow.start_run(experiment_id=exp_id) as run:
        flat = {f"{k}": v for k, v in s.items() if not isinstance(v, list | dict)}
        for key in ("deployed_snapshots", "tune_train_snapshots", "backtest_snapshots", "calibration_snapshots"):
            if key in s:  # no backtest_snapshots under grouped cross-validation
                flat[key] = ",".join(s[key]) or "none"
        mlflow.log_params({**flat, **{f"lgbm_{k}": v for k, v in config.model.params.items()},
                           "calibration": config.model.calibration, "cadence_days": config.snapshots.cadence_days,
                           "lookback_days": config.labels.lookback_days})
        for name, card in result.scorecards.items():
            mlflow.log_metrics({f"{'test' if name == 'model' else name}_{k}": float(v) for k, v in card.items()})
        mlflow.log_metrics({"calibration_brier_raw": s["calibration_brier_raw"],
                            "calibration_brier": s["calibration_brier"]})
        _log_training_curves(client, run.info.run_id, model.evals_result_)
        info = model.require_info()
        mlflow.set_tags({"data_fingerprint": info.data_fingerprint, "churnguard_version": __version__,
                         "model_version": info.model_version, "git_commit": info.git_commit or "unknown",
                         "beats_baselines": str(result.beats_baselines), "promoted": str(promotion.promote),
                         "promotion": promotion.reason[:5000]})
        result.artifacts.extend(_log_artifacts(result, config, config_text, backtest, promotion))
        logged = _log_pyfunc(model, _pyfunc_input(model, backtest.test.head(5)))
        result.run_id = run.info.run_id
    result.tracking_uri = uri
    version = mlflow.register_model(logged.model_uri, tc.registered_model)
    result.registered_version = str(version.version)
    result.champion, result.promotion = promotion.promote, promotion.reason
    if promotion.promote:
        client.set_registered_model_alias(tc.registered_model, tc.alias, version.version)
    else:
        logger.warning("version %s registered without the alias %r: %s", version.version, tc.alias, promotion.reason)


def _log_artifacts(result: TrainResult, config: Config, config_text: str | None, backtest: Backtest,
                   promotion: Promotion) -> list[str]:
    """The charts (of the backtest), the model card (Markdown and JSON), the config and the feature
    importances; their names."""
    import mlflow

    model, test, probabilities = result.model, backtest.test, backtest.probabilities
    y_test = test["churned"].to_numpy()
    imp = model.feature_importance()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = [
            plot_feature_importance(list(imp.index), imp.to_numpy(), tmp / "feature_importance.png"),
            plot_calibration(y_test, {"uncalibrated": backtest.raw, "calibrated": probabilities["model"]},
                             tmp / "calibration_curve.png"),
            plot_lift_gain(y_test, probabilities, tmp / "lift_gain.png"),
            plot_score_distribution(y_test, probabilities["model"], tmp / "score_distribution.png"),
            plot_training_curve({k: v["binary_logloss"] for k, v in model.evals_result_.items()},
                                tmp / "training_curve.png"),
        ]
        for name, text in {"model_card.md": model_card(result.summary, result.scorecards, result.verdict,
                                                    promotion.reason),
                           "model_card.json": json.dumps(model.require_info().to_dict(), indent=2, default=str),
                           "config.yaml": config_text or json.dumps(config.model_dump(mode="json"), indent=2)}.items():
            (tmp / name).write_text(text)
            paths.append(tmp / name)
        imp.rename("gain").to_csv(tmp / "feature_importance.csv")
        paths.append(tmp / "feature_importance.csv")
        for p in paths:
            mlflow.log_artifact(str(p))
        return [Path(p).name for p in paths]


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


def _log_pyfunc(model: ChurnModel, example: pd.DataFrame):
    """Log the pyfunc that returns probabilities, with its signature, input example and pinned requirements.

    Self-contained: the model file as its artifact, ``_modelcore.py`` as its code, so it loads and serves with
    mlflow, lightgbm, numpy and pandas alone (no churnguard, no signing key)."""
    from importlib.metadata import version

    import mlflow
    from mlflow.models import infer_signature

    from churnguard.model import _modelcore

    with tempfile.TemporaryDirectory() as tmp:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("_pyfunc.py")),
            artifacts={"model": str(model.save(Path(tmp) / "churn_model.zip"))},
            code_paths=[_modelcore.__file__],
            signature=infer_signature(example, model.predict_proba(example)),
            input_example=example,
            pip_requirements=[f"{p}=={version(p)}" for p in ("lightgbm", "numpy", "pandas", "mlflow")],
        )


def _pyfunc_input(model: ChurnModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Model inputs with categoricals as plain strings, as a JSON caller would send them."""
    x = model.prepare(frame)
    for c in model.categories_:
        x[c] = x[c].astype("object")
    return x.reset_index(drop=True)


def log_evaluation_run(tc: TrackingConfig, *, as_of: pd.Timestamp, rows: int, scorecards: dict[str, dict[str, float]],
                       model_path: str | Path, data_fingerprint: str, kind: str = "model") -> None:
    """Record a later evaluation of a model file: its scorecards (``eval_`` for the model) on ``rows``
    customers as of ``as_of``; ``kind`` (tag ``evaluation``) is ``model`` or ``backtest`` (see
    :class:`churnguard.training.run.Evaluation`)."""
    import mlflow

    _, _, exp_id = _connect(tc)
    with mlflow.start_run(experiment_id=exp_id, run_name=f"evaluate-{as_of.date()}"):
        mlflow.set_tags({"kind": "evaluation", "evaluation": kind, "model_file": str(model_path),
                         "data_fingerprint": data_fingerprint})
        mlflow.log_params({"as_of": str(as_of.date()), "rows": rows})
        for name, card in scorecards.items():
            mlflow.log_metrics({f"{'eval' if name == 'model' else name}_{k}": float(v) for k, v in card.items()})
