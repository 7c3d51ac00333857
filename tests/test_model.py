"""The model file: data only (JSON, LightGBM's text model), checked member by member, never unpickled;
the converter for the old pickle-based format; and the model's contract."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from churnguard.model import FORMAT_VERSION, ChurnModel, ModelFileError, NotFittedError, convert_model_file
from churnguard.scoring import score_frames


@pytest.fixture(autouse=True)
def _no_signing_key(monkeypatch, tmp_path):
    """Saving and loading need no key; the converter tests set one where they need it."""
    monkeypatch.delenv("CHURNGUARD_MODEL_KEY", raising=False)
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
    path = model.save(tmp_path / "m.zip")
    loaded = ChurnModel.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(xv), model.predict_proba(xv))
    assert loaded.info is None
    assert loaded.feature_names_ == model.feature_names_
    assert loaded.categories_ == model.categories_
    assert loaded.calibrator_ == model.calibrator_
    assert [p.name for p in tmp_path.iterdir()] == ["m.zip"]  # no temp file, and no key file, left behind
    assert model.save(tmp_path / "again.zip").read_bytes() == path.read_bytes()  # the same model, the same bytes


def test_scoring_needs_the_training_info(fitted, tmp_path):
    loaded = ChurnModel.load(fitted[0].save(tmp_path / "m.zip"))
    with pytest.raises(NotFittedError, match="no training info"):
        score_frames(loaded, transactions=pd.DataFrame())


def test_model_file_is_json_and_lightgbm_text(fitted, tmp_path):
    model = fitted[0]
    path = model.save(tmp_path / "m.zip")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["booster.txt", "manifest.json", "model.json"]
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["format"] == FORMAT_VERSION
        assert set(manifest["members"]) == {"booster.txt", "model.json"}
        for name, entry in manifest["members"].items():
            assert hashlib.sha256(zf.read(name)).hexdigest() == entry["sha256"]
        doc = json.loads(zf.read("model.json"))
        assert zf.read("booster.txt").startswith(b"tree\n")
    assert doc["feature_names"] == ["recency_days", "n_orders", "tier"]
    assert model.calibrator_.kind == "isotonic"
    assert len(model.calibrator_.x) > 2
    # the calibrator's float64 steps survive JSON to the bit
    assert doc["calibrator"]["x"] == list(model.calibrator_.x)
    assert doc["calibrator"]["y"] == list(model.calibrator_.y)


def test_standalone_reader_predicts_as_the_model(fitted, tmp_path):
    """The reader the MLflow model uses, without churnguard: the same file, the same probabilities."""
    from churnguard.model._modelcore import StandaloneModel

    model, (xv, _) = fitted
    core = StandaloneModel.load(model.save(tmp_path / "m.zip"))
    assert core.calibrator == model.calibrator_
    np.testing.assert_allclose(core.predict_proba(xv), model.predict_proba(xv), rtol=0, atol=1e-12)


def test_loading_never_unpickles(fitted, tmp_path, monkeypatch):
    import pickle

    import joblib

    model, (xv, _) = fitted
    path = model.save(tmp_path / "m.zip")

    def refuse(*_args, **_kwargs):
        raise AssertionError("a model file was unpickled")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (joblib, "load")):
        monkeypatch.setattr(target, name, refuse)
    np.testing.assert_array_equal(ChurnModel.load(path).predict_proba(xv), model.predict_proba(xv))


def test_trained_model_info_round_trips(trained, tmp_path):
    model = trained["result"].model
    loaded = ChurnModel.load(model.save(tmp_path / "m.zip"))
    assert loaded.info == model.info
    assert loaded.info.population.bgnbd == model.info.population.bgnbd
    assert isinstance(loaded.info.config, type(trained["cfg"]))


def _rewrite(path, change):
    """Rewrite the zip at ``path`` with ``change(name, data) -> data`` applied to every member."""
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, change(name, data))


def test_truncated_file_is_refused(fitted, tmp_path):
    path = fitted[0].save(tmp_path / "m.zip")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match=r"m\.zip: the model file is truncated \(the end of its zip archive"):
        ChurnModel.load(path)


def test_corrupted_file_is_refused(fitted, tmp_path):
    path = fitted[0].save(tmp_path / "m.zip")
    blob = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("booster.txt")
    blob[info.header_offset + 30 + len(info.filename) + 40] ^= 0xFF  # inside the compressed booster
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelFileError, match=r"m\.zip: the model file is corrupted \(.*\); copy it again"):
        ChurnModel.load(path)


def test_modified_member_is_refused_by_its_checksum(fitted, tmp_path):
    path = fitted[0].save(tmp_path / "m.zip")
    _rewrite(path, lambda name, data: data.replace(b"leaf_value=", b"leaf_value=1", 1)
             if name == "booster.txt" else data)
    with pytest.raises(ModelFileError, match=r"m\.zip: the model file is corrupted \(booster.txt does not match "
                                             r"its SHA-256"):
        ChurnModel.load(path)


@pytest.mark.parametrize(("calibrator", "error"), [
    ({"x": ["not a number"]}, "ValueError: could not convert string to float"),
    # the calibrator of an earlier development layout, its steps in .npy members: refused, not read as empty
    ({"x": None, "y": None}, "KeyError: 'x'"),
])
def test_bad_calibrator_is_refused(fitted, tmp_path, calibrator, error):
    """A model.json that passes its (recomputed) checksum but holds a bad calibrator is refused."""
    path = fitted[0].save(tmp_path / "m.zip")
    with zipfile.ZipFile(path) as zf:
        doc = json.loads(zf.read("model.json"))
    doc["calibrator"].update(calibrator)
    doc["calibrator"] = {k: v for k, v in doc["calibrator"].items() if v is not None}
    bad = json.dumps(doc).encode()

    def change(name, data):
        if name == "model.json":
            return bad
        if name == "manifest.json":
            manifest = json.loads(data)
            manifest["members"]["model.json"] = {"bytes": len(bad), "sha256": hashlib.sha256(bad).hexdigest()}
            return json.dumps(manifest).encode()
        return data

    _rewrite(path, change)
    with pytest.raises(ModelFileError, match=r"m\.zip: the model file's contents are not a valid churnguard "
                                             r"model \(" + error):
        ChurnModel.load(path)


def test_not_a_model_and_missing_and_future_format(fitted, tmp_path):
    other = tmp_path / "x.zip"
    other.write_bytes(b"hello")
    with pytest.raises(ModelFileError, match="x.zip: not a churnguard model file"):
        ChurnModel.load(other)
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "a zip, but not a model")
    with pytest.raises(ModelFileError, match="not a churnguard model file .the archive has no manifest.json"):
        ChurnModel.load(other)
    with pytest.raises(ModelFileError, match="not found"):
        ChurnModel.load(tmp_path / "none.zip")
    with zipfile.ZipFile(other, "w") as zf:  # an uplift model's members (churnguard.uplift.model)
        zf.writestr("uplift.json", "{}")
        zf.writestr("booster_0.txt", "")
    with pytest.raises(ModelFileError, match=r"x.zip: this is an uplift model \('churnguard train-uplift'\), not a "
                                             "churn model .* take it with --uplift-model"):
        ChurnModel.load(other)
    path = fitted[0].save(tmp_path / "m.zip")
    from churnguard.uplift.model import UpliftModel, UpliftModelError

    with pytest.raises(UpliftModelError, match=r"m.zip: this is a churn model \('churnguard train'\), not an uplift "
                                               "model"):
        UpliftModel.load(path)
    _rewrite(path, lambda name, data: data.replace(b'"format": 2', b'"format": 99') if name == "manifest.json"
             else data)
    with pytest.raises(ModelFileError, match="format 99.*retrain"):
        ChurnModel.load(path)


# -- the old pickle-based format (format 1) and its converter ----------------------------------------------


def _write_old_format(model: ChurnModel, path, key: str, metadata: dict) -> None:
    """A format 1 file as churnguard 0.1.0 wrote it: magic line, JSON header with an HMAC-SHA256 signature,
    then a joblib pickle of the model's data."""
    import hmac

    import joblib

    buf = io.BytesIO()
    joblib.dump({
        "booster": model.booster_.model_to_string(num_iteration=model.best_iteration_),
        "calibrator": dict(model.calibrator_.__dict__),
        "feature_names": list(model.feature_names_),
        "categories": model.categories_,
        "best_iteration": model.best_iteration_,
        "settings": {"params": model.params, "num_boost_round": model.num_boost_round,
                     "early_stopping_rounds": model.early_stopping_rounds, "calibration": model.calibration,
                     "seed": model.seed, "monotone_constraints": model.monotone_constraints},
        "metadata": metadata,
    }, buf)
    payload = buf.getvalue()
    header = {"format": 1, "package_version": "0.1.0", "payload_bytes": len(payload),
              "payload_sha256": hashlib.sha256(payload).hexdigest(),
              "signature": hmac.new(key.encode(), payload, hashlib.sha256).hexdigest()}
    path.write_bytes(b"CHURNGUARD-MODEL\n" + json.dumps(header).encode() + b"\n" + payload)


def _old_metadata(info) -> dict:
    """The metadata dict of a format 1 file, as churnguard 0.1.0's model_metadata built it."""
    d = info.to_dict()
    population = d.pop("population")
    return {**d, "columns": d["config"]["data"]["columns"], "horizon_days": population["horizon_days"],
            "risk_bands": d["config"]["model"]["risk_bands"], "bgnbd_params": population["bgnbd"],
            "vip_cltv_threshold": population["vip_cltv_threshold"]}


def test_old_format_is_refused_with_the_way_out(fitted, tmp_path):
    path = tmp_path / "churn_model.joblib"
    _write_old_format(fitted[0], path, "test-key", {})
    with pytest.raises(ModelFileError, match=r"churn_model\.joblib: this is a model file in the old pickle-based "
                                             r"format .*unpickling a file can run code.*churnguard train.*"
                                             r"churnguard convert-model OLD\.joblib NEW\.zip"):
        ChurnModel.load(path)


def test_convert_old_format_gives_the_same_scores(trained, tmp_path, monkeypatch):
    from churnguard.config import load_playbook
    from churnguard.scoring import score_tables

    monkeypatch.setenv("CHURNGUARD_MODEL_KEY", "old-key-of-16-bytes+")
    model = trained["result"].model
    old = tmp_path / "churn_model.joblib"
    _write_old_format(model, old, "old-key-of-16-bytes+", _old_metadata(model.info))
    new = convert_model_file(old, tmp_path / "churn_model.zip")
    monkeypatch.delenv("CHURNGUARD_MODEL_KEY")
    converted = ChurnModel.load(new)
    assert converted.info == model.info
    playbook = load_playbook()
    pd.testing.assert_frame_equal(score_tables(converted, trained["tables"], None, playbook).scores,
                                  score_tables(model, trained["tables"], None, playbook).scores)


def test_convert_without_the_key_or_with_another_key_is_refused(fitted, tmp_path, monkeypatch):
    old = tmp_path / "m.joblib"
    _write_old_format(fitted[0], old, "old-key-of-16-bytes+", {})
    monkeypatch.delenv("CHURNGUARD_MODEL_KEY", raising=False)
    monkeypatch.setenv("CHURNGUARD_KEY_FILE", str(tmp_path / "absent.key"))
    with pytest.raises(ModelFileError, match="no model signing key: set CHURNGUARD_MODEL_KEY or provide the key file"):
        convert_model_file(old, tmp_path / "m.zip")
    monkeypatch.setenv("CHURNGUARD_MODEL_KEY", "another-key-of-16-bytes")
    with pytest.raises(ModelFileError, match="signature does not match the signing key"):
        convert_model_file(old, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()
    key = tmp_path / "model.key"
    key.write_text("old-key-of-16-bytes+\n")
    monkeypatch.delenv("CHURNGUARD_MODEL_KEY")
    monkeypatch.setenv("CHURNGUARD_KEY_FILE", str(key))
    converted = ChurnModel.load(convert_model_file(old, tmp_path / "m.zip"))
    xv = fitted[1][0]
    np.testing.assert_array_equal(converted.predict_proba(xv), fitted[0].predict_proba(xv))


def test_convert_refuses_a_tampered_old_file_before_unpickling(fitted, tmp_path, monkeypatch):
    import pickle

    monkeypatch.setenv("CHURNGUARD_MODEL_KEY", "old-key-of-16-bytes+")
    old = tmp_path / "m.joblib"
    _write_old_format(fitted[0], old, "old-key-of-16-bytes+", {})
    magic, header, _ = old.read_bytes().split(b"\n", 2)

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    payload = pickle.dumps(Evil())
    head = json.loads(header)
    head.update(payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    old.write_bytes(magic + b"\n" + json.dumps(head).encode() + b"\n" + payload)
    with pytest.raises(ModelFileError, match="signature does not match"):
        convert_model_file(old, tmp_path / "m.zip")
    assert not (tmp_path / "pwned").exists()


def test_convert_model_command(fitted, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from churnguard.cli import app

    monkeypatch.setenv("CHURNGUARD_MODEL_KEY", "old-key-of-16-bytes+")
    _write_old_format(fitted[0], tmp_path / "m.joblib", "old-key-of-16-bytes+", {})
    result = CliRunner().invoke(app, ["convert-model", str(tmp_path / "m.joblib"), str(tmp_path / "m.zip")])
    assert result.exit_code == 0, result.output
    assert ChurnModel.load(tmp_path / "m.zip").feature_names_ == fitted[0].feature_names_
    result = CliRunner().invoke(app, ["convert-model", str(tmp_path / "m.zip"), str(tmp_path / "n.zip")])
    assert result.exit_code == 2
    assert "not a model file of the old pickle-based format" in result.output


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


@pytest.mark.parametrize("key", ["", "k"])
def test_convert_refuses_an_empty_or_short_key_file(fitted, tmp_path, monkeypatch, key):
    old = tmp_path / "m.joblib"
    _write_old_format(fitted[0], old, key, {})
    (tmp_path / "model.key").write_text(key)
    monkeypatch.delenv("CHURNGUARD_MODEL_KEY", raising=False)
    monkeypatch.setenv("CHURNGUARD_KEY_FILE", str(tmp_path / "model.key"))
    with pytest.raises(ModelFileError, match=f"is {len(key)} bytes long; a key under 16 bytes can be guessed"):
        convert_model_file(old, tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_column_matrix_by_hand():
    """Numbers as given, categorical codes with -1 as missing, absent features missing; column-major."""
    from churnguard.model._modelcore import column_matrix

    columns = {"spend": np.array([1.5, 2.0]), "region": np.array([1, -1], dtype=np.int32)}
    got = column_matrix(columns, 2, ["spend", "absent", "region"], {"region": ["north", "south"]})
    np.testing.assert_array_equal(got, [[1.5, np.nan, 1.0], [2.0, np.nan, np.nan]])
    assert got.dtype == np.float64
    assert got.flags.f_contiguous
    assert column_matrix({}, 0, ["spend"], {}).shape == (0, 1)


def test_column_matrix_of_some_rows_is_that_of_the_rows_taken_first():
    """``rows`` (a mask) gathers the columns' entries straight into the matrix: the same matrix as the
    columns' rows taken first, numbers, counts given as integers, codes and absent features alike."""
    from churnguard.model._modelcore import column_matrix

    rng = np.random.default_rng(0)
    columns = {"spend": rng.normal(size=50), "orders": rng.integers(0, 9, 50), "region": rng.integers(-1, 3, 50)}
    columns["spend"][::7] = np.nan
    names, categories = ["spend", "absent", "orders", "region"], {"region": ["a", "b", "c"]}
    rows = rng.random(50) < 0.6
    got = column_matrix(columns, int(rows.sum()), names, categories, rows)
    want = column_matrix({k: v[rows] for k, v in columns.items()}, int(rows.sum()), names, categories)
    np.testing.assert_array_equal(got, want)
    assert got.flags.f_contiguous
