"""A plain pandas implementation of the engagement features (``churnguard.features.engagement``), written
independently of the kernel's integer arrays: sessions by sorting and grouping each customer's rows, every
feature by a groupby. The oracle of ``tests/test_events.py``. Not part of the package."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnguard.features.engagement import CHANNELS, EMAIL_TYPES, EVENT_TYPES

_DAY = pd.Timedelta(days=1)


def _sessions(site: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    """One row per session: customer, age of its first day, seconds from its first event to its last end."""
    site = site.sort_values(["customer_id", "timestamp"])
    loose = site[site["session_id"].isna()].copy()
    gap = loose.groupby("customer_id")["timestamp"].diff()
    loose["session"] = "gap-" + (gap.isna() | (gap >= pd.Timedelta(minutes=gap_minutes))).cumsum().astype(str)
    tied = site[site["session_id"].notna()].assign(session=lambda d: "id-" + d["session_id"].astype(str))
    rows = pd.concat([loose, tied])
    rows["end"] = rows["timestamp"] + pd.to_timedelta(rows["duration_seconds"].fillna(0), unit="s")
    per = rows.groupby(["customer_id", "session"]).agg(start=("timestamp", "min"), end=("end", "max"),
                                                       age=("age", "max"))
    per["seconds"] = (per["end"] - per["start"]) / pd.Timedelta(seconds=1)
    return per.reset_index()


def engagement_features(events: pd.DataFrame, recency_days: pd.Series, as_of: pd.Timestamp, windows: tuple[int, ...],
                        gap_minutes: float) -> pd.DataFrame:
    """The engagement features of the customers in ``recency_days`` (their index; NaN: no purchase)."""
    ids = recency_days.index
    ev = events[(events["timestamp"] < as_of + _DAY) & events["customer_id"].isin(ids)].copy()
    ev["age"] = (as_of - ev["timestamp"].dt.normalize()) / _DAY
    for column in ("duration_seconds", "channel", "session_id"):
        if column not in ev:
            ev[column] = np.nan
    s = _sessions(ev[~ev["event_type"].isin(EMAIL_TYPES)], gap_minutes)
    out = pd.DataFrame(index=ids)

    def per_customer(frame: pd.DataFrame, how: str = "size", column: str = "age") -> pd.Series:
        grouped = frame.groupby("customer_id")
        values = grouped.size() if how == "size" else grouped[column].agg(how)
        return values.reindex(ids, fill_value=0 if how in ("size", "sum") else np.nan).astype("float64")

    out["days_since_last_visit"] = per_customer(s, "min")
    for w in windows:
        last, before = s[s["age"] < w], s[(s["age"] >= w) & (s["age"] < 2 * w)]
        out[f"sessions_{w}d"] = per_customer(last)
        out[f"minutes_on_site_{w}d"] = per_customer(last, "sum", "seconds") / 60
        out[f"sessions_trend_{w}d"] = out[f"sessions_{w}d"] / per_customer(before).replace(0, np.nan)
        out[f"minutes_on_site_trend_{w}d"] = out[f"minutes_on_site_{w}d"] / (
            per_customer(before, "sum", "seconds") / 60).replace(0, np.nan)
    since = recency_days.reindex(s["customer_id"]).fillna(np.inf).to_numpy()
    out["visits_since_last_order"] = per_customer(s[s["age"].to_numpy() < since])
    w = max(windows)
    recent = ev[ev["age"] < w]
    for kind in EVENT_TYPES:
        out[f"events_{kind}_{w}d"] = per_customer(recent[recent["event_type"] == kind])
    sent = per_customer(recent[recent["event_type"] == "email_sent"]).replace(0, np.nan)
    out[f"email_open_rate_{w}d"] = (per_customer(recent[recent["event_type"] == "email_open"]) / sent).clip(upper=1)
    out[f"email_click_rate_{w}d"] = (per_customer(recent[recent["event_type"] == "email_click"]) / sent).clip(upper=1)
    last_open = ev[ev["event_type"] == "email_open"].groupby("customer_id")["timestamp"].max()
    sends = ev[ev["event_type"] == "email_sent"]
    unread = sends[sends["timestamp"] > sends["customer_id"].map(last_open).fillna(pd.Timestamp.min)]
    out["emails_since_last_open"] = per_customer(unread).where(per_customer(sends) > 0)
    channel = recent["channel"].str.strip().str.lower()
    known = per_customer(recent[channel.notna()]).replace(0, np.nan)
    for c in CHANNELS:
        out[f"channel_{c}_share_{w}d"] = per_customer(recent[channel == c]) / known
    return out
