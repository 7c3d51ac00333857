"""TreeShap against LightGBM's own ``pred_contrib``, raw score and probability, to the bit.

On the demo model and on small models trained here whose trees split on one feature several times along a
path, split categorical features (one category and sets of them), and meet every kind of missing value
(``missing_type`` None, NaN and Zero, both default sides). Rows are the training rows plus rows built from
the values each split is decided on: its threshold and the next float up, zero, -0.0, values around
LightGBM's zero threshold, NaN, infinities, and for categorical features unseen, negative, fractional and
huge codes.
"""

from __future__ import annotations

import threading
from collections import Counter

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard.model import _treeshap
from churnguard.model._treeshap import MAX_DEPTH, TreeShap
from churnguard.model.explain import lightgbm_probability, sigmoid_scale
from tests.lightgbm_models import K_ZERO, _data, _splits, _train

MODELS = {
    "binary, NaN and None missing types": {},
    "binary, zero as missing": {"zero_as_missing": True},
    "regression": {"objective": "regression"},
}


@pytest.fixture(scope="module", params=list(MODELS))
def synthetic(request):
    return _train(**MODELS[request.param])


def _edge_values(booster: lgb.Booster) -> list[list[float]]:
    """Per feature, the values its splits turn on (see the module docstring)."""
    special = [0.0, -0.0, K_ZERO, -K_ZERO, K_ZERO / 2, -K_ZERO / 2, float(np.nextafter(K_ZERO, 1.0)),
               float(np.nextafter(-K_ZERO, -1.0)), np.nan, np.inf, -np.inf, 1e300, -1e300]
    values = [list(special) for _ in range(booster.num_feature())]
    categorical = set()
    for s in _splits(booster):
        f = s["split_feature"]
        if s["decision_type"] == "==":
            categorical.add(f)
            codes = [int(c) for c in str(s["threshold"]).split("||")]
            values[f] += [float(c) for c in codes] + [c + 0.5 for c in codes] + [c - 0.5 for c in codes]
        else:
            t = float(s["threshold"])
            values[f] += [t, float(np.nextafter(t, np.inf)), float(np.nextafter(t, -np.inf))]
    for f in categorical:  # unseen, negative, fractional and huge codes
        values[f] += [-1.0, -0.5, 0.7, 99.0, 1e9, 2.0**31, 2.0**40]
    return values


def _edge_rows(booster: lgb.Booster, base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Training rows with one to all features replaced by edge values."""
    rng = np.random.default_rng(seed)
    values = _edge_values(booster)
    rows = base[rng.integers(len(base), size=n)].copy()
    for i in range(n):
        changed = range(rows.shape[1]) if i % 4 == 0 else rng.choice(rows.shape[1], size=rng.integers(1, 3))
        for f in changed:
            rows[i, f] = values[f][rng.integers(len(values[f]))]
    return rows


def _assert_exact(booster: lgb.Booster, rows: np.ndarray, num_iteration: int | None = None) -> None:
    """TreeShap's contributions, raw score and probability equal LightGBM's for every row, bit for bit."""
    it = num_iteration or booster.current_iteration()
    shap = TreeShap(booster, it)
    contrib = booster.predict(rows, num_iteration=it, pred_contrib=True)
    raw = booster.predict(rows, num_iteration=it, raw_score=True)
    prob = booster.predict(rows, num_iteration=it) if booster.params["objective"] == "binary" else None
    for i, row in enumerate(rows):
        got, got_raw = shap(row)
        assert np.array_equal(got, contrib[i]), (i, row, np.flatnonzero(got != contrib[i]))
        assert got_raw == raw[i], (i, row)
        if prob is not None:
            assert lightgbm_probability(got_raw, sigmoid_scale(booster)) == prob[i], (i, row)
    start, size = 0, 1  # several rows at once (rows() decides up to 8 together), in calls of 1 to 19 rows
    while start < len(rows):
        got, got_raw = shap.rows(rows[start : start + size])
        assert np.array_equal(got, contrib[start : start + size]), (start, size)
        assert np.array_equal(got_raw, raw[start : start + size]), (start, size)
        start, size = start + size, size % 19 + 1


def test_synthetic_models_match_lightgbm_to_the_bit(synthetic):
    booster, x = synthetic
    _assert_exact(booster, np.concatenate([x[:500], _edge_rows(booster, x, 1500)]))


def _assert_trees_exact(booster: lgb.Booster, rows: np.ndarray) -> None:
    """TreeShap.tree_terms of every tree equal LightGBM's ``predict`` of that tree alone (``start_iteration=t,
    num_iteration=1``): ``pred_contrib`` and the raw score, for every row, bit for bit."""
    it = booster.current_iteration()
    shap = TreeShap(booster, it)
    for t in range(it):
        contrib = booster.predict(rows, start_iteration=t, num_iteration=1, pred_contrib=True)[:, :-1]
        raw = booster.predict(rows, start_iteration=t, num_iteration=1, raw_score=True)
        features, got, leaf = shap.tree_terms(t, rows)
        assert list(features) == sorted(features.tolist())
        assert np.array_equal(got, contrib[:, features]), (t, np.argwhere(got != contrib[:, features])[:5])
        others = np.setdiff1d(np.arange(rows.shape[1]), features)
        assert (contrib[:, others] == 0).all()  # a feature the tree does not split on gets nothing from it
        assert np.array_equal(leaf, raw), t


def test_one_tree_of_many_rows_matches_lightgbm_to_the_bit(synthetic):
    booster, x = synthetic
    _assert_trees_exact(booster, np.concatenate([x[:300], _edge_rows(booster, x, 700, seed=5)]))


def test_fewer_trees_than_trained(synthetic):
    booster, x = synthetic
    _assert_exact(booster, _edge_rows(booster, x, 300, seed=1), num_iteration=7)


def test_the_synthetic_models_have_what_they_are_meant_to_test():
    for params in MODELS.values():
        booster, _ = _train(**params)
        kinds = Counter((s["decision_type"], s["missing_type"], s["default_left"]) for s in _splits(booster))
        missing = {k[1] for k in kinds if k[0] == "<="}
        assert missing == ({"Zero"} if params.get("zero_as_missing") else {"None", "NaN"}), kinds
        assert any(k[0] == "==" for k in kinds)
        assert any("||" in str(s["threshold"]) for s in _splits(booster) if s["decision_type"] == "==")
        assert any(float(s["threshold"]) == -K_ZERO for s in _splits(booster) if s["decision_type"] == "<=")
        paths = []  # split features from the root to each leaf
        stack = [(t["tree_structure"], []) for t in booster.dump_model()["tree_info"]]
        while stack:
            node, path = stack.pop()
            if "split_feature" in node:
                stack += [(node[c], [*path, node["split_feature"]]) for c in ("left_child", "right_child")]
            else:
                paths.append(path)
        assert sum(len(set(p)) < len(p) for p in paths) > 100  # a feature met again on the way down
        assert max(len(p) for p in paths) == 5


def test_thresholds_at_infinity_and_around_zero():
    """The trained models' thresholds moved to where training seldom puts them (the model text edited): to
    +-inf, which ``dump_model`` writes as +-1e300, and between LightGBM's zero threshold and zero, where
    zeroing tiny values decides the side."""
    booster, x = _train()
    lines = booster.model_to_string().splitlines()
    rng = np.random.default_rng(3)
    moved = 0
    for k, line in enumerate(lines):
        if line.startswith("decision_type="):  # each tree's line after its thresholds
            assert lines[k - 1].startswith("threshold=")
            thresholds = lines[k - 1].split("=")[1].split()
            for i, kind in enumerate(int(v) for v in line.split("=")[1].split()):
                if not kind & 1 and rng.random() < 0.3:  # numeric splits (bit 0: categorical)
                    thresholds[i] = str(rng.choice(["inf", "-inf", repr(K_ZERO / 2), repr(-K_ZERO / 2), "0"]))
                    moved += 1
            lines[k - 1] = "threshold=" + " ".join(thresholds)
    assert moved > 50
    # without tree_sizes (byte counts of the unedited trees) LightGBM reads the trees one after the other
    edited = lgb.Booster(model_str="\n".join(line for line in lines if not line.startswith("tree_sizes=")))
    rows = _edge_rows(booster, x, 1500, seed=4)
    tiny = [K_ZERO / 4, -K_ZERO / 4, K_ZERO / 2, -K_ZERO / 2, 0.0, np.inf, -np.inf]
    rows[::3, 0] = rng.choice(tiny, len(rows[::3]))
    _assert_exact(edited, rows)
    _assert_trees_exact(edited, rows[:500])
    dump = edited.dump_model()  # its +-inf thresholds written as +-1e300: the tables read the text's, and leave
    before = str(dump)  # the dump's as they were
    assert TreeShap(edited, edited.current_iteration(), dump)._zero_row
    assert str(dump) == before


@pytest.fixture(scope="module")
def binary():
    booster, _ = _train()
    return booster, TreeShap(booster, booster.current_iteration()), _edge_values(booster)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_row_matches_lightgbm(binary, data):
    booster, shap, values = binary
    row = np.array([data.draw(st.sampled_from(v) | st.floats()) for v in values])  # floats(): NaN and inf too
    got, raw = shap(row)
    assert np.array_equal(got, booster.predict(row[None], pred_contrib=True)[0])
    assert raw == booster.predict(row[None], raw_score=True)[0]
    assert lightgbm_probability(raw, sigmoid_scale(booster)) == booster.predict(row[None])[0]


def test_a_model_of_one_leaf():
    x, y = _data(200)
    booster = lgb.train({"objective": "binary", "min_data_in_leaf": 500, "verbose": -1}, lgb.Dataset(x, y),
                        num_boost_round=3)
    assert booster.num_trees() == 1
    assert booster.dump_model()["tree_info"][0]["num_leaves"] == 1
    _assert_exact(booster, np.concatenate([x[:20], _edge_rows(booster, x, 50)]))
    _assert_trees_exact(booster, x[:20])


def test_threads_share_one_instance(binary):
    booster, shap, _ = binary
    rows = _edge_rows(booster, _data(500)[0], 400, seed=2)
    expected = [shap(r) for r in rows]
    results: dict[int, list] = {}

    def work(k: int) -> None:
        results[k] = [shap(r) for r in rows]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results.values():
        assert all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(got, expected, strict=True))


def test_models_it_does_not_tabulate_are_refused(monkeypatch):
    booster, _ = _train(num_leaves=64, max_depth=-1, min_data_in_leaf=2, rounds=5)
    with pytest.raises(ValueError, match=f"at most {MAX_DEPTH}"):
        TreeShap(booster, 5)
    compact, _ = _train(rounds=5)
    monkeypatch.setattr(_treeshap, "_MAX_TERMS", 1000)
    with pytest.raises(ValueError, match="table entries"):
        TreeShap(compact, 5)
    x, y = _data(600)
    multiclass = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1},
                           lgb.Dataset(x, (y + (x[:, 0] > 1)).astype(int)), num_boost_round=2)
    with pytest.raises(ValueError, match="one tree per iteration"):
        TreeShap(multiclass, 2)


@pytest.mark.slow
def test_demo_model_matches_lightgbm_to_the_bit(model, trained_features):
    x = model._matrix(trained_features)
    booster = model.booster_
    rows = np.concatenate([x, _edge_rows(booster, x, 3000)])
    _assert_exact(booster, rows, num_iteration=model.best_iteration_)


@pytest.fixture(scope="module")
def trained_features(model, trained):
    from churnguard.features import build_features
    from churnguard.scoring import model_population

    tables, info = trained["tables"], model.info
    return build_features(tables, tables.last_date(), info.config.features, model_population(model))


def test_a_dump_given_is_read_not_changed(synthetic):
    """The tables built from the caller's ``dump_model`` (shared with the batch walk, which reads its thresholds)
    leave it as it was, and are the tables built from a dump of their own."""
    import copy

    booster, x = synthetic
    it = booster.current_iteration()
    dump = booster.dump_model(num_iteration=it)
    before = copy.deepcopy(dump)
    shared, own = TreeShap(booster, it, dump), TreeShap(booster, it)
    assert dump == before
    rows = _edge_rows(booster, x, 200, seed=6)
    for row in rows:
        (a, raw_a), (b, raw_b) = shared(row), own(row)
        assert np.array_equal(a, b)
        assert raw_a == raw_b
