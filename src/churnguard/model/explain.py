"""LightGBM's exact TreeSHAP contributions and calibrated probabilities, for any number of rows.

For many rows (:class:`TreeContributions`): what a tree contributes to a row depends only on which side of
each of that tree's splits the row falls, so LightGBM's contributions are asked for once per distinct split
pattern and tree (one representative row, ``start_iteration=t, num_iteration=1``) and added to every row with
the pattern, tree by tree. A representative's numbers come from the model's per-leaf tables
(``churnguard.model._treeshap``, LightGBM's numbers to the bit) when it has them, else from LightGBM. The result
is LightGBM's numbers; only the floating-point grouping of the per-tree sums differs from a single
``pred_contrib`` call.

Patterns are found with integer codes (each value's interval among the tree's thresholds), at least as fine as
LightGBM's ``Tree::NumericalDecision`` / ``CategoricalDecision``: ``x <= threshold`` goes left, missing values
(NaN, and zero for ``missing_type: Zero``) to their default side, so NaN and zero each get a code of their
own; a categorical value is its own code.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._io.cores import core_share, usable_cores

if TYPE_CHECKING:
    from churnguard.model import ChurnModel
    from churnguard.model._treeshap import TreeShap

def sigmoid_scale(booster) -> float:
    """The binary objective's ``sigmoid`` parameter of a booster (LightGBM's default 1.0)."""
    return float(booster.params.get("sigmoid", 1.0))


def lightgbm_probability(raw: float | np.ndarray, scale: float) -> float | np.ndarray:
    """The binary objective's probability for a raw score (or an array of them), computed as LightGBM does:
    libm's ``exp`` (``math.exp``, which numpy's vectorised ``exp`` need not match in the last bit), the rest in
    IEEE arithmetic, which numpy's and Python's share."""
    e = np.fromiter(map(math.exp, (-scale * np.asarray(raw, dtype="float64")).ravel().tolist()), dtype=np.float64)
    probability = 1.0 / (1.0 + e)
    return float(probability[0]) if np.ndim(raw) == 0 else probability.reshape(np.shape(raw))


_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold, the float 1e-35f: |x| <= this counts as zero
MIN_ROWS = 5_000  # below this, one plain pred_contrib call is as fast (see ``explain``)
_FEW_ROWS = 64  # up to this many rows: the per-leaf tables, or LightGBM on one thread
logger = logging.getLogger(__name__)


def explain(model: ChurnModel, matrix: np.ndarray, *, contributions: bool = True
            ) -> tuple[np.ndarray | None, np.ndarray]:
    """LightGBM's exact TreeSHAP contributions (rows x model features, on the log-odds scale; None when not
    asked for) and the calibrated churn probabilities of the model inputs ``matrix``
    (:func:`churnguard.model._modelcore.column_matrix`), for any number of rows.

    Up to ``_FEW_ROWS`` rows: the per-leaf tables (:func:`row_tables`) when the model has them; below
    ``MIN_ROWS`` rows: LightGBM's ``pred_contrib`` and ``predict`` (on one thread up to ``_FEW_ROWS`` rows);
    from ``MIN_ROWS`` rows on: :class:`TreeContributions` and the raw scores of the same walk.
    """
    booster, best = model.booster_, model.best_iteration_
    tables = row_tables(model) if 0 < len(matrix) <= _FEW_ROWS else None
    if tables is not None:  # a few rows (the server's requests): the per-leaf tables, LightGBM's numbers
        contrib, raw = tables.rows(np.asarray(matrix, dtype="float64"))
        return (contrib[:, :-1] if contributions else None), model.proba_from_raw_score(raw)
    if len(matrix) < MIN_ROWS:
        threads = {"num_threads": 1} if len(matrix) <= _FEW_ROWS else {}
        contrib = booster.predict(matrix, num_iteration=best, pred_contrib=True, **threads)[:, :-1] if contributions else None
        return contrib, model.calibrator_.probability(booster.predict(matrix, num_iteration=best, **threads))
    if not contributions:
        return None, model.calibrator_.probability(booster.predict(matrix, num_iteration=best))
    contrib, raw = tree_contributions(model)(matrix, raw_score=True)
    return contrib, model.proba_from_raw_score(raw)


def tree_contributions(model: ChurnModel) -> TreeContributions:
    """The model's :class:`TreeContributions`, built once per booster and kept with the model: the batch
    engines call :func:`explain` once per partition, and the patterns one partition's rows took LightGBM's
    numbers for are looked up, not asked for again, in the next. The patterns' numbers come from the model's
    per-leaf tables (:func:`row_tables`) when it has them, else from LightGBM."""
    booster, best = model.booster_, model.best_iteration_
    held = getattr(model, "_tree_walk", None)
    if held is None or held[0] is not booster or held[1] != best:
        categorical = {i for i, c in enumerate(model.feature_names_) if c in model.categories_}
        dump = booster.dump_model(num_iteration=best)  # read by the tables and the walk alike (0.16 s a dump)
        walk = TreeContributions(booster, best, categorical, row_tables(model, dump), dump=dump)
        held = model._tree_walk = (booster, best, walk)
    return held[2]


def row_tables(model: ChurnModel, dump: dict | None = None):
    """The model's per-leaf TreeSHAP tables (:class:`churnguard.model._treeshap.TreeShap`), built once and
    checked against LightGBM's own ``pred_contrib`` and raw score on rows at and around every split threshold;
    None (LightGBM's calls are used) when the model is not one they tabulate or a check differs. ``dump``: the
    booster's ``dump_model`` up to the best iteration, when the caller has it."""
    if not hasattr(model, "_row_tables"):
        booster, best = model.booster_, model.best_iteration_
        model._row_tables = _checked_tables(booster, best, dump or booster.dump_model(num_iteration=best))
    return model._row_tables


def _checked_tables(booster, num_iteration: int, dump: dict):
    from importlib.metadata import version

    from churnguard.model._treeshap import TreeShap

    try:
        tables = TreeShap(booster, num_iteration, dump)
    except ValueError as exc:  # deeper trees than tabulated, say
        logger.info("contributions from LightGBM's pred_contrib: %s", exc)
        return None
    rows = _threshold_rows(booster, num_iteration, dump)
    contrib = booster.predict(rows, num_iteration=num_iteration, pred_contrib=True)
    raw = booster.predict(rows, num_iteration=num_iteration, raw_score=True)
    for size in (1, 2, 3, len(rows)):  # as the server calls them: each number of rows decided together
        got, got_raw = tables.rows(rows[:size])
        if not (np.array_equal(got, contrib[:size]) and np.array_equal(got_raw, raw[:size])):
            logger.warning("the per-leaf TreeSHAP tables differ from LightGBM %s on a row: using LightGBM's "
                           "pred_contrib instead", version("lightgbm"))
            return None
    return tables


def _threshold_rows(booster, num_iteration: int, model: dict, n: int = 64) -> np.ndarray:
    """Rows whose values sit on, just above and around the split thresholds of the booster's ``dump_model``
    (``model``), zero and missing."""
    values: list[list[float]] = [[0.0, np.nan, -1.0, 1.0] for _ in range(booster.num_feature())]
    stack = [t["tree_structure"] for t in model["tree_info"][:num_iteration]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            t = node["threshold"]
            if isinstance(t, float | int):
                values[node["split_feature"]] += [float(t), float(np.nextafter(t, np.inf))]
            stack += [node["left_child"], node["right_child"]]
    rng = np.random.default_rng(0)
    return np.array([[v[rng.integers(len(v))] for v in values] for _ in range(n)], dtype="float64")


@dataclass(frozen=True)
class _Tree:
    index: int
    features: tuple[int, ...]  # column positions split on in this tree
    luts: tuple[np.ndarray | None, ...]  # per feature: global code -> code among this tree's thresholds
    radix: tuple[int, ...]


class TreeContributions:
    """Exact per-feature contributions of a LightGBM booster, deduplicated per tree (see the module docstring).

    Args:
        booster: the trained ``lightgbm.Booster``.
        num_iteration: trees used (the model's best iteration).
        categorical: column positions of categorical features (fed as integer codes, NaN for missing).
        tables: the model's per-leaf tables (``churnguard.model._treeshap.TreeShap``, checked against LightGBM), which
            give a tree's numbers for the patterns' representatives (``TreeShap.tree_terms``); None: LightGBM's
            ``predict`` is asked, once per tree.
        dump: the booster's ``dump_model(num_iteration=num_iteration)``, when the caller has it (read, not changed).
    """

    def __init__(self, booster, num_iteration: int, categorical: set[int], tables: TreeShap | None = None, *,
                 dump: dict | None = None) -> None:
        self.booster = booster
        self.tables = tables
        self.n_features = booster.num_feature()
        self.num_iteration = num_iteration
        model = dump or booster.dump_model(num_iteration=num_iteration)
        thresholds: list[set[float]] = [set() for _ in range(self.n_features)]
        per_tree: list[dict[int, tuple[set[float], set[str]]]] = []
        for info in model["tree_info"][:num_iteration]:
            used: dict[int, tuple[set[float], set[str]]] = {}
            stack = [info["tree_structure"]]
            while stack:
                node = stack.pop()
                if "split_feature" not in node:
                    continue
                f = int(node["split_feature"])
                local, missing = used.setdefault(f, (set(), set()))
                missing.add(str(node.get("missing_type", "None")))
                if f not in categorical:
                    local.add(float(node["threshold"]))
                    thresholds[f].add(float(node["threshold"]))
                stack += [node["left_child"], node["right_child"]]
            per_tree.append(used)
        self.categorical = categorical
        self.thresholds = [np.array(sorted(t), dtype="float64") for t in thresholds]
        self.cells = [_Cells.of(t) for t in self.thresholds]  # the codes' search among them
        self.trees = [self._tree(index, used) for index, used in enumerate(per_tree)]
        self._known: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # per tree: pattern keys (sorted), their values
        self._known_size = 0  # floats held in ``_known``
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        """Picklable (the Dask engine sends the model, and this walk kept with it, to its workers) without the
        patterns kept (up to ``_KNOWN_FLOATS``: a worker finds its own) and the lock (made anew)."""
        return {k: v for k, v in self.__dict__.items() if k != "_lock"} | {"_known": {}, "_known_size": 0}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _tree(self, index: int, used: dict[int, tuple[set[float], set[str]]]) -> _Tree:
        """Per split-on feature, the map from global codes to this tree's coarser codes."""
        feats, luts, radix = [], [], []
        for f in sorted(used):
            feats.append(f)
            if f in self.categorical:
                luts.append(None)  # the category code itself
                radix.append(0)
                continue
            thresholds, missing = used[f]
            glob, local = self.thresholds[f], np.array(sorted(thresholds), dtype="float64")
            keep_zero = "Zero" in missing  # zero goes to the default side only under missing_type Zero
            keep_nan = missing not in ({"None"}, {"Zero"})  # NaN is 0.0 under None, and zero-like under Zero
            # Global code 1 + 2k + z is interval k (glob[k-1] < x <= glob[k]) plus the is-zero bit z; here the
            # interval is the count of this tree's thresholds below x, i.e. those <= glob[k-1].
            below = np.concatenate([[0], np.searchsorted(local, glob, side="right")])
            width = 2 if keep_zero else 1
            lut = np.empty(1 + 2 * len(below), dtype=np.int64)
            lut[1::2] = 1 + width * below
            lut[2::2] = 1 + width * below + (1 if keep_zero else 0)
            zero = 1 + width * int(np.searchsorted(local, 0.0, side="left")) + (1 if keep_zero else 0)
            lut[0] = 0 if keep_nan else zero
            # numbered again 0..k-1 over the codes this tree tells apart (a zero or NaN code of its own only where
            # it has one), so a tree's pattern keys span as few values as its splits allow
            told, tight = np.unique(lut, return_inverse=True)
            luts.append(tight.astype(np.int64))
            radix.append(len(told))
        return _Tree(index, tuple(feats), tuple(luts), tuple(radix))

    def _codes(self, x: np.ndarray, split: _Split) -> tuple[list[np.ndarray | None], list[int]]:
        """Global code of every value of each split-on feature, and the number of codes per feature (as numpy's
        index type: they index the trees' tables once per tree, and narrower codes are converted at every take,
        a quarter of the time of a key pass)."""
        n = len(x)
        codes: list[np.ndarray | None] = [np.empty(n, dtype=np.intp) if f in self.categorical
                                          or len(self.thresholds[f]) else None for f in range(self.n_features)]

        def fill(blocks: list[slice], _scratch: _Scratch) -> None:
            for b in blocks:
                for f, c in enumerate(codes):
                    if c is not None:
                        self._code(f, x[b, f], c[b])

        split.run(fill)
        sizes = [0 if c is None else int(c.max()) + 1 if f in self.categorical else 2 * len(self.thresholds[f]) + 3
                 for f, c in enumerate(codes)]
        return codes, sizes

    def _code(self, f: int, v: np.ndarray, c: np.ndarray) -> None:
        """Global codes of the values ``v`` of feature ``f``, written into ``c``."""
        if f in self.categorical:
            np.copyto(c, np.where(np.isnan(v), 0, v + 1), casting="unsafe")
            return
        # LightGBM reads a dense row's values within its zero threshold as 0.0 (they are left out of the row like
        # zeros), so they fall in 0.0's interval: -1e-35f itself goes right of a split at -1e-35f
        zero = np.abs(v) <= _ZERO
        w = np.where(zero, 0.0, v)
        if self.cells[f] is not None:
            self.cells[f](w, c)
        else:
            np.copyto(c, np.searchsorted(self.thresholds[f], w, side="left"), casting="unsafe")
        c *= 2
        c += 1
        c += zero
        c[np.isnan(v)] = 0

    def __call__(self, x: np.ndarray, *, raw_score: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Contributions (rows x features, without the expected-value column) for the float64 matrix ``x``;
        with ``raw_score``, also each row's raw score, equal to ``Booster.predict(raw_score=True)`` to the bit
        (the leaf values a row reaches, added tree by tree from 0.0, as LightGBM adds them).

        Per tree, rows are walked in blocks (one or a few per thread): once for the pattern keys (mixed-radix
        numbers of the tree's codes) and a representative row per key, once to add each pattern's contributions
        to its rows.
        The keys of a few trees at a time are packed into one 64-bit word per row (:meth:`_packed_words`), so
        a feature several of them split on is looked up once for all of them. The blocks are shared among up to
        :func:`_walk_threads` threads (numpy's loops release the GIL); each row is computed by one thread, with the same
        operations in the same order, so the numbers do not depend on them.
        """
        x = np.asfortranarray(x, dtype="float64")  # column-major, as the batch path gives it: read a column at a time
        n = len(x)
        out = np.zeros((n, self.n_features), order="F")  # one column at a time below
        score = np.zeros(n) if raw_score else None
        if n == 0:
            return (out, score) if raw_score else out
        split = _Split(n)
        try:
            codes, sizes = self._codes(x, split)
            rows = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
            key = np.empty(n, dtype=np.intp)  # numpy's index type: taken as an index once per tree
            packed: dict[int, tuple[np.ndarray, int, int]] = {}  # the keys of the trees ahead, packed
            for at, tree in enumerate(self.trees):
                if at % _WINDOW == 0:
                    packed = self._packed_words(self.trees[at : at + _WINDOW], codes, sizes, n, split)
                if not tree.features:  # a single leaf: no contribution, its value to every row's raw score
                    if score is not None:
                        score += self._leaf_values(x[:1], tree)[0]
                    continue
                radix = [size or sizes[f] for f, size in zip(tree.features, tree.radix, strict=True)]
                field = packed.pop(tree.index, None)
                keys, groups = None, None  # keys: the groups' pattern keys (:meth:`_pattern_keys`), when known here
                if field is not None:
                    remap, first, found = self._unpacked(*field, rows, key, split)
                    if all(lut is not None for lut in tree.luts):  # no categorical feature: the same numbers
                        keys = found
                elif (dense := self._dense(tree, codes, radix, rows, key, split)) is not None:
                    remap, first = dense
                else:
                    remap, (groups, first) = None, self._hashed(tree, codes, radix, rows)
                values = self._pattern_values(tree, codes, x, first, split, keys)  # groups x (features, leaf value)
                per_feature = np.ascontiguousarray(values[:, :-1].T)  # small: features x groups
                leaves = values[:, -1].copy() if score is not None else None

                split.run(partial(_add, out, score, key, tree.features, remap, groups, per_feature, leaves))
        finally:
            split.close()
        return (out, score) if raw_score else out

    @staticmethod
    def _place_luts(tree: _Tree, radix: list[int], run: range) -> list[np.ndarray]:
        """Per feature of ``run`` (positions in ``tree.features``): each code's digit times its place value in
        the mixed-radix key of those features (the last one's place 1), as numpy's index type."""
        places = np.cumprod([1, *radix[run.stop - 1 : run.start : -1]])[::-1]
        return [(np.arange(radix[j]) if tree.luts[j] is None else tree.luts[j].astype(np.intp)) * place
                for j, place in zip(run, places, strict=True)]

    def _packed_words(self, trees: list[_Tree], codes: list[np.ndarray | None], sizes: list[int], n: int,
                      split: _Split) -> dict[int, tuple[np.ndarray, int, int]]:
        """The pattern keys of ``trees`` whose keys span at most ``_DENSE`` values (:meth:`_dense` in one run),
        packed a few trees to a word: each row's word holds each of its trees' keys in bits of their own (a
        key below ``2**b`` in ``b`` bits, 63 bits a word), as the sum over the word's features of one lookup
        each, which holds every tree's digit of that code at the tree's place. No key carries into another's
        bits: each is below its bound. Trees are put together by the features they share (each word takes the
        tree that adds the fewest new features while it has room). Returns per tree its word, its first bit and
        its number of keys."""
        fields: list[tuple[_Tree, list[int], int]] = []
        for tree in trees:
            radix = [size or sizes[f] for f, size in zip(tree.features, tree.radix, strict=True)]
            bound = math.prod(radix)
            if tree.features and bound <= _DENSE:
                fields.append((tree, radix, bound))
        words: list[list[tuple[_Tree, list[int], int]]] = []
        while fields:
            word = [fields.pop(0)]
            bits, features = (word[0][2] - 1).bit_length(), set(word[0][0].features)
            while True:
                fits = [(len(set(t.features) - features), i) for i, (t, _, b) in enumerate(fields)
                        if bits + (b - 1).bit_length() <= _WORD_BITS]
                if not fits:
                    break
                tree, radix, bound = fields.pop(min(fits)[1])
                word.append((tree, radix, bound))
                bits += (bound - 1).bit_length()
                features |= set(tree.features)
            words.append(word)
        out: dict[int, tuple[np.ndarray, int, int]] = {}
        for word in words:
            tables: dict[int, np.ndarray] = {}
            shift = 0
            for tree, radix, bound in word:
                for f, lut in zip(tree.features, self._place_luts(tree, radix, range(len(radix))), strict=True):
                    if f in tables:
                        tables[f] += lut << shift
                    else:
                        tables[f] = lut << shift
                out[tree.index] = (shift, bound)
                shift += (bound - 1).bit_length()
            packed = np.empty(n, dtype=np.intp)
            split.run(partial(_words, packed, [codes[f] for f in tables], list(tables.values())))
            for tree, _, _ in word:
                out[tree.index] = (packed, *out[tree.index])
        return out

    @staticmethod
    def _unpacked(word: np.ndarray, shift: int, bound: int, rows: np.ndarray, key: np.ndarray, split: _Split
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A tree's pattern keys from their packed words (:meth:`_packed_words`), written into ``key``, and
        the map from key to group number and a representative row of each group, as :meth:`_dense` gives them,
        and the keys of the groups (the mixed-radix numbers of their codes)."""
        rep = split.marked(partial(_unpack, key, word, shift, (1 << (bound - 1).bit_length()) - 1, rows), bound,
                           rows.dtype)
        found = np.flatnonzero(rep >= 0)  # the keys present, in order
        remap = np.empty(bound, dtype=np.intp)  # read at those keys only (so only their pages are touched)
        remap[found] = np.arange(len(found))
        return remap, rep[found], found

    @staticmethod
    def _dense(tree: _Tree, codes: list[np.ndarray | None], radix: list[int], rows: np.ndarray, key: np.ndarray,
               split: _Split) -> tuple[np.ndarray, np.ndarray] | None:
        """The pattern keys of a tree through lookup tables, written into ``key``; returns the map from key to
        group number and a representative row of each group (None when a feature has too many codes for it).

        The key is the mixed-radix number of the tree's codes, summed from per-feature tables that hold each
        code's local code times its place value (one lookup and one add per feature and row). When the codes
        of all the tree's features span more than ``_DENSE`` keys, the features are taken a run at a time:
        after each run the keys found are renumbered (the groups so far, a few thousand) and become the
        leading digit of the next run's keys."""
        groups, start, remap, first = 1, 0, None, None
        while start < len(radix):
            end, bound = start, groups
            while end < len(radix) and bound * radix[end] <= _DENSE:
                bound *= radix[end]
                end += 1
            if end == start:
                return None
            run = range(start, end)
            luts = TreeContributions._place_luts(tree, radix, run)  # intp: ``key``'s type
            lead = int(math.prod(radix[start:end]))  # place value of the groups so far
            rep = split.marked(partial(_keys, key, [codes[tree.features[j]] for j in run], luts, rows,
                                       None if remap is None else (remap, lead)), bound, rows.dtype)
            found = np.flatnonzero(rep >= 0)  # the keys present, in order
            remap = np.empty(bound, dtype=np.intp)  # read at those keys only (so only their pages are touched)
            remap[found] = np.arange(len(found))
            groups, start, first = len(found), end, rep[found]
        return remap, first

    def _pattern_values(self, tree: _Tree, codes: list[np.ndarray | None], x: np.ndarray, first: np.ndarray,
                        split: _Split, keys: np.ndarray | None = None) -> np.ndarray:
        """Per group of a tree (``first``: a row of each), LightGBM's contributions of the tree's features and the
        value of the leaf the group reaches, one row per group. The values of the patterns an earlier call saw
        are kept (per tree, by :meth:`_pattern_keys`) and taken from there; LightGBM is asked only for the
        others, so the patterns partitions share are computed once. ``keys``: the groups' pattern keys, when
        the caller has them (a tree without categorical features: the keys of one lookup table, whose
        mixed-radix numbers are these)."""
        if keys is None:
            keys = self._pattern_keys(tree, codes, first)
        out = np.empty((len(first), len(tree.features) + 1))
        miss = np.ones(len(first), dtype=bool)
        with self._lock:
            known = self._known.get(tree.index)
        if known is not None and keys is not None:
            at = np.minimum(np.searchsorted(known[0], keys), len(known[0]) - 1)
            hit = known[0][at] == keys
            out[hit] = known[1][at[hit]]
            miss = ~hit
        if miss.any():
            at = first[miss] if not miss.all() else first
            if self.tables is not None:  # the tables read the tree's own features only
                out[miss] = split.rows(partial(self._tabulated, tree), _columns(x, at, tree.features))
            else:
                reps = x[at]
                phi = split.rows(partial(self._contributions, tree), reps)
                out[miss, :-1] = phi[:, list(tree.features)]
                out[miss, -1] = split.rows(partial(self._leaf_values, tree=tree), reps)
            if keys is not None:
                self._keep(tree.index, keys[miss], out[miss])
        return out

    def _keep(self, index: int, keys: np.ndarray, values: np.ndarray) -> None:
        """Add a tree's newly computed pattern values to those kept (up to ``_KNOWN_FLOATS`` in all)."""
        with self._lock:
            known = self._known.get(index)
            held = 0 if known is None else known[1].size
            if known is not None:
                keys, values = np.concatenate([known[0], keys]), np.concatenate([known[1], values])
            keys, first = np.unique(keys, return_index=True)  # sorted; a key two calls added at once kept once
            values = values[first]
            if self._known_size - held + values.size <= _KNOWN_FLOATS:
                self._known_size += values.size - held
                self._known[index] = (keys, values)

    def _pattern_keys(self, tree: _Tree, codes: list[np.ndarray | None], rows: np.ndarray) -> np.ndarray | None:
        """The rows' pattern keys in a numbering of their own (the mixed-radix number of the tree's codes, with
        room for ``_KNOWN_CATEGORIES`` category codes), the same in every call; None when a category code is
        beyond that room or the keys would overflow int64 (their values are then not kept)."""
        key = np.zeros(len(rows), dtype=np.int64)
        bound = 1
        for f, lut, size in zip(tree.features, tree.luts, tree.radix, strict=True):
            c = codes[f][rows]
            if lut is None:
                if len(c) and (c.min() < 0 or c.max() >= _KNOWN_CATEGORIES):
                    return None
                size = _KNOWN_CATEGORIES
            else:
                c = lut[c]
            bound *= size
            if bound >= 2**62:
                return None
            key *= size
            key += c
        return key

    def _tabulated(self, tree: _Tree, rows: np.ndarray) -> np.ndarray:
        """The contributions of ``tree`` alone to ``rows`` (its features, in ``tree.features``' order) and the value
        of the leaf each reaches, one row each, from the per-leaf tables: LightGBM's numbers (:meth:`_contributions`,
        :meth:`_leaf_values`) to the bit, without a call per tree."""
        features, phi, leaf = self.tables.tree_terms(tree.index, rows)
        out = np.zeros((len(rows), len(tree.features) + 1))
        at = {f: j for j, f in enumerate(tree.features)}
        for k, f in enumerate(features.tolist()):  # the same features (each split's is on a leaf's path)
            out[:, at[f]] = phi[:, k]
        out[:, -1] = leaf
        return out

    def _contributions(self, tree: _Tree, rows: np.ndarray) -> np.ndarray:
        """LightGBM's contributions of ``tree`` alone to ``rows`` (features, then the expected value)."""
        return self.booster.predict(rows, start_iteration=tree.index, num_iteration=1, pred_contrib=True,
                                    num_threads=_threads(len(rows)))

    def _leaf_values(self, rows: np.ndarray, tree: _Tree) -> np.ndarray:
        """The value of the leaf each of ``rows`` reaches in ``tree`` (LightGBM's raw score of that tree alone)."""
        return self.booster.predict(rows, start_iteration=tree.index, num_iteration=1, raw_score=True,
                                    num_threads=_threads(len(rows)))

    @staticmethod
    def _hashed(tree: _Tree, codes: list[np.ndarray | None], radix: list[int], rows: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Group of every row and a representative row per group, through an int64 key and a hash table."""
        key = np.zeros(len(rows), dtype=np.int64)
        bound = 1
        for f, lut, size in zip(tree.features, tree.luts, radix, strict=True):
            if bound * size >= 2**62:  # keep the mixed-radix key within int64
                key, uniques = pd.factorize(key)
                bound = len(uniques)
            key *= size
            key += codes[f] if lut is None else lut[codes[f]]
            bound *= size
        groups, uniques = pd.factorize(key)
        groups = groups.astype(np.int16 if len(uniques) <= 2**15 else np.int32, copy=False)
        first = np.empty(len(uniques), dtype=rows.dtype)
        first[groups] = rows
        return groups, first


class _Cells:
    """Where values fall among sorted thresholds: ``np.searchsorted(thresholds, v, side="left")``, the number of
    thresholds below each value, for every value but NaN (whose count is left undefined), without a binary
    search per value, whose branches, taken one way or the other for values in no order, cost 15-30 ns a value.

    A value's cell is the top bits of its float64 pattern, read as an integer in the numbers' order
    (:func:`_ordered`); a table gives the thresholds in the cells below it, and the thresholds in its own cell
    (``passes``, at most, in any cell) are compared with it one by one, each pass a table of the cells' first,
    second... threshold (NaN past the last, which no value is above). A threshold in a cell below a value's is
    below it, one in a cell above is not: the order of the patterns is the numbers' (the thresholds' -0.0 read as
    0.0, which they equal). The codes of the 1M world's three partitions: 0.30 s against 0.80 s (one thread)."""

    def __init__(self, thresholds: np.ndarray, shift: int, passes: int) -> None:
        cells = _ordered((thresholds + 0.0).view(np.int64).copy()) >> shift
        self.shift = shift
        # from the first threshold's cell to the last's: a value below or above them is read at the nearer end,
        # whose thresholds are all above it or all below it
        self.low = int(cells[0])
        at = np.arange(self.low, int(cells[-1]) + 1)
        self.below = np.searchsorted(cells, at, side="left").astype(np.intp)
        padded = np.concatenate([thresholds, np.full(passes, np.nan)])
        self.nearest = [padded[self.below + k] for k in range(passes)]

    @classmethod
    def of(cls, thresholds: np.ndarray) -> _Cells | None:
        """The coarsest cells that hold at most one threshold each, or the fewest passes, within ``_CELLS``
        cells; None (a binary search) when that takes more than ``_PASSES`` passes, or there are no thresholds."""
        if not len(thresholds):
            return None
        keys = _ordered((thresholds + 0.0).view(np.int64).copy())
        best = None
        for shift in range(63, -1, -1):
            cells = keys >> shift
            if int(cells[-1]) - int(cells[0]) + 1 > _CELLS:
                break
            passes = int(np.unique(cells, return_counts=True)[1].max())
            if best is None or passes < best[0]:
                best = (passes, shift)
            if passes == 1:
                break
        if best is None or best[0] > _PASSES:
            return None
        return cls(thresholds, best[1], best[0])

    def __call__(self, v: np.ndarray, out: np.ndarray) -> None:
        """The count of thresholds below each of the float64 values ``v``, written into ``out`` (intp)."""
        cell = _ordered(v.view(np.int64).copy())
        cell >>= self.shift
        cell -= self.low
        self.below.take(cell, out=out, mode="clip")  # cells beyond the tables' read at their ends (see __init__)
        for nearest in self.nearest:
            out += nearest.take(cell, mode="clip") < v


def _ordered(bits: np.ndarray) -> np.ndarray:
    """float64 bit patterns (as int64, changed in place) as integers in the numbers' order: a negative number's
    bits but the sign flipped, so that the larger its magnitude, the smaller the integer (-0.0 comes out as -1,
    just below 0.0's 0; NaN beyond the infinities)."""
    sign = bits >> 63
    sign &= 0x7FFFFFFFFFFFFFFF
    bits ^= sign
    return bits


class _Scratch:
    """One thread's buffers for a block of rows."""

    def __init__(self, run: int, rows: int) -> None:
        self.run = run  # the run of blocks it serves
        self.part = np.empty(rows, dtype=np.intp)
        self.index = np.empty(rows, dtype=np.intp)
        self.floats = np.empty(rows)


class _Split:
    """The row blocks of ``n`` rows, shared among up to :func:`_walk_threads` threads in contiguous runs of as many
    blocks of even sizes (at most ``_BLOCK`` rows, and a thread's share of the rows when that is less; the rows
    shared only when there are more than ``_MIN_BLOCK``), each run with its own scratch buffers; ``run(fn)``
    calls ``fn(blocks, scratch)`` for every run at once and waits."""

    def __init__(self, n: int) -> None:
        threads = _walk_threads()
        count = max(-(-n // _BLOCK), min(threads, -(-n // _MIN_BLOCK)))  # blocks of at most _BLOCK rows
        k = max(1, min(threads, count))
        size = max(1, -(-n // (-(-count // k) * k)))  # as many blocks to each thread, of even sizes
        blocks = [slice(s, min(s + size, n)) for s in range(0, n, size)]
        k = min(k, len(blocks))
        self.runs = [blocks[i * len(blocks) // k : (i + 1) * len(blocks) // k] for i in range(k)]
        self.scratch = [_Scratch(i, size) for i in range(len(self.runs))]
        self._pool = ThreadPoolExecutor(k - 1, thread_name_prefix="treeshap") if k > 1 else None

    def run(self, fn) -> None:
        later = [] if self._pool is None else [self._pool.submit(fn, blocks, scratch) for blocks, scratch
                                                in zip(self.runs[1:], self.scratch[1:], strict=True)]
        fn(self.runs[0], self.scratch[0])
        for job in later:
            job.result()

    def marked(self, fn, bound: int, dtype: np.dtype) -> np.ndarray:
        """``fn(rep, blocks, scratch)`` for every run at once (as :meth:`run`), each run writing rows at keys
        into a ``rep`` of its own (``bound`` entries, -1 where none is written): threads writing into one array
        at scattered places slow each other down, each taking the cache lines the other wrote. Returns the
        runs' ``rep`` joined: at each key the largest row written there (any row of a key represents it: they
        all take the same paths), -1 where no run wrote one."""
        reps = [np.full(bound, -1, dtype=dtype) for _ in self.runs]
        self.run(lambda blocks, scratch: fn(reps[scratch.run], blocks, scratch))
        for other in reps[1:]:
            np.maximum(reps[0], other, out=reps[0])
        return reps[0]

    def rows(self, fn, rows: np.ndarray) -> np.ndarray:
        """``fn(rows)`` (a row-wise LightGBM call, which releases the GIL), the rows shared among the threads
        when there are enough of them."""
        k = len(self.runs) if len(rows) >= _SHARED_CALL else 1
        if k == 1:
            return fn(rows)
        parts = np.array_split(rows, k)
        later = [self._pool.submit(fn, part) for part in parts[1:]]
        return np.concatenate([fn(parts[0]), *(job.result() for job in later)])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def _keys(key: np.ndarray, codes: list[np.ndarray], luts: list[np.ndarray], rows: np.ndarray,
          previous: tuple[np.ndarray, int] | None, rep: np.ndarray, blocks: list[slice], scratch: _Scratch) -> None:
    """The pattern keys of the rows of ``blocks`` (see ``TreeContributions._dense``), written into ``key``,
    each key's row into ``rep``; ``previous``: the map from the last run's keys to groups, and their place."""
    for b in blocks:
        k = key[b]
        p = scratch.part[: len(k)]
        if previous is not None:
            remap, lead = previous
            remap.take(k, out=p, mode="wrap")  # keys are within range
            np.multiply(p, lead, out=k)
        for j, (c, lut) in enumerate(zip(codes, luts, strict=True)):
            if j or previous is not None:
                k += lut.take(c[b], out=p, mode="wrap")  # codes are within range
            else:
                lut.take(c[b], out=k, mode="wrap")
        rep[k] = rows[b]


def _columns(x: np.ndarray, rows: np.ndarray, features: tuple[int, ...]) -> np.ndarray:
    """The ``rows`` of the column-major ``x`` with only the columns ``features`` (zeros in the others), column-major,
    gathered a column at a time: a row gathered whole from ``x`` reads a cache line per column (gathering the
    representatives of the 1M world's first partition so took 0.22 s; ``_pattern_values`` over its three
    partitions, one thread: 1.08 s against 1.38 s)."""
    out = np.zeros((len(rows), x.shape[1]), order="F")
    for f in features:
        x[:, f].take(rows, out=out[:, f])
    return out


def _words(words: np.ndarray, codes: list[np.ndarray], tables: list[np.ndarray], blocks: list[slice],
           scratch: _Scratch) -> None:
    """The packed words of the rows of ``blocks`` (see ``TreeContributions._packed_words``): the sum of each
    feature's table at the row's code, written into ``words``."""
    for b in blocks:
        w = words[b]
        p = scratch.part[: len(w)]
        for j, (c, table) in enumerate(zip(codes, tables, strict=True)):
            if j:
                w += table.take(c[b], out=p, mode="wrap")  # codes are within range
            else:
                table.take(c[b], out=w, mode="wrap")


def _unpack(key: np.ndarray, words: np.ndarray, shift: int, mask: int, rows: np.ndarray, rep: np.ndarray,
            blocks: list[slice], _scratch: _Scratch) -> None:
    """One tree's keys of the rows of ``blocks`` from their packed words, written into ``key``, each key's row
    into ``rep`` (as ``_keys``)."""
    for b in blocks:
        k = key[b]
        np.right_shift(words[b], shift, out=k)
        np.bitwise_and(k, mask, out=k)
        rep[k] = rows[b]


def _add(out: np.ndarray, score: np.ndarray | None, key: np.ndarray, features: tuple[int, ...],
         remap: np.ndarray | None, groups: np.ndarray | None, per_feature: np.ndarray, leaves: np.ndarray | None,
         blocks: list[slice], scratch: _Scratch) -> None:
    """Adds one tree's pattern values to the rows of ``blocks``: each row's group from its key (``remap``) or
    from ``groups``, then per feature the group's contribution (and the leaf value to ``score``)."""
    for b in blocks:
        g = scratch.index[: b.stop - b.start]  # the groups as numpy's index type (taken many times)
        if groups is None:
            remap.take(key[b], out=g, mode="wrap")  # keys are within range
        else:
            g[:] = groups[b]
        v = scratch.floats[: len(g)]
        for f, values in zip(features, per_feature, strict=True):
            column = out[b, f]  # contiguous: ``out`` is column-major
            np.add(column, values.take(g, out=v, mode="wrap"), out=column)  # groups are within range
        if leaves is not None:
            np.add(score[b], leaves.take(g, out=v, mode="wrap"), out=score[b])


def _threads(rows: int) -> int:
    """LightGBM's threads for a call on ``rows`` rows: one for the representatives of a tree (a few thousand:
    an OpenMP team costs more to start and join than it saves, much more when other processes hold the cores),
    else LightGBM's default (0: all cores), or the cores this thread may spread over (``_io.cores.core_share``)."""
    return 1 if rows <= _ONE_THREAD else core_share() or 0


_ONE_THREAD = 1 << 16
_KNOWN_FLOATS = 1 << 24  # pattern values kept across calls (128 MB): the 3 partitions of 1M customers keep 13.2M
_KNOWN_CATEGORIES = 1 << 16  # category codes a kept pattern key has room for
_SHARED_CALL = 1_000  # representatives from which a tree's LightGBM calls are shared among the threads
_DENSE = 1 << 22  # pattern keys below this are grouped through a lookup table instead of a hash table
_CELLS = 1 << 14  # at most this many cells in a feature's tables (``_Cells``): 128 KB of counts
_PASSES = 4  # comparisons within a cell, at most; more, and the codes are found by a binary search
_WINDOW = 32  # trees whose keys are packed together (each word of their rows held until its trees are added)
_WORD_BITS = 63  # bits of a packed word (int64, kept non-negative)
# Rows per block, at most. Each block costs a few numpy calls per tree and feature, a few microseconds each with
# the GIL taken again after each; blocks of 16,384 rows (a block's columns in the CPU cache) took more CPU:
# benchmarks/HISTORY.md, eighteenth day.
_BLOCK = 1 << 17
_MIN_BLOCK = 1 << 14  # rows from which (more than) they are shared among threads
_THREADS = min(2, usable_cores())  # threads of a walk, at most


def _walk_threads() -> int:
    """Threads of a walk: :data:`_THREADS`, or the cores this thread may spread over when fewer
    (``_io.cores.core_share``: two partitions scored at once walk on a core each)."""
    share = core_share()
    return _THREADS if share is None else max(1, min(_THREADS, share))
