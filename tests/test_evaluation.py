"""Scorecard metrics on hand-worked cases, and the charts."""

from __future__ import annotations

import numpy as np
import pytest

from churnguard.evaluation import (
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
)

# 10 customers, 3 churners; scores descending so the first rows are the top-scored.
Y = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_lift_and_capture_by_hand():
    # Top 20% = 2 customers (0.9 churned, 0.8 stayed): rate 1/2 vs 3/10 overall -> lift 5/3; 1 of 3 churners.
    lift, capture = lift_and_capture(Y, S, 0.2)
    assert lift == pytest.approx(5 / 3)
    assert capture == pytest.approx(1 / 3)
    # Top 10% = ceil(1.0) = 1 customer, a churner: lift 1 / 0.3, capture 1/3.
    assert lift_and_capture(Y, S, 0.1) == pytest.approx((1 / 0.3, 1 / 3))


def test_ties_are_broken_by_row_order():
    y = np.array([0, 1, 0, 0])
    s = np.array([0.5, 0.5, 0.1, 0.1])
    # Top 25% = 1 customer: of the tied pair the first row (a non-churner) is taken.
    assert lift_and_capture(y, s, 0.25) == (0.0, 0.0)


def test_ece_by_hand():
    # Two bins: [0, 0.5) holds p=0.2, 0.4 with outcomes 0, 1 -> |0.5 - 0.3| = 0.2, weight 2/4;
    # [0.5, 1] holds p=0.6, 1.0 with outcomes 1, 1 -> |1 - 0.8| = 0.2, weight 2/4. ECE = 0.2.
    assert expected_calibration_error([0, 1, 1, 1], [0.2, 0.4, 0.6, 1.0], n_bins=2) == pytest.approx(0.2)


def test_scorecard_perfect_and_random():
    perfect = scorecard(Y, Y * 0.9 + 0.05)
    assert perfect["roc_auc"] == 1.0
    assert perfect["capture_at_20"] == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 20_000)
    assert scorecard(y, rng.uniform(size=y.size))["roc_auc"] == pytest.approx(0.5, abs=0.02)


def test_scorecard_errors():
    with pytest.raises(ValueError, match="same outcome"):
        scorecard([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="lie in"):
        scorecard([0, 1], [0.2, 1.3])
    with pytest.raises(ValueError, match="NaN"):
        scorecard([0, 1], [0.2, np.nan])
    with pytest.raises(ValueError, match="2 values but the scores have 3"):
        scorecard([0, 1], [0.2, 0.3, 0.4])


def test_compare_to_baselines_both_ways():
    cards = {"model": {"roc_auc": 0.71, "brier": 0.2}, "recency": {"roc_auc": 0.73, "brier": 0.19}}
    beats, sentence = compare_to_baselines(cards)
    assert not beats
    assert "does NOT beat the baseline 'recency' on roc_auc (0.710 vs 0.730)" in sentence
    cards["recency"]["roc_auc"] = 0.6
    assert compare_to_baselines(cards)[0]
    assert not compare_to_baselines(cards, metric="brier")[0]  # lower is better: 0.20 > 0.19
    assert "| roc_auc | 0.710 | 0.600 |" in scorecard_markdown(cards)


def test_plots_write_pngs(tmp_path):
    import matplotlib.pyplot as plt

    paths = [
        plot_calibration(Y, {"model": S}, tmp_path / "c.png"),
        plot_lift_gain(Y, {"model": S, "baseline": S[::-1]}, tmp_path / "l.png"),
        plot_score_distribution(Y, S, tmp_path / "s.png"),
        plot_feature_importance(["a", "b"], np.array([3.0, 1.0]), tmp_path / "f.png"),
        plot_training_curve({"train": [0.7, 0.6, 0.5], "valid": [0.7, 0.65, 0.66]}, tmp_path / "t.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []
