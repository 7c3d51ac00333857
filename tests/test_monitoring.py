"""Monitoring on hand-built cases: score comparison, PSI drift, campaign read-out and the charts."""

from __future__ import annotations

import json
import math
import re
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnguard._io.read import read_table
from churnguard._io.write import write_table
from churnguard.reporting.monitoring import (
    ABSENT,
    campaign_readout,
    compare_scores,
    drift_table,
    newcombe_interval,
    plot_drift,
    plot_readout,
    plot_transitions,
    psi,
    reference_profile,
)

PNG = b"\x89PNG\r\n\x1a\n"
Z95 = 1.959963984540054  # standard normal quantile 0.975, written out so the reference formulas need no scipy


def _scores(rows: list[tuple[str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "churn_probability", "risk_band"]).assign(
        as_of=pd.Timestamp("2024-01-31"), model_version="t")


# Probabilities are binary fractions, so the deltas below are exact (a and h tie on +0.125).
OLD = _scores([
    ("h", 0.25, "low"), ("a", 0.625, "high"), ("b", 0.375, "medium"), ("c", 0.25, "low"), ("d", 0.75, "high"),
    ("e", math.nan, "no_history"), ("f", 0.5, "medium"), ("i", 0.5, "medium"),
])
NEW = _scores([
    ("g", 0.875, "high"), ("i", 0.5, "medium"), ("a", 0.75, "high"), ("b", 0.625, "high"), ("c", 0.125, "low"),
    ("d", 0.5, "medium"), ("e", 0.125, "low"), ("h", 0.375, "medium"),
])


def test_compare_changes_one_row_per_customer_sorted_by_id():
    ch = compare_scores(OLD, NEW).changes
    assert list(ch.columns) == ["customer_id", "old_probability", "new_probability", "delta", "old_band", "new_band",
                                "status"]
    assert list(ch["customer_id"]) == list("abcdefghi")
    assert list(ch["status"]) == ["both"] * 5 + ["only_old", "only_new", "both", "both"]
    assert ch["delta"].tolist()[:4] == [0.125, 0.25, -0.125, -0.25]
    assert ch["delta"].iloc[4:7].isna().all()  # e: no probability before; f, g: in one run only
    assert ch.loc[ch["customer_id"] == "f", "new_band"].item() == ABSENT
    assert ch.loc[ch["customer_id"] == "g", "old_band"].item() == ABSENT


def test_compare_risers_fallers_and_new_high_risk():
    cmp = compare_scores(OLD, NEW)
    assert list(cmp.risers["customer_id"]) == ["b", "a", "h"]  # a and h tie on +0.125: by id
    assert list(compare_scores(OLD, NEW, top=2).risers["customer_id"]) == ["b", "a"]
    assert list(cmp.fallers["customer_id"]) == ["d", "c"]
    assert list(cmp.new_high_risk["customer_id"]) == ["g", "b"]  # a was high already; g new, 0.875 first


def test_compare_transition_matrix():
    t = compare_scores(OLD, NEW).transitions
    levels = ["high", "medium", "low", "no_history", ABSENT]
    assert list(t.index) == levels
    assert list(t.columns) == levels
    expected = [
        [1, 1, 0, 0, 0],  # high: a stays, d -> medium
        [1, 1, 0, 0, 1],  # medium: b -> high, i stays, f gone
        [0, 1, 1, 0, 0],  # low: h -> medium, c stays
        [0, 0, 1, 0, 0],  # no_history: e -> low
        [1, 0, 0, 0, 0],  # absent: g new in high
    ]
    assert t.to_numpy().tolist() == expected


def test_compare_summary():
    text = compare_scores(OLD, NEW).summary()
    assert "7 in both runs, 1 only in the old, 1 only in the new" in text
    assert "+0.0208 over 6 customers" in text  # (0.125 + 0.25 - 0.125 - 0.25 + 0.125 + 0) / 6
    assert "band unchanged: 3, to a riskier band: 2, to a safer: 1" in text
    assert "high -> medium: 1, medium -> high: 1, medium -> (absent): 1" in text
    assert "newly high risk: 2" in text
    assert "largest rises (3):\n  b: 0.375 -> 0.625 (+0.250), medium -> high\n  a: " in text
    assert "largest falls (" in text


def test_compare_prints_as_many_movers_as_asked():
    lines = compare_scores(OLD, NEW, top=1).summary().splitlines()
    rises = lines.index("largest rises (1):")
    assert lines[rises + 1].startswith("  b: ")
    assert lines[rises + 2].startswith("largest falls (1):")


def test_compare_reads_scores_files_and_orders_unknown_bands(tmp_path):
    old = read_table(write_table(OLD, tmp_path / "old.csv"))  # every column comes back as text
    new = read_table(write_table(NEW, tmp_path / "new.csv"))
    assert compare_scores(old, new).transitions.equals(compare_scores(OLD, NEW).transitions)
    extra = pd.concat([NEW, _scores([("z", 0.95, "critical")])])
    assert list(compare_scores(OLD, extra).transitions.columns[:2]) == ["critical", "high"]


def test_compare_rejects_duplicates_and_missing_columns():
    with pytest.raises(ValueError, match="twice"):
        compare_scores(OLD, pd.concat([NEW, NEW.head(1)]))
    with pytest.raises(ValueError, match="risk_band"):
        compare_scores(OLD.drop(columns="risk_band"), NEW)


# -- PSI ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(np.random.default_rng(0).normal(size=1000)),
        pd.Series([1.0, np.nan, 2.0, 2.0, 2.0, 7.0, np.nan]),
        pd.Series(["x", "y", None, "x"]),
        pd.Series([True, False, True]),
    ],
)
def test_psi_of_identical_distribution_is_zero(values):
    profile = json.loads(json.dumps(reference_profile(values)))  # stored in a model file and read back
    assert abs(psi(profile, values)) <= 1e-12


def test_psi_two_bins_by_hand():
    profile = reference_profile(pd.Series([1.0, 2.0, 3.0, 4.0]), bins=2)
    assert profile["edges"] == [2.5]  # the median: bins (-inf, 2.5] and (2.5, inf)
    assert profile["proportions"] == [0.5, 0.5]
    # actual [1, 3, 4, 4]: shares 0.25 and 0.75; the (empty) missing bin contributes 0 on both sides
    # PSI = (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5) = 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3
    assert psi(profile, pd.Series([1.0, 3.0, 4.0, 4.0])) == pytest.approx(0.25 * math.log(3), abs=1e-12)


def test_psi_missing_values_are_their_own_bin():
    profile = reference_profile(pd.Series([1.0, 2.0, 3.0, 4.0]), bins=2)
    # actual [1, NaN, 3, NaN]: bins 0.25, 0.25 and missing 0.5 against 0.5, 0.5 and 0 (floored to 1e-4)
    expected = 2 * (-0.25 * math.log(0.5)) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi(profile, pd.Series([1.0, np.nan, 3.0, np.nan])) == pytest.approx(expected, abs=1e-12)
    assert reference_profile(pd.Series([1.0, np.nan, 3.0, 4.0]))["missing"] == 0.25


def test_psi_out_of_range_values_go_to_the_outer_bins():
    profile = reference_profile(pd.Series([1.0, 2.0, 3.0, 4.0]), bins=2)
    assert psi(profile, pd.Series([-100.0, 100.0])) == pytest.approx(0.0, abs=1e-12)
    # all above the range: first bin empty (floored to 1e-4), last bin 1.0
    expected = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + 0.5 * math.log(2)
    assert psi(profile, pd.Series([100.0, np.inf, 1e9])) == pytest.approx(expected, abs=1e-12)


def test_psi_categorical():
    profile = reference_profile(pd.Series(["a", "a", "b", None]))
    assert profile == {"kind": "categorical", "n": 4, "missing": 0.25, "categories": {"a": 0.5, "b": 0.25},
                       "other": 0.0}
    # actual: a 0.25, b 0.25, unseen c -> other 0.5, missing 0
    expected = (0.25 - 0.5) * math.log(0.5) + (0.5 - 1e-4) * math.log(0.5 / 1e-4) + (
        1e-4 - 0.25) * math.log(1e-4 / 0.25)
    assert psi(profile, pd.Series(["a", "c", "c", "b"])) == pytest.approx(expected, abs=1e-12)
    pooled = reference_profile(pd.Series(["b", "a", "a", "c"]), max_categories=1)
    assert pooled["categories"] == {"a": 0.5}
    assert pooled["other"] == 0.5


def test_psi_grows_as_a_distribution_shifts():
    x = pd.Series(np.random.default_rng(1).normal(size=2000))
    profile = reference_profile(x)
    values = [psi(profile, x + shift) for shift in (0.0, 0.1, 0.25, 0.5, 1.0)]
    assert values[0] == 0.0
    assert all(b > a for a, b in pairwise(values))
    assert values[-1] > 0.2


@settings(max_examples=60, deadline=None)
@given(ref=st.lists(st.floats(-1e3, 1e3), min_size=10, max_size=120), shift=st.floats(0.01, 1e3),
       n_missing=st.integers(0, 5), bins=st.integers(1, 12))
def test_psi_never_falls_as_more_of_the_population_shifts(ref, shift, n_missing, bins):
    # A population made of (m - k) copies of the reference and k copies of a shifted one has bin shares
    # (1 - t) e + t q with t = k / m; every PSI term is convex in t with its minimum 0 at t = 0.
    base = np.array(ref + [np.nan] * n_missing)
    profile = reference_profile(pd.Series(base), bins=bins)
    m = 8
    values = [psi(profile, pd.Series(np.concatenate([np.tile(base, m - k), np.tile(base + shift, k)])))
              for k in range(m + 1)]
    assert abs(values[0]) <= 1e-12
    assert all(b >= a - 1e-12 for a, b in pairwise(values))


def test_reference_profile_is_json_and_validates():
    profile = reference_profile(pd.Series(np.arange(100.0)), bins=4)
    assert json.loads(json.dumps(profile)) == profile
    assert profile["edges"] == [24.75, 49.5, 74.25]
    assert reference_profile(pd.Series([5.0] * 10))["edges"] == [5.0]  # ties merge into one cut point
    with pytest.raises(ValueError, match="empty"):
        reference_profile(pd.Series([], dtype="float64"))
    with pytest.raises(ValueError, match="bins"):
        reference_profile(pd.Series([1.0]), bins=0)


def test_drift_table_levels_and_missing_columns():
    profiles = {
        "same": reference_profile(pd.Series(np.arange(50.0))),
        "moved": reference_profile(pd.Series(np.arange(50.0))),
        "mix": reference_profile(pd.Series(["a"] * 5 + ["b"] * 5)),
        "gone": reference_profile(pd.Series([1.0, 2.0])),
    }
    frame = pd.DataFrame({"same": np.arange(50.0), "moved": np.arange(50.0) + 40, "mix": ["a"] * 35 + ["b"] * 15})
    table = drift_table(profiles, frame)
    assert list(table.columns) == ["feature", "psi", "level"]
    assert list(table["feature"]) == ["gone", "moved", "mix", "same"]
    assert list(table["level"]) == ["missing", "shift", "moderate", "stable"]
    assert math.isnan(table["psi"].iloc[0])
    # mix: a 0.7, b 0.3 against 0.5, 0.5 -> 0.2 ln 1.4 - 0.2 ln 0.6 = 0.1695
    assert table.loc[table["feature"] == "mix", "psi"].item() == pytest.approx(0.2 * math.log(1.4 / 0.6))
    assert drift_table(profiles, frame, threshold=0.15)["level"].tolist()[:3] == ["missing", "shift", "shift"]


# -- campaign read-out ----------------------------------------------------------------------------------------

AS_OF = pd.Timestamp("2024-01-31")  # outcome window with the default 90 days: 2024-02-01 .. 2024-04-30


def _campaign(groups: list[tuple[str, bool, int, int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores and transactions for (action, control, customers, retained) groups, plus distractors."""
    scores, tx = [], []
    for action, control, n, kept in groups:
        for i in range(n):
            cid = f"{action}-{'ctl' if control else 'con'}-{i:03d}"
            scores.append((cid, action, True, control))
            if i < kept:  # retained; the first at the very last moment of the window
                tx.append((cid, "2024-04-30 23:00" if i == 0 else "2024-02-15", 20.0))
            elif i % 3 == 0:
                tx.append((cid, "2024-01-31 18:00", 20.0))  # on as_of: before the window
            elif i % 3 == 1:
                tx.append((cid, "2024-03-01", -20.0))  # a refund is not a purchase
            else:
                tx.append((cid, "2024-05-01", 20.0))  # the day after the window
    scores.append(("unselected", "win_back_offer", False, False))
    tx.append(("unselected", "2024-02-01", 5.0))
    frame = pd.DataFrame(scores, columns=["customer_id", "action", "selected", "control_group"]).assign(as_of=AS_OF)
    transactions = pd.DataFrame(tx, columns=["customer_id", "timestamp", "amount"])
    return frame, transactions.assign(timestamp=pd.to_datetime(transactions["timestamp"], format="ISO8601"))


HAND = [("win_back_offer", False, 40, 30), ("win_back_offer", True, 40, 20),
        ("welcome_offer", False, 10, 5), ("welcome_offer", True, 5, 1)]


def _wilson_roots(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson interval as the two roots of (p - x/n)^2 = z^2 p (1 - p) / n, solved for p."""
    a, b, c = 1 + z * z / n, -(2 * x / n + z * z / n), (x / n) ** 2
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


def test_readout_hand_built_case():
    scores, tx = _campaign(HAND)
    out = campaign_readout(scores, tx).set_index("action")
    assert list(out.index) == ["welcome_offer", "win_back_offer", "(all)"]
    row = out.loc["win_back_offer"]
    assert (row["n_contacted"], row["n_control"], row["retained_contacted"], row["retained_control"]) == (40, 40, 30, 20)
    assert row["retention_contacted"] == 0.75
    assert row["retention_control"] == 0.5
    assert row["uplift"] == pytest.approx(0.25)
    assert row["observed_success_rate"] == pytest.approx(0.5)  # 0.25 / (1 - 0.5)
    (l1, u1), (l2, u2) = _wilson_roots(30, 40), _wilson_roots(20, 40)
    assert row["ci_low"] == pytest.approx(0.25 - math.sqrt((0.75 - l1) ** 2 + (u2 - 0.5) ** 2), abs=1e-9)
    assert row["ci_high"] == pytest.approx(0.25 + math.sqrt((u1 - 0.75) ** 2 + (0.5 - l2) ** 2), abs=1e-9)
    assert row["window_complete"]
    assert not row["small_group"]
    assert row["note"] == ""
    small = out.loc["welcome_offer"]
    assert small["small_group"]
    assert "too few" in small["note"]
    assert small["observed_success_rate"] == pytest.approx((0.5 - 0.2) / 0.8)
    overall = out.loc["(all)"]
    assert (overall["n_contacted"], overall["retained_contacted"], overall["n_control"], overall["retained_control"]) == (
        50, 35, 45, 21)


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
    ],
)
def test_newcombe_interval_matches_the_published_values(x1, n1, x2, n2, low, high):
    assert newcombe_interval(x1, n1, x2, n2) == pytest.approx((low, high), abs=5e-5)


def test_readout_refuses_a_window_that_has_not_started():
    scores, tx = _campaign(HAND)
    with pytest.raises(ValueError, match=r"the outcome window has not started: the scores are as of 2024-01-31 "
                                         r"and the transactions end on 2024-01-31; read the campaign out after "
                                         r"2024-04-30"):
        campaign_readout(scores, tx[tx["timestamp"] < "2024-02-01"])


def test_readout_names_days_a_spreadsheet_rewrote():
    """A copy of the scores saved by a spreadsheet writes as_of 1/31/2024: named, with what to do (pandas'
    'Time data ... is not ISO8601 format' came through before)."""
    scores, tx = _campaign(HAND)
    with pytest.raises(ValueError, match=re.escape(
            "the scores' column 'as_of' has 95 day(s) not written YYYY-MM-DD as score writes them, e.g. '1/31/2024' "
            "(a spreadsheet rewrites days when it saves a copy): use the scores file score wrote")):
        campaign_readout(scores.assign(as_of="1/31/2024"), tx)


def test_a_readout_file_that_is_missing_empty_or_another_table_is_named(tmp_path):
    """score --readout R: an empty file gave pandas' 'No columns to parse from file', a missing one '[Errno 2]'."""
    from churnguard.reporting.monitoring import load_readout

    (tmp_path / "empty.csv").write_text("")
    pd.DataFrame({"customer_id": ["a"]}).to_csv(tmp_path / "scores.csv", index=False)
    for name, message in (("none.csv", "read-out file not found"), ("empty.csv", "the read-out file is empty"),
                          ("scores.csv", "not a campaign read-out: no column(s) action, n_contacted")):
        with pytest.raises(ValueError, match=re.escape(f"{tmp_path / name}: {message}")):
            load_readout(tmp_path / name)


def test_readout_flags_an_incomplete_window():
    scores, tx = _campaign(HAND)
    out = campaign_readout(scores, tx[tx["timestamp"] < "2024-04-30"])
    assert not out["window_complete"].any()
    assert out["note"].str.contains("outcome window incomplete").all()
    assert campaign_readout(scores, tx, horizon_days=89)["retained_contacted"].iloc[-1] == 33  # 2 late buyers out


def test_readout_clips_success_rate_and_handles_edge_groups():
    scores, tx = _campaign([("worse", False, 4, 2), ("worse", True, 4, 3), ("all_kept", False, 3, 3),
                            ("all_kept", True, 3, 3), ("no_control", False, 3, 1)])
    out = campaign_readout(scores, tx).set_index("action")
    assert out.loc["worse", "uplift"] == pytest.approx(-0.25)
    assert out.loc["worse", "observed_success_rate"] == 0.0
    assert math.isnan(out.loc["all_kept", "observed_success_rate"])  # nobody in the control group churned
    assert math.isnan(out.loc["no_control", "uplift"])
    assert math.isnan(out.loc["no_control", "ci_low"])
    # a group that is empty is said to be so, not "too few customers" (contacted 3, control 0)
    assert out.loc["no_control", "note"] == "no control customers (contacted 3, control 0): nothing to compare with"
    assert bool(out.loc["no_control", "small_group"])  # still not used for the success rates


def test_readout_reads_a_scores_file_and_rejects_nothing_selected(tmp_path):
    scores, tx = _campaign(HAND)
    from_file = read_table(write_table(scores, tmp_path / "scores.csv"))
    pd.testing.assert_frame_equal(campaign_readout(from_file, tx), campaign_readout(scores, tx))
    with pytest.raises(ValueError, match="nobody was selected"):
        campaign_readout(scores.assign(selected=False), tx)


# -- charts ------------------------------------------------------------------------------------------------


def test_plots_write_pngs(tmp_path):
    comparison = compare_scores(OLD, NEW)
    table = drift_table({"x": reference_profile(pd.Series(np.arange(20.0))), "gone": {}},
                        pd.DataFrame({"x": np.arange(20.0) + 5}))
    scores, tx = _campaign([*HAND, ("no_control", False, 3, 1)])
    paths = [
        plot_transitions(comparison, tmp_path / "transitions.png"),
        plot_drift(table, tmp_path / "drift.png"),
        plot_readout(campaign_readout(scores, tx), tmp_path / "sub" / "readout.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["drift.png", "readout.png", "sub", "transitions.png"]


def test_compare_puts_bands_without_a_probability_after_the_ranked_ones():
    old = _scores([("a", 0.25, "low"), ("b", 0.75, "high"), ("c", math.nan, "never_bought")])
    new = _scores([("a", math.nan, "lost"), ("b", 0.75, "high"), ("c", 0.375, "medium")])
    cmp = compare_scores(old, new)
    assert list(cmp.transitions.index) == ["high", "medium", "low", "lost", "never_bought", "no_history", ABSENT]
    # a: low -> lost and c: never_bought -> medium are neither riskier nor safer moves between risk bands
    assert "band unchanged: 1, to a riskier band: 0, to a safer: 0" in cmp.summary()


def test_compare_refuses_the_runs_the_wrong_way_round_and_a_run_without_rows():
    """The later run given as the old one turned every riser into a faller without a word; a scores file of a
    header alone read as every customer gone."""
    later = NEW.assign(as_of=pd.Timestamp("2024-06-30"))
    with pytest.raises(ValueError, match=r"^the old scores are as of 2024-06-30, after the new ones \(2024-01-31\): "
                                         "give the earlier scores file first"):
        compare_scores(later, NEW)
    assert len(compare_scores(NEW, later).changes) == 8  # the right way round
    text_days = later.astype({"as_of": str})  # as a CSV file reads
    with pytest.raises(ValueError, match="after the new ones"):
        compare_scores(text_days, NEW.astype({"as_of": str}))
    with pytest.raises(ValueError, match=r"^the new scores have no rows \(a header only\): nothing to compare"):
        compare_scores(OLD, NEW.head(0))


def test_compare_says_when_no_customer_is_in_both_runs():
    text = compare_scores(OLD, NEW.assign(customer_id="X" + NEW["customer_id"])).summary()
    assert ("customers: 0 in both runs, 8 only in the old, 8 only in the new\n"
            "note: no customer is in both runs: are the ids written the same way in both files?\n") in text
    assert "note:" not in compare_scores(OLD, NEW).summary()


def test_measured_rates_of_actions_the_playbook_lacks_are_said_unused():
    """A read-out of an action the playbook does not have (renamed since): its rate was listed as measured and
    then dropped without a word."""
    from churnguard.reporting.monitoring import measured_success_rates

    readout = pd.DataFrame({"action": ["re_engagement", "mystery", "(all)"], "observed_success_rate": [0.2, 0.04, 0.1],
                            "window_complete": [True] * 3, "small_group": [False] * 3, "note": [""] * 3})
    measured = measured_success_rates(readout, "r.csv", ["re_engagement", "no_action"])
    assert (measured.rates, measured.unknown) == ({"re_engagement": 0.2}, ("mystery",))
    assert measured.lines() == ["success rates measured by campaign-readout (r.csv): re_engagement 20%",
                                "  not actions of the playbook, so not used: mystery"]
    assert measured_success_rates(readout).rates == {"re_engagement": 0.2, "mystery": 0.04}  # no playbook given
