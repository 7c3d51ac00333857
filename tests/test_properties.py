"""Property tests: invariants of the feature and label functions on random histories."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnguard.config import load_config
from churnguard.dataset import validate_tables
from churnguard.features import build_features
from churnguard.labels import make_labels

CFG = load_config()
AS_OF = pd.Timestamp("2024-06-30")
START = pd.Timestamp("2022-01-01")

_event = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(0, (AS_OF - START).days * 24 - 1),  # hours after START, up to the end of as_of
    st.floats(-50, 500, allow_nan=False).map(lambda x: round(x, 2)).filter(lambda x: x != 0),
)
_ticket = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(0, (AS_OF - START).days * 24 + 24 * 60),
    st.one_of(st.none(), st.integers(0, 24 * 20)),
    st.one_of(st.none(), st.integers(1, 5)),
)


def _tables(events, tickets, extra=()):
    """Tables from generated rows; tickets are kept for customers with a transaction in ``events``."""
    known = {e[0] for e in events}
    tx = pd.DataFrame([*events, *extra], columns=["customer_id", "hours", "amount"])
    tx["timestamp"] = START + pd.to_timedelta(tx.pop("hours"), unit="h")
    tk = pd.DataFrame(tickets, columns=["customer_id", "hours", "reply", "csat"])
    tk["opened_at"] = START + pd.to_timedelta(tk.pop("hours"), unit="h")
    tk["first_response_at"] = tk["opened_at"] + pd.to_timedelta(tk.pop("reply"), unit="h")
    tk["resolved_at"] = tk["first_response_at"] + pd.Timedelta(hours=5)
    tk["csat"] = tk["csat"].astype("float64")
    tk = tk[tk["customer_id"].isin(known)]
    return validate_tables(tx, tk if len(tk) else None, config=CFG.data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(_event, min_size=1, max_size=40),
    st.lists(_ticket, max_size=10),
    st.lists(_event.map(lambda e: (e[0], e[1] + 24 * 400, e[2])), min_size=1, max_size=20),
)
def test_events_after_as_of_change_no_feature(events, tickets, later):
    base = _tables(events, tickets)
    # later events: every one lands after the end of as_of (START + 400 days + up to as_of span).
    later = [e for e in later if START + pd.Timedelta(hours=e[1]) >= AS_OF + pd.Timedelta(days=1)]
    extended = _tables(events, tickets, extra=later)
    f1 = build_features(base, AS_OF, CFG.features)
    f2 = build_features(extended, AS_OF, CFG.features)
    pd.testing.assert_frame_equal(f1, f2)


@settings(max_examples=40, deadline=None)
@given(st.lists(_event, min_size=1, max_size=40), st.lists(_ticket, max_size=10), st.randoms())
def test_shuffling_rows_changes_nothing_and_one_row_per_customer(events, tickets, rnd):
    f1 = build_features(_tables(events, tickets), AS_OF, CFG.features)
    shuffled_e, shuffled_t = events[:], tickets[:]
    rnd.shuffle(shuffled_e)
    rnd.shuffle(shuffled_t)
    f2 = build_features(_tables(shuffled_e, shuffled_t), AS_OF, CFG.features)
    pd.testing.assert_frame_equal(f1, f2, check_exact=False, rtol=1e-9)
    assert f1["customer_id"].is_unique
    assert set(f1["customer_id"]) == {e[0] for e in events}


@settings(max_examples=40, deadline=None)
@given(st.lists(_event, min_size=1, max_size=40), st.integers(1, 200))
def test_labels_cover_exactly_the_recent_buyers(events, horizon):
    t = _tables(events, [])
    y = make_labels(t.transactions, AS_OF, horizon_days=horizon, lookback_days=365)
    tx = t.transactions
    day = tx["timestamp"].dt.normalize()
    recent = set(tx.loc[(tx["amount"] > 0) & (day > AS_OF - pd.Timedelta(days=365)) & (day <= AS_OF), "customer_id"])
    assert set(y["customer_id"]) == recent
    assert y["churned"].isin([0, 1]).all()


_activity = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(0, 200 * 24 * 60 - 1),  # minutes after AS_OF - 199 days, up to the end of as_of
    st.sampled_from(["visit", "page_view", "app_session", "cart_add", "email_sent", "email_open", "email_click",
                     "wishlist"]),
    st.one_of(st.none(), st.integers(0, 3600)),
    st.sampled_from([None, "web", "app", "email", "store", "kiosk"]),
    st.sampled_from([None, None, "s1", "s2"]),
)
_FIRST_ACTIVITY = AS_OF - pd.Timedelta(days=199)


def _with_activity(events, activity, later=()):
    """Tables of purchases ``events`` and an events table of ``activity`` (and ``later``, minutes after the end
    of as_of) for the customers who bought."""
    known = {e[0] for e in events}
    rows = [(events[0][0], _FIRST_ACTIVITY, "email_sent", None, "email", None)]  # never an empty table
    rows += [(c, _FIRST_ACTIVITY + pd.Timedelta(minutes=m), *rest) for c, m, *rest in activity]
    rows += [(c, AS_OF + pd.Timedelta(days=1, minutes=m), *rest) for c, m, *rest in later]
    ev = pd.DataFrame(rows, columns=["customer_id", "timestamp", "event_type", "duration_seconds", "channel",
                                     "session_id"])
    ev = ev[ev["customer_id"].isin(known)]
    tx = _tables(events, []).transactions
    return validate_tables(tx, config=CFG.data, events=ev)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, min_size=1, max_size=20), st.lists(_activity, max_size=60),
       st.lists(_activity, min_size=1, max_size=20))
def test_events_after_as_of_change_no_engagement_feature(events, activity, later):
    """Later visits, even of a session that began before the cut-off (same session id, or minutes after its
    last event), change nothing as of ``as_of``."""
    f1 = build_features(_with_activity(events, activity), AS_OF, CFG.features)
    f2 = build_features(_with_activity(events, activity, later), AS_OF, CFG.features)
    pd.testing.assert_frame_equal(f1, f2)
    assert "sessions_30d" in f1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, min_size=1, max_size=20), st.lists(_activity, max_size=60), st.randoms())
def test_shuffling_events_changes_no_engagement_feature(events, activity, rnd):
    shuffled = activity[:]
    rnd.shuffle(shuffled)
    f1 = build_features(_with_activity(events, activity), AS_OF, CFG.features)
    f2 = build_features(_with_activity(events, shuffled), AS_OF, CFG.features)
    pd.testing.assert_frame_equal(f1, f2)
