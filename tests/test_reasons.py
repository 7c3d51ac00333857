"""Reasons in plain words: one phrase per feature the kernel produces, sentences checked by hand, what carries
no information left out, one reason per topic, and no raw feature name or scientific notation on the demo."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from churnguard.btyd import BGNBDParams
from churnguard.config import load_config
from churnguard.dataset import validate_tables
from churnguard.features import build_features
from churnguard.population import Population
from churnguard.scoring import reasons
from churnguard.scoring.reasons import (
    NEVER_REASONS,
    Wording,
    common_values,
    describe,
    phrase_for,
    pick_reasons,
    reason_texts,
    top_features,
    uninformative,
)

CFG = load_config()
AS_OF = pd.Timestamp("2025-06-30")
RAW = re.compile(r"[a-z]+_[a-z0-9_]+|e\+|e-0")  # a feature name, or a number in scientific notation


def test_hand_checked_sentences():
    assert describe("recency_days", 140.0, {"overdue_ratio": 3.06}) == "no purchase for 140 days, about 3x their usual gap"
    assert describe("recency_days", 140.0, {"overdue_ratio": 1.84}) == "no purchase for 140 days, about 1.8x their usual gap"
    assert describe("recency_days", 140.0, {"overdue_ratio": 1.2}) == "no purchase for 140 days"
    assert describe("recency_days", 1.0) == "no purchase for 1 day"
    assert describe("overdue_ratio", 0.5, {"recency_days": 20.0, "gap_mean_days": 40.0}) == (
        "last purchase 20 days ago; they usually buy every 40 days")
    assert describe("net_spend", 4437.12, {"trend_spend": 0.4}) == (
        "spent 4,440 in total, down 60% in the last 90 days on the 90 before")
    assert describe("net_spend", 54.27, {"trend_spend": 1.05}) == "spent 54 in total"
    assert describe("net_spend", 4.5) == "spent 4.50 in total"
    assert describe("tenure_days", 1370.0) == "customer for 3.8 years"
    assert describe("tenure_days", 200.0) == "customer for 200 days"
    assert describe("days_since_signup", 1370.0) == "signed up 3.8 years ago"
    assert describe("bg_age_days", 1090.0) == "first purchase 3.0 years ago"
    assert describe("bg_expected_purchases", 0.31) == (
        "their buying pattern points to about 0.3 purchases in the next 90 days")
    assert describe("bg_expected_purchases", 0.01, wording=Wording(horizon_days=60)) == (
        "their buying pattern points to almost no purchase in the next 60 days")
    assert describe("bg_expected_purchases", 1.02) == "their buying pattern points to about 1 purchase in the next 90 days"
    assert describe("bg_p_alive", 0.003) == (
        "their buying pattern gives a less than 1% chance they are still an active customer")
    assert describe("trend_orders", 0.0) == "no orders in the last 90 days, after some in the 90 days before"
    assert describe("trend_orders", np.nan, wording=Wording(trend_days=60)) == "no order in the 60 days before the last 60"
    assert describe("orders_30d", 0.0) == "no order in the last 30 days"
    assert describe("orders_365d", 1.0) == "1 order in the last 365 days"
    assert describe("spend_90d", 1234.5) == "spent 1,230 in the last 90 days"
    assert describe("tickets_365d", 3.0) == "3 support tickets in the last 365 days"
    assert describe("open_tickets", 1.0) == "1 support ticket still open"
    assert describe("first_response_hours_latest", 30.4) == "their last ticket waited 30 hours for a first answer"
    assert describe("first_response_hours_max", 84.0) == "a ticket of theirs waited 3.5 days for a first answer"
    assert describe("first_response_hours_mean", 0.2) == "their tickets waited less than an hour on average for a first answer"
    assert describe("slow_response_share", 0.4, wording=Wording(sla_hours=24.0)) == (
        "40% of their tickets answered slower than the 24-hour target")
    assert describe("csat_latest", 2.0) == "last satisfaction rating 2 out of 5"
    assert describe("csat_latest", np.nan) == "no satisfaction rating yet"
    assert describe("tickets_per_order", 0.25) == "a support ticket for every 4 orders"
    assert describe("loyalty_points", 1234.0) == "1,234 loyalty points"
    assert describe("loyalty_member", 0.0) == "not a loyalty member"
    assert describe("nps", 3.0) == "answered 3 out of 10 to 'would you recommend us?'"
    assert describe("nps_group", "detractor") == "would not recommend us (NPS detractor: 0-6 out of 10)"
    assert describe("attr_region", "north") == "region: north"
    assert describe("attr_region", None) == "region unknown"
    assert describe("attr_shop_size", 12345.678) == "shop size: 12,346"
    assert describe("gap_std_days", np.nan) == "too few purchases yet to know their buying rhythm"
    assert describe("cltv", 1_234_567.0) == "expected lifetime value about 1,230,000"
    assert describe("value_tier", "vip") == "one of the most valuable customers (VIP)"
    with pytest.raises(KeyError, match="no phrase"):
        phrase_for("made_up_feature")


def _kernel_features() -> pd.DataFrame:
    """Every feature the kernel can produce: purchases, refunds, tickets with every time and CSAT, the known
    attributes and a categorical and a numeric free attribute, and the BG/NBD features."""
    day = pd.Timestamp
    tx = pd.DataFrame({"customer_id": ["a", "a", "a", "b"], "amount": [50.0, 20.0, -5.0, 80.0],
                       "timestamp": [day("2024-05-01"), day("2025-03-01"), day("2025-06-20"), day("2025-06-01")]})
    tickets = pd.DataFrame({"customer_id": ["a", "b"], "opened_at": [day("2025-06-10"), day("2025-06-25")],
                            "first_response_at": [day("2025-06-11 06:00"), pd.NaT],
                            "resolved_at": [day("2025-06-12"), pd.NaT], "csat": [2.0, np.nan]})
    customers = pd.DataFrame({"customer_id": ["a", "b"], "signup_date": [day("2023-01-01"), day("2024-05-01")],
                              "loyalty_member": [True, False], "loyalty_points": [10.0, 0.0], "nps": [3.0, np.nan],
                              "region": ["north", "south"], "shop_size": [3.0, 12.0]})
    tables = validate_tables(tx, tickets, customers, config=CFG.data)
    population = Population(3.0, 100.0, BGNBDParams(0.6, 8.0, 0.8, 2.5), 90,
                            {"region": ("north", "south"), "shop_size": None})
    return build_features(tables, AS_OF, CFG.features, population)


def test_every_kernel_feature_has_a_phrase_and_reads_without_names_or_exponents():
    feats = _kernel_features()
    names = [c for c in feats.columns if c not in ("customer_id", "as_of")]
    assert {"attr_region", "attr_shop_size", "bg_p_alive", "csat_latest", "tickets_30d", "as_of_month"} <= set(names)
    for name in names:
        phrase = phrase_for(name)  # raises for a feature without one
        values = [None, "north"] if pd.api.types.is_object_dtype(feats[name]) or isinstance(
            feats[name].dtype, pd.CategoricalDtype) else [np.nan, 0.0, 0.004, 0.5, 1.0, 2.0, 47.0, 12345.678, 3.4e9]
        for value in values:
            if name == "as_of_month" and not (isinstance(value, float) and 1 <= value <= 12):
                continue
            text = describe(name, value, dict.fromkeys(phrase.context, 2.5))
            assert text, (name, value)
            assert not RAW.search(text), (name, value, text)
    assert NEVER_REASONS == {"as_of_month"}


def test_common_values_from_the_training_profiles(monkeypatch):
    profiles = {
        "loyalty_points": {"kind": "numeric", "missing": 0.0, "edges": [0.0, 40.0], "proportions": [0.67, 0.2, 0.13],
                           "min": 0.0},
        "recency_days": {"kind": "numeric", "missing": 0.0, "edges": [3.0, 8.0], "proportions": [0.1, 0.5, 0.4],
                         "min": 0.0},  # the first bin holds values 0..3: not one value
        "open_tickets": {"kind": "numeric", "missing": 0.0, "edges": [0.0], "proportions": [0.45, 0.55], "min": 0.0},
        "nps": {"kind": "numeric", "missing": 0.6, "edges": [5.0], "proportions": [0.2, 0.2], "min": 0.0},
        "nps_group": {"kind": "categorical", "missing": 0.6, "categories": {"passive": 0.2}, "other": 0.0},
        "attr_region": {"kind": "categorical", "missing": 0.0, "categories": {"north": 0.55, "south": 0.45},
                        "other": 0.0},
    }
    common = common_values(profiles)
    assert common.keys() == {"loyalty_points", "nps", "nps_group", "attr_region"}
    assert common["loyalty_points"] == 0.0
    assert np.isnan(common["nps"])
    assert common["nps_group"] is None
    assert common["attr_region"] == "north"
    names = ["loyalty_points", "nps", "attr_region", "as_of_month", "recency_days"]
    cols = {"loyalty_points": np.array([0.0, 5.0]), "nps": np.array([np.nan, 3.0]),
            "attr_region": np.array([1, 0]), "as_of_month": np.array([12.0, 12.0]), "recency_days": np.array([0.0, 9.0])}
    hidden = uninformative(names, cols, {"attr_region": ("south", "north")}, common, np.array([0, 1]))
    assert hidden.tolist() == [[True, True, True, True, False], [False, False, False, True, False]]
    # in blocks of rows (long columns are read block by block): the same, for rows in any order
    many = {name: np.tile(values, 3) for name, values in cols.items()}
    rows = np.array([5, 0, 3, 2, 1])
    for block_rows in (2, 1 << 16):
        monkeypatch.setattr(reasons, "_BLOCK_ROWS", block_rows)
        hidden = uninformative(names, many, {"attr_region": ("south", "north")}, common, rows)
        assert hidden.tolist() == [[False, False, False, True, False], [True, True, True, True, False]] * 2 + [
            [False, False, False, True, False]]


def test_reasons_leave_out_the_hidden_and_name_one_feature_per_topic():
    names = ["recency_days", "overdue_ratio", "loyalty_points", "open_tickets", "as_of_month", "nps"]
    contrib = np.array([[0.5, 0.9, 0.8, 0.1, 2.0, -0.3],  # overdue (recent) beats recency (same topic)
                        [0.0, -0.1, 0.2, 0.0, 1.0, 0.0]])  # only loyalty points would be left: hidden
    hidden = np.array([[False, False, False, False, True, False], [False, False, True, False, True, False]])
    picks = pick_reasons(contrib, names, hidden)
    assert picks.tolist() == [[1, 2, 3], [-1, -1, -1]]


def test_a_few_rows_get_the_reasons_many_rows_give():
    """Up to 64 rows are sorted, more go through argmax passes: each row's picks are the same either way, ties
    (to the lower column), zeros and repeated topics included."""
    names = ["recency_days", "overdue_ratio", "trend_orders", "n_orders", "net_spend", "gross_spend", "nps",
             "nps_group", "open_tickets", "tickets_total", "csat_min", "tenure_days"]
    rng = np.random.default_rng(3)
    contrib = np.round(rng.normal(size=(300, len(names))), 1)  # one decimal: many ties and zeros
    hidden = rng.random(contrib.shape) < 0.2
    many_top, many = top_features(contrib, 10), pick_reasons(contrib, names, hidden)
    assert (many >= 0).any()
    assert (many == -1).any()  # rows with fewer than three reasons
    for start in range(0, 300, 50):
        rows = slice(start, start + 50)
        assert (top_features(contrib[rows], 10) == many_top[rows]).all()
        assert (pick_reasons(contrib[rows], names, hidden[rows]) == many[rows]).all()
    assert top_features(np.array([[0.2, 0.5, 0.5, -1.0]]), 6).tolist() == [[1, 2, 0, -1, -1, -1]]


def test_many_rows_taken_only_as_deep_as_they_need_pick_what_the_candidates_give():
    """More than 64 rows leave the argmax passes once they have their reasons (or nothing positive is left);
    each row's picks equal those of the ten candidates and their topics (rows taken 50 at a time), with NaN
    (passed over), infinities, all-negative rows, ties and 1, 3 or 5 reasons asked for."""
    names = ["recency_days", "overdue_ratio", "trend_orders", "n_orders", "net_spend", "gross_spend", "nps",
             "nps_group", "open_tickets", "tickets_total", "csat_min", "tenure_days", "cltv", "as_of_month"]
    rng = np.random.default_rng(11)
    contrib = np.round(rng.normal(size=(400, len(names))), 1)
    contrib[rng.random(contrib.shape) < 0.05] = np.nan
    contrib[rng.random(contrib.shape) < 0.02] = np.inf
    contrib[:40] = -np.abs(contrib[:40])  # nothing positive: no reason
    hidden = rng.random(contrib.shape) < 0.2
    for n in (1, 3, 5):
        many = pick_reasons(contrib, names, hidden, n)
        assert many.shape == (400, n)
        assert (many[:40] == -1).all()
        assert (many[40:, 0] >= 0).all()
        assert n == 1 or (many[40:, n - 1] == -1).any()  # rows with fewer reasons than asked for
        for start in range(0, 400, 50):
            rows = slice(start, start + 50)
            assert (pick_reasons(contrib[rows], names, hidden[rows], n) == many[rows]).all()


def test_reason_texts_for_absent_features_and_categories():
    picks = np.array([[0, 1, -1], [1, 0, -1]])
    cols = {"attr_region": np.array([0, -1])}
    texts = reason_texts(picks, ["open_tickets", "attr_region"], cols, {"attr_region": ("north", "south")})
    assert texts.tolist() == [["no support ticket data", "region: north", ""],  # no tickets table given
                              ["region unknown", "no support ticket data", ""]]


def test_many_customers_get_the_texts_one_at_a_time_gives():
    """The texts written once per distinct value (and context) equal one call per customer."""
    rng = np.random.default_rng(0)
    n = 200
    cols = {"net_spend": rng.choice([10.0, 4437.0, 99.5], n), "trend_spend": rng.choice([np.nan, 0.0, 0.4, 1.5], n),
            "recency_days": rng.choice([5.0, 140.0], n), "overdue_ratio": rng.choice([np.nan, 0.5, 3.2], n)}
    names = ["net_spend", "recency_days"]
    picks = np.column_stack([rng.integers(-1, 2, n), np.full(n, -1), np.full(n, -1)])
    texts = reason_texts(picks, names, cols, {})
    for i in range(n):
        want = "" if picks[i, 0] < 0 else describe(names[picks[i, 0]], cols[names[picks[i, 0]]][i],
                                                   {k: v[i] for k, v in cols.items()})
        assert texts[i, 0] == want


@pytest.mark.slow
def test_no_reason_on_the_demo_names_a_feature_or_uses_an_exponent(trained, model):
    from churnguard.config import load_playbook
    from churnguard.scoring import score_tables

    scores = score_tables(model, trained["tables"], "2025-06-30", load_playbook(), control_fraction=0.0).scores
    texts = pd.concat([scores[f"reason_{k}"] for k in (1, 2, 3)])
    texts = texts[texts != ""]
    assert len(texts) > len(scores)
    bad = texts[texts.str.contains(RAW)]
    assert bad.empty, bad.value_counts().head().to_dict()
    assert not texts.str.contains("loyalty points").any() or (  # no points is what most customers have
        ~texts.str.contains("no loyalty points")).all()
    per_customer = scores[["reason_1", "reason_2", "reason_3"]]
    named = per_customer.apply(lambda r: [t for t in r if t], axis=1)
    assert (named.map(len) == named.map(lambda t: len(set(t)))).all()  # never the same sentence twice


def test_a_customer_whose_purchases_were_all_set_aside_is_not_told_no_purchase_yet():
    from churnguard.scoring.reasons import set_aside_text, set_aside_texts, unscored_text

    assert set_aside_text(1) == ("no churn probability: no purchase on record, but 1 transaction row of theirs was "
                                 "set aside as bad (see the rejects file)")
    assert set_aside_text(1200) == ("no churn probability: no purchase on record, but 1,200 transaction rows of "
                                    "theirs were set aside as bad (see the rejects file)")
    assert set_aside_text(3) != unscored_text("never_bought", np.nan, 365)
    assert set_aside_texts(np.array([3, 1, 3])).tolist() == [set_aside_text(3), set_aside_text(1), set_aside_text(3)]


def test_the_beyond_support_remark_takes_the_first_free_slot_else_the_last():
    texts = np.array([["a", "", ""], ["a", "b", "c"], ["a", "b", ""], ["", "", ""]], dtype=object)
    reasons.with_beyond_support(texts, np.array([True, True, False, True]), 183)
    note = ("silent longer than any customer the model learned from (183 days): likely at higher risk than "
            "shown")
    assert texts.tolist() == [["a", note, ""], ["a", "b", note], ["a", "b", ""], [note, "", ""]]
    untouched = texts.copy()
    reasons.with_beyond_support(texts, np.zeros(4, dtype=bool), 183)
    assert (texts == untouched).all()


def test_repeated_texts_are_left_out_alike_for_few_rows_and_many(monkeypatch):
    """``_once_each`` of a few rows (plain lists) and of many (array passes) give the same table: each row's
    texts once, in order, blanks last. Tables of 1-69 rows drawn from a few texts, blanks included."""
    rng = np.random.default_rng(7)
    for _ in range(500):
        rows, width = int(rng.integers(1, 70)), int(rng.integers(1, 5))
        texts = np.array(rng.choice(["", "a", "b", "c"], size=(rows, width)).tolist(), dtype=object)
        few = reasons._once_each(texts.copy())
        monkeypatch.setattr(reasons, "_FEW_ROWS", -1)
        many = reasons._once_each(texts.copy())
        monkeypatch.undo()
        assert few.shape == many.shape == texts.shape
        assert (few == many).all(), (texts, few, many)
        for row, out in zip(texts.tolist(), few.tolist(), strict=True):
            kept = list(dict.fromkeys(t for t in row if t))
            assert out == kept + [""] * (width - len(kept))


def test_counts_of_one_take_the_singular_in_every_message(tmp_path):
    """One helper (``churnguard._text.plural``) writes a count with its noun: "1 customer", never "1 customers"."""
    from pathlib import Path

    from churnguard._text import plural
    from churnguard.btyd import _history
    from churnguard.dataset import exclusion_note
    from churnguard.engines.local import FeaturesResult

    assert [plural(n, "row") for n in (0, 1, 2, 1234)] == ["0 rows", "1 row", "2 rows", "1,234 rows"]
    assert plural(1, "entry", "entries") == "1 entry"
    summary = FeaturesResult(pd.DataFrame(), Path("f.csv"), 1, 1, left_out=1, emptied=1).summary()
    assert summary == ("features: 1 customer x 1 feature -> f.csv; 1 customer left out: no activity on or before "
                       "as_of (see the rejects); 1 customer with every row set aside, so without features (see the "
                       "rejects)")
    assert exclusion_note("x.csv", "transactions", 1, {"StockCode = 'POST'": 1}).startswith(
        "x.csv: left out 1 of 1 transactions row by data.exclude")
    with pytest.raises(ValueError, match=r"recency exceeds T for 1 customer: "):
        _history([1.0, 0.0], [5.0, 0.0], [4.0, 3.0])
