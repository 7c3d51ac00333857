"""The churn curve (``labels.horizons``): one model over the features and the horizon, calibrated per horizon.

Churn within h days is "no purchase in (as_of, as_of + h]": whoever churns within 180 days churns within 30, so
every customer's curve must never rise with the horizon, before calibration (LightGBM's monotone constraint)
and after it (the running minimum).
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.config import ConfigError, load_config, load_playbook
from churnguard.features import build_features
from churnguard.model import ChurnModel
from churnguard.model._modelcore import HORIZON_FEATURE, Calibrator, Curve, monotone_curve
from churnguard.scoring import model_population, output_columns, score_tables
from churnguard.training.level import LEVELS

HORIZONS = (30, 60, 90, 180)
CURVE_COLUMNS = ["churn_probability_30d", "churn_probability_60d", "churn_probability_90d", "churn_probability_180d"]


@pytest.fixture(scope="module")
def curve_model(trained_curve) -> ChurnModel:
    return ChurnModel.load(trained_curve["result"].model_path)


@pytest.fixture(scope="module")
def customers(trained, curve_model) -> pd.DataFrame:
    """Features of the demo customers who bought in the last year, as of the training day."""
    feats = build_features(trained["tables"], trained["tables"].last_date(), trained["cfg"].features,
                           model_population(curve_model))
    return feats[feats["recency_days"] < 365].reset_index(drop=True)


def test_running_minimum_makes_each_row_non_increasing():
    got = monotone_curve(np.array([[0.7, 0.72, 0.5, 0.55], [0.4, 0.3, 0.2, 0.1]]))
    np.testing.assert_array_equal(got, [[0.7, 0.7, 0.5, 0.5], [0.4, 0.3, 0.2, 0.1]])


class _SameScore:
    """A booster that gives every row LightGBM probability 0.5, whatever the horizon."""

    def predict(self, matrix, **_):
        return np.full(len(matrix), 0.5)


def test_calibrators_that_cross_still_give_a_non_increasing_curve():
    """Raw 0.5 (logit 0) at both horizons; the 30-day calibrator maps it to sigmoid(-1) = 0.2689, the 60-day
    one to sigmoid(1) = 0.7311, which would rise: the curve keeps 0.2689 at 60 days."""
    curve = Curve(_SameScore(), ["x", HORIZON_FEATURE], {}, (30, 60),
                  (Calibrator("sigmoid", intercept=-1.0), Calibrator("sigmoid", intercept=1.0)))
    got = curve.probabilities(np.array([[1.0, np.nan]]))
    low = 1 / (1 + np.exp(1.0))
    np.testing.assert_allclose(got, [[low, low]], rtol=0, atol=1e-15)
    assert curve.columns == ["churn_probability_30d", "churn_probability_60d"]


def _random_customers(data: st.DataObject, customers: pd.DataFrame, names: list[str],
                      categories: dict[str, list]) -> pd.DataFrame:
    """Up to 5 demo customers, each with some inputs replaced by random values (within twice the observed
    range, or missing; categoricals by any training level or an unseen one)."""
    rows = []
    for _ in range(data.draw(st.integers(1, 5))):
        row = customers.iloc[data.draw(st.integers(0, len(customers) - 1))].to_dict()
        for name in data.draw(st.lists(st.sampled_from(names), max_size=8, unique=True)):
            if name in categories:
                row[name] = data.draw(st.sampled_from([*categories[name], None, "never seen"]))
            else:
                lo, hi = float(customers[name].min()), float(customers[name].max())
                span = max(hi - lo, 1.0)
                row[name] = data.draw(st.one_of(st.just(np.nan), st.floats(lo - span, hi + span)))
        rows.append(row)
    return pd.DataFrame(rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_curves_never_rise_with_the_horizon_for_random_customers(curve_model, customers, data):
    curve = curve_model.curve_
    names = [n for n in curve.feature_names if n != HORIZON_FEATURE]
    frame = _random_customers(data, customers, names, curve.categories)
    probs = curve_model.predict_curve(frame).to_numpy()
    assert list(curve_model.predict_curve(frame).columns) == CURVE_COLUMNS
    assert np.isfinite(probs).all()
    assert ((probs >= 0) & (probs <= 1)).all()
    assert (np.diff(probs, axis=1) <= 0).all(), probs
    # By construction, before calibration: LightGBM's raw score never rises with horizon_days.
    from churnguard.model._modelcore import feature_matrix

    matrix = feature_matrix(frame, curve.feature_names, curve.categories)
    at = curve.feature_names.index(HORIZON_FEATURE)
    raw = []
    for h in np.linspace(1, 400, 25):
        matrix[:, at] = h
        raw.append(curve.booster.predict(matrix))
    assert (np.diff(np.array(raw), axis=0) <= 0).all()


def test_a_model_with_a_curve_round_trips_through_its_file(curve_model, trained_curve, customers, tmp_path):
    trained = trained_curve["result"].model
    path = trained_curve["result"].model_path
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["booster.txt", "curve_booster.txt", "manifest.json", "model.json"]
        document = json.loads(zf.read("model.json"))
    assert document["curve"]["horizons"] == list(HORIZONS)
    assert len(document["curve"]["calibrators"]) == 4
    assert document["curve"]["feature_names"][-1] == HORIZON_FEATURE
    pd.testing.assert_frame_equal(curve_model.predict_curve(customers), trained.predict_curve(customers),
                                  check_exact=True)
    assert curve_model.info == trained.info
    again = curve_model.save(tmp_path / "again.zip")
    assert again.read_bytes() == path.read_bytes()


def test_the_model_card_has_a_backtest_scorecard_and_a_calibration_per_horizon(curve_model, trained_curve):
    card = curve_model.info.curve
    last = pd.Timestamp(trained_curve["result"].summary["as_of"])
    assert card.horizons == HORIZONS
    assert card.backtest_as_of == str((last - pd.Timedelta(days=180)).date())
    assert set(card.scorecards) == set(card.calibration) == set(HORIZONS)
    for h in HORIZONS:
        assert card.scorecards[h]["roc_auc"] > 0.7, (h, card.scorecards[h])
        assert 0 <= card.scorecards[h]["ece"] < 0.1, (h, card.scorecards[h])
        assert card.calibration[h]["kind"] == "sigmoid"
        assert card.calibration[h]["brier"] <= card.calibration[h]["brier_raw"] + 1e-3
        # Each horizon's own level correction, the one with the lowest ECE on the backtest (none on a tie).
        eces, chosen = card.calibration[h]["level_backtest_ece"], card.calibration[h]["level_correction"]
        assert set(eces) <= set(LEVELS)
        assert "none" in eces
        assert eces[chosen] == min(eces.values())
        calibrator = curve_model.curve_.calibrators[HORIZONS.index(h)]
        assert (calibrator.shift, calibrator.power) == (card.calibration[h]["shift"], card.calibration[h]["power"])
        assert calibrator.power == 1.0 or chosen == "intensity"
        assert calibrator.shift == 0.0 or chosen not in ("none", "intensity")
    rates = [card.scorecards[h]["positive_rate"] for h in HORIZONS]  # fewer stay silent over longer windows
    assert rates == sorted(rates, reverse=True)
    assert curve_model.info.to_dict()["curve"]["scorecards"]["180"] == card.scorecards[180]


def test_without_horizons_the_model_file_has_no_curve(trained, model):
    with zipfile.ZipFile(trained["result"].model_path) as zf:
        assert sorted(zf.namelist()) == ["booster.txt", "manifest.json", "model.json"]
        document = json.loads(zf.read("model.json"))
    assert "curve" not in document
    assert "curve" not in document["info"]
    assert "horizons" not in document["info"]["config"]["labels"]
    assert model.curve_ is None
    assert model.info.curve is None
    assert output_columns(model)[3:5] == ["churn_probability", "risk_band"]


def test_scores_carry_the_curve_after_the_probability(trained, curve_model):
    result = score_tables(curve_model, trained["tables"], None, load_playbook())
    scores = result.scores
    at = list(scores.columns).index("churn_probability")
    assert list(scores.columns)[at + 1 : at + 5] == CURVE_COLUMNS
    scored = scores["churn_probability"].notna()
    assert scores.loc[scored, CURVE_COLUMNS].notna().all().all()
    assert scores.loc[~scored, CURVE_COLUMNS].isna().all().all()  # lost and never-bought: no curve either
    assert (~scored).any()
    assert scored.sum() > 500
    assert (np.diff(scores.loc[scored, CURVE_COLUMNS].to_numpy(), axis=1) <= 0).all()


def test_the_mlflow_model_returns_the_curve_columns(trained_curve, curve_model, customers):
    import mlflow.pyfunc

    from churnguard.training.tracking import _pyfunc_input

    result = trained_curve["result"]
    mlflow.set_tracking_uri(trained_curve["uri"])
    logged = mlflow.pyfunc.load_model(f"models:/churnguard/{result.registered_version}")
    rows = _pyfunc_input(curve_model, customers.head(20))
    got = logged.predict(rows)
    assert list(got.columns) == ["churn_probability", *CURVE_COLUMNS]
    np.testing.assert_allclose(got["churn_probability"], curve_model.predict_proba(rows), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got[CURVE_COLUMNS], curve_model.predict_curve(rows), rtol=0, atol=1e-12)


def test_horizons_are_checked_when_the_config_is_loaded(tmp_path):
    for text, message in (("[30, -5]", "horizons must be positive"), ("[90]", "at least 2 different horizons")):
        path = tmp_path / "c.yaml"
        path.write_text(f"labels:\n  horizons: {text}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    path.write_text("labels:\n  horizons: [180, 30, 90, 30]\n")
    assert load_config(path).labels.horizons == (30, 90, 180)


def test_the_horizons_option_takes_whole_days():
    result = CliRunner().invoke(app, ["train", "--horizons", "30,sixty"])
    assert result.exit_code == 2
    assert "--horizons must be whole days separated by commas, e.g. 30,60,90,180; got '30,sixty'" in " ".join(
        result.output.split())


def test_the_dask_engine_does_not_train_a_curve(tmp_path):
    from churnguard.engines.dask import train_dask

    config = load_config().with_overrides(labels={"horizons": [30, 90]})
    with pytest.raises(ValueError, match="the churn curve is trained by the local engine only"):
        train_dask(None, config, model_out=tmp_path / "m.zip")


def test_a_curve_too_long_for_the_data_is_refused_before_any_training():
    """--horizons 30,2000 on three years of data: the curve's backtest day, 2,000 days back, is before the first
    purchase; it read "as_of 2020-07-10 is before the first purchase", a day the user never gave, and a horizon
    that passes the plan but leaves no snapshot failed only after the model was trained."""
    from churnguard.training.curve import curve_backtest_plan
    from churnguard.training.procedure import plan_training

    first, today = pd.Timestamp("2023-01-01"), pd.Timestamp("2025-12-31")
    config = load_config().with_overrides(labels={"horizons": [30, 2000]})
    with pytest.raises(ValueError, match=r"^the churn curve is backtested as of 2020-07-10, its longest horizon "
                                         r"\(2,000 days\) before 2025-12-31, and the data from 2023-01-01 is too short "
                                         r"to train on up to that day; choose horizons of at most (\d+) days") as err:
        curve_backtest_plan(first, today, config)
    most = int(err.value.args[0].rsplit("at most ", 1)[1].split()[0].replace(",", ""))
    fits = config.with_overrides(labels={"horizons": [30, most]})
    back = curve_backtest_plan(first, today, fits)  # the advice holds: a plan with a snapshot whose window ended
    assert back.today == today - pd.Timedelta(days=most)
    assert any(d + pd.Timedelta(days=most) <= back.today for d in back.snapshots)
    assert any(d + pd.Timedelta(days=most) <= today for d in plan_training(first, today, fits.labels,
                                                                              fits.snapshots).snapshots)
    with pytest.raises(ValueError, match="too short"):
        curve_backtest_plan(first, today, config.with_overrides(labels={"horizons": [30, most + 1]}))
