"""LightGBM's TreeSHAP contributions and raw score for one row, from tables built once per model.

What one leaf adds to the contributions depends only on which of the splits on its root -> leaf path the row
agrees with, so :class:`TreeShap` runs LightGBM's ``Tree::TreeSHAP`` recursion once per leaf and agreement
pattern when it is built and keeps the terms (the tabulation of "Fast TreeSHAP v2", Yang 2021). For up to 8
rows at once it decides every split in a few array operations and gathers each leaf's bits into its pattern;
then, row by row, it adds the terms.

The numbers are LightGBM's to the bit: the terms use the floating-point operations of ``ExtendPath``,
``UnwindPath`` and ``UnwoundPathSum`` in LightGBM's order, and are added in the order of its recursion (tree
by tree; within a tree depth first, the row's own side first); the raw score adds the reached leaves' values
tree by tree from 0.0, as ``GBDT::PredictRaw`` does.

Decision rules mirrored (LightGBM 4's ``Tree::NumericalDecision`` / ``CategoricalDecision``): ``|x| <=
kZeroThreshold`` is zero; a numeric split sends ``x <= threshold`` left, NaN counts as zero unless
``missing_type`` is NaN, and a missing value (NaN under NaN, zero under Zero) takes the ``default_left`` side;
a categorical split sends a value left when its integer part is one of the split's categories, and NaN,
negative, infinite and huge values right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_DEPTH", "TreeShap"]

MAX_DEPTH = 8  # longest root -> leaf path tabulated (2^8 patterns for such a leaf; a pattern is one byte)
_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold, the float 1e-35f
_MAX_CATEGORY = 1 << 16  # categorical splits on larger codes are left to LightGBM
_MAX_TERMS = 1 << 23  # table entries (8 bytes each); larger models are left to LightGBM
_WORDS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # bytes -> the unsigned word of that size


@dataclass
class _Leaf:
    tree: int
    value: float
    count: int  # training rows in the leaf (its cover)
    nodes: list[int]  # global ids of the splits on the path, root first
    left: list[bool]  # the path's side of each
    features: list[int]
    ratios: list[float]  # cover of the path's child / cover of the split
    siblings: list[int]  # leaves under the child the path does not take


class TreeShap:
    """Exact TreeSHAP contributions and raw score of a LightGBM model for one row or a few (see the module
    docstring).

    Args:
        booster: a ``lightgbm.Booster`` with one tree per iteration (binary or regression objectives) and
            constant leaves.
        num_iteration: trees used, from the first, as ``Booster.predict(num_iteration=...)``.
        dump: the booster's ``dump_model(num_iteration=num_iteration)``, when the caller has it (read, not
            changed).

    Raises:
        ValueError: for other kinds of models, paths longer than ``MAX_DEPTH`` splits and tables over 64 MB;
            callers then use LightGBM's own prediction.
    """

    def __init__(self, booster: Any, num_iteration: int, dump: dict | None = None) -> None:
        model = dump or booster.dump_model(num_iteration=num_iteration)
        if model.get("num_tree_per_iteration", 1) != 1 or model.get("average_output"):
            raise ValueError("TreeShap handles models with one tree per iteration and summed outputs only")
        if booster.params.get("linear_tree"):
            raise ValueError("TreeShap does not handle linear trees")
        self.n_features = booster.num_feature()
        splits: list[dict] = []
        leaves: list[_Leaf] = []
        self.expected_value = 0.0
        thresholds = _thresholds(booster.model_to_string(num_iteration=num_iteration))
        starts = []  # each tree's first leaf (its leaves follow one another)
        for t, info in enumerate(model["tree_info"][:num_iteration]):
            starts.append(len(leaves))
            root = info["tree_structure"]
            if "split_feature" not in root:  # a single leaf: Tree::ExpectedValue is its value
                leaves.append(_Leaf(t, float(root["leaf_value"]), 0, [], [], [], [], []))
                self.expected_value += float(root["leaf_value"])
                continue
            found: dict[int, _Leaf] = {}
            first = len(splits)
            _walk(root, t, splits, found, [], [], [], [], [])
            splits[first:] = [{**split, "threshold": thresholds[t][split["split_index"]]}  # the dump's own unchanged
                              if split["decision_type"] == "<=" else split for split in splits[first:]]
            total = float(root["internal_count"])
            expected = 0.0
            for index in sorted(found):  # Tree::ExpectedValue, leaves in index order
                expected += (found[index].count / total) * found[index].value
            self.expected_value += expected
            leaves += [found[i] for i in sorted(found)]
        depth = max(len(leaf.nodes) for leaf in leaves) if leaves else 0
        if depth > MAX_DEPTH:
            raise ValueError(f"a path of {depth} splits: TreeShap tabulates at most {MAX_DEPTH}")
        self._split_arrays(splits)
        self._leaf_arrays(leaves)
        self._tree_leaves = np.array([*starts, len(leaves)], dtype=np.intp)
        self._plans: dict[int, _TreePlan] = {}  # per tree, for tree_terms (built on first use)

    # -- tables ------------------------------------------------------------------------------------------

    def _split_arrays(self, splits: list[dict]) -> None:
        """Per split, how its bit is computed from the row: one comparison ``(sign * x) <= threshold`` for all
        numeric splits, categorical splits per feature from a table of the codes each split sends left.

        A numeric split's bit is ``x <= t`` (it goes left) when a missing value goes right, and ``x > t``
        (it goes right), computed as ``-x <= -nextafter(t, inf)``, when a missing value goes left: NaN fails
        both comparisons, so it lands on its side with no test of its own. Zero under ``missing_type`` Zero
        is then cleared to its default side too.
        """
        n = self.n_features
        self._n_splits = len(splits)
        self._threshold = np.full(len(splits), np.nan)  # NaN (never <=) for categorical splits, set after
        self._reads_right = np.zeros(len(splits), dtype=bool)  # the bit says "goes right"
        negated = np.zeros(len(splits), dtype=bool)
        zero: list[tuple[int, int]] = []
        categorical: dict[int, list[tuple[int, list[int]]]] = {}
        for i, s in enumerate(splits):
            f = int(s["split_feature"])
            if s["decision_type"] == "==":
                categorical.setdefault(f, []).append((i, [int(c) for c in str(s["threshold"]).split("||")]))
                continue
            if s["decision_type"] != "<=":
                raise ValueError(f"unknown decision type {s['decision_type']!r}")
            t = float(s["threshold"])
            missing = s.get("missing_type", "None")
            # where NaN goes: its default side, or zero's side when NaN counts as zero (missing_type None)
            nan_left = 0.0 <= t if missing == "None" else bool(s["default_left"])
            if missing == "Zero":
                zero.append((i, f))
            self._reads_right[i] = negated[i] = nan_left
            if nan_left:  # x > inf never holds: NaN as the threshold fails every comparison
                self._threshold[i] = np.nan if t == math.inf else -np.nextafter(t, math.inf)
            else:
                self._threshold[i] = t
        self._signs = np.array([[1.0], [-1.0]])
        self._source = np.array([int(s["split_feature"]) for s in splits], dtype=np.intp) + n * negated
        self._zero_splits = np.array([i for i, _ in zero], dtype=np.intp)
        self._zero_features = np.array([f for _, f in zero], dtype=np.intp)
        # Zeroing tiny values changes a comparison only for a threshold in [-kZeroThreshold, kZeroThreshold).
        numeric = np.array([float(s["threshold"]) for s in splits if s["decision_type"] == "<="])
        self._zero_row = bool(((numeric >= -_ZERO) & (numeric < _ZERO)).any())
        self._categorical = []
        for f, cats in sorted(categorical.items()):
            size = max(max(codes) for _, codes in cats) + 1
            if size > _MAX_CATEGORY:
                raise ValueError(f"a categorical split on code {size - 1}: TreeShap tabulates codes below "
                                 f"{_MAX_CATEGORY}")
            table = np.zeros((size + 1, len(cats)), dtype=bool)  # the last row: codes every split sends right
            for k, (_, codes) in enumerate(cats):
                table[codes, k] = True
            self._categorical.append((f, np.array([i for i, _ in cats], dtype=np.intp), size, table))
        self._category_features = np.array([f for f, *_ in self._categorical], dtype=np.intp)
        self._category_sizes = np.array([[size] for _, _, size, _ in self._categorical], dtype=np.float64)

    def _leaf_arrays(self, leaves: list[_Leaf]) -> None:
        """Per leaf: where its path's agreement bits are read; per leaf and pattern: the terms to add (and,
        for the all-agreeing pattern, the leaf value for the raw score) and the place in LightGBM's order."""
        ns, n = self._n_splits, self.n_features
        # the splits' bits (see __call__) along each leaf's path; padding reads a final False
        self._path = np.full((len(leaves), MAX_DEPTH), ns, dtype=np.intp)
        # a bit that says the opposite of what the path needs (goes right where the path goes left, or left
        # where it goes right) is flipped: the leaf's rows are stored at pattern ^ flip
        flip = np.zeros(len(leaves), dtype=np.intp)
        for i, leaf in enumerate(leaves):
            self._path[i, : len(leaf.nodes)] = leaf.nodes
            flip[i] = sum(1 << d for d, (s, left) in enumerate(zip(leaf.nodes, leaf.left, strict=True))
                          if left == self._reads_right[s])
        self._flip = flip
        # per split, its bit's place in a pattern (1 << its depth, the same in every path through it), as the
        # words in which rows() reads the bits of up to 8 rows at once (one byte each); then the padding's 0
        depth = np.zeros(ns + 1, dtype=np.uint64)
        for d in range(MAX_DEPTH):
            depth[self._path[:, d]] = 1 << d
        depth[ns] = 0
        self._place = {width: depth.astype(word) for width, word in _WORDS.items()}
        self._path_by_depth = np.ascontiguousarray(self._path.T)  # depth x leaves
        lengths = np.array([len(leaf.nodes) for leaf in leaves], dtype=np.intp)
        self._base = np.concatenate([[0], np.cumsum(1 << lengths)[:-1]]).astype(np.intp)
        width = max((len(set(leaf.features)) for leaf in leaves), default=0) + 1
        rows = int((1 << lengths).sum())
        if rows * width > _MAX_TERMS:
            raise ValueError(f"{rows * width} table entries: TreeShap tabulates at most {_MAX_TERMS}")
        self._terms = np.zeros((rows, width))
        # Slots and positions are read per row as indices (of np.add.at, of the leaves' order), which numpy
        # takes fastest as intp: a smaller type, though it keeps more of them in the CPU cache, is converted
        # first (about 5 us more per row on the demo model). Padding adds 0.0 to the expected value's slot (n),
        # which is set afterwards.
        self._slot = np.full((len(leaves), width), n, dtype=np.intp)
        self._position = np.empty(rows, dtype=np.intp)
        self._leaves = np.arange(len(leaves), dtype=np.intp)
        first: dict[int, int] = {}
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, leaf in enumerate(leaves):
            first.setdefault(leaf.tree, i)
            groups.setdefault(_repeats(leaf.features), []).append(i)
        for repeats, members in groups.items():
            self._tabulate(repeats, [leaves[i] for i in members], np.array(members, dtype=np.intp), first)

    def _tabulate(self, repeats: tuple[int, ...], leaves: list[_Leaf], index: np.ndarray,
                  first: dict[int, int]) -> None:
        """Fill the rows of these leaves, whose paths repeat features alike (so LightGBM's recursion takes
        the same steps for all of them), for every agreement pattern (bit d: the row takes the path's side at
        its split d), computed leaf-major, then pattern."""
        p, g = len(repeats), len(leaves)
        masks = np.arange(1 << p)
        rows = (self._base[index][:, None] + (masks ^ self._flip[index][:, None])).reshape(-1)
        start = np.repeat([first[leaf.tree] for leaf in leaves], 1 << p)
        values = np.repeat([leaf.value for leaf in leaves], 1 << p)
        full = rows[masks.size - 1 :: masks.size]  # the pattern of the leaf the row reaches: all bits set
        reached = values[masks.size - 1 :: masks.size]
        if p == 0:  # a single-leaf tree: no terms, and its leaf is always reached
            self._position[rows] = start
            self._slot[index, 0], self._terms[full, 0] = self.n_features + 1, reached
            return
        agree = np.broadcast_to(((masks[:, None] >> np.arange(p)) & 1).astype(np.float64), (g, 1 << p, p))
        agree = agree.reshape(-1, p).T  # (p, rows)
        ratios = np.repeat(np.array([leaf.ratios for leaf in leaves]).reshape(g, p), 1 << p, axis=0).T
        steps, terms = _leaf_terms(repeats, ratios, agree, values)
        for k, (step, term) in enumerate(zip(steps, terms, strict=True)):
            self._terms[rows, k] = term
            self._slot[index, k] = [leaf.features[step] for leaf in leaves]
        # then the raw score's slot: the reached leaf adds its value, the others 0.0
        self._slot[index, len(steps)], self._terms[full, len(steps)] = self.n_features + 1, reached
        # place in the recursion: after the leaves under each sibling the row went to instead of the path
        siblings = np.array([leaf.siblings for leaf in leaves], dtype=np.intp).reshape(g, p)
        siblings = np.repeat(siblings, 1 << p, axis=0).T
        self._position[rows] = start + ((1 - agree.astype(np.intp)) * siblings).sum(axis=0)

    # -- per row -----------------------------------------------------------------------------------------

    def __call__(self, row: np.ndarray) -> tuple[np.ndarray, float]:
        """Contributions of one float64 row (one per feature, then the expected value, as ``pred_contrib``)
        and its raw score (:meth:`rows` of the one row). Nothing is kept between calls: threads may share one
        instance."""
        contrib, raw = self.rows(row[None])
        return contrib[0], float(raw[0])

    def rows(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Contributions of float64 rows (rows x (features + 1): one per feature, then the expected value, as
        ``pred_contrib``) and their raw scores. Up to 8 rows at a time decide every split together, each
        row's bits a byte of one word per split; the leaves' patterns are those words gathered along each
        leaf's path (one bit place per depth), or-ed. Then each row's terms are added in LightGBM's order."""
        n = self.n_features
        contrib, raw = np.empty((len(x), n + 1)), np.empty(len(x))
        for start in range(0, len(x), 8):
            part = x[start : start + 8]
            table_rows = self._base + self._patterns(part)  # per row, each leaf's row of the tables
            places = self._position.take(table_rows)  # and its place in LightGBM's order
            for r, (rows, place) in enumerate(zip(table_rows, places, strict=True), start=start):
                leaf_at = np.empty_like(rows)  # the leaves in LightGBM's order
                leaf_at[place] = self._leaves
                out = np.zeros(n + 2)  # the terms added one by one in this order (ufunc.at is unbuffered)
                np.add.at(out, self._slot.take(leaf_at, axis=0).ravel(),
                          self._terms.take(rows.take(leaf_at), axis=0).ravel())
                contrib[r], raw[r] = out[: n + 1], out[n + 1]
        contrib[:, n] = self.expected_value
        return contrib, raw

    def _patterns(self, x: np.ndarray) -> np.ndarray:
        """Each leaf's agreement pattern for up to 8 rows (rows x leaves, uint8: bit d from the split at depth d
        of its path, as ``np.packbits`` with ``bitorder="little"`` packs a path's bits)."""
        k, ns = len(x), self._n_splits
        width = 1 if k == 1 else 2 if k == 2 else 4 if k <= 4 else 8  # bytes per word: one per row
        if self._zero_row:
            x = _zeroed(x)
        columns = x.T  # features x rows
        bits = np.zeros((ns + 1, width), dtype=bool)  # one word per split (see _split_arrays), then the padding's
        np.less_equal((self._signs[:, :, None] * columns).reshape(2 * self.n_features, k).take(self._source, axis=0),
                      self._threshold[:, None], out=bits[:ns, :k])
        if len(self._zero_splits):
            bits[self._zero_splits, :k] &= _nonzero(columns.take(self._zero_features, axis=0))
        if self._categorical:  # each categorical feature's codes, then the rows of its splits' table
            codes = _category_code(columns.take(self._category_features, axis=0), self._category_sizes)
            for (_, cats, _, table), code in zip(self._categorical, codes, strict=True):
                bits[cats, :k] = table[code].T
        words = bits.view(_WORDS[width]).reshape(ns + 1) * self._place[width]  # each row's bit at its depth's place
        pattern = np.bitwise_or.reduce(words.take(self._path_by_depth), axis=0)  # per leaf, its path's bits
        return pattern.view(np.uint8).reshape(-1, width)[:, :k].T

    def tree_terms(self, tree: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One tree's contributions to many rows and the value of the leaf each row reaches: what LightGBM's
        ``predict`` gives with ``start_iteration=tree, num_iteration=1`` (``pred_contrib`` and ``raw_score``), to
        the bit. The same tables as a single row's (:meth:`__call__`), elementwise over the rows: each row's
        terms added in LightGBM's order from 0.0, the tree's leaf value the only non-zero of the raw score's.

        Args:
            tree: the tree's iteration (from 0).
            x: float64 rows (rows x features).

        Returns:
            The features the tree splits on (ascending), their contributions (rows x those features) and the
            leaf values (one per row).
        """
        plan = self._plans.get(tree)
        if plan is None:
            plan = self._plans[tree] = self._plan(tree)
        k, width = len(x), len(plan.features) + 2  # the features, the padding's slot, the raw score's
        if self._zero_row:
            x = _zeroed(x)
        bits = np.zeros((k, plan.splits + 1), dtype=bool)  # the tree's splits, then the padding's False
        np.less_equal(x[:, plan.source] * plan.signs, plan.threshold, out=bits[:, : plan.splits])
        if len(plan.zero_splits):
            bits[:, plan.zero_splits] &= _nonzero(x[:, plan.zero_features])
        for f, cats, size, table in plan.categorical:
            bits[:, cats] = table[_category_code(x[:, f], size)]
        # each leaf's pattern: its path's bits, bit d from split d (np.packbits' little bit order, as per row)
        pattern = np.zeros((k, plan.leaves), dtype=np.uint8)
        flags = bits.view(np.uint8)
        for d, splits in enumerate(plan.path):
            pattern |= flags.take(splits, axis=1) << d
        rows = self._base[plan.first : plan.first + plan.leaves] + pattern  # (k, leaves)
        place = self._position.take(rows) - plan.first  # a tree's places start at its first leaf's index
        leaf_at = np.empty_like(place)  # per row, its leaves in LightGBM's order
        np.put_along_axis(leaf_at, place, np.broadcast_to(np.arange(plan.leaves), place.shape), axis=1)
        slots = plan.slot.take(leaf_at, axis=0)  # (k, leaves, terms)
        slots += (np.arange(k) * width)[:, None, None]
        out = np.zeros(k * width)  # added one by one in this order (ufunc.at is unbuffered)
        np.add.at(out, slots.ravel(), self._terms.take(np.take_along_axis(rows, leaf_at, axis=1), axis=0).ravel())
        out = out.reshape(k, width)
        return plan.features, out[:, :-2], out[:, -1]

    def _plan(self, tree: int) -> _TreePlan:
        """The tables of one tree's splits and leaves, numbered within the tree (:meth:`tree_terms`)."""
        first, end = int(self._tree_leaves[tree]), int(self._tree_leaves[tree + 1])
        path = self._path[first:end]
        splits = np.unique(path[path < self._n_splits])
        local = np.full(self._n_splits + 1, len(splits), dtype=np.intp)  # global split -> the tree's; padding last
        local[splits] = np.arange(len(splits))
        depth = int((path < self._n_splits).sum(axis=1).max())
        n = self.n_features
        slot = self._slot[first:end]
        features = np.unique(slot[slot < n])
        to_local = np.full(n + 2, len(features), dtype=np.intp)  # padding (n): a slot of its own; raw score last
        to_local[features] = np.arange(len(features))
        to_local[n + 1] = len(features) + 1
        zero = np.isin(self._zero_splits, splits)
        categorical = [(f, local[cats[mine]], size, table[:, mine]) for f, cats, size, table in self._categorical
                       if (mine := np.isin(cats, splits)).any()]
        return _TreePlan(first=first, leaves=end - first, splits=len(splits), source=self._source[splits] % n,
                         signs=np.where(self._source[splits] >= n, -1.0, 1.0), threshold=self._threshold[splits],
                         zero_splits=local[self._zero_splits[zero]], zero_features=self._zero_features[zero],
                         categorical=categorical, path=[np.ascontiguousarray(local[path[:, d]]) for d in range(depth)],
                         slot=to_local[slot], features=features)


@dataclass(frozen=True)
class _TreePlan:
    """One tree's part of the tables, its splits numbered within the tree (see ``TreeShap.tree_terms``)."""

    first: int  # the tree's first leaf
    leaves: int
    splits: int
    source: np.ndarray  # per split: the feature it reads
    signs: np.ndarray  # per split: -1.0 where the bit is computed on -x (see _split_arrays)
    threshold: np.ndarray
    zero_splits: np.ndarray  # splits under missing_type Zero, and their features
    zero_features: np.ndarray
    categorical: list[tuple[int, np.ndarray, int, np.ndarray]]  # as TreeShap._categorical, the tree's splits
    path: list[np.ndarray]  # per depth d: each leaf's split at d (the padding's False past its end)
    slot: np.ndarray  # (leaves, terms): where each term is added, numbered within the tree
    features: np.ndarray


def _zeroed(x: np.ndarray) -> np.ndarray:
    """Values within LightGBM's zero threshold read as 0.0 (``kZeroThreshold``)."""
    return np.where(np.abs(x) <= _ZERO, 0.0, x)


def _nonzero(x: np.ndarray) -> np.ndarray:
    """Where a value is not zero to LightGBM (so a split under ``missing_type`` Zero decides it by threshold)."""
    return np.abs(x) > _ZERO


def _category_code(v, size):
    """The row of a categorical split table for a value (or an array of them, with one ``size`` or sizes that
    broadcast against them): its integer part when it is a code below ``size``, else ``size`` (NaN, negative,
    infinite, too large: sent right by every split)."""
    if np.ndim(v) == 0:
        v = float(v)
        return int(v) if -1.0 < v < size else size
    return np.where((v > -1.0) & (v < size), v, size).astype(np.intp)  # NaN fails both comparisons



def _walk(node: dict, tree: int, splits: list[dict], found: dict[int, _Leaf], path: list[int],
          left: list[bool], features: list[int], ratios: list[float], siblings: list[int]) -> int:
    """Number the splits under ``node`` and record the path to each leaf; returns the number of leaves."""
    if "split_feature" not in node:
        found[int(node["leaf_index"])] = _Leaf(tree, float(node["leaf_value"]), int(node["leaf_count"]), path,
                                               left, features, ratios, siblings)
        return 1
    gid = len(splits)
    splits.append(node)
    children = (node["left_child"], node["right_child"])
    sizes = [_count_leaves(c) for c in children]
    for side, child in enumerate(children):
        _walk(child, tree, splits, found, [*path, gid], [*left, side == 0],
              [*features, int(node["split_feature"])], [*ratios, _cover(child) / float(node["internal_count"])],
              [*siblings, sizes[1 - side]])
    return sum(sizes)


def _thresholds(model: str) -> list[list[float]]:
    """Each tree's split thresholds from the model text, by split index: ``dump_model`` writes thresholds
    beyond +-1e300 (infinite ones, for splits that set NaN apart) as +-1e300."""
    trees = model[: model.find("end of trees")]
    return [[float(v) for v in line[len("threshold="):].split()] for line in trees.splitlines()
            if line.startswith("threshold=")]


def _count_leaves(node: dict) -> int:
    if "split_feature" not in node:
        return 1
    return _count_leaves(node["left_child"]) + _count_leaves(node["right_child"])


def _cover(node: dict) -> float:
    return float(node["internal_count"] if "split_feature" in node else node["leaf_count"])


def _repeats(features: list[int]) -> tuple[int, ...]:
    """The path's features renamed by first appearance: (0, 1, 0) for a path on a, b, a."""
    seen: dict[int, int] = {}
    return tuple(seen.setdefault(f, len(seen)) for f in features)


def _leaf_terms(repeats: tuple[int, ...], ratios: np.ndarray, agree: np.ndarray, values: np.ndarray
                ) -> tuple[list[int], list[np.ndarray]]:
    """LightGBM's ``Tree::TreeSHAP`` down one path to its leaf, elementwise over many leaves and patterns.

    Args:
        repeats: the path's features by first appearance (the same for every element).
        ratios: (splits, elements) cover of the path's child over the split's (``zero_fraction``).
        agree: (splits, elements) 1.0 where the path's child is the row's side, else 0.0.
        values: the leaf value of each element.

    Returns:
        For each feature of the leaf's unique path, in LightGBM's order: one path step that split on it (to
        name the real feature) and its term ``w * (one_fraction - zero_fraction) * leaf_value``.
    """
    ones = np.ones(values.shape[0])
    size = len(repeats) + 1
    feature = [-1] * size
    zero: list[Any] = [ones] * size
    one: list[Any] = [ones] * size
    weight: list[Any] = [ones] * size
    step = [-1] * size
    depth = 0  # unique_depth: the root element (feature -1) is at 0
    with np.errstate(divide="ignore", invalid="ignore"):  # _unwind / _unwound_sum compute both branches
        for d, f in enumerate(repeats):
            incoming_zero: Any = 1.0
            incoming_one: Any = 1.0
            if f in feature[: depth + 1]:
                at = feature.index(f, 0, depth + 1)
                incoming_zero, incoming_one = zero[at], one[at]
                _unwind(feature, zero, one, weight, step, depth, at)
                depth -= 1
            depth += 1
            _extend(feature, zero, one, weight, depth, ratios[d] * incoming_zero,
                    np.where(agree[d] == 1.0, incoming_one, 0.0), f)
            step[depth] = d
        terms = [_unwound_sum(zero, one, weight, depth, i) * (one[i] - zero[i]) * values
                 for i in range(1, depth + 1)]
    return step[1 : depth + 1], terms


def _extend(feature, zero, one, weight, depth, z, o, f) -> None:
    """``Tree::ExtendPath``."""
    feature[depth], zero[depth], one[depth] = f, z, o
    weight[depth] = 1.0 if depth == 0 else 0.0
    for i in range(depth - 1, -1, -1):
        weight[i + 1] = weight[i + 1] + o * weight[i] * (i + 1) / (depth + 1)
        weight[i] = z * weight[i] * (depth - i) / (depth + 1)


def _unwind(feature, zero, one, weight, step, depth, at) -> None:
    """``Tree::UnwindPath``; where LightGBM branches on ``one_fraction != 0`` both sides are computed and the
    one it takes is kept."""
    o, z = one[at], zero[at]
    hot = o != 0
    next_one = weight[depth]
    for i in range(depth - 1, -1, -1):
        tmp = weight[i]
        w_hot = next_one * (depth + 1) / ((i + 1) * o)
        next_hot = tmp - w_hot * z * (depth - i) / (depth + 1)
        w_cold = (weight[i] * (depth + 1)) / (z * (depth - i))
        weight[i] = np.where(hot, w_hot, w_cold)
        next_one = np.where(hot, next_hot, next_one)
    for i in range(at, depth):
        feature[i], zero[i], one[i], step[i] = feature[i + 1], zero[i + 1], one[i + 1], step[i + 1]


def _unwound_sum(zero, one, weight, depth, at) -> np.ndarray:
    """``Tree::UnwoundPathSum``, both branches computed as in ``_unwind``."""
    o, z = one[at], zero[at]
    hot = o != 0
    next_one = weight[depth]
    total: Any = 0.0
    for i in range(depth - 1, -1, -1):
        tmp = next_one * (depth + 1) / ((i + 1) * o)
        total_hot = total + tmp
        next_hot = weight[i] - tmp * z * ((depth - i) / (depth + 1))
        total_cold = total + (weight[i] / z) / ((depth - i) / (depth + 1))
        total = np.where(hot, total_hot, total_cold)
        next_one = np.where(hot, next_hot, next_one)
    return total
