"""Customers silent longer than any the model learned from: the purchases' seasonal model gives their probability.

``BeyondSupport`` (``churnguard.model._modelcore``) is the one rule; ``ChurnModel.predict_proba``, scoring
(``score_columns``: batch, Dask and HTTP) and the model file's own reader (``StandaloneModel``, the MLflow
model) all call it. The engines' and the server's parity on a model with it is in ``tests/test_parity.py``
(case ``iso-beyond``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.features import build_features
from churnguard.model import ChurnModel
from churnguard.model._modelcore import BeyondSupport, Histories, SeasonalParetoNBD, StandaloneModel
from churnguard.scoring import reasons
from churnguard.scoring.score import model_population, score_features

SEASON = (0.8, 0.8, 0.9, 1.0, 1.0, 0.9, 0.8, 0.9, 1.0, 1.1, 1.3, 1.5)
PNBD = SeasonalParetoNBD(1.2, 3.0, 0.8, 25.0, tuple(np.array(SEASON) / np.mean(SEASON)))
RULE = BeyondSupport(support_days=100, horizon_days=90, as_of="2025-06-30", purchases=PNBD)


def _features(recency, age, frequency, as_of="2025-06-30") -> pd.DataFrame:
    return pd.DataFrame({"recency_days": np.asarray(recency, dtype=float), "bg_age_days": np.asarray(age, dtype=float),
                         "bg_frequency": np.asarray(frequency, dtype=float), "as_of": pd.Timestamp(as_of)})


def test_only_customers_silent_longer_than_the_support_change():
    # a: 30 days silent (within), b: 100 (the support itself: within), c: 101 and d: 300 (beyond), e: no
    # probability (not scored: stays NaN), f: no purchase (NaN recency: unchanged).
    feats = _features([30, 100, 101, 300, 400, np.nan], [200, 300, 301, 320, 420, np.nan], [3, 5, 2, 0, 1, np.nan])
    prob = np.array([0.1, 0.2, 0.3, 0.4, np.nan, 0.5])
    got = RULE.apply(prob, feats)
    assert got[[0, 1, 5]].tolist() == [0.1, 0.2, 0.5]
    assert np.isnan(got[4])
    h = Histories.of_features(feats.iloc[[2, 3]], "2025-06-30")
    np.testing.assert_array_equal(got[[2, 3]], PNBD.no_purchase(h, "2025-06-30", 90))
    assert prob[2] == 0.3  # the input is not changed


def test_the_pareto_nbd_gives_more_churn_to_longer_silences_and_fewer_repeats():
    feats = _features([150, 250, 350, 250], [400, 400, 400, 400], [4, 4, 4, 1])
    p = RULE.apply(np.full(4, 0.5), feats)
    assert p[0] < p[1] < p[2] < 1
    assert p[3] < p[1]  # a customer who bought once is expected to be silent long: their silence says less


def test_the_day_is_the_features_as_of_or_the_given_one_else_the_models():
    feats = _features([200, 200], [300, 300], [2, 2], as_of="2025-01-15")
    one = RULE.apply(np.full(2, 0.5), feats)
    h = Histories.of_features(feats, "2025-01-15")
    np.testing.assert_array_equal(one, PNBD.no_purchase(h, "2025-01-15", 90))
    assert not np.array_equal(one, RULE.apply(np.full(2, 0.5), feats.drop(columns="as_of")))  # the model's day
    np.testing.assert_array_equal(RULE.apply(np.full(2, 0.5), feats.drop(columns="as_of")),
                                  RULE.apply(np.full(2, 0.5), feats, "2025-06-30"))
    # One day per customer: each gets the probability of its own day.
    mixed = feats.assign(as_of=pd.to_datetime(["2025-01-15", "2025-06-30"]))
    got = RULE.apply(np.full(2, 0.5), mixed)
    assert got[0] == one[0]
    assert got[1] == RULE.apply(np.full(2, 0.5), feats, "2025-06-30")[1]


def test_features_without_the_purchase_history_columns_leave_the_probabilities():
    prob = np.array([0.3, 0.4])
    assert RULE.apply(prob, pd.DataFrame({"recency_days": [300.0, 20.0]})) is prob


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(101, 365), st.integers(0, 200), st.integers(0, 30)), min_size=1, max_size=8))
def test_the_curve_never_rises_with_the_horizon(histories):
    recency = np.array([r for r, _, _ in histories], dtype=float)
    feats = _features(recency, recency + np.array([a for _, a, _ in histories]), [f for _, _, f in histories])
    curve = RULE.apply_curve(np.full((len(recency), 4), 0.5), feats, (30, 60, 90, 180))
    assert (np.diff(curve, axis=1) <= 1e-12).all()
    assert ((curve > 0) & (curve < 1)).all()


def test_blocks_of_customers_give_the_answer_of_one_pass(monkeypatch):
    import churnguard.model._modelcore as core

    rng = np.random.default_rng(3)
    n = 50
    age = rng.integers(0, 400, n)
    h = Histories(20000 - age, 20000 - (age * rng.random(n)).astype(np.int64), rng.integers(0, 10, n).astype(float))
    whole = PNBD.no_purchase(h, "2025-01-01", 90)
    monkeypatch.setattr(core, "_CHUNK", 7)
    np.testing.assert_array_equal(PNBD.no_purchase(h, "2025-01-01", 90), whole)


def test_the_rule_round_trips_through_json():
    import json

    assert BeyondSupport.from_dict(json.loads(json.dumps(RULE.to_dict()))) == RULE
    with pytest.raises(ValueError, match="12 months"):
        SeasonalParetoNBD.from_facts({**PNBD.facts(), "season": [1.0] * 11})


# -- on a trained model ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def beyond_model(trained, tmp_path_factory):
    """The session's model with the rule (support 100 days, below its lookback of 365), as a model file."""
    model = ChurnModel.load(trained["result"].model_path)
    horizon = model.info.config.labels.horizon_days
    model.beyond_ = replace(RULE, horizon_days=horizon)
    model.info = replace(model.info, summary={**model.info.summary, "support_days": 100})
    path = model.save(tmp_path_factory.mktemp("beyond") / "beyond.zip")
    return ChurnModel.load(path), path


@pytest.fixture(scope="module")
def features(trained, beyond_model):
    model, _ = beyond_model
    feats = build_features(trained["tables"], "2025-06-30", trained["cfg"].features, model_population(model))
    return feats[feats["n_orders"] > 0].reset_index(drop=True)


def test_the_model_file_keeps_the_rule_and_every_reader_applies_it(beyond_model, features, trained):
    model, path = beyond_model
    assert model.beyond_.support_days == 100
    plain = ChurnModel.load(trained["result"].model_path)
    assert plain.beyond_ is None
    far = features["recency_days"].to_numpy() > 100
    assert far.sum() > 20
    assert (~far).sum() > 20
    mine = model.predict_proba(features)
    trees = plain.predict_proba(features)
    assert (mine[~far] == trees[~far]).all()
    h = Histories.of_features(features[far], "2025-06-30")
    np.testing.assert_array_equal(mine[far], model.beyond_.purchases.no_purchase(h, "2025-06-30", model.beyond_.horizon_days))
    standalone = StandaloneModel.load(path)
    assert standalone.beyond == model.beyond_
    np.testing.assert_allclose(standalone.predict_proba(features), mine, rtol=0, atol=1e-12)


def test_scores_give_the_rule_s_probability_and_say_where_it_comes_from(beyond_model, features):
    from churnguard.config import load_playbook

    model, _ = beyond_model
    scores = score_features(model, features, load_playbook())
    in_population = scores["churn_probability"].notna().to_numpy()
    np.testing.assert_allclose(scores["churn_probability"].to_numpy()[in_population],
                               model.predict_proba(features)[in_population], rtol=0, atol=1e-12)
    far = (features["recency_days"].to_numpy() > 100) & in_population
    said = reasons.beyond_support_text(100, rhythm=True)
    told = scores[["reason_1", "reason_2", "reason_3"]].eq(said).any(axis=1).to_numpy()
    assert far.any()
    assert (told == far).all()
    assert said == ("silent longer than any customer the model learned from (100 days): the chance comes from "
                    "their own buying rhythm and how long they have been silent")


def test_the_mlflow_model_takes_an_optional_as_of(beyond_model, features, tmp_path):
    import mlflow

    from churnguard.training.tracking import _log_pyfunc, _pyfunc_input

    model, path = beyond_model
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'ml.db'}")
    example = _pyfunc_input(model, features.head(5))
    assert example["as_of"].tolist() == ["2025-06-30"] * 5
    with mlflow.start_run():
        info = _log_pyfunc(model, example, path)
    required = {c.name: c.required for c in info.signature.inputs.inputs}
    assert required.pop("as_of") is False
    assert all(required.values())
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    x = _pyfunc_input(model, features)
    want = model.predict_proba(features)
    np.testing.assert_allclose(loaded.predict(x), want, rtol=0, atol=1e-12)
    # Without as_of: the day the model was trained as of (here the same day).
    np.testing.assert_allclose(loaded.predict(x.drop(columns="as_of")), want, rtol=0, atol=1e-12)
    # Another day with the same features: the horizon falls in other months of the season.
    later = loaded.predict(x.assign(as_of="2025-09-30"))
    far = features["recency_days"].to_numpy() > 100
    assert (later[~far] == want[~far]).all()
    assert not np.allclose(later[far], want[far])


def test_a_customer_alone_gets_the_probability_they_get_among_others():
    # The clock starts on a fixed day, not at the earliest customer of the call: the HTTP server scores one
    # customer at a time, the batch engines many, and their answers must be the same to the bit.
    feats = _features([120, 200, 340, 150], [900, 260, 3000, 150], [12, 1, 40, 0])
    together = RULE.apply(np.full(4, 0.5), feats)
    alone = [RULE.apply(np.full(1, 0.5), feats.iloc[[i]])[0] for i in range(4)]
    assert together.tolist() == alone
