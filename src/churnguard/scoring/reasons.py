"""Reasons in plain words: what pushes a customer's risk up most, as sentences a store manager reads.

Every feature the kernel (``churnguard.features.kernel``) can produce has one :class:`Phrase` here
(:func:`phrase_for`): its sentence with units and rounding, its sentence for an unknown value, the other
features of the same customer it quotes, and its topic. :func:`pick_reasons` chooses, per customer, the
features with the largest positive TreeSHAP contributions, leaving out what carries no information (the
calendar month, and a value that most customers of the model's population share, such as no loyalty points)
and keeping one feature per topic, so three reasons say three different things. :func:`reason_texts` writes
the sentences, once per distinct value. The batch engines and the HTTP server all reach these through
``churnguard.scoring.score.score_columns``.
"""

from __future__ import annotations

import calendar
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from churnguard._text import plural

__all__ = [
    "COMMON_SHARE",
    "NEVER_REASONS",
    "N_REASONS",
    "Phrase",
    "Wording",
    "beyond_support_text",
    "common_values",
    "describe",
    "format_days",
    "format_duration",
    "format_hours",
    "format_money",
    "format_number",
    "format_share",
    "format_times",
    "phrase_for",
    "pick_reasons",
    "reason_texts",
    "set_aside_text",
    "set_aside_texts",
    "top_features",
    "uninformative",
    "unscored_text",
    "unscored_texts",
    "with_beyond_support",
]

N_REASONS = 3
CANDIDATES = 10  # contributions looked at per customer to find N_REASONS features of different topics
OVERDUE_REMARK = 1.5  # "about 3x their usual gap" is added to the recency reason from this ratio on
COMMON_SHARE = 0.5  # a value at least this share of the model's population has is no reason
NEVER_REASONS = frozenset({"as_of_month"})  # the calendar month: the same for every customer scored together


# -- numbers in words -----------------------------------------------------------------------------------------


def format_number(value: float) -> str:
    """A plain number: whole numbers with thousands separators, others to 3 significant digits, never in
    scientific notation (``1234.5 -> "1,234"``, ``2.345 -> "2.3"``, ``0.0123 -> "0.012"``)."""
    size = abs(value)
    if float(value).is_integer() or size >= 100:
        return f"{value:,.0f}"
    if size >= 1:
        return f"{value:,.1f}"
    return f"{value:.{min(max(2, 1 - math.floor(math.log10(size)) + 1), 8)}f}" if size else "0"


def format_money(value: float) -> str:
    """An amount: from 1,000 on to 3 significant digits (``4437.1 -> "4,440"``), whole from 10 on, in cents
    below (``4.5 -> "4.50"``). No currency sign: the data does not say which."""
    size = abs(value)
    if size >= 1000:
        return f"{round(value, 2 - math.floor(math.log10(size))):,.0f}"
    if size >= 10 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def format_days(days: float) -> str:
    """Whole days: ``"1 day"``, ``"140 days"``, ``"1,040 days"``."""
    return plural(days, "day")


def format_duration(days: float) -> str:
    """A span: in days below a year, in years to one decimal from a year on (``1370 -> "3.8 years"``)."""
    if days < 365:
        return format_days(days)
    years = f"{days / 365.25:.1f}"
    return "1 year" if years == "1.0" else f"{years} years"


def format_hours(hours: float) -> str:
    """Whole hours below two days (``"30 hours"``; ``"less than an hour"``), days to one decimal from then on
    (``"3.5 days"``)."""
    if hours < 0.5:
        return "less than an hour"
    if hours < 47.5:
        return plural(hours, "hour")
    return f"{hours / 24:.1f} days"


def format_share(share: float) -> str:
    """A share as a whole percentage (``0.6 -> "60%"``); ``"less than 1%"`` for a small one above 0."""
    if 0 < share < 0.005:
        return "less than 1%"
    return f"{share * 100:.0f}%"


def format_times(ratio: float) -> str:
    """A ratio: ``"3x"`` from 3 on, to one decimal below (``"1.8x"``)."""
    return f"{ratio:.0f}x" if ratio >= 2.95 else f"{ratio:.1f}x"


# -- one phrase per feature -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wording:
    """The settings the sentences quote: the trend window, the outcome horizon and the support SLA."""

    trend_days: int = 90
    horizon_days: int = 90
    sla_hours: float = 24.0


@dataclass(frozen=True)
class Phrase:
    """How one feature reads.

    ``write(wording, value, *context)`` is the sentence for a known value (a number, or a category's label),
    ``context`` the other features of the same customer it quotes (NaN when unknown); ``unknown`` the sentence
    when the value is unknown (``{trend_days}``, ``{horizon_days}`` and ``{sla_hours}`` are filled in). Of the
    features of one ``topic``, a customer's reasons name only the strongest.
    """

    topic: str
    write: Callable[..., str]
    unknown: str
    context: tuple[str, ...] = ()


def _change(ratio: float, what: str, days: int) -> str:
    """How a quantity of the last ``days`` days compares with the ``days`` before: ``ratio`` is last / before."""
    if ratio == 0:
        return f"no {what} in the last {days} days, after some in the {days} days before"
    if round(ratio, 2) == 1:
        return f"{what} in the last {days} days as in the {days} days before"
    direction = "down" if ratio < 1 else "up"
    return f"{what} {direction} {format_share(abs(1 - ratio))} in the last {days} days on the {days} days before"


def _recency(w: Wording, days: float, overdue: float) -> str:
    remark = f", about {format_times(overdue)} their usual gap" if overdue >= OVERDUE_REMARK else ""
    return f"no purchase for {format_days(days)}{remark}"


def _overdue(w: Wording, ratio: float, days: float, gap: float) -> str:
    if ratio >= 1:
        return f"no purchase for {format_days(days)}, about {format_times(ratio)} their usual gap"
    return f"last purchase {format_days(days)} ago; they usually buy every {format_days(gap)}"


def _net_spend(w: Wording, spent: float, trend: float) -> str:
    text = f"spent {format_money(spent)} in total"
    if math.isnan(trend) or abs(trend - 1) < 0.1:
        return text
    if trend == 0:
        return f"{text}, nothing in the last {w.trend_days} days"
    direction = "down" if trend < 1 else "up"
    return f"{text}, {direction} {format_share(abs(1 - trend))} in the last {w.trend_days} days on the {w.trend_days} before"


def _expected(w: Wording, purchases: float) -> str:
    if purchases < 0.05:
        return f"their buying pattern points to almost no purchase in the next {w.horizon_days} days"
    shown = f"{purchases:.1f}" if purchases < 9.95 else f"{purchases:.0f}"
    noun = "purchase" if shown == "1.0" else "purchases"
    return f"their buying pattern points to about {shown.removesuffix('.0')} {noun} in the next {w.horizon_days} days"


def _per_order(w: Wording, ratio: float) -> str:
    if ratio == 0:
        return "no support ticket so far"
    if ratio >= 1:
        return f"{format_number(round(ratio, 1))} support tickets per order"
    every = 1 / ratio
    return f"a support ticket for every {format_number(round(every) if abs(every - round(every)) < 0.05 else round(every, 1))} orders"


def _count(one: str, none: str, many: str | None = None, after: str = "") -> Callable[..., str]:
    """A count: ``none`` for 0, else ``"3 <many><after>"``."""
    return lambda w, v: none if v == 0 else f"{plural(v, one, many)}{after}"


def _hours(before: str, after: str) -> Callable[..., str]:
    return lambda w, v: f"{before}{format_hours(v)}{after}"


_NPS_GROUPS = {"detractor": "would not recommend us (NPS detractor: 0-6 out of 10)",
               "passive": "lukewarm about recommending us (NPS passive: 7-8 out of 10)",
               "promoter": "would recommend us (NPS promoter: 9-10 out of 10)"}
_NO_RHYTHM = "too few purchases yet to know their buying rhythm"
_NO_NPS = "no answer to 'would you recommend us?' (NPS)"
_NO_CSAT = "no satisfaction rating yet"
_NO_EVENTS = "no engagement data"

PHRASES: dict[str, Phrase] = {
    # recent activity
    "recency_days": Phrase("recent", _recency, "no purchase yet", ("overdue_ratio",)),
    "overdue_ratio": Phrase("recent", _overdue, _NO_RHYTHM, ("recency_days", "gap_mean_days")),
    "trend_orders": Phrase("recent", lambda w, v: _change(v, "orders", w.trend_days),
                           "no order in the {trend_days} days before the last {trend_days}"),
    "trend_spend": Phrase("recent", lambda w, v: _change(v, "spend", w.trend_days),
                          "no spend in the {trend_days} days before the last {trend_days}"),
    # buying rhythm and history
    "gap_mean_days": Phrase("rhythm", lambda w, v: f"buys about every {format_days(v)}", _NO_RHYTHM),
    "gap_std_days": Phrase("rhythm", lambda w, v: f"irregular buying: gaps between purchases vary by about "
                           f"{format_days(v)}", _NO_RHYTHM),
    "n_orders": Phrase("history", _count("order", "no order yet", after=" so far"), "no order yet"),
    "n_purchase_days": Phrase("history", lambda w, v: "bought on a single day so far" if v == 1 else
                              "no purchase yet" if v == 0 else f"bought on {format_days(v)} so far", "no purchase yet"),
    "bg_frequency": Phrase("history", _count("more day", "never came back after their first purchase day",
                                             after=" of buying after their first"), "no purchase yet"),
    "bg_recency_days": Phrase("history", lambda w, v: "all purchases on a single day" if v == 0 else
                              f"{format_duration(v)} between first and last purchase", "no purchase yet"),
    # spend and value
    "gross_spend": Phrase("spend", lambda w, v: f"spent {format_money(v)} in total before refunds", "no purchase yet"),
    "net_spend": Phrase("spend", _net_spend, "no purchase yet", ("trend_spend",)),
    "mean_order_value": Phrase("spend", lambda w, v: f"average order {format_money(v)}", "no order yet"),
    "max_order_value": Phrase("spend", lambda w, v: f"largest order {format_money(v)}", "no order yet"),
    "cltv": Phrase("spend", lambda w, v: f"expected lifetime value about {format_money(v)}", "lifetime value unknown"),
    "refund_count": Phrase("refunds", _count("refund", "no refund so far", after=" so far"), "no refund so far"),
    "refund_share": Phrase("refunds", lambda w, v: f"{format_share(v)} of what they spent was refunded",
                           "no purchase yet"),
    # outlook from the BG/NBD buying model
    "bg_expected_purchases": Phrase("outlook", _expected, "no purchase yet"),
    "bg_p_alive": Phrase("outlook", lambda w, v: f"their buying pattern gives a {format_share(v)} chance they are "
                         "still an active customer", "no purchase yet"),
    # how long they have been a customer
    "tenure_days": Phrase("tenure", lambda w, v: f"customer for {format_duration(v)}", "no purchase or signup yet"),
    "days_since_signup": Phrase("tenure", lambda w, v: f"signed up {format_duration(v)} ago", "signup date unknown"),
    "bg_age_days": Phrase("tenure", lambda w, v: f"first purchase {format_duration(v)} ago", "no purchase yet"),
    # support
    "open_tickets": Phrase("open tickets", _count("support ticket", "no support ticket open",
                                                  after=" still open"), "no support ticket data"),
    "tickets_total": Phrase("tickets", _count("support ticket", "no support ticket so far", after=" so far"),
                            "no support ticket data"),
    "days_since_last_ticket": Phrase("tickets", lambda w, v: f"contacted support {format_days(v)} ago",
                                     "no support ticket so far"),
    "tickets_per_order": Phrase("tickets", _per_order, "support tickets but no order yet"),
    "first_response_hours_mean": Phrase("response", _hours("their tickets waited ", " on average for a first answer"),
                                        "no support ticket answered yet"),
    "first_response_hours_max": Phrase("response", _hours("a ticket of theirs waited ", " for a first answer"),
                                       "no support ticket answered yet"),
    "first_response_hours_latest": Phrase("response", _hours("their last ticket waited ", " for a first answer"),
                                          "no support ticket answered yet"),
    "slow_response_share": Phrase("response", lambda w, v: f"{format_share(v)} of their tickets answered slower than "
                                  f"the {format_number(w.sla_hours)}-hour target", "no support ticket so far"),
    "resolution_hours_mean": Phrase("resolution", _hours("their tickets took ", " on average to resolve"),
                                    "no support ticket resolved yet"),
    "resolution_hours_max": Phrase("resolution", _hours("a ticket of theirs took ", " to resolve"),
                                   "no support ticket resolved yet"),
    "resolution_hours_latest": Phrase("resolution", _hours("their last ticket took ", " to resolve"),
                                      "no support ticket resolved yet"),
    "csat_latest": Phrase("satisfaction", lambda w, v: f"last satisfaction rating {v:.0f} out of 5", _NO_CSAT),
    "csat_min": Phrase("satisfaction", lambda w, v: f"lowest satisfaction rating {v:.0f} out of 5", _NO_CSAT),
    "csat_mean": Phrase("satisfaction", lambda w, v: f"average satisfaction rating {v:.1f} out of 5", _NO_CSAT),
    # customer attributes
    "loyalty_member": Phrase("loyalty", lambda w, v: "loyalty member" if v == 1 else "not a loyalty member",
                             "loyalty membership unknown"),
    "loyalty_points": Phrase("loyalty", _count("loyalty point", "no loyalty points"), "loyalty points unknown"),
    "nps": Phrase("nps", lambda w, v: f"answered {v:.0f} out of 10 to 'would you recommend us?'", _NO_NPS),
    "nps_group": Phrase("nps", lambda w, v: _NPS_GROUPS.get(v, f"NPS group {v}"), _NO_NPS),
    "value_tier": Phrase("value tier", lambda w, v: "one of the most valuable customers (VIP)" if v in (1, "vip") else
                         "not among the most valuable customers", "value unknown"),
    "as_of_month": Phrase("calendar", lambda w, v: f"scored in {calendar.month_name[int(v)]}", "month unknown"),
    # engagement (the events table); the windowed ones are in _engagement
    "days_since_last_visit": Phrase("visits", lambda w, v: f"last visited {format_days(v)} ago", "no visit so far"),
    "visits_since_last_order": Phrase("browsing", lambda w, v: "no visit since their last order" if v == 0 else
                                      f"{plural(v, 'visit')} without a purchase since their last order", _NO_EVENTS),
    "emails_since_last_open": Phrase("email", lambda w, v: "opened their last email" if v == 0 else
                                     "has not opened their last email" if v == 1 else
                                     f"has not opened the last {format_number(v)} emails", "no email sent so far"),
}

_WINDOWED = {  # feature name prefix -> (topic, unit, sentence for none)
    "orders": ("recent", "order", "no order"),
    "spend": ("recent", None, "nothing spent"),
    "tickets": ("tickets", "support ticket", "no support ticket"),
}


def _windowed(prefix: str, days: int) -> Phrase:
    topic, unit, none = _WINDOWED[prefix]

    def write(w: Wording, v: float) -> str:
        if v == 0:
            return f"{none} in the last {days} days"
        amount = f"spent {format_money(v)}" if unit is None else plural(v, unit)
        return f"{amount} in the last {days} days"

    return Phrase(topic, write, f"{none} in the last {days} days")


_EVENT_NOUNS = {"visit": ("visit", None), "page_view": ("page view", None), "app_session": ("app session", None),
                "cart_add": ("item added to the cart", "items added to the cart"), "email_sent": ("email sent", "emails sent"),
                "email_open": ("email opened", "emails opened"), "email_click": ("email clicked", "emails clicked")}
_CHANNEL_NAMES = {"web": "on the website", "app": "in the app", "email": "by email", "store": "in store"}


def _fell(what: str, unit: str, days: int, ratio: float, last: float) -> str:
    """How a count of the last ``days`` days compares with the ``days`` before (``ratio``: last / before): "visits
    fell from 12 to 2 a month"."""
    if ratio == 0 or math.isnan(last):
        return _change(ratio, what, days)
    before = last / ratio
    if round(before) == round(last):
        return f"{what} steady at {format_number(round(last))}{unit} {'a month' if days == 30 else f'per {days} days'}"
    direction = "fell" if ratio < 1 else "rose"
    span = "a month" if days == 30 else f"in the last {days} days against the {days} before"
    return f"{what} {direction} from {format_number(round(before))} to {format_number(round(last))}{unit} {span}"


def _engagement(feature: str) -> Phrase | None:
    """The phrase of an engagement feature (``churnguard.features.engagement``), None for another feature."""
    head, _, window = feature.rpartition("_")
    days = int(window[:-1]) if window.endswith("d") and window[:-1].isdigit() else None
    if days is None:
        return None
    if head == "sessions":
        return Phrase("visits", lambda w, v: f"no visit in the last {days} days" if v == 0 else
                      f"{plural(v, 'visit')} in the last {days} days", _NO_EVENTS)
    if head == "minutes_on_site":
        return Phrase("time on site", lambda w, v: f"{format_number(round(v))} minutes on the site or app in the "
                      f"last {days} days", _NO_EVENTS)
    if head in ("sessions_trend", "minutes_on_site_trend"):
        what, unit, quoted = ("visits", "", f"sessions_{days}d") if head == "sessions_trend" else (
            "time on site", " minutes", f"minutes_on_site_{days}d")
        return Phrase("visits" if what == "visits" else "time on site",
                      lambda w, v, last: _fell(what, unit, days, v, last),
                      f"no {'visit' if what == 'visits' else 'time on site'} in the {days} days before the last {days}",
                      (quoted,))
    if head.startswith("events_") and head[7:] in _EVENT_NOUNS:
        one, many = _EVENT_NOUNS[head[7:]]
        return Phrase(f"events {head[7:]}", lambda w, v: f"no {many or one + 's'} in the last {days} days" if v == 0
                      else f"{plural(v, one, many)} in the last {days} days", _NO_EVENTS)
    if head in ("email_open_rate", "email_click_rate"):
        verb = "opened" if head == "email_open_rate" else "clicked through"
        return Phrase("email", lambda w, v: f"{verb} {format_share(v)} of the emails sent in the last {days} days",
                      f"no email sent in the last {days} days")
    if head.startswith("channel_") and head.endswith("_share") and head[8:-6] in _CHANNEL_NAMES:
        where = _CHANNEL_NAMES[head[8:-6]]
        return Phrase("channels", lambda w, v: f"{format_share(v)} of their activity in the last {days} days "
                      f"{where}", f"no channel recorded in the last {days} days")
    return None


def _attribute(column: str) -> Phrase:
    label = column.replace("_", " ")
    return Phrase(f"attr {column}", lambda w, v: f"{label}: {v if isinstance(v, str) else format_number(v)}",
                  f"{label} unknown")


@functools.lru_cache(maxsize=4096)
def phrase_for(feature: str) -> Phrase:
    """The phrase of a feature: from :data:`PHRASES`, the windowed counts (``orders_30d``, ``spend_90d``,
    ``tickets_365d``), the windowed engagement features (``sessions_30d``, ``email_open_rate_90d``, ...) or a
    free customer attribute (``attr_<column>``). Each feature's phrase is built once (phrases are frozen).

    Raises:
        KeyError: a feature the kernel does not produce.
    """
    if feature in PHRASES:
        return PHRASES[feature]
    if feature.startswith("attr_"):
        return _attribute(feature[5:])
    prefix, _, window = feature.rpartition("_")
    if prefix in _WINDOWED and window.endswith("d") and window[:-1].isdigit():
        return _windowed(prefix, int(window[:-1]))
    engagement = _engagement(feature)
    if engagement is not None:
        return engagement
    raise KeyError(f"no phrase for the feature {feature!r}")


def _unknown(phrase: Phrase, wording: Wording) -> str:
    return phrase.unknown.format_map(asdict(wording))


def describe(feature: str, value: float | str | None, context: Mapping[str, float] | None = None,
             wording: Wording = Wording()) -> str:
    """The sentence for one feature value: a number (NaN when unknown) or a category's label (None when
    unknown); ``context`` holds the other features the phrase quotes (absent: unknown)."""
    phrase = phrase_for(feature)
    if value is None or (not isinstance(value, str) and math.isnan(value)):
        return _unknown(phrase, wording)
    extra = [float((context or {}).get(name, math.nan)) for name in phrase.context]
    return phrase.write(wording, value, *extra)


# -- which features to name ----------------------------------------------------------------------------------


def common_values(profiles: Mapping[str, Mapping]) -> dict[str, float | str | None]:
    """Feature -> the value that at least :data:`COMMON_SHARE` of the model's population has, from the training
    reference profiles (``churnguard.reporting.monitoring.reference_profile``): unknown (NaN, or None for a
    category), the lowest value of a number (e.g. no loyalty points) or a category. Features without such a
    value are not listed."""
    out: dict[str, float | str | None] = {}
    for name, p in profiles.items():
        if p.get("missing", 0) >= COMMON_SHARE:
            out[name] = None if p["kind"] == "categorical" else math.nan
        elif p["kind"] == "categorical":
            top = max(p["categories"].items(), key=lambda kv: kv[1], default=None)
            if top is not None and top[1] >= COMMON_SHARE:
                out[name] = top[0]
        elif p.get("edges") and p["edges"][0] == p.get("min") and p["proportions"][0] >= COMMON_SHARE:
            out[name] = float(p["min"])  # the first bin, (-inf, min], holds only the lowest value
    return out


def uninformative(names: list[str], cols: Mapping[str, np.ndarray], levels: Mapping[str, tuple[str, ...]],
                  common: Mapping[str, float | str | None], rows: np.ndarray) -> np.ndarray:
    """Per customer of ``rows`` (indices) and feature of ``names``: True where the feature says nothing about
    this customer (:data:`NEVER_REASONS`, or the customer has the feature's common value)."""
    out = np.zeros((len(rows), len(names)), dtype=bool)
    index = _columns(tuple(names))
    for name in NEVER_REASONS & index.keys():
        out[:, index[name]] = True
    at, shared_values, columns = [], [], []  # the features compared, their common value (a code, a number)
    for name, shared in common.items():
        if name not in index or name not in cols or name in NEVER_REASONS:
            continue
        if name in levels:  # codes into the levels, -1 when unknown; a label not among them: never common
            if shared is not None and shared not in levels[name]:
                continue
            shared = -1.0 if shared is None else float(levels[name].index(shared))
        elif not isinstance(shared, float):
            continue
        at.append(index[name])
        shared_values.append(shared)
        columns.append(cols[name])
    shared = np.array(shared_values)[:, None]
    for start in range(0, len(rows) if at else 0, _BLOCK_ROWS):  # features x customers, a block at a time
        block = rows[start : start + _BLOCK_ROWS]
        values = (np.array(columns, dtype="float64")[:, block] if len(columns[0]) <= _BLOCK_ROWS
                  else np.array([np.asarray(c)[block] for c in columns], dtype="float64"))
        out[start : start + len(block)][:, at] = np.where(np.isnan(shared), np.isnan(values), values == shared).T
    return out


@functools.lru_cache(maxsize=64)
def _columns(names: tuple[str, ...]) -> dict[str, int]:
    """Each feature's column among ``names`` (a model's inputs: built once per model)."""
    return {name: j for j, name in enumerate(names)}


@functools.lru_cache(maxsize=64)
def _topic_codes(names: tuple[str, ...]) -> np.ndarray:
    """The topic of each feature of ``names`` as a number (the order topics first appear in), and -1 after the
    last feature, for "no candidate" (a model's inputs: built once per model, read-only)."""
    topics = [phrase_for(f).topic for f in names]
    ids = {t: i for i, t in enumerate(dict.fromkeys(topics))}
    codes = np.array([*(ids[t] for t in topics), -1], dtype=np.intp)
    codes.setflags(write=False)
    return codes


_BLOCK_ROWS = 65_536  # rows compared at once in uninformative (common values)
_FEW_ROWS = 64  # up to this many rows, one stable sort per row costs less than ``n`` passes of ``argmax``


def _along(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``values[i, columns[i, k]]`` per row ``i`` (``np.take_along_axis`` on axis 1, without its set-up)."""
    return values[np.arange(len(values))[:, None], columns]


@functools.lru_cache(maxsize=16)
def _earlier(width: int) -> np.ndarray:
    """``[k, j]``: candidate ``j`` comes before candidate ``k`` (read-only)."""
    earlier = np.tril(np.ones((width, width), dtype=bool), -1)
    earlier.setflags(write=False)
    return earlier


def top_features(contrib: np.ndarray, n: int = N_REASONS, *, overwrite: bool = False) -> np.ndarray:
    """Per row, the columns of the ``n`` largest positive contributions, largest first (ties to the lower
    column, a NaN taken before any number and never positive), -1 where fewer than ``n`` contributions are
    positive: the first ``n`` of a stable descending sort, found with ``n`` passes of ``argmax`` instead of
    sorting (up to ``_FEW_ROWS`` rows without NaN: sorted). ``overwrite``: ``contrib`` (float64, C order) is
    the caller's scratch copy, and the chosen values are knocked out of it (-inf), so that a next call on it
    gives the next ``n``."""
    rest = np.array(contrib, dtype="float64", order="C", copy=None if overwrite else True)
    if len(rest) <= _FEW_ROWS and not np.isnan(rest).any():
        order = np.argsort(-rest, axis=1, kind="stable")[:, :n]
        out = np.where(_along(rest, order) > 0, order, -1)
        rest[np.arange(len(rest))[:, None], order] = -np.inf
        if out.shape[1] == n:
            return out
        return np.pad(out, ((0, 0), (0, n - out.shape[1])), constant_values=-1)
    out = np.full((len(rest), n), -1, dtype=np.intp)
    rows = np.arange(len(rest))
    for k in range(min(n, rest.shape[1])):
        idx = rest.argmax(axis=1)
        out[:, k] = np.where(rest[rows, idx] > 0, idx, -1)
        rest[rows, idx] = -np.inf
    return out


def pick_reasons(contrib: np.ndarray, names: list[str], hidden: np.ndarray, n: int = N_REASONS) -> np.ndarray:
    """Per row, the columns of up to ``n`` reasons: among the ``CANDIDATES`` largest contributions of the
    features not ``hidden`` (:func:`uninformative`, :func:`top_features`), the positive ones, at most one per
    topic (the largest), the first ``n`` of them, largest first; -1 where there are fewer.

    A few rows take all their candidates at once (one sort). Many rows are taken only as deep as they need:
    the first ``n`` candidates of every row, then one more at a time for the rows still short of ``n`` reasons
    (a topic repeated among their candidates), so the later passes, which few rows reach, cost little."""
    rest = np.array(contrib, dtype="float64", order="C")  # this call's own, knocked out in place, by rows
    np.putmask(rest, hidden, 0.0)  # one copy (the walk's contributions are column-major), not two
    codes, depth = _topic_codes(tuple(names)), min(CANDIDATES, len(names))
    candidates = top_features(rest, depth if len(rest) <= _FEW_ROWS else min(n, depth), overwrite=True)
    out = _one_per_topic(candidates, codes, n)
    rows = np.arange(len(rest))  # the row of ``out`` of each row of ``rest``
    while candidates.shape[1] < depth:
        short = (out[rows, -1] < 0).nonzero()[0]
        if not len(short):
            break
        rest, rows = rest[short], rows[short]
        candidates = np.hstack([candidates[short], top_features(rest, 1, overwrite=True)])
        out[rows] = _one_per_topic(candidates, codes, n)
    return out


def _one_per_topic(candidates: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """The rule of :func:`pick_reasons` on each row's ``candidates`` (columns, largest contribution first, -1:
    not positive): keep a candidate when no earlier one has its topic (``codes``), then the first ``n`` kept,
    -1 after them."""
    topic = codes[candidates]
    repeat = ((topic[:, :, None] == topic[:, None, :]) & _earlier(candidates.shape[1])).any(axis=2)
    keep = (candidates >= 0) & ~repeat
    rank = keep.cumsum(axis=1) - 1
    out = np.full((len(candidates), n), -1, dtype=np.intp)
    row, k = (keep & (rank < n)).nonzero()
    out[row, rank[row, k]] = candidates[row, k]
    return out


# -- the texts -----------------------------------------------------------------------------------------------


def reason_texts(picks: np.ndarray, names: list[str], cols: Mapping[str, np.ndarray],
                 levels: Mapping[str, tuple[str, ...]], wording: Wording = Wording()) -> np.ndarray:
    """The sentences for picked features: ``picks`` holds column indices into ``names`` (-1: no reason, an
    empty text), ``cols`` the customers' feature values (categoricals as codes into ``levels``). Each distinct
    value of a feature (with the context its phrase quotes) is described once and copied to every customer
    that has it; a customer's sentence that repeats an earlier one of theirs is left out."""
    out = np.full(picks.shape, "", dtype=object)
    flat, texts = picks.ravel(), out.ravel()
    rows = np.arange(picks.size) // max(picks.shape[1], 1) if picks.ndim == 2 else np.arange(picks.size)
    for f in sorted(set(flat.tolist()) - {-1}):  # each picked feature once
        at = (flat == f).nonzero()[0]
        name, who = names[f], rows[at]
        phrase = phrase_for(name)
        if name not in cols:  # e.g. a support feature when no tickets were given
            texts[at] = _unknown(phrase, wording)
            continue
        values = np.asarray(cols[name])[who]
        if name in levels:
            labels = np.array([*levels[name], None], dtype=object)
            values = labels[np.where(values >= 0, values, len(levels[name]))]
        context = [np.asarray(cols[c], dtype="float64")[who] if c in cols else np.full(len(who), np.nan)
                   for c in phrase.context]
        texts[at] = _each_distinct(phrase, wording, values, context)
    return _once_each(out) if out.ndim == 2 else out


def _once_each(texts: np.ndarray) -> np.ndarray:
    """Each row's texts without repeats (two features of different topics can read alike, e.g. when both are
    unknown), the rest moved up in order."""
    if len(texts) <= _FEW_ROWS:  # a few rows: each row's list on its own costs less than the array passes
        width = texts.shape[1]
        rows = [list(dict.fromkeys(t for t in row if t != "")) for row in texts.tolist()]
        out = np.empty(texts.shape, dtype=object)
        for i, row in enumerate(rows):
            out[i] = row + [""] * (width - len(row))
        return out
    for k in range(1, texts.shape[1]):
        repeat = (texts[:, :k] == texts[:, [k]]).any(axis=1) & (texts[:, k] != "")
        texts[repeat, k] = ""
    return _along(texts, np.argsort(texts == "", axis=1, kind="stable"))


def _each_distinct(phrase: Phrase, wording: Wording, values: np.ndarray, context: list[np.ndarray]) -> np.ndarray:
    """The phrase's sentence for each value (with its context), written once per distinct combination (by
    bits: ``-0.0`` and each NaN stay apart)."""
    def write(value, *extra) -> str:
        if value is None or (not isinstance(value, str) and math.isnan(value)):
            return _unknown(phrase, wording)
        return phrase.write(wording, value, *extra)

    if len(values) <= 16:  # a few customers (a request): one call each costs less than finding the distinct ones
        return np.array([write(*row) for row in zip(values.tolist(), *(c.tolist() for c in context), strict=True)],
                        dtype=object)
    if values.dtype == object:  # category labels, None when unknown (categories quote no context)
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        return np.array([write(None if pd.isna(u) else u) for u in uniques], dtype=object)[codes]
    keys = np.column_stack([values.astype("float64"), *context]).view(np.int64)
    first, inverse = _distinct_rows(keys)
    table = keys.view("float64")[first]
    known = ~np.isnan(table[:, 0])  # an unknown value: the phrase's sentence for it, the same for every context
    texts = np.full(len(table), _unknown(phrase, wording) if not known.all() else "", dtype=object)
    # one list per column (floats, untracked by the garbage collector): a list per row, hundreds of thousands
    # alive at once, set off full collections of the whole heap
    texts[known] = list(map(functools.partial(phrase.write, wording), *table[known].T.tolist()))
    return texts[inverse]


def _distinct_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first row of each distinct row of the int64 matrix ``keys`` and each row's group (an index into
    those first rows): hashed a column at a time, the pairs of codes numbered again after each column (no sort
    of whole rows, which ``np.unique(axis=0)`` does on a structured view: 5-40x slower at 300k rows)."""
    codes = None
    for column in keys.T:
        mine, found = pd.factorize(column)  # numbered in order of appearance, as the pairs below
        codes = mine if codes is None else pd.factorize(codes * len(found) + mine)[0]  # below len(keys) ** 2
    # numbered in order of appearance: a row is its group's first where its code exceeds every earlier code
    first = np.flatnonzero(np.r_[True, codes[1:] > np.maximum.accumulate(codes)[:-1]])
    return first, codes


def unscored_text(stage: str, recency_days: float, lookback_days: int) -> str:
    """Why a customer of lifecycle ``stage`` ``lost`` or ``never_bought`` has no churn probability."""
    if stage == "never_bought":
        return "no churn probability: no purchase yet"
    return (f"no churn probability: last purchase {format_days(recency_days)} ago, and the model scores "
            f"customers who bought in the last {format_days(lookback_days)}")


def unscored_texts(stage: np.ndarray, recency_days: np.ndarray, lookback_days: int) -> np.ndarray:
    """:func:`unscored_text` for the customers whose ``stage`` is ``lost`` or ``never_bought``, '' for the
    others; written once per distinct number of days."""
    stage = np.asarray(stage, dtype=object)
    out = np.full(len(stage), "", dtype=object)
    out[stage == "never_bought"] = unscored_text("never_bought", math.nan, lookback_days)
    lost = stage == "lost"
    if lost.any():
        days = np.asarray(recency_days, dtype="float64")[lost]
        _, first, codes = np.unique(days.view(np.int64), return_index=True, return_inverse=True)
        texts = [unscored_text("lost", d, lookback_days) for d in days[first].tolist()]
        out[lost] = np.array(texts, dtype=object)[codes.ravel()]
    return out


def beyond_support_text(support_days: int, *, rhythm: bool = False) -> str:
    """The remark for a scored customer silent longer than ``support_days``, the longest silence the model
    learned from: trees do not extrapolate, so they get the probability of that silence, likely too low; with
    ``rhythm``, the model has the purchases' seasonal model for them, which gives their probability."""
    said = f"silent longer than any customer the model learned from ({format_days(support_days)})"
    if rhythm:
        return f"{said}: the chance comes from their own buying rhythm and how long they have been silent"
    return f"{said}: likely at higher risk than shown"


def with_beyond_support(texts: np.ndarray, beyond: np.ndarray, support_days: int, *, rhythm: bool = False) -> None:
    """Put :func:`beyond_support_text` among the reasons (``n x N_REASONS``, '' where none, changed in place)
    of the customers ``beyond`` the model's support: in their first free slot, else in place of the last."""
    rows = beyond.nonzero()[0]
    if len(rows):
        free = texts[rows] == ""
        slot = np.where(free.any(axis=1), free.argmax(axis=1), texts.shape[1] - 1)
        texts[rows, slot] = beyond_support_text(support_days, rhythm=rhythm)


def set_aside_text(rows: int) -> str:
    """Why a customer with no purchase on record but ``rows`` transaction rows set aside as bad (``score
    --reject-bad-rows``) has no churn probability: their history is unknown, not empty."""
    was = "was" if rows == 1 else "were"
    return (f"no churn probability: no purchase on record, but {plural(rows, 'transaction row')} of theirs {was} "
            "set aside as bad (see the rejects file)")


def set_aside_texts(rows: np.ndarray) -> np.ndarray:
    """:func:`set_aside_text` for each count in ``rows``, written once per distinct count."""
    counts, codes = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
    return np.array([set_aside_text(k) for k in counts.tolist()], dtype=object)[codes.ravel()]
