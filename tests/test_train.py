"""The training run end to end on small demo data, into a real MLflow SQLite store in a temp dir."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.demo import generate_demo_data
from churnguard.model import ChurnModel
from churnguard.training.procedure import plan_training
from churnguard.training.run import run_evaluation, run_training

pytestmark = pytest.mark.slow


@pytest.fixture
def env(trained):
    return trained


def test_run_is_tracked_with_metrics_artifacts_and_registry(env, tmp_path):
    from mlflow.tracking import MlflowClient

    result = env["result"]
    client = MlflowClient(env["uri"])
    run = client.get_run(result.run_id)
    for key in ("test_roc_auc", "test_brier", "test_ece", "recency_roc_auc", "bgnbd_roc_auc", "test_capture_at_10"):
        assert key in run.data.metrics
    assert run.data.metrics["test_roc_auc"] == pytest.approx(result.scorecards["model"]["roc_auc"])
    curve = client.get_metric_history(result.run_id, "valid_binary_logloss")  # the training curve, step-wise
    assert [m.step for m in curve] == list(range(len(result.model.evals_result_["valid"]["binary_logloss"])))
    assert run.data.tags["model_version"] == result.model.info.model_version
    assert run.data.params["horizon_days"] == "90"
    s = result.summary
    assert run.data.params["deployed_snapshots"] == ",".join(s["deployed_snapshots"])
    assert run.data.params["backtest_as_of"] == s["backtest_as_of"] == s["deployed_snapshots"][-1]
    # The level correction the backtest chose: the lowest ECE there, which the deployed model's calibrator applies.
    eces = s["level_backtest_ece"]
    assert run.data.params["level_correction"] == s["level_correction"] == min(eces, key=eces.get)
    assert eces[s["level_correction"]] == result.scorecards["model"]["ece"]
    assert result.model.calibrator_.shift == s["level_shift"] == s["level_candidates"][s["level_correction"]]
    card = Path(client.download_artifacts(result.run_id, "model_card.md", str(tmp_path)))
    said = f"- level_correction: {s['level_correction']}, " + (
        "the calibration as fitted" if s["level_correction"] == "none" else f"a shift of {s['level_shift']:+.3f}")
    assert said in card.read_text()
    assert run.data.tags["data_fingerprint"] == result.model.info.data_fingerprint
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"feature_importance.png", "calibration_curve.png", "lift_gain.png", "score_distribution.png",
            "model_card.md", "model_card.json", "config.yaml"} <= artifacts
    assert result.registered_version == "1"
    assert str(client.get_model_version_by_alias("churnguard", "champion").version) == "1"
    # Artifacts live next to the SQLite file, not in a stray ./mlruns.
    assert (env["tmp"] / "mlartifacts").is_dir()
    assert not (env["tmp"] / "mlruns").exists()


def test_run_is_named_described_and_logs_the_config_it_used(env, tmp_path):
    import hashlib

    from mlflow.tracking import MlflowClient

    from churnguard.config import load_config

    result, cfg = env["result"], env["cfg"]
    s, card = result.summary, result.scorecards["model"]
    client = MlflowClient(env["uri"])
    run = client.get_run(result.run_id)
    assert run.info.run_name == f"train {s['as_of']} h90"
    # The model file written after the run is the one the run logged.
    assert run.data.tags["model_sha256"] == hashlib.sha256(result.model_path.read_bytes()).hexdigest()
    description = client.get_model_version("churnguard", result.registered_version).description
    for part in ("no purchase in the 90 days", f"{s['data_first_day']} to {s['as_of']}",
                 f"{s['transactions']:,} transactions", f"{s['customers']:,} customers",
                 f"Scorecard of the backtest as of {s['backtest_as_of']} on {s['backtest_rows']:,} customers",
                 f"ROC AUC {card['roc_auc']:.3f}", result.verdict):
        assert part in description
    logged = Path(client.download_artifacts(result.run_id, "config.yaml", str(tmp_path)))
    assert "sqlite" not in logged.read_text()  # where runs go is left out (a URI may hold credentials)
    assert load_config(logged) == cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
        update={"tracking_uri": None})})  # read back, the config the run used (max_snapshots 12, not the file's 24)


def test_pyfunc_returns_probabilities(env):
    import mlflow

    mlflow.set_tracking_uri(env["uri"])
    model = mlflow.pyfunc.load_model("models:/churnguard@champion")
    example = model.input_example
    probs = np.asarray(model.predict(example))
    assert probs.shape == (len(example),)
    assert ((probs >= 0) & (probs <= 1)).all()
    assert not set(np.unique(probs)) <= {0, 1}  # probabilities, not class labels


WEAK = {"num_boost_round": 1, "params": {"num_leaves": 2, "objective": "binary", "verbose": -1}}
# Beats both baselines on this data's backtest but not the default settings (both checked below).
FAIR = {"num_boost_round": 10, "params": {"num_leaves": 4, "learning_rate": 0.2, "objective": "binary", "verbose": -1}}


def _own_store(env, tmp_path, **model):
    """The session's config with its own MLflow store (and model settings ``model``)."""
    cfg = env["cfg"].with_overrides(tracking={"tracking_uri": f"sqlite:///{tmp_path / 'own.db'}"})
    return cfg.with_overrides(model=model) if model else cfg


def _champion(client) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias("churnguard", "champion").version)
    except MlflowException:
        return None


def test_promotion_refused_for_a_model_that_loses_to_a_baseline(env, tmp_path):
    from mlflow.tracking import MlflowClient

    result = run_training(env["tables"], _own_store(env, tmp_path, **WEAK), model_out=tmp_path / "weak.zip")
    assert not result.beats_baselines
    assert (result.registered_version, result.champion) == ("1", False)
    client = MlflowClient(f"sqlite:///{tmp_path / 'own.db'}")
    assert _champion(client) is None  # registered without the alias, though there was no champion
    assert result.promotion == f"not made champion: {result.verdict}"
    assert "does NOT beat the baseline 'bgnbd'" in result.promotion
    assert client.get_run(result.run_id).data.tags["promoted"] == "False"
    (tmp_path / "card").mkdir()
    card = Path(client.download_artifacts(result.run_id, "model_card.md", str(tmp_path / "card")))
    assert f"## Registry\n\n{result.promotion}" in card.read_text()


def test_promotion_refused_when_the_champion_wins_on_the_same_day(env, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'own.db'}")
    first = run_training(env["tables"], _own_store(env, tmp_path), model_out=tmp_path / "first.zip")
    assert first.champion
    assert first.promotion == "made champion: it beats every baseline and there was no champion yet"
    fair = run_training(env["tables"], _own_store(env, tmp_path, **FAIR), model_out=tmp_path / "fair.zip")
    assert fair.beats_baselines
    assert fair.scorecards["model"]["roc_auc"] < first.scorecards["model"]["roc_auc"]
    assert not fair.champion
    assert _champion(client) == "1"
    # The champion learned from outcomes after the backtest day: its own procedure is run as of that day.
    assert fair.promotion == (
        f"not made champion: the champion scores better on the same day (roc_auc "
        f"{fair.scorecards['model']['roc_auc']:.4f} vs {first.scorecards['model']['roc_auc']:.4f} for version 1, "
        "trained as of 2025-12-31, after 2025-10-02: its training procedure run as of 2025-10-02)")
    again = run_training(env["tables"], _own_store(env, tmp_path), model_out=tmp_path / "again.zip")
    assert again.champion  # the same procedure ties with itself: the fresher model takes over
    assert "(the same procedure as this run's)" in again.promotion
    assert _champion(client) == "3"


def test_promotion_granted_when_it_beats_the_champion_on_the_same_day(env, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'own.db'}")
    old = run_training(env["tables"], _own_store(env, tmp_path, **WEAK), model_out=tmp_path / "old.zip",
                       as_of="2025-06-30")
    client.set_registered_model_alias("churnguard", "champion", old.registered_version)  # promoted by hand
    new = run_training(env["tables"], _own_store(env, tmp_path), model_out=tmp_path / "new.zip")
    assert new.champion
    assert _champion(client) == new.registered_version == "2"
    # Trained before the backtest day, the champion's file is scored there, as `evaluate` scores it.
    theirs = run_evaluation(old.model_path, env["tables"], "2025-10-02").scorecards["model"]["roc_auc"]
    assert new.promotion == (
        "made champion: it beats every baseline and scores at least as well as the champion on the same day "
        f"(roc_auc {new.scorecards['model']['roc_auc']:.4f} vs {theirs:.4f} for version 1, its model file "
        "(trained as of 2025-06-30) scored on 2025-10-02)")


def test_the_deployed_model_is_fresh_and_the_backtest_sees_no_later_outcome(env):
    s = env["result"].summary
    horizon = pd.Timedelta(days=s["horizon_days"])
    today, deployed = pd.Timestamp(s["as_of"]), [pd.Timestamp(d) for d in s["deployed_snapshots"]]
    assert deployed[-1] == today - horizon  # the newest labelled snapshot
    assert max(pd.Timestamp(d) for d in s["tune_train_snapshots"]) + horizon <= pd.Timestamp(s["tune_snapshot"])
    assert pd.Timestamp(s["tune_snapshot"]) == deployed[-1]
    backtest = pd.Timestamp(s["backtest_as_of"])
    assert backtest == today - horizon
    assert max(pd.Timestamp(d) for d in s["backtest_snapshots"]) + horizon <= backtest
    assert s["rows_by_snapshot"][s["deployed_snapshots"][-1]]["rows"] == s["backtest_rows"]
    plan = plan_training(pd.Timestamp("2023-01-01"), pd.Timestamp("2024-12-31"), env["cfg"].labels,
                         env["cfg"].snapshots.model_copy(update={"max_snapshots": 6}))
    assert plan.snapshots[-1] == pd.Timestamp("2024-10-02")  # 2024-12-31 - 90 days
    assert plan.snapshots[0] == pd.Timestamp("2024-05-05")  # five cadences of 30 days earlier
    assert plan.tune_day == plan.snapshots[-1]
    assert plan.tune_train == plan.snapshots[:3]  # 2024-05-05, 06-04, 07-04: windows end by 2024-10-02


def test_calibration_is_cross_fitted_on_the_snapshots_at_this_time_of_year(env):
    s = env["result"].summary
    # Today 2025-12-31; the deployed snapshots run 2024-11-06 .. 2025-10-02, every 30 days, and 2024-12-31
    # (today's date a year earlier).
    assert s["calibration"] == "sigmoid"
    assert s["calibration_snapshots"] == ["2024-12-06", "2024-12-31", "2025-01-05", "2025-02-04"]
    assert 0 < s["calibration_brier"] < 0.25
    calibrator = env["result"].model.calibrator_
    assert calibrator.kind == "sigmoid"
    assert calibrator.coef > 0  # keeps the model's order


def test_model_file_holds_what_scoring_needs(env):
    model = ChurnModel.load(env["result"].model_path)
    info = model.info
    assert info.config == env["cfg"]
    assert info.risk_bands == {"high": 0.6, "medium": 0.3}
    assert info.population.horizon_days == 90
    assert info.population.lifespan_years == info.summary["lifespan_years"]
    assert info.population.vip_cltv_threshold > 0
    assert info.population.bgnbd is not None
    assert set(info.baseline_calibrators) == {"recency", "bgnbd"}
    assert set(info.feature_dtypes) == set(model.feature_names_)
    assert info.model_version.startswith(info.training_window["as_of"] + "-")


def test_longer_silence_never_lowers_risk(env):
    from churnguard.features import build_features
    from churnguard.features.kernel import bgnbd_features

    model = env["result"].model
    feats = build_features(env["tables"], "2025-06-30", env["cfg"].features)
    feats = feats.assign(**bgnbd_features(feats, model.info.population.bgnbd, 90))
    feats = feats[feats["recency_days"].notna()].head(300)
    base = model.predict_proba(feats)
    for extra in (1, 30, 120, 400):
        later = feats.assign(recency_days=feats["recency_days"] + extra)
        assert (model.predict_proba(later) >= base - 1e-12).all()


def test_evaluate_on_the_backtest_day_reproduces_the_training_scorecard(env, tmp_path):
    from mlflow.tracking import MlflowClient

    result = env["result"]
    day = result.summary["backtest_as_of"]
    cfg = _own_store(env, tmp_path)  # the session's store is shared by the test processes: only read there
    evaluation = run_evaluation(result.model_path, env["tables"], day, tracking=cfg.tracking)
    assert evaluation.kind == "backtest"
    assert "before the model's training day" in evaluation.note
    assert evaluation.scorecards == result.scorecards  # exactly: the same procedure on the same data
    client = MlflowClient(cfg.tracking.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
                              f"tags.evaluation = 'backtest' and params.as_of = '{day}'")
    assert runs
    assert runs[0].data.metrics["eval_roc_auc"] == result.scorecards["model"]["roc_auc"]
    with pytest.raises(ValueError, match="outcome window ends after the last day"):
        run_evaluation(result.model_path, env["tables"], "2025-12-01")


def test_evaluate_refuses_a_backtest_on_too_few_customers_as_train_does(env):
    """A backtest on 40 customers' data ran the training procedure that train refuses to run on them, and printed
    its scorecard as any other."""
    from churnguard.config import load_config
    from churnguard.dataset import validate_tables

    demo = env["demo"]
    few = demo.customers["customer_id"].head(40)
    tables = validate_tables(demo.transactions[demo.transactions["customer_id"].isin(few)],
                             config=load_config().data)
    with pytest.raises(ValueError, match=r"^nothing to learn from: \d+ customers bought in the lookback window"):
        run_evaluation(env["result"].model_path, tables, "2025-06-30")


def test_a_scorecard_on_few_outcomes_is_said_to_be_unreliable():
    from churnguard.training.procedure import few_outcomes_note

    assert few_outcomes_note(np.array([True] * 11 + [False] * 11)) == (
        "judged on 22 customers, 11 of whom churned and 11 stayed: too few outcomes for a reliable scorecard (at "
        "least 100 customers, 10 of each, as training needs)")
    assert few_outcomes_note(np.array([True] * 5 + [False] * 995)).startswith("judged on 1,000 customers, 5 of ")
    assert few_outcomes_note(np.array([True] * 10 + [False] * 90)) == ""


def test_train_cli_on_files(env, tmp_path):
    from typer.testing import CliRunner

    from churnguard.cli import app
    from churnguard.demo import write_demo_data

    paths = write_demo_data(generate_demo_data(800, seed=5), tmp_path / "data")
    out = tmp_path / "m.zip"
    result = CliRunner().invoke(app, [
        "train", "--transactions", str(paths["transactions"]), "--tickets", str(paths["tickets"]),
        "--customers", str(paths["customers"]), "--model-out", str(out),
        "--tracking-uri", f"sqlite:///{tmp_path / 'cli.db'}", "--experiment", "cli-test",
    ])
    assert result.exit_code == 0, result.output
    assert "Scorecard of the backtest as of 2025-10-02" in result.output
    # The registry's decision and its reason (on this small world the model ties BG/NBD, so no alias).
    assert re.search(r"Registry version 1: (made champion: it beats every baseline and there was no champion yet|"
                     r"not made champion: The model does NOT beat the baseline)", result.output)
    assert out.is_file()
    result = CliRunner().invoke(app, [
        "evaluate", "--model", str(out), "--transactions", str(paths["transactions"]),
        "--tickets", str(paths["tickets"]), "--customers", str(paths["customers"]), "--as-of", "2025-09-01",
        "--no-log",
    ])
    assert result.exit_code == 0, result.output
    assert "roc_auc" in result.output
    assert "backtest of its training procedure" in result.output


def test_a_store_mlflow_refuses_stops_training_at_its_start_with_the_reason(env, tmp_path):
    """A tracking URI MLflow cannot record runs in (here a scheme it has no store for; MLflow 3's file store
    ``file:./mlruns`` is another) stops ``train`` before any work, with MLflow's reason and the way out, exit 2,
    and no model file: the run used to fail only when it was tracked, after the whole training."""
    from typer.testing import CliRunner

    from churnguard.cli import app

    out = tmp_path / "m.zip"
    result = CliRunner().invoke(app, ["train", "--demo-customers", "400", "--model-out", str(out),
                                      "--tracking-uri", "nostore://here"])
    assert result.exit_code == 2, result.output
    assert "MLflow cannot record runs in nostore://here" in result.output
    assert "sqlite:///mlflow.db" in result.output
    assert "training the deployed model" not in result.output
    assert "Scorecard" not in result.output
    assert not out.exists()
    with pytest.raises(ValueError, match="MLflow cannot record runs in nostore://here"):
        run_training(env["tables"], env["cfg"].with_overrides(tracking={"tracking_uri": "nostore://here"}),
                     model_out=out)
    assert not out.exists()


def test_default_store_works_beside_a_stale_mlruns_folder(trained, tmp_path, monkeypatch):
    from churnguard.training.tracking import resolve_tracking_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlruns" / "0").mkdir(parents=True)  # what an old MLflow file store leaves behind
    uri = resolve_tracking_uri(None)
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = trained["cfg"].with_overrides(snapshots={"max_snapshots": 8})
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"tracking_uri": None})})
    result = run_training(trained["tables"], cfg, model_out=tmp_path / "m.zip")
    assert result.tracking_uri == uri
    assert (tmp_path / "mlflow.db").is_file()
    assert (tmp_path / "mlartifacts").is_dir()


def test_row_cap_samples_every_snapshot_but_the_tuning_day_and_says_so(env, tmp_path):
    from mlflow.tracking import MlflowClient

    full = env["result"].summary
    assert not full["train_sampled"]
    assert full["train_rows"] == full["train_rows_available"] + full["backtest_rows"]  # + the newest, whole
    assert full["max_train_rows"] == 2_000_000  # the default, far above this data
    cap = full["train_rows_available"] // 4
    cfg = _own_store(env, tmp_path).with_overrides(snapshots={"max_train_rows": cap})
    result = run_training(env["tables"], cfg, model_out=tmp_path / "capped.zip")
    s = result.summary
    assert s["train_sampled"]
    assert (s["train_rows"], s["train_rows_available"]) == (cap + full["backtest_rows"], full["train_rows_available"])
    assert s["train_sample_fraction"] == pytest.approx(cap / full["train_rows_available"])
    # The same snapshots; the newest is whole; every other snapshot has its share.
    for key in ("deployed_snapshots", "tune_snapshot", "backtest_as_of", "backtest_rows", "backtest_churn_rate"):
        assert s[key] == full[key]
    for day in s["deployed_snapshots"][:-1]:
        info = s["rows_by_snapshot"][day]
        assert info["population"] == full["rows_by_snapshot"][day]["rows"]
        assert abs(info["rows"] - info["population"] * cap / full["train_rows_available"]) < 1
    assert s["rows_by_snapshot"][s["tune_snapshot"]]["rows"] == full["backtest_rows"]
    params = MlflowClient(cfg.tracking.tracking_uri).get_run(result.run_id).data.params
    assert params["max_train_rows"] == str(cap)
    assert params["train_rows"] == str(s["train_rows"])
    assert params["train_rows_available"] == str(full["train_rows_available"])
    assert params["train_sampled"] == "True"
    info = ChurnModel.load(result.model_path).info
    assert info.summary["train_rows"] == s["train_rows"]
    assert set(info.feature_dtypes) == set(result.model.feature_names_)
