"""The events table: validation, the engagement features worked out by hand, the session rule at its
boundary, the HTTP path's features, reasons and playbook signals."""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.config import (
    ActionRule,
    DataConfig,
    FeatureConfig,
    Playbook,
    RuleCondition,
    load_config,
    load_playbook,
)
from churnguard.dataset import DataError, validate_tables
from churnguard.demo import generate_demo_data
from churnguard.features import build_features
from churnguard.features.engagement import EVENT_TYPES
from churnguard.features.records import CustomerRecords, records_features
from churnguard.population import Population
from churnguard.scoring import rules
from churnguard.scoring.reasons import describe

AS_OF = "2025-03-31"
TX = pd.DataFrame({"customer_id": ["a", "a", "b", "c"],
                   "timestamp": ["2025-01-05 10:00", "2025-03-01 10:00", "2025-03-10 10:00", "2025-02-01 10:00"],
                   "amount": [10.0, 20.0, 30.0, 40.0]})
EVENTS = pd.DataFrame([
    # a: web events without a session id (the gap rule) and two app sessions with ids
    ("a", "2025-03-20 10:00:00", "page_view", 60, "web", None),
    ("a", "2025-03-20 10:29:59", "page_view", None, "web", None),  # 29:59 later: the same session
    ("a", "2025-03-20 10:59:59", "visit", 120, "web", None),  # 30:00 later: a new session
    ("a", "2025-02-15 12:00:00", "app_session", 600, "app", "s1"),
    ("a", "2025-02-15 12:20:00", "cart_add", None, "app", "s1"),  # same id: the same session
    ("a", "2025-02-15 12:05:00", "page_view", None, "app", "s2"),  # another id 5 minutes in: another session
    ("a", "2024-12-20 09:00:00", "visit", 300, "web", None),
    ("a", "2025-04-01 00:00:00", "visit", 60, "web", None),  # after as_of: not seen
    # b: emails, and one visit late on the as_of day
    ("b", "2024-11-01 09:00:00", "email_sent", None, "email", None),  # 150 days before: outside 90 days
    ("b", "2025-01-10 09:00:00", "email_sent", None, "email", None),
    ("b", "2025-01-10 12:00:00", "Email_Open", None, "email", None),  # read in lower case
    ("b", "2025-01-10 12:01:00", "email_click", None, "email", None),
    ("b", "2025-02-10 09:00:00", "email_sent", None, "email", None),
    ("b", "2025-03-10 09:00:00", "email_sent", None, "email", None),
    ("b", "2025-03-25 09:00:00", "email_sent", None, None, None),  # no channel: left out of the shares
    ("b", "2025-03-31 23:30:00", "visit", None, "web", None),
], columns=["customer_id", "timestamp", "event_type", "duration_seconds", "channel", "session_id"])


def _features(events=EVENTS, cfg: FeatureConfig | None = None) -> pd.DataFrame:
    tables = validate_tables(TX, config=DataConfig(), events=events)
    return build_features(tables, AS_OF, cfg or FeatureConfig()).set_index("customer_id")


def test_engagement_features_worked_out_by_hand():
    f = _features()
    a, b, c = f.loc["a"], f.loc["b"], f.loc["c"]
    # a's sessions (age in days, seconds): 03-20 10:00-10:29:59 (11, 1799), 03-20 10:59:59 (11, 120),
    # s1 (44, 1200: 20 minutes from its first event, longer than the 600 s the first one lasted), s2 (44, 0),
    # 12-20 (101, 300). The event on 04-01 is after as_of.
    assert a["days_since_last_visit"] == 11
    assert (a["sessions_30d"], a["sessions_90d"]) == (2, 4)
    assert a["minutes_on_site_30d"] == pytest.approx((1799 + 120) / 60)
    assert a["minutes_on_site_90d"] == pytest.approx((1799 + 120 + 1200) / 60)
    assert a["sessions_trend_30d"] == 1.0  # 2 in days 0-29, 2 in days 30-59
    assert a["minutes_on_site_trend_30d"] == pytest.approx(1919 / 1200)
    assert a["sessions_trend_90d"] == 4.0  # 4 against the one 101 days ago
    assert a["minutes_on_site_trend_90d"] == pytest.approx(3119 / 300)
    assert a["visits_since_last_order"] == 2  # last order 03-01: the two sessions of 03-20
    counts = {t: a[f"events_{t}_90d"] for t in EVENT_TYPES}
    assert counts == {"visit": 1, "page_view": 3, "app_session": 1, "cart_add": 1, "email_sent": 0,
                      "email_open": 0, "email_click": 0}
    assert math.isnan(a["email_open_rate_90d"])
    assert math.isnan(a["emails_since_last_open"])
    assert (a["channel_web_share_90d"], a["channel_app_share_90d"], a["channel_email_share_90d"]) == (0.5, 0.5, 0)
    # b: 4 emails sent in 90 days, 1 opened and clicked; 3 sent since that open; the 23:30 visit on as_of counts.
    assert (b["email_open_rate_90d"], b["email_click_rate_90d"], b["emails_since_last_open"]) == (0.25, 0.25, 3)
    assert (b["events_email_sent_90d"], b["events_email_open_90d"]) == (4, 1)
    assert (b["days_since_last_visit"], b["sessions_30d"], b["minutes_on_site_30d"]) == (0, 1, 0)
    assert math.isnan(b["sessions_trend_30d"])  # none in the 30 days before
    assert b["visits_since_last_order"] == 1
    assert b["channel_email_share_90d"] == pytest.approx(5 / 6)  # 6 events with a channel in 90 days
    assert b["channel_web_share_90d"] == pytest.approx(1 / 6)
    # c: no events at all
    assert (c["sessions_30d"], c["visits_since_last_order"], c["events_visit_90d"]) == (0, 0, 0)
    assert c[["days_since_last_visit", "email_open_rate_90d", "channel_web_share_90d"]].isna().all()


def test_the_session_gap_is_configurable_and_exclusive_at_its_boundary():
    rows = [("a", f"2025-03-20 10:{m:02d}:00", "page_view", None, "web", None) for m in (0, 9, 19, 29)]
    events = pd.DataFrame(rows, columns=EVENTS.columns)
    # 9, 10 and 10 minutes apart: one session under 30 minutes; with 10, a gap of exactly 10 starts a new one
    assert _features(events).loc["a", "sessions_30d"] == 1
    assert _features(events, FeatureConfig(session_gap_minutes=10)).loc["a", "sessions_30d"] == 3
    assert _features(events, FeatureConfig(session_gap_minutes=10.01)).loc["a", "sessions_30d"] == 1


def test_without_an_events_table_there_are_no_engagement_features():
    plain = build_features(validate_tables(TX, config=DataConfig()), AS_OF, FeatureConfig())
    with_events = _features()
    added = set(with_events.columns) - set(plain.columns)
    assert "sessions_30d" in added
    assert "email_open_rate_90d" in added
    assert len(added) == 24
    assert not any(c.startswith(("sessions", "events_", "email", "channel_")) for c in plain.columns)


def test_rows_order_changes_no_engagement_feature():
    shuffled = EVENTS.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(_features(shuffled), _features())


def _records(events: pd.DataFrame) -> list[CustomerRecords]:
    out = []
    for cid, rows in TX.groupby("customer_id"):
        tx = [{"timestamp": datetime.fromisoformat(t), "amount": a} for t, a in zip(rows["timestamp"], rows["amount"], strict=False)]
        ev = [{k: (datetime.fromisoformat(v) if k == "timestamp" else None if pd.isna(v) else v)
               for k, v in e.items() if k != "customer_id"} for e in events[events["customer_id"] == cid].to_dict("records")]
        out.append(CustomerRecords(cid, tx, events=ev))
    return out


def test_records_give_the_tables_features():
    """The HTTP server's path (plain records) computes the same engagement features as the table path."""
    want = _features()
    customers = _records(EVENTS)
    known, cols = records_features(customers, date.fromisoformat(AS_OF), FeatureConfig(), Population(3.0, 100.0))
    assert known.all()
    for name in [c for c in want.columns if c.startswith(("sessions", "minutes", "events_", "email", "channel_",
                                                         "visits", "days_since_last_visit"))]:
        np.testing.assert_array_equal(cols[name], want[name].to_numpy(dtype="float64"), err_msg=name)


def test_a_customer_sent_without_events_has_them_unknown_whoever_is_scored_along():
    customers = _records(EVENTS)
    alone = CustomerRecords("c", customers[2].transactions)  # no events list: no events table for them
    _known, cols = records_features([customers[0], alone], date.fromisoformat(AS_OF), FeatureConfig(),
                                   Population(3.0, 100.0))
    assert cols["sessions_30d"][0] == 2
    assert math.isnan(cols["sessions_30d"][1])
    _, by_itself = records_features([alone], date.fromisoformat(AS_OF), FeatureConfig(), Population(3.0, 100.0))
    assert "sessions_30d" not in by_itself  # the model treats the missing column as unknown too


# -- validation -------------------------------------------------------------------------------------------------


def test_events_of_unknown_customers_are_bad_rows():
    events = pd.concat([EVENTS, pd.DataFrame([("z", "2025-03-01", "visit", None, None, None)],
                                             columns=EVENTS.columns)], ignore_index=True)
    with pytest.raises(DataError, match=r"1 of 17 events row\(s\) cannot be used:\n  column 'customer_id': 1 "
                                        r"row\(s\) belong to customers found in neither transactions nor customers"):
        validate_tables(TX, config=DataConfig(), events=events)
    tables = validate_tables(TX, config=DataConfig(on_bad_rows="reject"), events=events)
    assert tables.rejects[["table", "row", "customer_id"]].to_numpy().tolist() == [["events", 17, "z"]]
    assert len(tables.events) == 16


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("duration_seconds", -5, "lie outside 0..1,000,000,000,000"),
    ("duration_seconds", "long", "are not numeric"),
    ("event_type", " ", "are empty"),
    ("timestamp", "yesterday", "have an unparseable date"),
])
def test_bad_event_values_are_named_in_the_message(column, value, reason):
    events = EVENTS.astype({column: object})
    events.loc[3, column] = value
    with pytest.raises(DataError, match=rf"column '{column}': 1 row\(s\) {reason}"):
        validate_tables(TX, config=DataConfig(), events=events)


def test_events_columns_are_mapped_and_required():
    renamed = EVENTS.rename(columns={"event_type": "Kind", "timestamp": "When"})
    cfg = DataConfig.model_validate({"columns": {"events": {"event_type": "Kind", "timestamp": "When"}}})
    assert validate_tables(TX, config=cfg, events=renamed).events["event_type"].iloc[10] == "email_open"
    with pytest.raises(DataError, match=r"required events column\(s\) 'event_type' not found"):
        validate_tables(TX, config=DataConfig(), events=EVENTS.drop(columns="event_type"))


def _parquet_and_frame(events: pd.DataFrame, tmp_path: Path, mode: str = "raise"):
    """The tables of ``events`` read from a Parquet file (its text columns as categoricals) and passed as a
    frame (text as text)."""
    from churnguard.dataset import load_tables

    TX.to_csv(tmp_path / "tx.csv", index=False)
    events.to_parquet(tmp_path / "events.parquet", index=False)
    cfg = DataConfig(on_bad_rows=mode)
    return (load_tables(tmp_path / "tx.csv", config=cfg, events=tmp_path / "events.parquet"),
            validate_tables(pd.read_csv(tmp_path / "tx.csv", dtype=str), config=cfg, events=events,
                            sources={"events": str(tmp_path / "events.parquet")}))


def test_events_read_from_parquet_as_categoricals_give_the_same_tables_and_features(tmp_path):
    """Text cells are read, cleaned and checked per distinct value: blanks, spaces, case, ids written as
    floats and rejected rows come out as they do from a frame of text."""
    messy = pd.concat([EVENTS, pd.DataFrame([
        ("a", "2025-03-21 10:00:00", " Visit ", 30, " ", "12.0"),  # blank channel, id written as a float
        ("a", "2025-03-21 10:10:00", "visit", 30, "web ", "12"),  # the same session as the row above
        ("z", "2025-03-01 00:00:00", "visit", None, None, None),  # an unknown customer: rejected
    ], columns=EVENTS.columns)], ignore_index=True).astype({"timestamp": "datetime64[ns]"})
    from_file, from_frame = _parquet_and_frame(messy, tmp_path, "reject")
    assert isinstance(from_file.events["event_type"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(from_file.events.astype(object), from_frame.events.astype(object))
    pd.testing.assert_frame_equal(from_file.rejects, from_frame.rejects)
    assert from_file.events["session_id"].dropna().unique().tolist() == ["s1", "s2", "12"]
    pd.testing.assert_frame_equal(build_features(from_file, AS_OF, FeatureConfig()),
                                  build_features(from_frame, AS_OF, FeatureConfig()))


@pytest.mark.parametrize(("column", "value", "reason"), [
    ("event_type", "  ", "are empty"),
    ("customer_id", "", "are empty"),
])
def test_bad_event_values_read_from_parquet_are_named_as_from_a_frame(tmp_path, column, value, reason):
    from churnguard.dataset import load_tables

    events = EVENTS.astype({"timestamp": "datetime64[ns]"})
    events.loc[3, column] = value
    events.to_parquet(tmp_path / "events.parquet", index=False)
    TX.to_csv(tmp_path / "tx.csv", index=False)
    with pytest.raises(DataError, match=rf"column '{column}': 1 row\(s\) {reason} \(rows 4\)") as from_file:
        load_tables(tmp_path / "tx.csv", config=DataConfig(), events=tmp_path / "events.parquet")
    with pytest.raises(DataError) as from_frame:
        validate_tables(pd.read_csv(tmp_path / "tx.csv", dtype=str), config=DataConfig(), events=events,
                        sources={"transactions": str(tmp_path / "tx.csv"), "events": str(tmp_path / "events.parquet")})
    assert str(from_file.value) == str(from_frame.value)


# -- reasons and signals ------------------------------------------------------------------------------------------


def test_engagement_reasons_read_as_plain_words():
    assert describe("sessions_trend_30d", 2 / 12, {"sessions_30d": 2}) == "visits fell from 12 to 2 a month"
    assert describe("sessions_trend_30d", 0.0, {"sessions_30d": 0}) == (
        "no visits in the last 30 days, after some in the 30 days before")
    assert describe("minutes_on_site_trend_90d", 0.5, {"minutes_on_site_90d": 30}) == (
        "time on site fell from 60 to 30 minutes in the last 90 days against the 90 before")
    assert describe("emails_since_last_open", 6) == "has not opened the last 6 emails"
    assert describe("emails_since_last_open", math.nan) == "no email sent so far"
    assert describe("visits_since_last_order", 12) == "12 visits without a purchase since their last order"
    assert describe("email_open_rate_90d", 0.2) == "opened 20% of the emails sent in the last 90 days"
    assert describe("events_cart_add_90d", 1) == "1 item added to the cart in the last 90 days"
    assert describe("channel_app_share_90d", 0.75) == "75% of their activity in the last 90 days in the app"
    assert describe("days_since_last_visit", 40) == "last visited 40 days ago"


def test_every_engagement_feature_has_a_phrase():
    for name in _features().columns.drop(["as_of"]):
        describe(name, 1.0, {})  # raises KeyError for a feature without one


def test_browsing_not_buying_and_gone_quiet_signals_pick_their_playbook_rules():
    cols = {"visits_since_last_order": np.array([5, 5, 1, np.nan, 0]),
            "recency_days": np.array([40, 10, 40, 40, 40]),
            "days_since_last_visit": np.array([2, 2, 2, np.nan, 45]),
            "emails_since_last_open": np.array([0, 0, 0, np.nan, np.nan])}
    flags = rules.signals(cols, 5, sla_hours=24, new_customer_days=90, lookback_days=365)
    assert flags["browsing_not_buying"].tolist() == [True, False, False, False, False]
    assert flags["gone_quiet"].tolist() == [False, False, False, False, True]  # no email data counts as unread
    playbook = load_playbook()
    stages = np.full(5, "at_risk", dtype=object)
    actions = rules.assign_actions(np.full(5, "medium", dtype=object), stages, np.full(5, "standard", dtype=object),
                                   {**flags, "bad_support": np.zeros(5, bool), "new_customer": np.zeros(5, bool),
                                    "lapsed": np.zeros(5, bool)}, playbook)
    assert actions.tolist() == ["browsing_reminder", "re_engagement", "re_engagement", "re_engagement",
                                "quiet_win_back"]


def test_without_events_the_new_signals_never_hold():
    flags = rules.signals({"recency_days": np.array([100.0])}, 1, sla_hours=24, new_customer_days=90,
                          lookback_days=365)
    assert not flags["browsing_not_buying"].any()
    assert not flags["gone_quiet"].any()


def test_the_configs_spell_out_the_engagement_defaults():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "train.yaml").features
    assert (cfg.engagement_windows_days, cfg.session_gap_minutes) == ((30, 90), 30.0)


# -- the report and the command line ----------------------------------------------------------------------------


def test_the_report_has_an_engagement_section_per_period(tmp_path):
    from churnguard.reporting.kpis import build_report, write_report

    report = build_report(validate_tables(TX, config=DataConfig(), events=EVENTS))
    e = report.engagement
    assert e.index.tolist() == ["2025-01", "2025-02", "2025-03"]  # the periods of the purchases
    assert e["active_visitors"].tolist() == [0, 1, 2]  # February: a (s1, s2); March: a and b
    assert e["visits"].tolist() == [0, 2, 3]
    assert e["minutes_on_site_per_visitor"].iloc[1:].tolist() == pytest.approx([20.0, (1799 + 120) / 60 / 2])
    assert e["emails_sent"].tolist() == [1, 1, 2]
    assert e["email_open_rate"].tolist() == [100.0, 0.0, 0.0]
    assert e["email_click_rate"].tolist() == [100.0, 0.0, 0.0]
    paths = write_report(report, tmp_path)
    assert "engagement" in paths
    assert "Engagement: visits, time on site and email" in paths["report"].read_text()
    assert build_report(validate_tables(TX, config=DataConfig())).engagement is None


def test_features_command_reads_events(tmp_path):
    from typer.testing import CliRunner

    from churnguard.cli import app

    TX.to_csv(tmp_path / "tx.csv", index=False)
    EVENTS.to_csv(tmp_path / "events.csv", index=False)
    out = tmp_path / "f.parquet"
    result = CliRunner().invoke(app, ["features", "-t", str(tmp_path / "tx.csv"), "--events",
                                      str(tmp_path / "events.csv"), "--as-of", AS_OF, "-o", str(out)])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(out).set_index("customer_id"), _features(), check_dtype=False)
    result = CliRunner().invoke(app, ["features", "-t", str(tmp_path / "tx.csv"), "--events",
                                      str(tmp_path / "missing.csv"), "--as-of", AS_OF, "-o", str(out)])
    assert result.exit_code == 2
    assert "events file not found" in result.output


def test_predict_requests_carry_events_checked_like_the_table():
    from pydantic import ValidationError

    from churnguard.serving.app import PredictRequest

    visit = {"timestamp": "2025-03-20T10:00:00+01:00", "event_type": "visit", "duration_seconds": 60,
             "channel": "web", "session_id": "s1"}
    req = PredictRequest.model_validate({"as_of": AS_OF, "customers": [
        {"customer_id": "a", "transactions": [{"timestamp": "2025-03-01T10:00:00", "amount": 20}],
         "events": [visit]}]})
    assert req.customers[0].events[0]["timestamp"] == datetime.fromisoformat("2025-03-20 09:00")  # naive UTC, as in the table
    for bad, field in (({"duration_seconds": -1}, "duration_seconds"), ({"event_type": ""}, "event_type"),
                       ({"kind": "visit"}, "kind")):
        with pytest.raises(ValidationError, match=field):
            PredictRequest.model_validate({"customers": [{"customer_id": "a", "events": [visit | bad]}]})


def test_score_records_uses_the_events_for_the_signals(trained):
    from churnguard.scoring.score import score_records

    model = trained["result"].model
    history = [{"timestamp": datetime.fromisoformat(t), "amount": 20.0} for t in ("2025-03-01 10:00", "2024-11-01 10:00")]
    browsing = [{"timestamp": datetime.fromisoformat(f"2025-03-{d} 20:00"), "event_type": "visit"} for d in (10, 15, 20, 25)]
    playbook = Playbook(actions=(
        ActionRule(name="remind", when=RuleCondition(signals=("browsing_not_buying",)), cost=1, success_rate=0.1),
        ActionRule(name="none", cost=0, success_rate=0)))
    a, b = score_records(model, [CustomerRecords("a", history, events=browsing), CustomerRecords("b", history)],
                         date.fromisoformat("2025-04-10"), playbook)
    assert a["churn_probability"] == b["churn_probability"]  # the model never saw events
    assert (a["action"], b["action"]) == ("remind", "none")


@pytest.mark.parametrize("as_of", ["2024-03-31", "2025-11-30"])
def test_demo_engagement_features_equal_a_plain_pandas_reference(as_of):
    from tests import reference_engagement

    demo = generate_demo_data(600, seed=4, events=True)
    tables = validate_tables(demo.transactions, customers=demo.customers, config=DataConfig(), events=demo.events)
    cfg = FeatureConfig()
    got = build_features(tables, as_of, cfg).set_index("customer_id")
    want = reference_engagement.engagement_features(tables.events, got["recency_days"], pd.Timestamp(as_of),
                                                    cfg.engagement_windows_days, cfg.session_gap_minutes)
    assert got["sessions_90d"].sum() > 100
    assert got["emails_since_last_open"].max() > 3
    pd.testing.assert_frame_equal(got[want.columns], want, check_exact=False, rtol=1e-9, check_names=False)


def test_the_demo_worlds_engagement_falls_before_customers_stop_buying():
    from churnguard.labels import make_labels

    demo = generate_demo_data(1500, seed=5, events=True)
    plain = generate_demo_data(1500, seed=5)
    assert plain.events is None
    pd.testing.assert_frame_equal(plain.transactions, demo.transactions)  # the events come from their own stream
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=DataConfig(), events=demo.events)
    day = pd.Timestamp("2025-03-31")
    f = build_features(tables, day, FeatureConfig()).set_index("customer_id")
    y = make_labels(tables.transactions, day, horizon_days=90, lookback_days=365).set_index("customer_id")["churned"]
    f, churned = f.loc[y.index], (y == 1).to_numpy()
    assert 0.1 < churned.mean() < 0.6
    for name in ("sessions_30d", "email_open_rate_90d"):  # lower among those about to stop buying
        assert f.loc[churned, name].mean() < 0.7 * f.loc[~churned, name].mean(), name


def test_events_grouped_in_pieces_and_ids_held_as_objects_give_the_same_features(monkeypatch):
    """The events' rows are put in order of their customers' blocks a piece of rows at a time (a stable
    counting sort): small pieces and blocks give that order and the features of one piece and one block;
    ids held as Python objects (encoded row by row, not by distinct value) give the same features too."""
    from dataclasses import replace

    from churnguard.features import build

    demo = generate_demo_data(300, seed=6, events=True)
    tables = validate_tables(demo.transactions, customers=demo.customers, config=DataConfig(), events=demo.events)
    want = build_features(tables, "2025-06-30", FeatureConfig())
    assert want["sessions_90d"].sum() > 50

    customer = np.random.default_rng(1).integers(0, 40, size=1000).astype(np.int32)
    ids = np.random.default_rng(2).permutation(40).astype(np.int32)
    monkeypatch.setattr(build, "_PIECE", 97)
    monkeypatch.setattr(build, "_EVENT_BLOCK", 8)
    block = ids[customer] // 8
    for few in (8, 4):  # 5 blocks: a pass per block, then a counting sort of each piece
        monkeypatch.setattr(build, "_FEW_EVENT_BLOCKS", few)
        order, bounds = build._event_blocks(customer, ids, 40)
        np.testing.assert_array_equal(order, np.argsort(block, kind="stable"))
        np.testing.assert_array_equal(bounds, np.concatenate([[0], np.cumsum(np.bincount(block, minlength=5))]))
    pd.testing.assert_frame_equal(build_features(tables, "2025-06-30", FeatureConfig()), want)

    as_objects = replace(tables, transactions=tables.transactions.astype({"customer_id": object}),
                         customers=tables.customers.astype({"customer_id": object}),
                         events=tables.events.astype({"customer_id": object}))
    got = build_features(as_objects, "2025-06-30", FeatureConfig())
    pd.testing.assert_frame_equal(got.astype({"customer_id": "str"}), want)


@pytest.mark.parametrize("time_bits", [0, 32, 64])
def test_sessions_sort_puts_rows_tied_in_the_packed_key_in_order_of_every_key(time_bits, monkeypatch):
    """Sessions are sorted by customer and time packed into 64 bits, the time coarsened to fit; rows whose
    packed keys tie (times a few nanoseconds apart, equal starts told apart by length) are then put in order
    of every key, as one sort by all of them would; so are the rows sorted by customer and time alone. The same
    whether the rows are numbered in the keys' low bits and the keys sorted as values (``_TIME_BITS`` 0: always
    where they fit, the time coarsened the more; 32: the default) or the keys argsorted (64: never)."""
    from churnguard.features import engagement
    from churnguard.features.engagement import _sorted

    monkeypatch.setattr(engagement, "_TIME_BITS", time_bits)

    rng = np.random.default_rng(7)
    start = np.datetime64("2024-01-01", "ns").astype(np.int64)
    for spread in (10, 10**3, 10**9, 3 * 365 * 86400 * 10**9):  # the last needs the time coarsened
        pos = rng.integers(0, 50, 5000)
        time = start + rng.integers(0, 40, 5000) * (spread // 40 or 1) + rng.integers(0, 3, 5000)
        length = rng.integers(0, 3, 5000).astype("float64")
        want = np.lexsort((length, time, pos))
        for kind in ("quicksort", "stable"):
            order, (p, t, s) = _sorted(pos, time, length, kind=kind)
            np.testing.assert_array_equal(np.sort(order), np.arange(5000))
            for got, key in ((p, pos), (t, time), (s, length)):
                np.testing.assert_array_equal(got, key[want])
    # by customer and time alone: the customers spread so that the time is coarsened to 4,096 ns; tied runs (times
    # 0-2 ns apart) put in order of time where they are not in it already, the customers read back from the keys
    pos = rng.integers(0, 50, 5000) << 12
    time = start + rng.integers(0, 40, 5000) * (3 * 365 * 86400 * 10**9 // 40) + rng.integers(0, 3, 5000)
    want = np.lexsort((time, pos))
    for kind in ("quicksort", "stable"):
        order, (p, t) = _sorted(pos, time, kind=kind)
        np.testing.assert_array_equal(np.sort(order), np.arange(5000))
        np.testing.assert_array_equal(p, pos[want])
        np.testing.assert_array_equal(t, time[want])
        np.testing.assert_array_equal(t, time[order])


def test_key_order_numbers_the_rows_in_the_keys_where_they_fit_else_argsorts():
    """The rows' order by a key, equal keys in row order, as a stable argsort gives it: with the row numbers in
    the keys' low bits (small keys) and by the argsort (keys too large to leave room for 13 bits of rows)."""
    from churnguard.features.engagement import _key_order

    rng = np.random.default_rng(11)
    for top in (2**8, 2**40, 2**50 + 1, 2**62):  # the last two leave fewer than 13 bits for 5,000 rows
        key = rng.integers(0, 40, 5000) * (top // 40)  # many equal keys: their rows must come in row order
        order, keys = _key_order(key)
        want = np.argsort(key, kind="stable")
        np.testing.assert_array_equal(order, want)
        np.testing.assert_array_equal(keys, key[want])
    order, keys = _key_order(np.zeros(0, dtype=np.int64))
    assert len(order) == 0
    assert len(keys) == 0
    order, keys = _key_order(np.array([5], dtype=np.int64))
    assert order.tolist() == [0]
    assert keys.tolist() == [5]


def test_per_run_reduces_each_run_as_reduceat_does():
    """A session's earliest time, oldest day and longest end, taken per run of rows by their run numbers, are
    reduceat's over the runs' starts: runs of one row and of many, at the first and the last row, with equal
    values, -0.0 and infinities."""
    from churnguard.features.engagement import _per_run, _run_numbers

    assert _run_numbers(np.array([0, 1, 4]), 6).tolist() == [0, 1, 1, 1, 2, 2]
    assert _run_numbers(np.array([0]), 3).tolist() == [0, 0, 0]
    rng = np.random.default_rng(5)
    for n in (1, 2, 7, 5000):
        starts = np.flatnonzero(np.concatenate([[True], rng.random(n - 1) < 0.45]))
        run = _run_numbers(starts, n)
        times = rng.integers(-(2**62), 2**62, n)
        ages = rng.choice([0.0, -0.0, 1.5, 7.0, 3e9, np.inf, -np.inf], n)
        got = _per_run(np.minimum, times, run, len(starts), np.iinfo(np.int64).max)
        np.testing.assert_array_equal(got, np.minimum.reduceat(times, starts))
        got = _per_run(np.maximum, ages, run, len(starts), -np.inf)
        want = np.maximum.reduceat(ages, starts)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))


def test_the_latest_time_per_customer_by_groups_as_by_a_scatter():
    """Each customer's latest email open, worked out by hand for a few rows; the same on the path of more than
    2**16 customers (``np.maximum.at``) and on a block's (a radix sort of the positions, then the groups)."""
    from churnguard.features.engagement import _latest

    none = np.iinfo(np.int64).min
    pos, time = np.array([2, 0, 2, 2, 0]), np.array([5, -3, 9, 7, -1], dtype=np.int64)
    np.testing.assert_array_equal(_latest(4, pos, time), [-1, none, 9, none])
    np.testing.assert_array_equal(_latest(4, pos[:0], time[:0]), [none] * 4)
    rng = np.random.default_rng(3)
    pos, time = rng.integers(0, 2**16 + 5, 20_000), rng.integers(-(10**15), 10**15, 20_000)
    want = np.full(2**16 + 5, none)
    np.maximum.at(want, pos, time)
    np.testing.assert_array_equal(_latest(2**16 + 5, pos, time), want)
    small = pos < 2**16
    np.testing.assert_array_equal(_latest(2**16, pos[small], time[small]), want[: 2**16])
