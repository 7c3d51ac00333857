"""Reasons in plain words: the features that push a customer's risk up most, and one sentence for each.

:func:`describe` writes the sentence for one feature value; :func:`top_features` picks the features from the
model's TreeSHAP contributions; :func:`reason_texts` writes the texts for many customers, calling
:func:`describe` once per distinct value; :func:`unscored_texts` says why a customer outside the model's
population has no probability.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = ["N_REASONS", "REASON_TEMPLATES", "UNKNOWN_TEXTS", "describe", "reason_texts", "top_features",
           "unknown_text", "unscored_text", "unscored_texts"]

N_REASONS = 3
OVERDUE_REMARK = 1.5  # "about 3.1x their usual gap" is added to the recency reason from this ratio on

# Plain words for each feature: (text before the value, digits or "%", text after the value).
REASON_TEMPLATES: dict[str, tuple[str, int | str, str]] = {
    "recency_days": ("no purchase for ", 0, " days"),
    "overdue_ratio": ("next purchase overdue: ", 1, "x their usual gap"),
    "gap_mean_days": ("usually buys only every ", 0, " days"),
    "gap_std_days": ("irregular buying rhythm (gaps vary by ", 0, " days)"),
    "open_tickets": ("", 0, " support ticket(s) still open"),
    "csat_latest": ("last CSAT ", 0, "/5"),
    "csat_min": ("lowest CSAT ", 0, "/5"),
    "csat_mean": ("average CSAT ", 1, "/5"),
    "slow_response_share": ("", "%", " of tickets answered slower than the SLA"),
    "first_response_hours_latest": ("last ticket waited ", 0, " h for a first answer"),
    "first_response_hours_max": ("a ticket waited ", 0, " h for a first answer"),
    "first_response_hours_mean": ("tickets wait ", 0, " h for a first answer on average"),
    "resolution_hours_latest": ("last ticket took ", 0, " h to resolve"),
    "resolution_hours_max": ("a ticket took ", 0, " h to resolve"),
    "resolution_hours_mean": ("tickets take ", 0, " h to resolve on average"),
    "days_since_last_ticket": ("contacted support ", 0, " days ago"),
    "tickets_per_order": ("", 2, " support tickets per order"),
    "trend_orders": ("orders in the last 90 days at ", "%", " of the 90 days before"),
    "trend_spend": ("spend in the last 90 days at ", "%", " of the 90 days before"),
    "bg_p_alive": ("buying pattern gives only ", "%", " chance they are still active"),
    "bg_expected_purchases": ("expected purchases in the coming period: ", 1, ""),
    "n_orders": ("only ", 0, " order(s) so far"),
    "n_purchase_days": ("bought on only ", 0, " day(s) so far"),
    "tenure_days": ("customer for only ", 0, " days"),
    "refund_share": ("", "%", " of spend refunded"),
    "nps": ("NPS answer ", 0, "/10"),
}
# What an unknown (missing) value of a feature means, in words; other features say "<name> unknown".
UNKNOWN_TEXTS: dict[str, str] = {
    "gap_mean_days": "too few purchases yet to know their buying rhythm",
    "gap_std_days": "too few purchases yet to know their buying rhythm",
    "overdue_ratio": "too few purchases yet to know their buying rhythm",
    "trend_orders": "no orders in the 90 days before the last 90",
    "trend_spend": "no spend in the 90 days before the last 90",
    "csat_latest": "no CSAT answer yet",
    "csat_min": "no CSAT answer yet",
    "csat_mean": "no CSAT answer yet",
    "first_response_hours_latest": "no support ticket answered yet",
    "first_response_hours_max": "no support ticket answered yet",
    "first_response_hours_mean": "no support ticket answered yet",
    "resolution_hours_latest": "no support ticket resolved yet",
    "resolution_hours_max": "no support ticket resolved yet",
    "resolution_hours_mean": "no support ticket resolved yet",
    "days_since_last_ticket": "no support ticket so far",
    "nps": "no NPS answer",
    "days_since_signup": "signup date unknown",
}


def unknown_text(feature: str) -> str:
    """The reason text for a feature whose value is unknown."""
    return UNKNOWN_TEXTS.get(feature, feature.replace("_", " ") + " unknown")


_SCALES = tuple(10.0**k for k in range(9))


def _fixed(value: float, digits: int) -> str:
    """The value rounded as numpy rounds (``rint(value * 10**digits) / 10**digits``: halves to even), in
    fixed-point text; plain Python floats, a fraction of the cost of a numpy call per value."""
    scaled = value * _SCALES[digits]
    if math.isfinite(scaled):
        scaled = math.copysign(float(round(scaled)), scaled)  # round() of a float: half to even, like rint
    return f"{scaled / _SCALES[digits] if digits else scaled:.{digits}f}"


def overdue_remark(overdue: float) -> str:
    """What the recency sentence adds when the customer is well past their usual gap between purchases."""
    return f", about {_fixed(overdue, 1)}x their usual gap" if overdue >= OVERDUE_REMARK else ""


def describe(feature: str, value: float | str | None, overdue: float = float("nan")) -> str:
    """The sentence for one feature value.

    Args:
        feature: the feature's name.
        value: its value: a number (NaN when unknown), or a category label (None when unknown).
        overdue: the customer's ``overdue_ratio``, remarked on in the recency sentence when high.
    """
    label = feature.replace("_", " ")
    if value is None or isinstance(value, str):
        return f"{label} = {'unknown' if value is None else value}"
    if np.isnan(value):
        return unknown_text(feature)
    if feature == "loyalty_member":
        return "loyalty member" if value == 1 else "not a loyalty member"
    if feature in REASON_TEMPLATES:
        before, digits, after = REASON_TEMPLATES[feature]
        shown = _fixed(value * 100, 0) + "%" if digits == "%" else _fixed(value, digits)
        return before + shown + after + (overdue_remark(overdue) if feature == "recency_days" else "")
    if feature.startswith(("orders_", "spend_", "tickets_")) and feature.endswith("d"):
        kind, days = feature.rsplit("_", 1)
        return f"{kind} in the last {days[:-1]} days: {_fixed(value, 0)}"
    return f"{label} = {value:.3g}"


def top_features(contrib: np.ndarray, n: int = N_REASONS) -> np.ndarray:
    """Per row, the columns of the ``n`` largest positive contributions, largest first (ties to the lower
    column), -1 where fewer than ``n`` contributions are positive: the first ``n`` of a stable descending sort,
    found with ``n`` passes of ``argmax`` instead of sorting."""
    rest = np.array(contrib, dtype="float64", order="C")  # a copy: the chosen values are knocked out below
    out = np.full((len(rest), n), -1, dtype=np.intp)
    rows = np.arange(len(rest))
    for k in range(min(n, rest.shape[1])):
        idx = rest.argmax(axis=1)
        out[:, k] = np.where(rest[rows, idx] > 0, idx, -1)
        rest[rows, idx] = -np.inf
    return out


def reason_texts(picks: np.ndarray, names: list[str], cols: Mapping[str, np.ndarray],
                 levels: Mapping[str, tuple[str, ...]]) -> np.ndarray:
    """The sentences for picked features: ``picks`` holds column indices into ``names`` (-1: no reason, an
    empty text), ``cols`` the customers' feature values (categoricals as codes into ``levels``). Each distinct
    (value, overdue ratio) of a feature is described once and copied to every customer that has it."""
    out = np.full(picks.shape, "", dtype=object)
    flat, texts = picks.ravel(), out.ravel()
    rows = np.arange(picks.size) // max(picks.shape[1], 1) if picks.ndim == 2 else np.arange(picks.size)
    overdue = cols.get("overdue_ratio")
    for f in np.unique(flat[flat >= 0]).tolist():
        at = np.flatnonzero(flat == f)
        name, who = names[f], rows[at]
        if name not in cols:  # e.g. a support feature when no tickets were given
            texts[at] = unknown_text(name)
            continue
        values = np.asarray(cols[name])[who]
        if name in levels:
            labels = np.array([*levels[name], None], dtype=object)
            values = labels[np.where(values >= 0, values, len(levels[name]))]
        extra = overdue[who] if name == "recency_days" and overdue is not None else np.full(len(who), np.nan)
        texts[at] = _each_distinct(name, values, np.asarray(extra, dtype="float64"))
    return out


def _each_distinct(name: str, values: np.ndarray, overdue: np.ndarray) -> np.ndarray:
    """:func:`describe` of every value, written once per distinct value (bit for bit: ``-0.0`` and each NaN
    stay apart); the recency sentence's remark is written once per distinct overdue ratio and appended."""
    if len(values) <= 16:  # a few customers (a request): one call each costs less than finding the distinct ones
        return np.array([describe(name, v, o) for v, o in zip(values.tolist(), overdue.tolist(), strict=True)],
                        dtype=object)
    if values.dtype == object:  # category labels, None when unknown
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        return np.array([describe(name, None if pd.isna(u) else u) for u in uniques], dtype=object)[codes]
    texts = _mapped(values.astype("float64"), lambda v: describe(name, v))
    if name == "recency_days":
        remark = _mapped(overdue, overdue_remark)
        known = ~np.isnan(values.astype("float64"))
        texts[known] = texts[known] + remark[known]
    return texts


def _mapped(values: np.ndarray, write) -> np.ndarray:
    """``write`` of each float value, called once per distinct value (by its bits)."""
    _, first, codes = np.unique(values.view(np.int64), return_index=True, return_inverse=True)
    return np.array([write(v) for v in values[first].tolist()], dtype=object)[codes.ravel()]


def unscored_text(stage: str, recency_days: float, lookback_days: int) -> str:
    """Why a customer of lifecycle ``stage`` ``lost`` or ``never_bought`` has no churn probability."""
    if stage == "never_bought":
        return "no churn probability: no purchase yet"
    return (f"no churn probability: last purchase {_fixed(recency_days, 0)} days ago, and the model scores "
            f"customers who bought in the last {lookback_days} days")


def unscored_texts(stage: np.ndarray, recency_days: np.ndarray, lookback_days: int) -> np.ndarray:
    """:func:`unscored_text` for the customers whose ``stage`` is ``lost`` or ``never_bought``, '' for the
    others; written once per distinct number of days."""
    stage = np.asarray(stage, dtype=object)
    out = np.full(len(stage), "", dtype=object)
    out[stage == "never_bought"] = unscored_text("never_bought", math.nan, lookback_days)
    lost = stage == "lost"
    if lost.any():
        days = np.asarray(recency_days, dtype="float64")[lost]
        out[lost] = _mapped(days, lambda d: unscored_text("lost", d, lookback_days))
    return out
