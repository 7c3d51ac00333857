"""Per-tree deduplicated TreeSHAP against LightGBM's own ``pred_contrib`` on the whole input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard import scoring
from churnguard.config import load_playbook
from churnguard.features import build_features
from churnguard.model import explain as _contrib
from churnguard.scoring import model_population
from tests.lightgbm_models import CATEGORICAL, K_ZERO, _splits, _train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def feats(model, trained):
    info = model.info
    tables = trained["tables"]
    f = build_features(tables, tables.last_date(), info.config.features, model_population(model))
    return f[f["n_orders"].fillna(0) > 0].reset_index(drop=True)


def _edge_rows(model, feats: pd.DataFrame) -> pd.DataFrame:
    """Rows whose values sit exactly on the model's thresholds, just above them, at zero, at -0.0 and missing."""
    tree = model.booster_.trees_to_dataframe()
    splits = tree[tree["split_feature"].notna() & (tree["decision_type"] == "<=")]
    rows = []
    rng = np.random.default_rng(0)
    for _, s in splits.sample(n=min(300, len(splits)), random_state=0).iterrows():
        t = float(s["threshold"])
        for value in (t, np.nextafter(t, np.inf), 0.0, -0.0, 1e-36, -K_ZERO, np.nan):
            row = feats.iloc[int(rng.integers(len(feats)))].copy()
            row[s["split_feature"]] = value
            rows.append(row)
    return pd.DataFrame(rows).astype(feats.dtypes.to_dict()).reset_index(drop=True)


def test_matches_pred_contrib_on_demo_and_threshold_rows(model, feats, monkeypatch):
    data = pd.concat([feats, _edge_rows(model, feats)], ignore_index=True)
    for c in model.categories_:  # a level never seen in training and a missing one: both are unknown
        data[c] = data[c].astype("object")
        data.loc[:3, c] = "never-seen"
        data.loc[4:7, c] = None
    expected = model.contributions(data).to_numpy()
    monkeypatch.setattr(_contrib, "MIN_ROWS", 0)
    got, _ = _contrib.explain(model, model._matrix(data))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # Features no tree splits on contribute exactly nothing, as in LightGBM.
    assert ((expected == 0).all(axis=0) == (got == 0).all(axis=0)).all()


def test_scores_are_the_same_with_and_without_deduplication(model, feats, monkeypatch):
    playbook = load_playbook()
    monkeypatch.setattr(_contrib, "MIN_ROWS", 10**9)
    plain = scoring.score_features(model, feats, playbook)
    monkeypatch.setattr(_contrib, "MIN_ROWS", 0)
    fast = scoring.score_features(model, feats, playbook)
    pd.testing.assert_frame_equal(fast.drop(columns="churn_probability"), plain.drop(columns="churn_probability"))
    assert np.array_equal(fast["churn_probability"], plain["churn_probability"], equal_nan=True)  # NaN: lost
    assert fast["churn_probability"].notna().sum() > 100


def test_no_rows(model, feats, monkeypatch):
    monkeypatch.setattr(_contrib, "MIN_ROWS", 0)
    contrib, prob = _contrib.explain(model, model._matrix(feats.iloc[:0]))
    assert contrib.shape == (0, len(model.feature_names_))
    assert prob.shape == (0,)


def test_probabilities_from_the_same_walk_equal_predict_proba_to_the_bit(model, feats, monkeypatch):
    data = pd.concat([feats, _edge_rows(model, feats)], ignore_index=True)
    monkeypatch.setattr(_contrib, "MIN_ROWS", 0)
    _, prob = _contrib.explain(model, model._matrix(data))
    assert np.array_equal(prob, model.predict_proba(data))
    _, prob_only = _contrib.explain(model, model._matrix(data), contributions=False)
    assert np.array_equal(prob_only, prob)


def _small_model_rows(booster, x: np.ndarray) -> np.ndarray:
    """The training rows, then rows with values on and around the thresholds, zero, -0.0, LightGBM's zero
    threshold, NaN and infinities."""
    thresholds: dict[int, list[float]] = {}
    for s in _splits(booster):
        if s["decision_type"] == "<=":
            t = float(s["threshold"])
            thresholds.setdefault(s["split_feature"], []).extend([t, float(np.nextafter(t, np.inf))])
    rng = np.random.default_rng(3)
    rows = x[rng.integers(len(x), size=600)].copy()
    rows[rng.random(len(rows)) < 0.1, 1] = np.nan
    for i in range(len(rows)):
        for f in (0, 3, 4):
            choices = [0.0, -0.0, K_ZERO, -K_ZERO, np.nan, np.inf, -np.inf, *thresholds.get(f, [])]
            if rng.random() < 0.5:
                rows[i, f] = choices[rng.integers(len(choices))]
    return np.vstack([x, rows])


SMALL_MODELS = pytest.mark.parametrize("params", [{}, {"zero_as_missing": True}, {"objective": "regression"},
                                                  {"min_data_in_leaf": 5000}],
                                       ids=["binary", "zero-missing", "regression", "one-leaf"])


@SMALL_MODELS
def test_raw_scores_equal_lightgbm_to_the_bit_on_small_models(params):
    """The leaves' values added tree by tree give LightGBM's raw score exactly: numeric values on and around
    the thresholds, zero, -0.0, LightGBM's zero threshold, NaN and infinities; categorical codes as a
    ChurnModel's matrix holds them (small non-negative integers or NaN)."""
    booster, x = _train(**params)
    rows = _small_model_rows(booster, x)
    walk = _contrib.TreeContributions(booster, booster.current_iteration(), set(CATEGORICAL))
    contrib, raw = walk(rows, raw_score=True)
    assert np.array_equal(raw, booster.predict(rows, raw_score=True))
    assert np.array_equal(contrib, walk(rows))
    np.testing.assert_allclose(contrib, booster.predict(rows, pred_contrib=True)[:, :-1], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("dense", "threads"), [(1 << 22, 1), (1 << 14, 2), (8, 2)], ids=["one-table", "runs", "hashed"])
def test_key_runs_hashing_and_threads_give_lightgbms_numbers_to_the_bit(model, feats, monkeypatch, dense, threads):
    """However a tree's patterns are found -- one lookup table, the features a run at a time with the groups
    renumbered between runs, hashed keys when a feature's codes alone overflow the table -- and however many
    threads share the row blocks and LightGBM's calls, the contributions and raw scores are the same to the
    bit (and LightGBM's)."""
    data = pd.concat([feats, _edge_rows(model, feats)], ignore_index=True)
    x = model._matrix(data)
    booster, best = model.booster_, model.best_iteration_
    categorical = {i for i, c in enumerate(model.feature_names_) if c in model.categories_}
    walk = _contrib.TreeContributions(booster, best, categorical)
    expected, expected_raw = walk(x, raw_score=True)  # one table per tree, one block, as many threads as cores
    runs, hashed = [], []
    keys, hash_keys = _contrib._keys, _contrib.TreeContributions._hashed
    monkeypatch.setattr(_contrib, "_keys", lambda *a: (runs.append(a[5] is not None), keys(*a))[1])
    monkeypatch.setattr(_contrib.TreeContributions, "_hashed",
                        staticmethod(lambda *a: (hashed.append(1), hash_keys(*a))[1]))
    for name, value in (("_DENSE", dense), ("_THREADS", threads), ("_BLOCK", 512), ("_SHARED_CALL", 8)):
        monkeypatch.setattr(_contrib, name, value)
    got, raw = walk(x, raw_score=True)
    assert np.array_equal(got, expected)
    assert np.array_equal(raw, expected_raw)
    assert np.array_equal(raw, booster.predict(x, num_iteration=best, raw_score=True))
    np.testing.assert_allclose(got, booster.predict(x, num_iteration=best, pred_contrib=True)[:, :-1], rtol=0,
                               atol=1e-12)
    assert len(x) > 4 * 512  # several blocks per thread
    if dense == 1 << 14:
        assert any(runs)  # the features of some trees taken in runs
        assert not hashed
    if dense == 8:
        assert hashed


@pytest.mark.parametrize("word_bits", [63, 40], ids=["63-bit-words", "40-bit-words"])
def test_keys_packed_into_words_give_the_numbers_of_keys_taken_tree_by_tree(model, feats, monkeypatch, word_bits):
    """The pattern keys of several trees packed into one word per row (a shared feature looked up once) give
    the contributions and raw scores of keys computed tree by tree, to the bit; words hold several trees each,
    and a window whose trees do not fill a word leaves none unpacked."""
    data = pd.concat([feats, _edge_rows(model, feats)], ignore_index=True)
    x = model._matrix(data)
    booster, best = model.booster_, model.best_iteration_
    categorical = {i for i, c in enumerate(model.feature_names_) if c in model.categories_}
    walk = _contrib.TreeContributions(booster, best, categorical)
    monkeypatch.setattr(_contrib, "_WORD_BITS", word_bits)
    monkeypatch.setattr(_contrib, "_BLOCK", 512)
    words: list[list[int]] = []
    packed_words = _contrib.TreeContributions._packed_words

    def seen(self, trees, *a):
        fields = packed_words(self, trees, *a)
        by_word: dict[int, list[int]] = {}
        for index, (word, _, _) in fields.items():
            by_word.setdefault(id(word), []).append(index)
        words.extend(by_word.values())
        assert {t.index for t in trees if t.features} <= set(fields)  # every tree's keys fit the default bound
        return fields

    monkeypatch.setattr(_contrib.TreeContributions, "_packed_words", seen)
    got, raw = walk(x, raw_score=True)
    assert max(map(len, words)) > 1
    assert sorted(i for w in words for i in w) == [t.index for t in walk.trees if t.features]
    monkeypatch.setattr(_contrib.TreeContributions, "_packed_words", lambda self, *a: {})  # tree by tree
    expected, expected_raw = walk(x, raw_score=True)
    assert np.array_equal(got, expected)
    assert np.array_equal(raw, expected_raw)
    assert np.array_equal(raw, booster.predict(x, num_iteration=best, raw_score=True))


def test_packed_keys_of_trees_without_categories_are_their_pattern_keys(model, feats, monkeypatch):
    """The keys a tree's groups have in its packed words are the numbers its kept patterns are known by
    (``_pattern_keys``), so they are passed on for trees without categorical features (the others' are
    computed); the walk's numbers are those of a walk without packed words."""
    x = model._matrix(pd.concat([feats, _edge_rows(model, feats)], ignore_index=True))
    booster, best = model.booster_, model.best_iteration_
    categorical = {i for i, c in enumerate(model.feature_names_) if c in model.categories_}
    passed: list[bool] = []
    pattern_values = _contrib.TreeContributions._pattern_values

    def checked(self, tree, codes, rows, first, split, keys=None):
        passed.append(keys is not None)
        if keys is not None:
            assert all(lut is not None for lut in tree.luts)
            assert np.array_equal(keys, self._pattern_keys(tree, codes, first))
        return pattern_values(self, tree, codes, rows, first, split, keys)

    monkeypatch.setattr(_contrib.TreeContributions, "_pattern_values", checked)
    got, raw = _contrib.TreeContributions(booster, best, categorical)(x, raw_score=True)
    assert sum(passed) > len(passed) // 2
    monkeypatch.setattr(_contrib.TreeContributions, "_packed_words", lambda self, *a: {})  # tree by tree
    passed.clear()
    expected, expected_raw = _contrib.TreeContributions(booster, best, categorical)(x, raw_score=True)
    assert not any(passed)
    assert np.array_equal(got, expected)
    assert np.array_equal(raw, expected_raw)
    assert x.flags.f_contiguous  # as the batch path gives it; in rows (C order), read a column at a time alike
    in_rows, in_rows_raw = _contrib.TreeContributions(booster, best, categorical)(np.ascontiguousarray(x),
                                                                                 raw_score=True)
    assert np.array_equal(in_rows, got)
    assert np.array_equal(in_rows_raw, raw)


def test_patterns_kept_from_an_earlier_call_give_the_numbers_of_a_fresh_walk(model, feats, monkeypatch):
    """A walk called on one part of the rows, then another (as the batch engines call it per partition), takes
    the patterns it has seen from what it kept and asks LightGBM only for new ones: the second part's
    contributions and raw scores are those of a fresh walk to the bit, and fewer representatives are asked for."""
    data = pd.concat([feats, _edge_rows(model, feats)], ignore_index=True)
    x = model._matrix(data)
    booster, best = model.booster_, model.best_iteration_
    categorical = {i for i, c in enumerate(model.feature_names_) if c in model.categories_}
    asked: list[int] = []
    contributions = _contrib.TreeContributions._contributions
    monkeypatch.setattr(_contrib.TreeContributions, "_contributions",
                        lambda self, tree, rows: (asked.append(len(rows)), contributions(self, tree, rows))[1])
    first, second = x[: len(x) // 2], x[len(x) // 2 :]
    fresh, fresh_raw = _contrib.TreeContributions(booster, best, categorical)(second, raw_score=True)
    alone = sum(asked)
    walk = _contrib.TreeContributions(booster, best, categorical)
    walk(first, raw_score=True)
    asked.clear()
    got, raw = walk(second, raw_score=True)
    assert 0 < sum(asked) < alone
    assert np.array_equal(got, fresh)
    assert np.array_equal(raw, fresh_raw)
    assert np.array_equal(raw, booster.predict(second, num_iteration=best, raw_score=True))
    again, _ = walk(second, raw_score=True)  # every pattern seen: LightGBM is not asked at all
    asked.clear()
    assert np.array_equal(walk(second), got)
    assert not asked
    assert np.array_equal(again, got)


def test_a_model_whose_walk_was_kept_pickles_and_walks_alike(model, feats, monkeypatch):
    """The Dask engine pickles the model to send it to its workers: after a batch explain the model holds its
    walk (with a lock and the patterns kept); the copy's walk comes without the patterns and explains to the
    same bits."""
    import pickle

    x = model._matrix(feats)
    monkeypatch.setattr(_contrib, "MIN_ROWS", 0)
    contrib, prob = _contrib.explain(model, x)
    copy = pickle.loads(pickle.dumps(model))
    assert model._tree_walk[2]._known  # kept here, not sent
    assert not copy._tree_walk[2]._known
    got, got_prob = _contrib.explain(copy, x)
    assert np.array_equal(got, contrib)
    assert np.array_equal(got_prob, prob)


@SMALL_MODELS
def test_the_per_leaf_tables_give_the_walk_lightgbms_numbers_to_the_bit(params, monkeypatch):
    """A walk given the model's per-leaf tables takes its representatives' numbers from them, not from LightGBM,
    and gives the contributions and raw scores of a walk that asks LightGBM, to the bit; the same with the
    representatives shared among threads."""
    from churnguard.model._treeshap import TreeShap

    booster, x = _train(**params)
    rows = _small_model_rows(booster, x)
    it = booster.current_iteration()
    expected, expected_raw = _contrib.TreeContributions(booster, it, set(CATEGORICAL))(rows, raw_score=True)
    asked: list[int] = []
    contributions = _contrib.TreeContributions._contributions
    monkeypatch.setattr(_contrib.TreeContributions, "_contributions",
                        lambda self, tree, r: (asked.append(len(r)), contributions(self, tree, r))[1])
    for threads in (1, 2):
        monkeypatch.setattr(_contrib, "_THREADS", threads)
        monkeypatch.setattr(_contrib, "_SHARED_CALL", 8)
        walk = _contrib.TreeContributions(booster, it, set(CATEGORICAL), TreeShap(booster, it))
        got, raw = walk(rows, raw_score=True)
        assert np.array_equal(got, expected)
        assert np.array_equal(raw, expected_raw)
    assert not asked


def test_scoring_walks_with_the_models_tables(model, feats, monkeypatch):
    """The batch path's walk (``tree_contributions``) holds the model's checked per-leaf tables, and the demo
    model's contributions from it are those of a walk that asks LightGBM, to the bit."""
    x = model._matrix(pd.concat([feats, _edge_rows(model, feats)], ignore_index=True))
    walk = _contrib.tree_contributions(model)
    assert walk.tables is _contrib.row_tables(model) is not None
    categorical = {i for i, c in enumerate(model.feature_names_) if c in model.categories_}
    plain = _contrib.TreeContributions(model.booster_, model.best_iteration_, categorical)
    got, raw = walk(x, raw_score=True)
    expected, expected_raw = plain(x, raw_score=True)
    assert np.array_equal(got, expected)
    assert np.array_equal(raw, expected_raw)


def test_a_walk_run_on_a_share_of_the_cores_keeps_to_it(monkeypatch):
    """Partitions scored at once each get a share of the cores (``_io.cores.cores_shared``): a walk on a thread given one
    core splits its rows for one thread, and asks LightGBM for one, where on its own it takes two; the share
    holds only while the job runs."""
    from concurrent.futures import ThreadPoolExecutor

    from churnguard._io.cores import core_share, cores_shared

    monkeypatch.setattr(_contrib, "_THREADS", 2)
    monkeypatch.setattr("churnguard._io.cores.usable_cores", lambda: 2)

    def threads(_: int) -> tuple:
        split = _contrib._Split(1_000_003)
        try:
            return core_share(), len(split.runs), _contrib._threads(1_000_003)
        finally:
            split.close()

    assert threads(0) == (None, 2, 0)  # LightGBM's default: all cores
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(cores_shared(threads, 2), range(4))) == [(1, 1, 1)] * 4
        assert list(pool.map(threads, range(2))) == [(None, 2, 0)] * 2  # the pool's threads, the share gone


@pytest.mark.parametrize("n", [1, 5_000, 20_000, 224_454, 1_000_003])
def test_the_rows_are_shared_in_even_blocks_and_each_thread_marks_its_own_keys(monkeypatch, n):
    """Every row is in one block, blocks of at most ``_BLOCK`` rows and as many to each thread (two threads
    for more than ``_MIN_BLOCK`` rows); each run marks keys in an array of its own, and the join holds at each
    key a row some run wrote there (-1 where none did)."""
    monkeypatch.setattr(_contrib, "_THREADS", 2)
    split = _contrib._Split(n)
    try:
        blocks = [b for run in split.runs for b in run]
        assert [b.start for b in blocks] == [0, *(b.stop for b in blocks[:-1])]
        assert blocks[-1].stop == n
        assert max(b.stop - b.start for b in blocks) <= _contrib._BLOCK
        assert len(split.runs) == (2 if n > _contrib._MIN_BLOCK else 1)
        assert len({len(run) for run in split.runs}) == 1
        keys = np.arange(n) % 7 * 3  # keys 0, 3, ..., 18 of 20
        arrays = {}

        def mark(rep, blocks, scratch):
            assert all(b in split.runs[scratch.run] for b in blocks)
            arrays[scratch.run] = rep
            for b in blocks:
                rep[keys[b]] = np.arange(b.start, b.stop)

        rep = split.marked(mark, 20, np.int32)
    finally:
        split.close()
    assert len(arrays) == len(split.runs)
    assert len(arrays) == 1 or not np.shares_memory(arrays[0], arrays[1])
    found = np.flatnonzero(rep >= 0)
    assert found.tolist() == sorted(set(keys.tolist()))
    assert (keys[rep[found]] == found).all()


def _threshold_sets():
    rng = np.random.default_rng(7)
    close = 100.5 + np.arange(8) * 2.0**-40  # neighbours a few units of the last place apart
    yield np.array([0.5])
    yield np.array([-0.0, 1.5])
    yield np.array([-np.inf, -1.0, 0.0, 2.0, np.inf])
    yield np.array([-1e300, -5e-324, 5e-324, 1e-300, 1e300])
    yield np.unique(np.concatenate([close, -close, [-K_ZERO, K_ZERO, 0.0]]))
    yield np.unique(np.round(rng.random(300) * 400) + 0.5)  # a count's thresholds
    yield np.unique(rng.standard_normal(150) * 10.0 ** rng.integers(-30, 30, 150))  # over many magnitudes


def test_the_codes_cells_are_used_for_thresholds_apart_and_not_for_a_crowd():
    sets = list(_threshold_sets())
    assert [_contrib._Cells.of(t) is None for t in sets] == [False, False, False, False, True, False, False]
    assert _contrib._Cells.of(np.array([])) is None


@pytest.mark.parametrize("cells", [_contrib._CELLS, 64, 8])
@pytest.mark.parametrize("thresholds", list(_threshold_sets()))
def test_the_codes_cells_count_the_thresholds_below_a_value_as_a_binary_search_does(monkeypatch, thresholds, cells):
    """``_Cells`` gives ``np.searchsorted(side="left")`` for every value that is not NaN: the thresholds
    themselves and their neighbours, both zeros, the infinities, subnormals and random values over many
    magnitudes; with few cells allowed, cells of several thresholds (passes) or a binary search (None)."""
    monkeypatch.setattr(_contrib, "_CELLS", cells)
    rng = np.random.default_rng(0)
    t = np.sort(thresholds)
    values = np.concatenate([t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), [0.0, -0.0, np.inf, -np.inf],
                             [5e-324, -5e-324, 1e-36, -1e-36, np.finfo(float).max, -np.finfo(float).max],
                             rng.standard_normal(2_000) * 10.0 ** rng.integers(-40, 40, 2_000),
                             rng.choice(t, 500) + rng.integers(-3, 4, 500) * 0.25])
    search = _contrib._Cells.of(t)
    if search is None:  # too many thresholds in too few cells: a binary search
        assert cells < len(t) or len(t) > _contrib._PASSES
        return
    assert len(search.below) <= cells
    got = np.empty(len(values), dtype=np.intp)
    search(values, got)
    np.testing.assert_array_equal(got, np.searchsorted(t, values, side="left"))
    np.testing.assert_array_equal(values[:len(t)], t)  # the values are read, not changed
