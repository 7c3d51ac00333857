"""Scorecard metrics on hand-worked cases, the baseline verdict, the tables and the charts."""

from __future__ import annotations

import math
import struct
import subprocess
import sys

import numpy as np
import pytest

from churnguard.training.evaluation import (
    METRICS,
    compare_to_baselines,
    expected_calibration_error,
    lift_and_capture,
    plot_calibration,
    plot_feature_importance,
    plot_lift_gain,
    plot_score_distribution,
    plot_training_curve,
    scorecard,
    scorecard_markdown,
    scorecard_table,
)

# 10 customers, 3 churners (rows 0, 2, 6); scores descending so row order is rank order.
Y = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


# -- lift and capture -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "lift", "capture"),
    [
        (0.1, 1 / 0.3, 1 / 3),  # top ceil(1.0) = 1: row 0 churned -> rate 1/1 vs 3/10; 1 of 3 churners
        (0.2, 5 / 3, 1 / 3),  # top 2: rows 0, 1 -> rate 1/2 vs 3/10 = 5/3; 1 of 3 churners
        (0.3, 20 / 9, 2 / 3),  # top 3: rows 0, 1, 2 -> rate 2/3 vs 3/10 = 20/9; 2 of 3 churners
        (0.25, 20 / 9, 2 / 3),  # ceil(2.5) = 3, the same group as 30%
        (1.0, 1.0, 1.0),  # everyone contacted: no lift, every churner found
    ],
)
def test_lift_and_capture_by_hand(fraction, lift, capture):
    assert lift_and_capture(Y, S, fraction) == pytest.approx((lift, capture))


def test_ties_are_broken_by_row_order():
    s = np.array([0.5, 0.5, 0.1, 0.1])
    # Top 25% = 1 customer; rows 0 and 1 tie, and the stable sort takes row 0 either way round.
    assert lift_and_capture([0, 1, 0, 0], s, 0.25) == (0.0, 0.0)
    assert lift_and_capture([1, 0, 0, 0], s, 0.25) == (4.0, 1.0)  # rate 1/1 vs 1/4 overall
    # A constant scorer contacts rows in their original order: top 2 of Y are rows 0, 1 -> same as the 20% case.
    assert lift_and_capture(Y, np.full(10, 0.3), 0.2) == pytest.approx((5 / 3, 1 / 3))


def test_group_size_is_not_inflated_by_float_error():
    # 0.07 * 100 == 7.000000000000001 in floating point; the group must still be 7, not 8.
    y = np.r_[np.ones(8), np.zeros(92)]
    s = np.linspace(1, 0, 100)
    lift, capture = lift_and_capture(y, s, 0.07)
    assert capture == pytest.approx(7 / 8)  # 8 customers would have captured all 8 churners
    assert lift == pytest.approx(1 / 0.08)  # rate 7/7 vs 8/100


def test_lift_without_churners_is_nan_and_bad_fractions_raise():
    assert all(math.isnan(v) for v in lift_and_capture([0, 0, 0], [0.1, 0.2, 0.3], 0.5))
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fraction must be in"):
            lift_and_capture(Y, S, bad)


# -- calibration ------------------------------------------------------------------------------------------


def test_ece_by_hand():
    # Two bins: [0, 0.5) holds p=0.2, 0.4 with outcomes 0, 1 -> |0.5 - 0.3| = 0.2, weight 2/4;
    # [0.5, 1] holds p=0.6, 1.0 with outcomes 1, 1 -> |1 - 0.8| = 0.2, weight 2/4. ECE = 0.2.
    assert expected_calibration_error([0, 1, 1, 1], [0.2, 0.4, 0.6, 1.0], n_bins=2) == pytest.approx(0.2)


def test_ece_bin_edges():
    # p = 0.5 opens the upper bin: bins {0.49 -> 0} and {0.5 -> 1} give (0.49 + 0.5) / 2 = 0.495.
    # (Had 0.5 fallen into the lower bin: |0.5 - 0.495| = 0.005.)
    assert expected_calibration_error([0, 1], [0.49, 0.5], n_bins=2) == pytest.approx(0.495)
    # p = 1.0 is kept in the last bin rather than overflowing; a sure churner predicted at 1.0 is calibrated.
    assert expected_calibration_error([1], [1.0]) == 0.0
    # One bin, mean p 0.25, observed rate 1/4: perfectly calibrated.
    assert expected_calibration_error([1, 0, 0, 0], [0.25] * 4) == 0.0


def test_ece_rejects_bad_input():
    with pytest.raises(ValueError, match="lie in"):
        expected_calibration_error([0, 1], [-0.1, 0.5])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0, 1], [0.1, 0.5], n_bins=0)


# -- scorecard --------------------------------------------------------------------------------------------


def test_scorecard_by_hand():
    y, p = [0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8]
    card = scorecard(y, p)
    assert tuple(card) == METRICS
    # AUC: positive-negative pairs (0.4>0.1, 0.4<0.6, 0.8>0.1, 0.8>0.6) -> 3/4.
    assert card["roc_auc"] == pytest.approx(0.75)
    # AP: ranked 0.8(1) 0.6(0) 0.4(1) 0.1(0): recall steps 0.5 at precision 1, 0.5 at precision 2/3 -> 5/6.
    assert card["pr_auc"] == pytest.approx(5 / 6)
    # Brier: (0.1^2 + 0.6^2 + 0.6^2 + 0.2^2) / 4 = 0.77 / 4.
    assert card["brier"] == pytest.approx(0.1925)
    assert card["log_loss"] == pytest.approx(-(math.log(0.9) + 2 * math.log(0.4) + math.log(0.8)) / 4)
    # ECE, 10 bins, one customer each: (0.1 + 0.6 + 0.6 + 0.2) / 4.
    assert card["ece"] == pytest.approx(0.375)
    # Top ceil(0.4) = ceil(0.8) = 1 customer (p=0.8, churned): lift 1 / 0.5 = 2, capture 1/2.
    assert (card["lift_at_10"], card["capture_at_10"], card["lift_at_20"], card["capture_at_20"]) == (2, 0.5, 2, 0.5)
    assert (card["n"], card["positive_rate"]) == (4.0, 0.5)


def test_log_loss_is_clipped():
    # p = 0 for a churner costs -ln(1e-15) = 34.54 instead of infinity; p = 0 for a stayer costs ~0.
    card = scorecard([1, 0], [0.0, 0.0])
    assert card["log_loss"] == pytest.approx(-math.log(1e-15) / 2)


def test_perfect_inverted_and_random_scorers():
    perfect = scorecard(Y, Y * 0.9 + 0.05)
    assert perfect["roc_auc"] == perfect["pr_auc"] == 1.0
    assert perfect["capture_at_20"] == pytest.approx(2 / 3)  # top 2 are both churners, of 3
    assert scorecard(Y, 1 - (Y * 0.9 + 0.05))["roc_auc"] == 0.0
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20_000)
    card = scorecard(y, rng.uniform(size=y.size))
    assert card["roc_auc"] == pytest.approx(0.5, abs=0.02)
    assert card["lift_at_10"] == pytest.approx(1.0, abs=0.1)


def test_scorecard_extra_fractions_get_their_own_keys():
    card = scorecard(Y, S, top_fractions=(0.05, 0.125))
    assert {"lift_at_5", "capture_at_5", "lift_at_12_5", "capture_at_12_5"} <= set(card)
    assert "lift_at_10" not in card


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([1, 1], [0.2, 0.3], r"same outcome \(1\): AUC is undefined"),
        ([0, 0], [0.2, 0.3], r"same outcome \(0\)"),
        ([0, 1], [0.2, 1.3], r"probabilities must lie in \[0, 1\]"),
        ([0, 1], [-0.2, 0.3], r"probabilities must lie in \[0, 1\]"),
        ([0, 1], [0.2, np.nan], "1 scores are NaN"),
        ([0, 1], [0.2, 0.3, 0.4], "y_true has 2 values but the scores have 3"),
        ([0, 2], [0.2, 0.3], "only 0 .* and 1"),
        ([], [], "no customers"),
    ],
)
def test_scorecard_errors(y, p, message):
    with pytest.raises(ValueError, match=message):
        scorecard(y, p)


# -- baselines and tables ---------------------------------------------------------------------------------


def test_compare_higher_is_better_both_ways():
    cards = {"model": {"roc_auc": 0.712}, "recency": {"roc_auc": 0.731}, "rfm": {"roc_auc": 0.70}}
    assert compare_to_baselines(cards) == (
        False, "The model does NOT beat the baseline 'recency' on roc_auc (0.712 vs 0.731).")
    cards["recency"]["roc_auc"] = 0.6
    beats, sentence = compare_to_baselines(cards)
    assert beats
    assert sentence == "The model beats every baseline on roc_auc (0.712 vs 'recency' 0.600, 'rfm' 0.700)."
    cards["rfm"]["roc_auc"] = 0.712  # a tie is not a win
    assert compare_to_baselines(cards)[0] is False


def test_compare_lower_is_better_both_ways():
    cards = {"model": {"brier": 0.20}, "recency": {"brier": 0.19}, "rfm": {"brier": 0.25}}
    beats, sentence = compare_to_baselines(cards, metric="brier")
    assert not beats  # 0.20 > 0.19; names the strongest (lowest) baseline
    assert "NOT beat the baseline 'recency' on brier (0.200 vs 0.190)" in sentence
    cards["model"]["brier"] = 0.15
    assert compare_to_baselines(cards, metric="brier")[0]
    assert compare_to_baselines({"m": {"ece": 0.01}, "b": {"ece": 0.02}}, primary="m", metric="ece")[0]


def test_compare_edge_cases():
    assert compare_to_baselines({"model": {"roc_auc": 0.7}})[0]
    with pytest.raises(ValueError, match="no scorecard named 'model'"):
        compare_to_baselines({"other": {"roc_auc": 0.7}})
    with pytest.raises(ValueError, match="describes the data"):
        compare_to_baselines({"model": {"n": 1.0}, "b": {"n": 2.0}}, metric="n")


def test_scorecard_table_and_markdown():
    cards = {"model": scorecard([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.8]), "random": scorecard([0, 0, 1, 1], [0.5] * 4)}
    table = scorecard_table(cards)
    assert list(table.index) == list(METRICS)
    assert list(table.columns) == ["model", "random"]
    assert table.loc["roc_auc", "model"] == pytest.approx(0.75)
    extra = scorecard_table({"m": {"custom": 1.0, "roc_auc": 0.5}})
    assert list(extra.index) == ["roc_auc", "custom"]  # known metrics first, extras after
    lines = scorecard_markdown(cards).splitlines()
    assert lines[:2] == ["| metric | model | random |", "|---|---:|---:|"]
    assert "| roc_auc | 0.750 | 0.500 |" in lines
    assert "| brier | 0.193 | 0.250 |" in lines  # 0.1925 -> 3 decimals; constant 0.5 -> 0.25
    assert "| n | 4 | 4 |" in lines
    assert len(lines) == 2 + len(METRICS)


# -- charts -----------------------------------------------------------------------------------------------

_PLOTS = {
    "calibration": lambda path: plot_calibration(Y, {"uncalibrated": S, "calibrated": S / 2}, path),
    "lift_gain": lambda path: plot_lift_gain(Y, {"model": S, "recency": S[::-1]}, path),
    "score_distribution": lambda path: plot_score_distribution(Y, S, path),
    "feature_importance": lambda path: plot_feature_importance(
        [f"f{i}" for i in range(30)], np.arange(30.0), path, top=5),
    "training_curve": lambda path: plot_training_curve({"train": [0.7, 0.6, 0.5], "valid": [0.7, 0.65, 0.66]}, path),
    "training_curve_auc": lambda path: plot_training_curve(
        {"train": [0.7, 0.8], "valid": [0.6, 0.65]}, path, metric_name="auc"),
    "training_curve_train_only": lambda path: plot_training_curve({"train": [0.7, 0.6]}, path),
}


@pytest.mark.parametrize("name", list(_PLOTS))
def test_plot_writes_a_png_without_pyplot_state(name, tmp_path):
    import matplotlib.pyplot as plt

    path = _PLOTS[name](tmp_path / f"{name}.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 600 <= width <= 800  # 6.4-7.5 in at dpi 100
    assert height >= 300
    assert plt.get_fignums() == []


def test_plots_reject_bad_input(tmp_path):
    with pytest.raises(ValueError, match="lie in"):
        plot_calibration(Y, {"model": S + 1}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="2 feature names but 3 gains"):
        plot_feature_importance(["a", "b"], np.ones(3), tmp_path / "f.png")
    assert not list(tmp_path.iterdir())


def test_importing_the_module_does_not_import_matplotlib_or_sklearn():
    code = "import sys, churnguard.training.evaluation; print('matplotlib' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
