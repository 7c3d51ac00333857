"""Scoring rules on hand-built customers: bands, playbook, expected value, budget and control group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnguard.config import ConfigError, load_playbook
from churnguard.scoring import assign_actions, expected_value, risk_band, select_customers, signals
from churnguard.scoring.rules import lifecycle_stage, rule_matches

PLAYBOOK = load_playbook()
BANDS = {"high": 0.6, "medium": 0.3}


def test_risk_bands_at_the_boundaries():
    p = np.array([0.0, 0.2999, 0.3, 0.5999, 0.6, 1.0, np.nan, np.nan])
    stage = np.array(["active"] * 6 + ["lost", "never_bought"], dtype=object)
    assert risk_band(p, BANDS, stage).tolist() == ["low", "low", "medium", "medium", "high", "high", "lost",
                                                   "never_bought"]
    assert risk_band(p[:6], BANDS).tolist() == ["low", "low", "medium", "medium", "high", "high"]
    with pytest.raises(ValueError, match="lifecycle stage"):
        risk_band(p, BANDS)


def _customers():
    """One hand-built customer per playbook rule, in playbook order."""
    rows = [
        # band,        tier,       open, csat, tenure, recency  -> expected action
        ("lost", "vip", 1, np.nan, 900, 400, "win_back_lost"),  # no purchase in 365 days: first rule, whatever else
        ("never_bought", "standard", 0, np.nan, 30, np.nan, "first_purchase_nudge"),  # before welcome_offer
        ("high", "vip", 0, np.nan, 400, 100, "vip_personal_outreach"),
        ("high", "standard", 1, np.nan, 400, 100, "service_recovery"),  # a ticket still open
        ("medium", "standard", 0, 2.0, 400, 100, "service_recovery"),  # CSAT 2 in the last 90 days
        ("medium", "standard", 0, np.nan, 400, 40, "browsing_reminder"),  # 4 visits since the last order
        ("high", "standard", 0, np.nan, 400, 100, "quiet_win_back"),  # no visit for 45 days, no email data
        ("high", "standard", 0, np.nan, 30, 10, "welcome_offer"),  # new customer, no bad support
        ("high", "standard", 0, 5.0, 400, 100, "win_back_offer"),
        ("medium", "standard", 0, np.nan, 400, 100, "re_engagement"),
        ("low", "vip", 0, np.nan, 400, 20, "vip_loyalty_rewards"),
        ("low", "standard", 0, np.nan, 400, 20, "no_action"),
    ]
    df = pd.DataFrame(rows, columns=["band", "tier", "open_tickets", "csat_latest", "tenure_days", "recency_days",
                                     "expected"])
    df["tickets_90d"] = np.where(df["csat_latest"].notna() | (df["open_tickets"] > 0), 1, 0)
    df["first_response_hours_latest"] = 2.0
    df["visits_since_last_order"] = np.where(df["expected"] == "browsing_reminder", 4, 0)
    df["days_since_last_visit"] = np.where(df["expected"] == "quiet_win_back", 45, 5)
    df["stage"] = lifecycle_stage(df["recency_days"], df["tenure_days"], 365)  # first purchase at tenure here
    return df


def test_every_playbook_rule_is_hit_by_its_customer():
    df = _customers()
    flags = signals({c: df[c].to_numpy() for c in df.columns if c not in ("band", "tier", "expected", "stage")},
                    len(df), sla_hours=24, new_customer_days=90, lookback_days=365)
    actions = assign_actions(df["band"].to_numpy(), df["stage"].to_numpy(), df["tier"].to_numpy(), flags, PLAYBOOK)
    assert actions.tolist() == df["expected"].tolist()
    assert set(actions) == {a.name for a in PLAYBOOK.actions}
    assert flags["lapsed"].tolist() == [True] + [False] * (len(df) - 1)


def test_many_customers_get_the_actions_each_gets_alone():
    """Labels are coded one by one for a few customers and one pass per label for many: the same actions."""
    df = _customers()
    many = pd.concat([df] * 10, ignore_index=True)  # 120 customers, over rules._FEW
    flags = signals({c: many[c].to_numpy() for c in many.columns if c not in ("band", "tier", "expected", "stage")},
                    len(many), sla_hours=24, new_customer_days=90, lookback_days=365)
    actions = assign_actions(many["band"].to_numpy(), many["stage"].to_numpy(), many["tier"].to_numpy(), flags,
                             PLAYBOOK)
    assert actions.tolist() == many["expected"].tolist()


def test_rules_match_on_lifecycle_stage(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("actions:\n  - {name: keep_warm, when: {stage: [at_risk, lapsing], band: [low]}, cost: 1,"
                 " success_rate: 0.1}\n  - {name: none, when: {}, cost: 0, success_rate: 0}\n")
    book = load_playbook(p)
    stage = np.array(["at_risk", "lapsing", "active", "at_risk"], dtype=object)
    band = np.array(["low", "low", "low", "high"], dtype=object)
    flags = {"bad_support": np.zeros(4, dtype=bool)}
    assert assign_actions(band, stage, np.full(4, "standard"), flags, book).tolist() == [
        "keep_warm", "keep_warm", "none", "none"]
    p.write_text("actions:\n  - {name: x, when: {stage: [gone]}, cost: 1, success_rate: 0.1}\n"
                 "  - {name: none, when: {}, cost: 0, success_rate: 0}\n")
    with pytest.raises(ConfigError, match=r"actions\.0\.when\.stage"):
        load_playbook(p)


def test_the_action_is_the_first_rule_the_playbook_allows():
    rng = np.random.default_rng(5)
    n = 500
    bands = rng.choice(np.array(["high", "medium", "low", "lost", "never_bought"], dtype=object), n)
    stages = rng.choice(np.array(["new", "active", "at_risk", "lapsing", "lost", "never_bought"], dtype=object), n)
    tiers = rng.choice(np.array(["vip", "standard"], dtype=object), n)
    flags = {s: rng.random(n) < 0.3 for s in ("bad_support", "new_customer", "lapsed", "browsing_not_buying",
                                              "gone_quiet")}
    allowed = rule_matches(bands, stages, tiers, flags, PLAYBOOK)
    actions = assign_actions(bands, stages, tiers, flags, PLAYBOOK)
    assert list(allowed) == [r.name for r in PLAYBOOK.actions]
    for i in range(n):
        assert actions[i] == next(name for name, ok in allowed.items() if ok[i])
    vip_high = (bands == "high") & (tiers == "vip")
    assert allowed["vip_personal_outreach"].tolist() == vip_high.tolist()
    assert allowed["service_recovery"].tolist() == (np.isin(bands, ["high", "medium"]) & flags["bad_support"]).tolist()
    assert allowed["no_action"].all()


def test_customers_without_a_probability_count_with_p_one():
    actions = np.array(["win_back_lost", "win_back_offer", "first_purchase_nudge", "no_action"], dtype=object)
    prob = np.array([np.nan, 0.5, np.nan, 0.1])
    cost, ev = expected_value(prob, np.array([200.0, 200.0, 0.0, 50.0]), actions, PLAYBOOK)
    # win_back_lost: 1 x 200 x 0.15 - 10 = 20; win_back_offer: 0.5 x 200 x 0.15 - 10 = 5;
    # first_purchase_nudge: 1 x 0 x 0.05 - 5 = -5 (no CLTV yet); no_action: free, 0.
    assert cost.tolist() == [10.0, 10.0, 5.0, 0.0]
    assert ev.tolist() == pytest.approx([20.0, 5.0, -5.0, 0.0], abs=1e-12)


def test_expected_value_caps_the_lifespan_and_the_success_rate():
    book = PLAYBOOK.model_copy(update={"max_value_years": 3.0, "max_success_rate": 0.2})
    actions = np.array(["vip_personal_outreach", "win_back_offer"], dtype=object)  # success rates 0.30 and 0.15
    # A CLTV of 600 over a 6-year lifespan keeps 3 years: 300. Outreach: 0.5 x 300 x 0.2 (capped) - 25 = 5;
    # win-back: 0.5 x 300 x 0.15 - 10 = 12.5.
    _, ev = expected_value(np.array([0.5, 0.5]), np.array([600.0, 600.0]), actions, book, lifespan_years=6.0)
    assert ev.tolist() == pytest.approx([5.0, 12.5], abs=1e-12)
    # A lifespan under the cap keeps the whole CLTV: 0.5 x 600 x 0.15 - 10 = 35.
    _, ev = expected_value(np.array([0.5]), np.array([600.0]), actions[1:], book, lifespan_years=2.0)
    assert ev.tolist() == pytest.approx([35.0], abs=1e-12)


def test_slow_first_answer_counts_as_bad_support():
    df = pd.DataFrame({"tickets_90d": [1, 1, 0], "first_response_hours_latest": [30.0, 10.0, 30.0],
                       "open_tickets": [0, 0, 0], "csat_latest": [np.nan] * 3, "tenure_days": [400] * 3,
                       "recency_days": [10] * 3})
    flags = signals({c: df[c].to_numpy() for c in df.columns}, len(df), sla_hours=24, new_customer_days=90,
                    lookback_days=365)
    assert flags["bad_support"].tolist() == [True, False, False]  # the third ticket is older than 90 days


def _scores(ev, cost, ids=None, prob=None):
    n = len(ev)
    return pd.DataFrame({"customer_id": ids or [f"c{i}" for i in range(n)], "expected_value": ev, "action_cost": cost,
                         "churn_probability": prob if prob is not None else [0.5] * n})


def test_budget_selection_by_hand():
    # value per cost: c0 50/10=5, c1 30/5=6, c2 8/2=4, c3 -1 (never), c4 20/10=2.
    s = _scores([50.0, 30.0, 8.0, -1.0, 20.0], [10.0, 5.0, 2.0, 3.0, 10.0])
    # Budget 16: c1 (5) -> c0 (15) -> c2 would make 17, skipped -> c4 would make 25, skipped.
    picked = select_customers(s, budget=16, control_fraction=0)
    assert picked.loc[picked["selected"], "customer_id"].tolist() == ["c0", "c1"]
    # Budget 17: c1, c0, c2 fit exactly.
    assert select_customers(s, budget=17, control_fraction=0)["selected"].tolist() == [True, True, True, False, False]
    # No budget: everyone with positive expected value.
    assert select_customers(s, control_fraction=0)["selected"].tolist() == [True, True, True, False, True]
    # Zero budget: nobody.
    assert not select_customers(s, budget=0, control_fraction=0)["selected"].any()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("budget", float("nan"), "budget must be a finite amount >= 0, got nan"),  # selected nobody, silently
    ("budget", float("inf"), "budget must be a finite amount >= 0, got inf"),  # printed "a budget of inf"
    ("budget", -1.0, "budget must be a finite amount >= 0, got -1.0"),
    ("seed", -1, "the control group's seed must be a whole number >= 0, got -1"),  # numpy's own words before
])
def test_budget_and_seed_out_of_range_are_named(option, value, message):
    s = _scores([50.0, 30.0], [10.0, 5.0])
    with pytest.raises(ValueError, match=f"^{message}"):
        select_customers(s, control_fraction=0.5, **{option: value})


def test_ranks_by_risk_and_by_expected_value():
    # Probabilities: c2 highest, c0 and c3 tie (ids break it), c1 has none (lost): no risk rank.
    s = _scores([5.0, 30.0, -2.0, 5.0], [1.0] * 4, prob=[0.4, np.nan, 0.9, 0.4])
    ranked = select_customers(s.iloc[::-1], control_fraction=0).set_index("customer_id").sort_index()
    assert ranked["risk_rank"].tolist() == [2, pd.NA, 1, 3]
    assert ranked["value_rank"].tolist() == [2, 1, 4, 3]  # c0 and c3 tie on 5.0: c0 first


def test_ties_are_broken_by_expected_value_then_id_not_row_order():
    # Equal value per cost 2.0 for all; budget 10 fits two of cost 5 or one of cost 10.
    s = _scores([20.0, 10.0, 10.0], [10.0, 5.0, 5.0], ids=["b", "z", "a"])
    first = select_customers(s, budget=10, control_fraction=0)
    assert first.loc[first["selected"], "customer_id"].tolist() == ["b"]  # higher expected value first
    s2 = _scores([10.0, 10.0], [5.0, 5.0], ids=["z", "a"])
    second = select_customers(s2.iloc[::-1], budget=5, control_fraction=0)
    assert second.loc[second["selected"], "customer_id"].tolist() == ["a"]


def test_control_group_fraction_and_seed():
    s = _scores(list(np.linspace(1, 100, 200)), [1.0] * 200)
    a = select_customers(s, control_fraction=0.1, seed=3)
    b = select_customers(s.sample(frac=1, random_state=1), control_fraction=0.1, seed=3)
    c = select_customers(s, control_fraction=0.1, seed=4)
    assert a["control_group"].sum() == 20
    assert (a["control_group"] <= a["selected"]).all()  # only selected customers are held out
    assert set(a.loc[a["control_group"], "customer_id"]) == set(b.loc[b["control_group"], "customer_id"])
    assert set(a.loc[a["control_group"], "customer_id"]) != set(c.loc[c["control_group"], "customer_id"])


def test_bad_arguments():
    s = _scores([1.0], [1.0])
    with pytest.raises(ValueError, match="control_fraction"):
        select_customers(s, control_fraction=1.0)
    with pytest.raises(ValueError, match="budget"):
        select_customers(s, budget=-1)


def test_playbook_needs_a_fallback(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("actions:\n  - {name: x, when: {band: [high]}, cost: 1, success_rate: 0.1}\n")
    with pytest.raises(ConfigError, match="last action must have an empty 'when'"):
        load_playbook(p)
    p.write_text("actions:\n  - {name: x, when: {band: [hot]}, cost: 1, success_rate: 0.1}\n")
    with pytest.raises(ConfigError, match=r"actions\.0\.when\.band"):
        load_playbook(p)


def test_rejected_rows_count_each_customers_transaction_rows_set_aside():
    """a: 2 transaction rows set aside (plus a ticket row, not counted); b: 1; c: none; a row without an id
    belongs to nobody."""
    from churnguard.scoring.score import rejected_rows

    rejects = pd.DataFrame({"table": ["transactions", "transactions", "tickets", "transactions", "transactions"],
                            "customer_id": ["a", "a", "a", "b", None]})
    ids = pd.Series(["c", "b", "a"], dtype="string")
    assert rejected_rows(rejects, ids).tolist() == [0, 1, 2]
    assert rejected_rows(None, ids).tolist() == [0, 0, 0]
    assert rejected_rows(rejects.iloc[:0], ids).tolist() == [0, 0, 0]


def test_the_summary_counts_customers_scored_on_partial_history():
    """Two customers with rows set aside, one of them with no purchase left; none: no line at all."""
    from churnguard.scoring import ScoreResult

    scores = pd.DataFrame({"customer_id": ["a", "b", "c"], "lifecycle_stage": ["active", "never_bought", "active"],
                           "rejected_rows": [2, 3, 0], "churn_probability": [0.7, np.nan, 0.1],
                           "risk_band": ["high", "never_bought", "low"], "action": ["x", "y", "z"],
                           "action_cost": [1.0, 1.0, 0.0], "expected_value": [5.0, -1.0, 0.0],
                           "selected": [True, False, False], "control_group": [False, False, False]})
    text = ScoreResult(scores, pd.DataFrame(columns=["customer_id"])).summary("s.csv")
    assert text.splitlines()[:2] == [
        "customers: 3 in, 3 scored -> s.csv, 0 rejected",
        ("partial history: 2 customers scored with transaction rows set aside (column rejected_rows), 1 of them "
         "with no purchase left (no probability)")]
    clean = ScoreResult(scores.assign(rejected_rows=0), pd.DataFrame(columns=["customer_id"])).summary("s.csv")
    assert "partial history" not in clean


@pytest.mark.parametrize("budget", [None, 40.0])
def test_selection_and_ranks_with_the_ids_sorted_once_are_those_of_each_sorting_its_own(budget):
    """``select`` and ``ranks`` given the ids' places (``id_places``, sorted once, as ``select_customers``
    passes them) give what each gives sorting the ids itself: ties broken by id as text, then by row (the same
    id twice, ids that sort apart as numbers and as text)."""
    from churnguard.scoring import rules

    rng = np.random.default_rng(3)
    n = 400
    ids = np.array([f"c{int(k)}" for k in rng.integers(0, 300, n)], dtype=object)  # some ids twice
    ev = np.round(rng.normal(5, 4, n)).clip(-2)  # ties in expected value and in ratio
    cost = rng.choice([0.0, 1.0, 2.0], n)
    risk = np.where(rng.random(n) < 0.1, np.nan, np.round(rng.random(n), 1))
    places = rules.id_places(ids)
    for seed in (0, 1):
        alone = rules.select(ids, ev, cost, budget=budget, control_fraction=0.3, seed=seed)
        shared = rules.select(ids, ev, cost, budget=budget, control_fraction=0.3, seed=seed, places=places)
        assert alone[0].any()
        assert alone[1].any()
        assert all(np.array_equal(a, b) for a, b in zip(alone, shared, strict=True))
    alone, shared = rules.ranks(ids, risk, ev), rules.ranks(ids, risk, ev, places)
    assert alone.keys() == shared.keys()
    assert all(np.array_equal(alone[k], shared[k], equal_nan=True) for k in alone)


def test_counts_reject_a_customer_only_when_none_of_their_rows_scored():
    """A rejects row of a scored customer (one bad row of theirs) does not make them rejected; a customer in
    several rejects rows counts once; rows without an id are not customers."""
    from churnguard.scoring.score import ScoreResult

    scores = pd.DataFrame({"customer_id": pd.array(["a", "b", "c"], dtype="str")})
    rejects = pd.DataFrame({"customer_id": ["b", "x", "x", None, "y"], "reason": ["bad row"] * 5})
    assert ScoreResult(scores, rejects).counts() == {"in": 5, "scored": 3, "rejected": 2}
    assert ScoreResult(scores, rejects.iloc[:0]).counts() == {"in": 3, "scored": 3, "rejected": 0}
    assert ScoreResult(scores.iloc[:0], rejects).counts() == {"in": 3, "scored": 0, "rejected": 3}


def test_a_budget_below_every_contact_is_said_to_be_so():
    """A budget too small for any contact said "no customer has a positive expected value within the budget",
    though customers had one: now it names the budget and the cheapest contact worth making."""
    from churnguard.scoring import Campaign, campaign_text

    s = select_customers(_scores([50.0, 30.0, -1.0], [10.0, 2.5, 2.0]), budget=1.5, control_fraction=0)
    s["clv"], s["action"] = 100.0, "no_action"
    text = campaign_text(s, "s.csv", None, Campaign(PLAYBOOK, 1.5, 90, 3.0))
    assert text.endswith("next:\n  nobody to contact: the budget, 1.50, is below the cheapest contact with a "
                         "positive expected value (2.50, for 2 customers)")
    s = select_customers(_scores([-5.0, 0.0], [10.0, 0.0]), budget=1.5, control_fraction=0)
    text = campaign_text(s.assign(clv=1.0, action="no_action"), "s.csv", None, Campaign(PLAYBOOK, 1.5, 90, 3.0))
    assert text.endswith("nobody to contact: no customer has a positive expected value")


def test_the_read_out_command_names_the_config_the_files_need():
    """Scored with the model's own data section (an Online Retail model: latin-1, mapped columns), the suggested
    read-out read the transactions with the built-in one and failed; it now asks for the training config."""
    from churnguard.scoring import Campaign, campaign_text

    s = select_customers(_scores([50.0], [10.0]), control_fraction=0).assign(clv=100.0, action="no_action")
    own = campaign_text(s, "s.csv", None, Campaign(PLAYBOOK, None, 90, 3.0, "tx.csv", model_data_config=True))
    assert own.endswith("--transactions tx.csv --horizon-days 90 -c CONFIG\n    (CONFIG: the config file the model "
                        "was trained with: its data section read these files)")
    given = campaign_text(s, "s.csv", None, Campaign(PLAYBOOK, None, 90, 3.0, "tx.csv", "r.yaml",
                                                     model_data_config=True))
    assert given.endswith("--horizon-days 90 -c r.yaml")
    assert campaign_text(s, "s.csv", None, Campaign(PLAYBOOK, None, 90, 3.0, "tx.csv")).endswith("--horizon-days 90")
