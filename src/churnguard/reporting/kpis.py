"""The numbers a retention team reports every month, as tables, CSV files and one self-contained HTML page.

Pure functions on validated :class:`~churnguard.dataset.Tables` (no clock reads, no tracking server). A
*purchase* is a transaction row with ``amount > 0``; refunds only reduce revenue. "``k`` days ago" at day
``d`` means day ``d - k``: a purchase on ``d`` itself is 0 days ago. A customer is **active** at ``d`` with a
purchase 0 .. ``active_days - 1`` days ago (the trailing ``active_days`` days, ``d`` included). **Periods**
are the calendar months or quarters from the first to the last transaction day; a period ends on its last
day, or on the last transaction day when the data stop earlier (``complete_period`` False).
``complete_history`` is False while the data do not reach ``active_days`` back from the period start: S
(and every rate on it) is undercounted there. **New** = first purchase *in the data* falls in the period,
so data that start mid-history make old customers look new in the first periods.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard._charts import chart_axes, plain_numbers, say_empty
from churnguard._io.files import atomic_write_text
from churnguard._io.write import write_table
from churnguard._text import plural
from churnguard.features.build import purchase_orders
from churnguard.features.kernel import day_numbers, distinct
from churnguard.lifecycle import STAGES, lifecycle_codes
from churnguard.reporting.monitoring import DriftCheck

if TYPE_CHECKING:
    from churnguard.dataset import Tables

__all__ = ["STAGES", "RetentionReport", "build_report", "churn_rate", "net_promoter_score", "retention_rate",
           "write_report"]

_PERIODS: dict[str, tuple[str, int]] = {"month": ("M", 12), "quarter": ("Q", 4)}  # freq, periods per year
_TOP_SHARE = 0.25


def retention_rate(start: int, end: int, new: int) -> float:
    """Customer retention rate CRR = (E - N) / S x 100 in percent; NaN when S is 0 (no one to retain).

    S = ``start`` customers active at the period start, E = ``end`` active at its end, N = ``new`` customers.
    """
    return (end - new) / start * 100 if start > 0 else math.nan


def churn_rate(start: int, lost: int) -> float:
    """Churn rate = lost / S x 100, in percent, lost = active at the start and not at the end; NaN if S is 0."""
    return lost / start * 100 if start > 0 else math.nan


def net_promoter_score(scores: pd.Series) -> float | None:
    """NPS = % promoters (9-10) - % detractors (0-6) over the non-missing 0-10 answers; None without any."""
    answers = pd.to_numeric(scores, errors="coerce").dropna()
    if answers.empty:
        return None
    return float(((answers >= 9).mean() - (answers <= 6).mean()) * 100)


@dataclass(frozen=True)
class RetentionReport:
    """The monthly (or quarterly) retention numbers.

    KPI columns per period (S = active at the end of the day before the period starts, E = active at the
    period end, N = new in the period):

    * ``customers_start`` S, ``customers_end`` E, ``new_customers`` N, ``lost_customers`` (active at start,
      not at end), ``reactivated_customers`` (active at end, not at start, not new); E = S - lost + N +
      reactivated, so reactivations raise the CRR.
    * ``retention_rate`` = (E - N) / S x 100; ``churn_rate`` = lost / S x 100 (NaN when S = 0).
    * ``revenue``: sum of all amounts in the period, net of refunds; ``orders``: purchase orders as the
      features count them (``churnguard.features.build.purchase_orders``: the purchase rows of one customer
      with one order id, or without an id one timestamp), each in the period of its oldest line;
      ``buying_customers``: customers with an order in the period.
    * ``avg_purchase_value`` = revenue / orders; ``purchase_frequency`` = orders / buying_customers.
    * ``lifespan_years`` = min(1 / annual churn, ``max_lifespan_years``) with annual churn = (churn_rate /
      100) x periods per year (12 or 4): the mean of a geometric lifetime at this churn, in years; the
      cap when no one churned.
    * ``cltv`` = avg_purchase_value x purchase_frequency x periods per year x lifespan_years: the per-period
      frequency is annualised so that it matches a lifespan in years.
    * ``arpu`` = revenue / E. ``top25_revenue_share``: % of the buying customers' net revenue in the period
      from the top ceil(25%) of them by net revenue.
    * With tickets: ``csat`` = % of answers 4 or 5 among tickets resolved in the period, ``csat_answers``;
      ``median_first_response_hours`` over tickets opened in the period and answered.

    Lifecycle stages at the period end (only customers with a purchase by then; they sum to E + lost), as
    ``churnguard.lifecycle.lifecycle_codes`` defines them for scoring too: ``new`` first purchase 0-89
    days ago; ``active`` last purchase 0-89 days ago, not new; ``at_risk`` last purchase 90-179 days ago;
    ``lapsing`` 180 days ago up to the activity window; ``lost`` no purchase in the last ``active_days``
    days. Windows are cut at ``active_days``, so new + active + at_risk + lapsing = E.

    Attributes:
        kpis: one row per period (index ``period``, e.g. ``2024-02`` or ``2024Q1``).
        lifecycle: one row per period, customers per stage in ``STAGES`` at the period end.
        cohorts: index ``cohort`` (first purchase month), column ``customers`` (cohort size), then columns
            0, 1, 2, ...: % of the cohort purchasing that many months later; NaN beyond the data.
        nps: overall NPS, or None without answers. The survey answers carry no date, so it is not per period.
        nps_answers: number of NPS answers behind ``nps``.
        period: ``"month"`` or ``"quarter"``.
        active_days: the activity window used.
        extra_sections: section title -> HTML fragment, appended to the HTML as they are (trusted).
        drift: a model's drift check, shown as the last section of the HTML (None: no section).
        engagement: with an events table, one row per period: ``active_visitors`` (customers with a visit:
            a site or app session, ``churnguard.features.engagement.sessions``, starting in the period),
            ``visits``, ``minutes_on_site_per_visitor``, ``emails_sent`` and the % of them opened
            (``email_open_rate``) and clicked (``email_click_rate``) counting opens and clicks in the period.
    """

    kpis: pd.DataFrame
    lifecycle: pd.DataFrame
    cohorts: pd.DataFrame
    nps: float | None = None
    nps_answers: int = 0
    period: str = "month"
    active_days: int = 365
    extra_sections: dict[str, str] = field(default_factory=dict)
    drift: DriftCheck | None = None
    engagement: pd.DataFrame | None = None

    def summary(self) -> str:
        """The headline numbers of the latest complete period in one line, naming a partial last period."""
        complete, end = self.kpis.loc[self.kpis["complete_period"]], self.kpis.iloc[-1]
        days = (end["period_end"] - end["period_start"]).days + 1
        partial = "" if end["complete_period"] else f"; {end.name} is partial ({plural(days, 'day')} of data), not the headline"
        nps = f", NPS {self.nps:+.1f}" if self.nps is not None else ""
        if complete.empty:
            return f"{len(self.kpis)} {self.period}s, none complete yet{partial}{nps}"
        last = complete.iloc[-1]
        return (f"{len(self.kpis)} {self.period}s, latest complete {complete.index[-1]}: CRR "
                f"{last['retention_rate']:.1f}%, churn rate {last['churn_rate']:.1f}%, ARPU {last['arpu']:,.2f}"
                f"{nps}{partial}")

    def to_html(self) -> str:
        """One self-contained HTML page: charts as embedded base64 PNGs, the tables, no external resources."""
        nps = "no answers" if self.nps is None else f"{self.nps:+.1f} ({self.nps_answers} answers, overall)"
        charts = "".join(f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{b}"></figure>'
                         for t, b in _charts(self))
        tables = [("KPIs", self.kpis), ("Lifecycle stages at period end", self.lifecycle),
                  ("Cohort retention (% of cohort purchasing, by months since first purchase)", self.cohorts)]
        if self.engagement is not None:
            tables.insert(1, ("Engagement: visits, time on site and email", self.engagement))
        body = "".join(f"<h2>{html.escape(t)}</h2><div class=wide>" + _table_html(frame) + "</div>"
                       for t, frame in tables)
        sections = dict(self.extra_sections)
        if self.drift is not None:
            sections["Data drift against the model's training data"] = self.drift.to_html()
        body += "".join(f"<h2>{html.escape(t)}</h2>{fragment}" for t, fragment in sections.items())
        return (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Retention report</title><style>'
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
            "td,th{padding:2px 6px;text-align:right;border-bottom:1px solid #ddd}img{max-width:100%}"
            "figure{display:inline-block;margin:0 1em 1em 0}.wide{overflow-x:auto;max-width:100%}"
            "</style></head><body><h1>Retention report</h1>"
            f"<p><b>{html.escape(self.summary())}</b></p>"
            f"<p>Per {self.period}; active = a purchase in the trailing {self.active_days} days. A period with "
            "complete_period False is cut short by the end of the data (marked in the charts). "
            f"NPS: {nps}. Rows with complete_history False lack {self.active_days} days of history before "
            "the period start and are not comparable.</p>"
            f"{charts}{body}</body></html>"
        )


def _table_html(frame: pd.DataFrame) -> str:
    """A table for reading: money and rates with two decimals and thousands separators, counts whole; the
    headers in words, rates marked as percent."""
    def cell(v: Any) -> str:
        if isinstance(v, float | np.floating):
            return "-" if np.isnan(v) else f"{v:,.0f}" if float(v).is_integer() and abs(v) >= 1000 else f"{v:,.2f}"
        if isinstance(v, pd.Timestamp):
            return v.date().isoformat()
        return f"{v:,}" if isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) else str(v)

    def head(c: Any) -> str:  # every *_rate of the report is in percent
        return str(c).replace("_", " ") + (" (%)" if str(c).endswith("_rate") else "")

    return frame.rename(columns=head).to_html(formatters={head(c): cell for c in frame.columns}, border=0,
                                              na_rep="-")


def build_report(
    tables: Tables,
    *,
    period: str = "month",
    active_days: int = 365,
    max_lifespan_years: float = 10.0,
    extra_sections: Mapping[str, str] | None = None,
    drift: DriftCheck | None = None,
    session_gap_minutes: float = 30.0,
) -> RetentionReport:
    """Compute the retention KPIs, lifecycle stages and cohort matrix of ``tables`` (every definition is in
    :class:`RetentionReport`).

    Args:
        tables: validated input tables.
        period: ``"month"`` or ``"quarter"`` (the cohort matrix is always by month).
        active_days: trailing window, in days, in which a purchase makes a customer active.
        max_lifespan_years: cap on the expected lifespan (and so on CLTV) for periods with little churn.
        extra_sections: title -> HTML fragment to append to the HTML report.
        drift: a model's drift check (``churnguard.scoring.tables_drift``) for the HTML report.
        session_gap_minutes: the session rule of the engagement section (``features.session_gap_minutes``).

    Raises:
        ValueError: unknown ``period``, non-positive ``active_days`` or cap, or no purchases at all.
    """
    if period not in _PERIODS:
        raise ValueError(f"period must be one of {sorted(_PERIODS)}, got {period!r}")
    if active_days < 1 or max_lifespan_years <= 0:
        raise ValueError(f"active_days ({active_days}) and max_lifespan_years ({max_lifespan_years}) must be > 0")
    freq, per_year = _PERIODS[period]
    # customers as integer codes (in order of first appearance): grouping by them is grouping by the ids
    tx = tables.transactions.assign(_period=tables.transactions["timestamp"].dt.to_period(freq),
                                    customer_id=pd.factorize(tables.transactions["customer_id"])[0])
    if not (tx["amount"] > 0).any():
        raise ValueError(f"no purchases (amount > 0) among {plural(len(tx), 'transaction')}: nothing to report")
    all_days = day_numbers(tx["timestamp"])
    first_data, last_data = int(all_days.min()), int(all_days.max())
    periods = pd.period_range(pd.Timestamp(first_data, unit="D"), pd.Timestamp(last_data, unit="D"), freq=freq)
    orders = purchase_orders(tx)
    orders["_period"] = pd.to_datetime(orders["day"], unit="D").dt.to_period(freq)
    orders["c"] = pd.factorize(orders["customer_id"])[0]
    pairs = orders[["c", "day"]].drop_duplicates().sort_values("day")
    c, d = pairs["c"].to_numpy(), pairs["day"].to_numpy()
    first = np.full(c.max() + 1, np.inf)
    np.minimum.at(first, c, d)
    k, lifecycle = _customer_kpis(c, d, first, periods, (first_data, last_data), active_days)
    _add_money_kpis(k, tx, orders, periods, per_year, max_lifespan_years)
    if tables.tickets is not None:
        for name, values in _ticket_kpis(tables.tickets, freq).items():
            k[name] = _align(values, periods, 0 if name == "csat_answers" else np.nan)
    nps_scores = None if tables.customers is None else tables.customers.get("nps")
    return RetentionReport(
        kpis=k, lifecycle=lifecycle, cohorts=_cohorts(c, d, first, last_data),
        nps=None if nps_scores is None else net_promoter_score(nps_scores),
        nps_answers=0 if nps_scores is None else int(nps_scores.notna().sum()),
        period=period, active_days=active_days, extra_sections=dict(extra_sections or {}), drift=drift,
        engagement=None if tables.events is None else _engagement_kpis(tables.events, periods, session_gap_minutes),
    )


def _customer_kpis(c: np.ndarray, d: np.ndarray, first: np.ndarray, periods: pd.PeriodIndex,
                   data_span: tuple[int, int], active_days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The customer counts and rates per period, and the lifecycle stages at each period end, from the
    distinct (customer code ``c``, purchase day ``d``) pairs sorted by day and each customer's ``first`` day."""
    first_data, last_data = data_span
    starts, cal_ends = day_numbers(periods.start_time), day_numbers(periods.end_time)
    ends = np.minimum(cal_ends, last_data)
    counts, stages = [], []
    since = _days_since_last(c, d, first.size, np.ravel(np.column_stack([starts - 1, ends])))
    for s, e in zip(starts, ends, strict=True):
        active_s = next(since) < active_days
        age_e = next(since)
        active_e, new = age_e < active_days, (first >= s) & (first <= e)
        counts.append([active_s.sum(), active_e.sum(), new.sum(), (active_s & ~active_e).sum(),
                       (active_e & ~active_s & ~new).sum()])
        stages.append(_stage_counts(age_e, e - first, active_days))
    index = pd.Index(periods.astype(str), name="period")
    k = pd.DataFrame(counts, index=index, columns=["customers_start", "customers_end", "new_customers",
                                                    "lost_customers", "reactivated_customers"], dtype="int64")
    k.insert(0, "period_start", pd.to_datetime(starts, unit="D"))
    k.insert(1, "period_end", pd.to_datetime(ends, unit="D"))
    k.insert(2, "complete_history", starts - active_days >= first_data)
    k.insert(3, "complete_period", ends == cal_ends)
    k["retention_rate"] = _ratio(k["customers_end"] - k["new_customers"], k["customers_start"]) * 100
    k["churn_rate"] = _ratio(k["lost_customers"], k["customers_start"]) * 100
    return k, pd.DataFrame(stages, index=index, columns=list(STAGES), dtype="int64")


def _add_money_kpis(k: pd.DataFrame, tx: pd.DataFrame, orders: pd.DataFrame, periods: pd.PeriodIndex,
                    per_year: int, max_lifespan_years: float) -> None:
    """Add revenue, orders, buyers, purchase value and frequency, lifespan, CLTV, ARPU and concentration
    (``orders``: ``purchase_orders`` with each order's ``_period`` and customer code ``c``)."""
    k["revenue"] = _align(tx.groupby("_period")["amount"].sum(), periods, 0.0)
    k["orders"] = _align(orders.groupby("_period").size(), periods, 0).astype("int64")
    k["buying_customers"] = _align(orders.groupby("_period")["c"].nunique(), periods, 0).astype("int64")
    k["avg_purchase_value"] = _ratio(k["revenue"], k["orders"])
    k["purchase_frequency"] = _ratio(k["orders"], k["buying_customers"])
    k["lifespan_years"] = (1 / (k["churn_rate"] / 100 * per_year)).clip(upper=max_lifespan_years)
    k["cltv"] = k["avg_purchase_value"] * k["purchase_frequency"] * per_year * k["lifespan_years"]
    k["arpu"] = _ratio(k["revenue"], k["customers_end"])
    k["top25_revenue_share"] = _align(_concentration(tx, orders), periods)


def write_report(report: RetentionReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``kpis.csv``, ``lifecycle.csv``, ``cohorts.csv`` (and with events
    ``engagement.csv``) into ``out_dir``, the tables' numbers to 2 decimals.

    Each file goes to a temporary file beside it and is then moved into place, so a crash never leaves a
    half-written file under its final name. Returns name (``report``, ``kpis``, ...) -> path.
    """
    out = Path(out_dir)
    frames = [("kpis", report.kpis), ("lifecycle", report.lifecycle), ("cohorts", report.cohorts)]
    if report.engagement is not None:
        frames.append(("engagement", report.engagement))
    paths = {name: write_table(_for_reading(frame.reset_index().rename(columns=str)), out / f"{name}.csv")
             for name, frame in frames}
    paths["report"] = atomic_write_text(out / "report.html", report.to_html())
    return paths


# -- helpers ----------------------------------------------------------------------------------------------


def _for_reading(frame: pd.DataFrame) -> pd.DataFrame:
    """A table for people, as score's CSV is: its floats (money, percentages, hours, rates) to 2 decimals
    (65.83, not 65.82746223564955)."""
    floats = frame.select_dtypes("float").columns
    return frame.assign(**{c: frame[c].round(2) for c in floats}) if len(floats) else frame


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den, NaN where den is 0 (an undefined rate, not an infinite one)."""
    return num / den.where(den != 0)


def _days_since_last(c: np.ndarray, d: np.ndarray, n: int, days: np.ndarray) -> Iterator[np.ndarray]:
    """Per customer, days since the last purchase on or before each of ``days`` in turn (inf: none), for the
    purchases (customer ``c``, day ``d``) sorted by day and ``days`` in ascending order: each purchase is
    looked at once, whatever the number of days."""
    last, done = np.full(n, -np.inf), 0
    for day in days:
        upto = np.searchsorted(d, day, side="right")
        np.maximum.at(last, c[done:upto], d[done:upto])
        done = max(done, upto)
        yield day - last


def _stage_counts(age_last: np.ndarray, age_first: np.ndarray, active_days: int) -> list[int]:
    """Customers per stage in ``STAGES`` from days since last and first purchase (inf: none by then)."""
    return np.bincount(lifecycle_codes(age_last, age_first, active_days), minlength=len(STAGES) + 1)[
        : len(STAGES)].tolist()


def _align(by_period: pd.Series, periods: pd.PeriodIndex, fill: float = np.nan) -> np.ndarray:
    """Values keyed by period -> an array in report period order; ``fill`` for periods without any."""
    return by_period.reindex(periods, fill_value=fill).to_numpy()


def _concentration(tx: pd.DataFrame, orders: pd.DataFrame) -> pd.Series:
    """% of the buyers' net revenue per period from the top ceil(25%) buyers by net revenue (customers as
    integer codes; each (period, customer) pair one integer)."""
    n = int(max(tx["customer_id"].to_numpy().max(initial=0), orders["customer_id"].to_numpy().max(initial=0))) + 1

    def pair(frame: pd.DataFrame) -> np.ndarray:
        return frame["_period"].array.asi8 * n + frame["customer_id"].to_numpy(dtype=np.int64)

    net = tx["amount"].groupby(pair(tx)).sum()
    net = net.reindex(pd.unique(pair(orders)), fill_value=0.0)  # the buyers, in order of first purchase
    period = pd.PeriodIndex.from_ordinals(net.index.to_numpy() // n, freq=tx["_period"].dtype.freq)
    by_period = net.groupby(period)
    top = by_period.rank(method="first", ascending=False) <= np.ceil(by_period.transform("size") * _TOP_SHARE)
    total = by_period.sum()
    return net.loc[top].groupby(period[top.to_numpy()]).sum() / total.where(total > 0) * 100


def _ticket_kpis(tickets: pd.DataFrame, freq: str) -> dict[str, pd.Series]:
    """CSAT (% 4-5 among tickets resolved in the period) and median first-response hours (opened in it)."""
    out = {}
    if {"resolved_at", "csat"} <= set(tickets.columns):
        rated = tickets.dropna(subset=["resolved_at", "csat"])
        good = (rated["csat"] >= 4).groupby(rated["resolved_at"].dt.to_period(freq))
        out["csat"], out["csat_answers"] = good.mean() * 100, good.size()
    if "first_response_at" in tickets:
        answered = tickets.dropna(subset=["first_response_at"])
        hours = (answered["first_response_at"] - answered["opened_at"]) / pd.Timedelta(hours=1)
        out["median_first_response_hours"] = hours.groupby(answered["opened_at"].dt.to_period(freq)).median()
    return out


def _engagement_kpis(events: pd.DataFrame, periods: pd.PeriodIndex, gap_minutes: float) -> pd.DataFrame:
    """The engagement section (see :class:`RetentionReport`): sessions by the feature kernel's rule, each
    counted in the period of its first event."""
    from churnguard.features.engagement import (
        EVENT_TYPES,
        EventArrays,
        channel_codes,
        event_type_codes,
        sessions,
    )

    time = events["timestamp"].to_numpy().astype("datetime64[ns]")
    day = day_numbers(time)
    kind = event_type_codes(events["event_type"].to_numpy(dtype=object))
    sid = pd.factorize(events["session_id"])[0] if "session_id" in events else np.full(len(events), -1)
    duration = events["duration_seconds"].to_numpy(dtype="float64", na_value=np.nan) \
        if "duration_seconds" in events else np.full(len(events), np.nan)
    ev = EventArrays(pd.factorize(events["customer_id"])[0], (day.max() - day).astype("float64"), time.view("int64"),
                     kind, duration, channel_codes(np.full(len(events), None, dtype=object)), sid.astype(np.int64))
    spos, sage, seconds = sessions(ev, gap_minutes)
    start = pd.Series(pd.to_datetime(day.max() - sage.astype(np.int64), unit="D")).dt.to_period(periods.freq)
    visits = pd.DataFrame({"p": start, "c": spos, "s": seconds})
    out = pd.DataFrame(index=pd.Index(periods.astype(str), name="period"))
    out["active_visitors"] = _align(visits.groupby("p")["c"].nunique(), periods, 0).astype("int64")
    out["visits"] = _align(visits.groupby("p").size(), periods, 0).astype("int64")
    out["minutes_on_site_per_visitor"] = _ratio(
        pd.Series(_align(visits.groupby("p")["s"].sum(), periods, 0.0) / 60, index=out.index), out["active_visitors"])
    by = pd.Series(time).dt.to_period(periods.freq)
    counts = {t: _align(pd.Series(kind == EVENT_TYPES.index(t)).groupby(by).sum(), periods, 0)
              for t in ("email_sent", "email_open", "email_click")}
    out["emails_sent"] = counts["email_sent"].astype("int64")
    sent = out["emails_sent"].astype("float64")
    out["email_open_rate"] = _ratio(pd.Series(counts["email_open"], index=out.index, dtype="float64"), sent) * 100
    out["email_click_rate"] = _ratio(pd.Series(counts["email_click"], index=out.index, dtype="float64"), sent) * 100
    return out


def _cohorts(c: np.ndarray, d: np.ndarray, first: np.ndarray, last_day: int) -> pd.DataFrame:
    """Cohort matrix: % of each first-purchase-month cohort purchasing 0, 1, 2, ... months later."""
    def month(days: np.ndarray) -> np.ndarray:
        stamps = np.asarray(days, dtype="int64").astype("datetime64[D]").astype("datetime64[M]")
        return stamps.astype(np.int64)  # months since 1970-01

    cohort_of = month(first)
    months = month(d)
    low, width_all = months.min(initial=0), int(months.max(initial=0) - months.min(initial=0)) + 1
    key = distinct(c.astype(np.int64) * width_all + (months - low))  # distinct (customer, month) purchases
    buys = np.stack([key // width_all, key % width_all + low])
    labels, row = np.unique(cohort_of, return_inverse=True)
    last_month = month(np.array([last_day]))[0]
    width = last_month - labels[0] + 1
    cell = row[buys[0]] * width + (buys[1] - cohort_of[buys[0]])  # (cohort, months since) of each purchase
    hits = np.bincount(cell, minlength=labels.size * width).reshape(labels.size, width).astype("float64")
    size = np.bincount(row)
    share = hits / size[:, None] * 100
    share[labels[:, None] + np.arange(width)[None, :] > last_month] = np.nan  # months not in the data yet
    out = pd.DataFrame(share, columns=pd.RangeIndex(width),
                       index=pd.Index([f"{m // 12 + 1970}-{m % 12 + 1:02d}" for m in labels], name="cohort"))
    out.insert(0, "customers", size)
    return out


# -- charts -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Canvas:
    """The periods' x axis shared by the time charts, and the periods the data ends in."""

    x: np.ndarray
    labels: list
    partial: np.ndarray

    def axes(self, title: str, ylabel: str, width: float = 6.4, time_axis: bool = True):
        fig, ax = chart_axes(width, 4.0)
        ax.set(title=title, ylabel=ylabel)
        if time_axis:
            step = max(1, math.ceil(len(self.x) / 12))
            ax.set_xticks(self.x[::step], self.labels[::step], rotation=45, ha="right")
        return fig, ax

    def mark_partial(self, ax) -> None:
        for i in self.partial:
            ax.axvspan(i - 0.5, i + 0.5, facecolor="none", edgecolor="grey", hatch="//", linewidth=0,
                       label="partial period (data ends)" if i == self.partial[0] else None)


def _png(fig) -> tuple[str, str]:
    """(title, base64 PNG) of a chart."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})  # no URL in the metadata
    return fig.axes[0].get_title(), base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(report: RetentionReport) -> list[tuple[str, str]]:
    """(title, base64 PNG) of the rate, revenue/ARPU, lifecycle and cohort charts, on standalone Figures."""
    k = report.kpis
    canvas = _Canvas(np.arange(len(k)), k.index.tolist(), np.flatnonzero(~k["complete_period"].to_numpy()))
    return [_png(chart(report, canvas)) for chart in (_rate_chart, _revenue_chart, _lifecycle_chart, _cohort_chart)]


def _rate_chart(report: RetentionReport, canvas: _Canvas):
    k, x = report.kpis, canvas.x
    short = np.flatnonzero(~k["complete_history"].to_numpy())
    # the warm-up periods' rates (nobody can be lost yet) are not drawn when comparable periods exist
    shown = k[["retention_rate", "churn_rate"]]
    if short.size < len(k):
        shown = shown.where(k["complete_history"], axis=0)
    fig, ax = canvas.axes("Retention and churn rate", "retention rate (%)")
    ax.plot(x, shown["retention_rate"], marker="o", color="tab:blue", label="retention rate (CRR, left axis)")
    churn_ax = ax.twinx()  # churn moves by a few points: on the retention scale it would look flat
    churn_ax.plot(x, shown["churn_rate"], marker="o", color="tab:red", label="churn rate (right axis)")
    churn_ax.set_ylabel("churn rate (%)")
    if shown.isna().all(axis=None):  # e.g. one period: nobody was a customer at the start of any
        churn_ax.set_yticks([])
        say_empty(ax, "no rate yet: no period starts with customers\n(a rate needs a period after the first)")
    if short.size:
        ax.axvspan(-0.5, short.max() + 0.5, color="grey", alpha=0.15, label="incomplete history")
    canvas.mark_partial(ax)
    fig.legend(loc="outside lower center", ncols=2)
    return fig


def _revenue_chart(report: RetentionReport, canvas: _Canvas):
    k, x = report.kpis, canvas.x
    fig, ax = canvas.axes("Revenue and ARPU", "revenue (net of refunds)")
    ax.bar(x, k["revenue"], color="tab:blue", label="revenue")
    arpu_ax = ax.twinx()
    arpu_ax.plot(x, k["arpu"], color="tab:orange", marker="o", label="ARPU (right axis)")
    plain_numbers(ax.yaxis)
    plain_numbers(arpu_ax.yaxis)
    canvas.mark_partial(ax)
    fig.legend(loc="outside lower center", ncols=3)
    return fig


def _lifecycle_chart(report: RetentionReport, canvas: _Canvas):
    fig, ax = canvas.axes("Active customers by lifecycle stage (lost: see table)", "customers")
    bottom = np.zeros(len(canvas.x))
    for stage in STAGES[:-1]:
        ax.bar(canvas.x, report.lifecycle[stage], bottom=bottom, label=stage)
        bottom = bottom + report.lifecycle[stage].to_numpy()
    plain_numbers(ax.yaxis)
    canvas.mark_partial(ax)
    ax.legend()
    return fig


def _cohort_chart(report: RetentionReport, canvas: _Canvas):
    from matplotlib.ticker import MaxNLocator

    matrix = report.cohorts.drop(columns="customers")
    fig, ax = canvas.axes("Cohort retention (%)", "cohort", max(6.4, 0.3 * matrix.shape[1] + 2), time_axis=False)
    values = matrix.to_numpy(dtype="float64")
    later = values[:, 1:]  # month 0 is 100% by definition: the scale is set by the months after it
    top = float(np.nanmax(later)) if np.isfinite(later).any() else 100.0
    image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", vmin=0, vmax=max(top, 1.0))
    rows = np.arange(len(matrix))[:: max(1, math.ceil(len(matrix) / 24))]
    ax.set_yticks(rows, matrix.index[rows])
    ax.set_xlabel("months since first purchase")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole months (one cohort column drew -0.4 .. 0.4)
    fig.colorbar(image, ax=ax, label="% of cohort purchasing (month 0 = 100%)", extend="max")
    return fig
