"""The model file: signed, checked before unpickling; and the model's contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.model import ChurnModel, ModelFileError, NotFittedError


@pytest.fixture(autouse=True)
def _signing_key(monkeypatch, tmp_path):
    monkeypatch.setenv("CHURNGUARD_MODEL_KEY", "test-key")
    monkeypatch.setenv("CHURNGUARD_KEY_FILE", str(tmp_path / "unused.key"))


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "recency_days": rng.uniform(0, 300, n),
            "n_orders": rng.poisson(5, n).astype(float),
            "tier": pd.Categorical(rng.choice(["a", "b"], n), categories=["a", "b"]),
            "customer_id": [f"c{i}" for i in range(n)],
        }
    )
    p = 1 / (1 + np.exp(-(x["recency_days"] - 150) / 40))
    y = (rng.uniform(size=n) < p).astype(int)
    return x, y


@pytest.fixture(scope="module")
def fitted():
    (xt, yt), (xv, yv) = _data(2000, 1), _data(800, 2)
    return ChurnModel({"num_leaves": 7, "learning_rate": 0.1}, num_boost_round=200, early_stopping_rounds=10).fit(
        xt, yt, xv, yv
    ), (xv, yv)


def test_unfitted_model_raises():
    with pytest.raises(NotFittedError, match="not fitted"):
        ChurnModel().predict_proba(pd.DataFrame({"a": [1.0]}))


def test_fit_learns_features_and_probabilities(fitted):
    model, (xv, _yv) = fitted
    assert model.feature_names_ == ["recency_days", "n_orders", "tier"]  # ids are not features
    p = model.predict_proba(xv)
    assert p.min() >= 0
    assert p.max() <= 1
    assert model.best_iteration_ < 200  # early stopping happened


def test_calibration_keeps_or_improves_validation_brier(fitted):
    model, (xv, yv) = fitted
    raw = np.mean((model.predict_raw(xv) - yv) ** 2)
    cal = np.mean((model.predict_proba(xv) - yv) ** 2)
    assert cal <= raw + 1e-12


def test_contributions_add_up_to_the_raw_score(fitted):
    model, (xv, _) = fitted
    contrib = model.contributions(xv.head(20))
    full = model.booster_.predict(model.prepare(xv.head(20)), num_iteration=model.best_iteration_, pred_contrib=True)
    assert np.allclose(contrib.sum(axis=1) + full[:, -1], model.booster_.predict(
        model.prepare(xv.head(20)), num_iteration=model.best_iteration_, raw_score=True))


def test_save_load_round_trip(fitted, tmp_path):
    model, (xv, _) = fitted
    model.metadata = {"note": "x"}
    path = model.save(tmp_path / "m.joblib")
    loaded = ChurnModel.load(path)
    assert np.allclose(loaded.predict_proba(xv), model.predict_proba(xv))
    assert loaded.metadata == {"note": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["m.joblib"]  # no temp file left behind


def test_truncated_file_is_refused(fitted, tmp_path):
    path = fitted[0].save(tmp_path / "m.joblib")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="truncated"):
        ChurnModel.load(path)


def test_corrupted_file_is_refused(fitted, tmp_path):
    path = fitted[0].save(tmp_path / "m.joblib")
    blob = bytearray(path.read_bytes())
    blob[-50] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match="corrupted"):
        ChurnModel.load(path)


def test_tampered_file_with_fixed_checksum_is_refused_before_unpickling(fitted, tmp_path):
    import hashlib
    import json
    import pickle

    path = fitted[0].save(tmp_path / "m.joblib")
    blob = path.read_bytes()
    magic, header, _ = blob.split(b"\n", 2)

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    payload = pickle.dumps(Evil())
    head = json.loads(header)
    head.update(payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    path.write_bytes(magic + b"\n" + json.dumps(head).encode() + b"\n" + payload)
    with pytest.raises(ModelFileError, match="signature does not match"):
        ChurnModel.load(path)
    assert not (tmp_path / "pwned").exists()


def test_other_key_is_refused(fitted, tmp_path, monkeypatch):
    path = fitted[0].save(tmp_path / "m.joblib")
    monkeypatch.setenv("CHURNGUARD_MODEL_KEY", "another-key")
    with pytest.raises(ModelFileError, match="signed with another key"):
        ChurnModel.load(path)


def test_not_a_model_and_missing_and_future_format(fitted, tmp_path):
    other = tmp_path / "x.joblib"
    other.write_bytes(b"hello")
    with pytest.raises(ModelFileError, match="not a churnguard model file"):
        ChurnModel.load(other)
    with pytest.raises(ModelFileError, match="not found"):
        ChurnModel.load(tmp_path / "none.joblib")
    path = fitted[0].save(tmp_path / "m.joblib")
    path.write_bytes(path.read_bytes().replace(b'"format": 1', b'"format": 99', 1))
    with pytest.raises(ModelFileError, match="format 99.*retrain"):
        ChurnModel.load(path)


def test_key_file_is_created_with_private_mode(fitted, tmp_path, monkeypatch):
    monkeypatch.delenv("CHURNGUARD_MODEL_KEY")
    key = tmp_path / "keys" / "model.key"
    monkeypatch.setenv("CHURNGUARD_KEY_FILE", str(key))
    path = fitted[0].save(tmp_path / "m.joblib")
    assert key.stat().st_mode & 0o777 == 0o600
    assert ChurnModel.load(path).feature_names_ == fitted[0].feature_names_
    key.unlink()
    with pytest.raises(ModelFileError, match="no model signing key"):
        ChurnModel.load(path)


def test_fit_gives_the_model_lightgbm_trains_on_the_prepared_frame(fitted):
    """The float64 matrix fit() hands LightGBM holds what LightGBM takes from prepare()'s DataFrame (numbers as
    float64, categoricals as codes), so the trees are the same as training on the DataFrame itself."""
    import lightgbm as lgb

    model, _ = fitted
    (xt, yt), (xv, yv) = _data(2000, 1), _data(800, 2)
    xv.loc[:4, "tier"] = None  # missing categories become NaN codes in both paths
    params = {"objective": "binary", "metric": "binary_logloss", "verbose": -1, **model.params, "seed": model.seed}
    train = lgb.Dataset(model.prepare(xt), label=yt, free_raw_data=False)
    valid = lgb.Dataset(model.prepare(xv), label=yv, reference=train, free_raw_data=False)
    booster = lgb.train(params, train, num_boost_round=model.num_boost_round, valid_sets=[train, valid],
                        valid_names=["train", "valid"],
                        callbacks=[lgb.early_stopping(model.early_stopping_rounds, verbose=False)])
    assert booster.best_iteration == model.best_iteration_
    assert booster.pandas_categorical == model.booster_.pandas_categorical == [["a", "b"]]
    np.testing.assert_array_equal(model.predict_raw(xv), booster.predict(model.prepare(xv),
                                                                         num_iteration=booster.best_iteration))
    assert model.booster_.model_to_string() == booster.model_to_string()


def test_matrix_codes_categories_like_lightgbm(fitted):
    model, _ = fitted
    x = pd.DataFrame({"recency_days": [1.0, None, 3.0], "n_orders": pd.array([2, None, 1], dtype="Int64"),
                      "tier": ["b", "z", None]})  # plain strings; "z" was never seen in training
    m = model._matrix(x)
    assert m.dtype == np.float64
    assert m.flags.f_contiguous
    np.testing.assert_array_equal(m, [[1.0, 2.0, 1.0], [np.nan, np.nan, np.nan], [3.0, 1.0, np.nan]])
