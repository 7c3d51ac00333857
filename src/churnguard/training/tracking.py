"""MLflow: where runs go, and what a training run and an evaluation run record. The only module that imports
mlflow (besides ``_pyfunc.py``, which MLflow itself runs when it loads the logged model).

By default runs go to a SQLite store ``mlflow.db`` in the working directory with artifacts in ``./mlartifacts``
beside it (no server to start); ``$MLFLOW_TRACKING_URI`` or ``tracking.tracking_uri`` / ``--tracking-uri``
point elsewhere.

A run is tagged with the host and process that runs it (``churnguard_host``, ``churnguard_pid``). A run cut short
by an error or SIGTERM ends FAILED; one whose process was killed outright (or whose store could not be told) is
marked FAILED (tag ``interrupted``) by the next training run of that host in the experiment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnguard import __version__
from churnguard._io.files import process_alive, raise_if_stopped
from churnguard._text import plural
from churnguard.training.evaluation import (
    evaluation_title,
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
    from churnguard.training.result import TrainResult

__all__ = ["MODEL_ARTIFACT", "champion_file", "check_tracking", "effective_config_yaml", "fail_orphaned_runs",
           "log_evaluation_run", "log_training_run", "log_uplift_run", "resolve_tracking_uri", "version_description"]

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "churn_model.zip"  # the model file's name in the logged pyfunc's artifacts


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


def check_tracking(tc: TrackingConfig) -> str:
    """The tracking URI, once MLflow has opened its store and the experiment (created when missing): called
    before the work of a tracked run, so that a store MLflow refuses (its file store ``file:...``, a path that
    cannot be written) stops the run at its start with the reason, not after the training.

    Raises:
        ValueError: MLflow cannot record runs there (the URI and MLflow's reason).
    """
    from mlflow.exceptions import MlflowException

    try:
        return _connect(tc)[0]
    except MlflowException as exc:
        uri = resolve_tracking_uri(tc.tracking_uri)
        reason = " ".join(str(exc.message).split()).rstrip(".")  # MLflow's own, on one line
        raise ValueError(f"MLflow cannot record runs in {uri}: {reason}. Give a database store instead, such "
                         "as the default sqlite:///mlflow.db (--tracking-uri, or tracking.tracking_uri in the "
                         "config), or an MLflow server's http:// address") from None


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
    return str(current.version), Path(local) / "artifacts" / MODEL_ARTIFACT


def log_training_run(result: TrainResult, config: Config, config_text: str | None, backtest: Backtest,
                     promotion: Promotion, model_file: Path) -> None:
    """Record a training run, named ``train <as_of> h<horizon_days>``: params (``deployed_snapshots``,
    ``backtest_as_of``, ...), the backtest's scorecards as metrics (``test_`` for the model), the tuning curves,
    tags (``promoted`` and ``promotion``, the reason; ``model_sha256`` of ``model_file``), charts (of each scorer
    on the backtest's customers), the model card and the config, and the pyfunc model of ``model_file`` (a
    private copy of the model named :data:`MODEL_ARTIFACT`: the caller puts it at ``result.model_path`` once
    the run is recorded). Register it with a description (:func:`version_description`) and point the alias at
    it when ``promotion`` says so, inside the run: a run that ends FINISHED is complete. Fills ``result``'s
    tracking fields."""
    import mlflow

    tc = config.tracking
    uri, client, exp_id = _connect(tc)
    fail_orphaned_runs(client, exp_id)
    s = result.summary
    with _recorded_run(exp_id, f"train {s['as_of']} h{s['horizon_days']}") as run:
        _log_facts(client, run.info.run_id, result, config, promotion)
        mlflow.set_tags({"model_file": str(result.model_path),
                         "model_sha256": hashlib.sha256(Path(model_file).read_bytes()).hexdigest()})
        result.artifacts.extend(_log_artifacts(result, config, config_text, backtest, promotion))
        logged = _log_pyfunc(result.model, _pyfunc_input(result.model, backtest.test.head(5)), model_file)
        result.run_id, result.tracking_uri = run.info.run_id, uri
        raise_if_stopped()  # logging the model runs it on the example, in code that turns errors into warnings
        version = mlflow.register_model(logged.model_uri, tc.registered_model)
        client.update_model_version(tc.registered_model, version.version, version_description(result))
        result.registered_version = str(version.version)
        result.champion, result.promotion = promotion.promote, promotion.reason
        if promotion.promote:
            client.set_registered_model_alias(tc.registered_model, tc.alias, version.version)
    if not promotion.promote:
        logger.warning("version %s registered without the alias %r: %s", version.version, tc.alias, promotion.reason)


def _log_facts(client: Any, run_id: str, result: TrainResult, config: Config, promotion: Promotion) -> None:
    """The run's params, metrics, training curves and tags."""
    import mlflow

    model, s = result.model, result.summary
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
    curve = model.require_info().curve
    if curve is not None:  # the churn curve's backtest, per horizon
        mlflow.log_params({"horizons": ",".join(map(str, curve.horizons)), "curve_backtest_as_of": curve.backtest_as_of})
        for h, card in curve.scorecards.items():
            mlflow.log_metrics({f"curve_{h}d_{k}": float(v) for k, v in card.items()})
    _log_training_curves(client, run_id, model.evals_result_)
    info = model.require_info()
    mlflow.set_tags({"data_fingerprint": info.data_fingerprint, "churnguard_version": __version__,
                     "model_version": info.model_version, "git_commit": info.git_commit or "unknown",
                     "beats_baselines": str(result.beats_baselines), "promoted": str(promotion.promote),
                     "promotion": promotion.reason[:5000]})


def version_description(result: TrainResult) -> str:
    """The registered version's description: the data, the label's horizon and the backtest's scorecard."""
    s, cards = result.summary, result.scorecards
    m, ev = cards["model"], result.summary["evaluation"]
    baselines = ", ".join(f"{name} {card['roc_auc']:.3f}" for name, card in cards.items() if name != "model")
    return (f"Churn = no purchase in the {s['horizon_days']} days after the scoring day. Trained on the data from "
            f"{s['data_first_day']} to {s['as_of']}: {s['transactions']:,} transactions, {plural(s['tickets'], 'ticket')}, "
            f"{s['customers']:,} customers (data fingerprint {result.model.require_info().data_fingerprint}). "
            f"Scorecard of the {evaluation_title(s)} on {s[ev + '_rows']:,} customers (churn rate "
            f"{s[ev + '_churn_rate']:.1%}): ROC AUC {m['roc_auc']:.3f} (baselines: {baselines}), Brier "
            f"{m['brier']:.4f}, ECE {m['ece']:.4f}, churners caught in the riskiest 10% {m['capture_at_10']:.1%}. "
            f"{result.verdict}")[:5000]


@contextmanager
def _recorded_run(experiment_id: str, name: str) -> Iterator[Any]:
    """An MLflow run tagged with this host and process; it ends FINISHED when the block does, FAILED when the
    block raises (SystemExit on SIGTERM included), and the block's exception goes on even when the store
    cannot be told."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run = mlflow.start_run(experiment_id=experiment_id, run_name=name,
                           tags={"churnguard_host": socket.gethostname(), "churnguard_pid": str(os.getpid())})
    try:
        yield run
        raise_if_stopped()  # a SIGTERM whose exit a library swallowed: not FINISHED
    except BaseException:
        try:
            mlflow.end_run("FAILED")
        except (MlflowException, OSError) as exc:  # it stays RUNNING until the next training run here
            logger.warning("could not mark MLflow run %s FAILED: %s", run.info.run_id, exc)
        raise
    mlflow.end_run("FINISHED")


def fail_orphaned_runs(client: Any, experiment_id: str) -> list[str]:
    """Mark FAILED the experiment's runs left RUNNING by a process of this host that is gone (killed outright);
    their ids."""
    found = client.search_runs([experiment_id], "attributes.status = 'RUNNING' and "
                               f"tags.churnguard_host = '{socket.gethostname()}'")
    pids = {r.info.run_id: r.data.tags.get("churnguard_pid", "") for r in found}
    orphans = [run_id for run_id, pid in pids.items() if pid.isdigit() and not process_alive(int(pid))]
    for run_id in orphans:
        client.set_tag(run_id, "interrupted", "its process ended before the run was recorded")
        client.set_terminated(run_id, "FAILED")
        logger.warning("MLflow run %s was left unfinished by a killed process: marked FAILED", run_id)
    return orphans


def _log_artifacts(result: TrainResult, config: Config, config_text: str | None, backtest: Backtest,
                   promotion: Promotion) -> list[str]:
    """The charts (of the backtest), the model card (Markdown and JSON), the config the run used
    (``config.yaml``: after command-line overrides, without the tracking URI), the config file as given
    (``config_source.yaml``, when ``config_text``) and the feature importances; their names."""
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
                           "config.yaml": effective_config_yaml(config),
                           **({} if config_text is None else {"config_source.yaml": config_text})}.items():
            (tmp / name).write_text(text)
            paths.append(tmp / name)
        imp.rename("gain").to_csv(tmp / "feature_importance.csv")
        paths.append(tmp / "feature_importance.csv")
        for p in paths:
            mlflow.log_artifact(str(p))
        return [Path(p).name for p in paths]


def effective_config_yaml(config: Config) -> str:
    """The config a run used as YAML that ``load_config`` reads back; the tracking URI, which may hold
    credentials and changes nothing in the model, is left out."""
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json", exclude={"tracking": {"tracking_uri"}}), sort_keys=False)


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


def _log_pyfunc(model: ChurnModel, example: pd.DataFrame, model_file: Path):
    """Log the pyfunc that returns probabilities, with its signature, input example and pinned requirements.

    Self-contained: ``model_file`` (``model`` saved) as its artifact, ``_modelcore.py`` as its code, so it loads
    and serves with mlflow, lightgbm, numpy and pandas alone (no churnguard, no signing key)."""
    from importlib.metadata import version

    import mlflow
    from mlflow.models import infer_signature

    from churnguard.model import _modelcore

    signature = infer_signature(example, _modelcore.StandaloneModel.load(model_file).predict(example))
    if "as_of" in example:  # optional: without it, the day the model was trained as of
        from mlflow.models import ModelSignature
        from mlflow.types.schema import ColSpec, Schema

        inputs = Schema([ColSpec(c.type, c.name, required=c.name != "as_of") for c in signature.inputs.inputs])
        signature = ModelSignature(inputs=inputs, outputs=signature.outputs, params=signature.params)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(Path(__file__).with_name("_pyfunc.py")),
        artifacts={"model": str(model_file)},
        code_paths=[_modelcore.__file__],
        signature=signature,
        input_example=example,
        pip_requirements=[f"{p}=={version(p)}" for p in ("lightgbm", "numpy", "pandas", "mlflow")],
    )


def _pyfunc_input(model: ChurnModel, frame: pd.DataFrame) -> pd.DataFrame:
    """Model inputs with categoricals as plain strings, as a JSON caller would send them; for a model whose
    purchases' model scores the customers beyond its support, also their ``as_of`` (ISO text)."""
    x = model.prepare(frame)
    for c in model.categories_:
        x[c] = x[c].astype("object")
    if model.beyond_ is not None and "as_of" in frame:
        x["as_of"] = pd.to_datetime(frame["as_of"]).dt.strftime("%Y-%m-%d").to_numpy()
    return x.reset_index(drop=True)


def log_evaluation_run(tc: TrackingConfig, *, as_of: pd.Timestamp, rows: int, scorecards: dict[str, dict[str, float]],
                       model_path: str | Path, data_fingerprint: str, kind: str = "model") -> None:
    """Record a later evaluation of a model file: its scorecards (``eval_`` for the model) on ``rows``
    customers as of ``as_of``; ``kind`` (tag ``evaluation``) is ``model`` or ``backtest`` (see
    :class:`churnguard.training.run.Evaluation`)."""
    import mlflow

    _, _, exp_id = _connect(tc)
    with _recorded_run(exp_id, f"evaluate-{as_of.date()}"):
        mlflow.set_tags({"kind": "evaluation", "evaluation": kind, "model_file": str(model_path),
                         "data_fingerprint": data_fingerprint})
        mlflow.log_params({"as_of": str(as_of.date()), "rows": rows})
        for name, card in scorecards.items():
            mlflow.log_metrics({f"{'eval' if name == 'model' else name}_{k}": float(v) for k, v in card.items()})


def log_uplift_run(tc: TrackingConfig, *, name: str, params: dict[str, Any], metrics: dict[str, float],
                   artifacts: list[Path], tags: dict[str, str]) -> tuple[str, str]:
    """Record an uplift training run (tag ``kind`` = ``uplift``): its params, metrics (``test_qini_uplift``,
    ...), tags and artifact files (scorecard, charts, the model file); the run id and tracking URI."""
    import mlflow

    uri, client, exp_id = _connect(tc)
    fail_orphaned_runs(client, exp_id)
    with _recorded_run(exp_id, name) as run:
        mlflow.set_tags({"kind": "uplift", "churnguard_version": __version__, **tags})
        mlflow.log_params(params)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        for path in artifacts:
            mlflow.log_artifact(str(path))
    return run.info.run_id, uri
