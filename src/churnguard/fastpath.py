"""Single-customer scoring without pandas: :class:`FastScorer`, for the HTTP server's one-customer requests.

The batch path (``build_features`` -> ``add_bgnbd_features`` -> ``score_features`` -> ``select_customers``)
spends ~50 ms of pandas overhead on one customer. :class:`FastScorer` computes the same features with plain
Python loops, gets LightGBM's TreeSHAP contributions and probability for the one-row float64 input from
tables built once per model (``churnguard._treeshap``, the same numbers as LightGBM's own calls; models
with deeper trees than it tabulates go through LightGBM's single-row C API) and writes the same reasons,
action and expected value. Definitions follow ``churnguard.features``
and ``churnguard.scoring`` exactly; sums and means use the arithmetic pandas uses for one sorted group
(sequential ``bincount`` totals, ``add.reduceat`` sums, Welford's standard deviation).

Inputs read like full contract tables: tickets always carry ``first_response_at``, ``resolved_at`` and
``csat`` (a missing value is unknown), so no tickets means zero tickets; attributes act as a customers table
with exactly the keys given. Inputs are not validated here: the data contract checks are the caller's job.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import itertools
import logging
import math
import operator
import weakref
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np

from churnguard import btyd
from churnguard._treeshap import TreeShap
from churnguard.config import Playbook
from churnguard.dataset import _FALSE, _TRUE
from churnguard.features import NPS_GROUPS
from churnguard.model import PROBABILITY_FLOOR, ChurnModel
from churnguard.scoring import N_REASONS, OVERDUE_REMARK, REASON_TEMPLATES, unknown_text

__all__ = ["FastScorer"]

logger = logging.getLogger(__name__)

_NAN = float("nan")
_DAY = timedelta(days=1)
_HOUR = timedelta(hours=1)
_WEEK = 7.0
_FIRST = np.zeros(1, dtype=np.intp)
_PREDICT_TYPES = {"normal": 0, "contrib": 3}  # LightGBM's C_API_PREDICT_NORMAL, C_API_PREDICT_CONTRIB


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA."""
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or type(value).__name__ in ("NaTType", "NAType")


def _utc(value: Any) -> datetime | None:
    """A timestamp as naive UTC (as the data contract stores it); dates become midnight, missing -> None."""
    if type(value) is datetime and value.tzinfo is None:  # the server's parsed input: nothing to do
        return value
    if _missing(value):
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        value = datetime.fromisoformat(value.strip())
    elif not isinstance(value, datetime):
        return datetime.combine(value, time())
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _float(value: Any) -> float:
    """A number, NaN when missing or not numeric (blank text counts as missing)."""
    if isinstance(value, str) and not value.strip():
        return _NAN
    try:
        return float(value)
    except (TypeError, ValueError):
        return _NAN


def _flag(value: Any) -> float:
    """1.0 / 0.0 / NaN, reading text the way ``dataset`` does (yes/no, true/false, 1/0)."""
    if isinstance(value, bool | np.bool_):
        return float(value)
    if _missing(value):
        return _NAN
    text = str(value).strip().lower()
    return 1.0 if text in _TRUE else 0.0 if text in _FALSE else _NAN


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else _NAN


def _seq_sum(values: Iterable[float]) -> float:
    """Sequential sum from 0, as ``np.bincount`` accumulates the batch totals."""
    return functools.reduce(operator.add, values, 0.0)


def _group_sum(values: list[float]) -> float:
    """pandas' sum of one sorted group (``np.add.reduceat``); mean = this / count."""
    return values[0] if len(values) == 1 else float(np.add.reduceat(np.asarray(values, dtype=np.float64), _FIRST)[0])


def _mean(values: list[float]) -> float:
    return _group_sum(values) / len(values) if values else _NAN


def _std(values: list[float]) -> float:
    """Sample standard deviation (ddof=1) by Welford's update, as pandas' grouped ``std``."""
    n, mean, m2 = 0, 0.0, 0.0
    for v in values:
        n += 1
        old = mean
        mean += (v - old) / n
        m2 += (v - mean) * (v - old)
    return math.sqrt(m2 / (n - 1)) if n > 1 else _NAN


_POWERS_OF_TEN = tuple(10.0**k for k in range(9))  # the exact values numpy's rounding scales by


def _round(value: float, digits: int) -> float:
    """numpy's ``round`` of one float in plain Python (a fraction of the cost of a numpy call): the same
    ``rint(value * 10**digits) / 10**digits``, halves to even and the sign of zero kept, so the same bits."""
    scale = _POWERS_OF_TEN[digits]
    scaled = value * scale
    if math.isfinite(scaled):
        scaled = math.copysign(float(round(scaled)), scaled)  # round() of a float: half to even, like rint
    return scaled / scale if digits else scaled  # inf (also from an overflowing scale) and NaN as numpy


def _n(value: float, digits: int = 0) -> str:
    """``scoring._num`` for one value: numpy's rounding, then fixed-point text."""
    return f"{_round(value, digits):.{digits}f}"


def _pct(value: float) -> str:
    return f"{_round(value * 100, 0):.0f}%"



class _SingleRow:
    """One LightGBM prediction kind for one float64 row, through LightGBM's single-row C API.

    ``Booster.predict`` prepares a predictor and parses its parameters on every call, which costs more than
    predicting one row with a small model; ``LGBM_BoosterPredictForMatSingleRowFast`` does that once, here.
    It runs the same prediction code as ``Booster.predict``, so the numbers are identical (tested). When this
    LightGBM build does not offer that API, calls fall back to ``Booster.predict``.

    Args:
        booster: the fitted booster (kept alive as long as this object).
        kind: "normal" (the probability ``Booster.predict`` returns) or "contrib" (TreeSHAP contributions,
            the last one being the expected value; they add up to the raw log-odds).
        num_iteration: trees to use, as ``Booster.predict(num_iteration=...)``.
    """

    def __init__(self, booster: Any, kind: str, num_iteration: int) -> None:
        self._booster, self._kind, self._iteration = booster, kind, num_iteration
        self._width = booster.num_feature() + 1 if kind == "contrib" else 1
        self._config = None
        from lightgbm import basic

        try:
            lib, config = basic._LIB, ctypes.c_void_p()
            basic._safe_call(lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle, ctypes.c_int(_PREDICT_TYPES[kind]), ctypes.c_int(0), ctypes.c_int(num_iteration),
                ctypes.c_int(1), ctypes.c_int32(booster.num_feature()), basic._c_str("num_threads=1"),
                ctypes.byref(config)))  # from iteration 0, C_API_DTYPE_FLOAT64 input
            self._predict, self._check = lib.LGBM_BoosterPredictForMatSingleRowFast, basic._safe_call
        except (AttributeError, basic.LightGBMError):  # an API this LightGBM build does not have
            return
        self._config = config
        weakref.finalize(self, lib.LGBM_FastConfigFree, config)

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """The prediction for ``row`` (contiguous float64, one value per feature) as a new 1-d array."""
        if self._config is None:
            return self._booster.predict(row.reshape(1, -1), num_iteration=self._iteration,
                                         pred_contrib=self._kind == "contrib", num_threads=1).reshape(-1)
        out = np.zeros(self._width)
        n = ctypes.c_int64()
        # raw addresses (the arrays outlive the call): cheaper than building ctypes pointer objects
        self._check(self._predict(self._config, ctypes.c_void_p(row.ctypes.data), ctypes.byref(n),
                                  ctypes.c_void_p(out.ctypes.data)))
        return out


class FastScorer:
    """Scores single customers from plain Python data with the same results as the batch path.

    Build one per loaded model and share it: everything that does not depend on the customer (feature
    order, category codes, calibrator arrays, band thresholds, playbook rules) is prepared here, and
    :meth:`score` keeps no state between calls, so threads may call it at the same time.

    Args:
        model: a fitted or loaded :class:`~churnguard.model.ChurnModel` (binary objective).
        playbook: the ordered action rules.
    """

    def __init__(self, model: ChurnModel, playbook: Playbook) -> None:
        model._check_fitted()
        info = model.require_info()
        booster = model.booster_
        if booster.params.get("objective", "binary") != "binary":
            raise ValueError("FastScorer needs a model with LightGBM's binary objective")
        self._cfg = info.config.features
        self._lifespan = float(info.population.lifespan_years)
        self._vip = float(info.population.vip_cltv_threshold)
        self._bg = info.population.bgnbd
        self._horizon = np.float64(info.population.horizon_days / _WEEK)
        windows = self._cfg.windows_days
        self._orders_key = "orders_365d" if 365 in windows else f"orders_{max(windows)}d"
        try:
            self._shap: TreeShap | None = TreeShap(booster, model.best_iteration_)
        except ValueError as exc:  # deeper trees than tabulated, say: LightGBM's calls, ~130 us more a row
            logger.info("single-row scoring through LightGBM's C API: %s", exc)
            self._shap = None
            self._proba = _SingleRow(booster, "normal", model.best_iteration_)
            self._contrib = _SingleRow(booster, "contrib", model.best_iteration_)
        self._names = list(model.feature_names_)
        # LightGBM turns a pandas categorical into its position in the training categories (NaN if unseen).
        cat_cols = [c for c in self._names if c in model.categories_]
        stored = booster.pandas_categorical or [model.categories_[c] for c in cat_cols]
        self._codes = {c: {v: float(i) for i, v in enumerate(cats)} for c, cats in zip(cat_cols, stored, strict=True)}
        self._attrs = [(n[5:], n) for n in self._names if n.startswith("attr_")]
        self._columns = [(name, self._codes.get(name)) for name in self._names]
        # The model's own calibrator, holding its steps as arrays so np.interp does not convert them per call.
        cal = model.calibrator_
        self._calibrator = dataclasses.replace(cal, x=np.asarray(cal.x, dtype=np.float64),
                                               y=np.asarray(cal.y, dtype=np.float64))
        # Isotonic steps on one value: np.interp on a scalar runs the array's interpolation, and clipping one
        # value to [floor, 1 - floor] (inside [0, 1]) is min/max.
        self._isotonic = cal.kind == "isotonic"
        self._bands = sorted(info.risk_bands.items(), key=lambda kv: kv[1])
        self._sla = info.config.features.sla_hours
        self._lookback = info.config.labels.lookback_days
        self._new_days = playbook.new_customer_days
        self._rules = [
            (r.name, r.when.band, r.when.value_tier, r.when.signals, r.when.not_signals, float(r.cost), float(r.success_rate))
            for r in playbook.actions
        ]
        self._version = info.model_version

    def features(self, customer_id: str, transactions: list[dict], tickets: list[dict], attributes: dict,
                 as_of: date | datetime | str) -> dict[str, float | str | None] | None:
        """The ``build_features`` row of this customer (lifespan and VIP threshold from the model, as
        ``score_tables`` passes them) plus ``bg_expected_purchases`` and ``bg_p_alive``.

        Args:
            customer_id: the customer's id (not used by the features; kept for symmetry with :meth:`score`).
            transactions: dicts with ``timestamp`` (datetime, aware ones are converted to UTC), ``amount``
                (negative = refund) and optionally ``order_id``.
            tickets: dicts with ``opened_at`` and optionally ``first_response_at``, ``resolved_at``, ``csat``.
            attributes: customers-table columns: ``signup_date``, ``loyalty_member``, ``loyalty_points``,
                ``nps`` and others (used as ``attr_<name>`` when the model has that feature).
            as_of: the cut-off day (date, datetime or ISO text).

        Returns:
            Feature name -> value: a label (None when unknown) for categoricals, else a float (NaN when
            unknown). None when the customer is not known at ``as_of`` (no event on or before it and signed
            up after it): the batch path leaves such customers out of its scores.
        """
        return self._features(transactions, tickets, attributes, _utc(as_of).date())

    def score(self, customer_id: str, transactions: list[dict], tickets: list[dict], attributes: dict,
              as_of: date | datetime | str) -> dict[str, Any] | None:
        """One row of ``score_tables(...).scores`` (no budget, ``control_fraction=0``) as a dict.

        Args: as for :meth:`features`.

        Returns:
            ``scoring.OUTPUT_COLUMNS`` -> value, with ``as_of`` as a ``datetime.date`` and
            ``churn_probability`` None for customers without purchases; None for a customer not known at
            ``as_of``.
        """
        day = _utc(as_of).date()
        f = self._features(transactions, tickets, attributes, day)
        if f is None:
            return None
        clv = 0.0 if math.isnan(f["cltv"]) else f["cltv"]
        tier = "vip" if clv >= self._vip and clv > 0 else "standard"
        prob, band, reasons = None, "no_history", [""] * N_REASONS
        if f["n_orders"] > 0:
            row = self._row(f)
            # as predict_proba: LightGBM's probability (from the raw score, not from the contributions' sum,
            # which can differ from it in the last digits)
            if self._shap is not None:
                contrib, raw = self._shap(row)
                p = self._shap.probability(raw)
            else:
                contrib, p = self._contrib(row), self._proba(row)[0]
            if self._isotonic:
                cal = self._calibrator
                prob = float(min(max(np.interp(p, cal.x, cal.y), PROBABILITY_FLOOR), 1 - PROBABILITY_FLOOR))
            else:
                prob = float(np.clip(self._calibrator(np.array([p])), 0.0, 1.0)[0])
            band = "low"
            for name, lower in self._bands:
                if prob >= lower:
                    band = name
            top = np.argsort(-contrib[:-1], kind="stable")[:N_REASONS].tolist()
            values = contrib.tolist()
            reasons = [self.describe(self._names[i], f) if values[i] > 0 else "" for i in top]
        flags = self._signals(f)
        name, cost, success = next(
            (name, cost, success) for name, bands, tiers, need, forbid, cost, success in self._rules
            if (bands is None or band in bands) and (tiers is None or tier in tiers)
            and all(flags[s] for s in need) and not any(flags[s] for s in forbid)
        )
        p_for_value = 1.0 if prob is None else prob
        ev = p_for_value * clv * success - cost if cost > 0 else 0.0
        return {
            "customer_id": customer_id, "as_of": day, "churn_probability": prob, "risk_band": band,
            "value_tier": tier, "clv": clv, **{f"reason_{k + 1}": r for k, r in enumerate(reasons)},
            "action": name, "action_cost": cost, "expected_value": ev, "selected": ev > 0 and cost > 0,
            "control_group": False, "model_version": self._version,
        }

    def describe(self, feature: str, features: Mapping[str, Any]) -> str:
        """The reason text ``scoring.explain`` writes for ``feature`` given this customer's features."""
        label = feature.replace("_", " ")
        if feature not in features:
            return unknown_text(feature)
        value = features[feature]
        if feature in self._codes or value is None or isinstance(value, str):
            return f"{label} = {'unknown' if value is None else value}"
        if math.isnan(value):
            return unknown_text(feature)
        if feature == "loyalty_member":
            return "loyalty member" if value == 1 else "not a loyalty member"
        if feature in REASON_TEMPLATES:
            before, digits, after = REASON_TEMPLATES[feature]
            text = before + (_pct(value) if digits == "%" else _n(value, digits)) + after
            overdue = features.get("overdue_ratio", _NAN)
            if feature == "recency_days" and overdue >= OVERDUE_REMARK:
                text += f", about {_n(overdue, 1)}x their usual gap"
            return text
        if feature.startswith(("orders_", "spend_", "tickets_")) and feature.endswith("d"):
            kind, days = feature.rsplit("_", 1)
            return f"{kind} in the last {days[:-1]} days: {_n(value)}"
        return f"{label} = {value:.3g}"

    # -- internals ---------------------------------------------------------------------------------------

    def _row(self, f: Mapping[str, Any]) -> np.ndarray:
        """The model input in training column order: categoricals as category codes, NaN when unknown."""
        return np.array([_NAN if (v := f.get(name)) is None else v if codes is None else codes.get(v, _NAN)
                          for name, codes in self._columns], dtype=np.float64)

    def _signals(self, f: Mapping[str, Any]) -> dict[str, bool]:
        recent_ticket = f.get("tickets_90d", 0) > 0  # NaN > 0 is False, as fillna(0)
        bad = f.get("open_tickets", 0) > 0 or (recent_ticket and (
            f.get("first_response_hours_latest", _NAN) > self._sla or f.get("csat_latest", _NAN) <= 2))
        return {
            "bad_support": bool(bad),
            "new_customer": f.get("tenure_days", _NAN) <= self._new_days,
            "lapsed": f.get("recency_days", _NAN) > self._lookback,
        }

    def _features(self, transactions: list[dict], tickets: list[dict], attributes: dict,
                  day: date) -> dict[str, Any] | None:
        """Purchase features (``features._purchase_features``), then support, attributes and BG/NBD."""
        cfg = self._cfg
        end = datetime.combine(day, time()) + _DAY  # the instant cut-off: end of the as_of day
        known = False
        orders: dict[Any, list] = {}  # order key -> [first timestamp, line amounts], in order of appearance
        refund_count, refund_amount = 0.0, 0.0
        for t in transactions:
            ts = _utc(t["timestamp"])
            if ts >= end:
                continue
            known = True
            amount = float(t["amount"])
            if amount > 0:
                oid = t.get("order_id")
                if type(oid) is str:
                    key = oid.strip() or ts
                else:
                    key = ts if _missing(oid) or not str(oid).strip() else str(oid).strip()
                entry = orders.get(key)
                if entry is None:
                    orders[key] = [ts, [amount]]
                else:
                    entry[0] = min(entry[0], ts)
                    entry[1].append(amount)
            elif amount < 0:
                refund_count += 1
                refund_amount += -amount
        ages = [float((day - e[0].date()).days) for e in orders.values()]
        values = [_seq_sum(e[1]) for e in orders.values()]  # an order's lines added in row order
        n = float(len(values))
        gross = _seq_sum(values)
        f: dict[str, Any] = {"recency_days": min(ages, default=_NAN), "n_orders": n, "gross_spend": gross,
                             "mean_order_value": _ratio(gross, n), "max_order_value": max(values, default=_NAN),
                             "refund_count": refund_count, "refund_share": _ratio(refund_amount, gross),
                             "net_spend": gross - refund_amount}
        for w in cfg.windows_days:
            inside = [v for a, v in zip(ages, values, strict=True) if a < w]
            f[f"orders_{w}d"], f[f"spend_{w}d"] = float(len(inside)), _seq_sum(inside)
        tw = cfg.trend_window_days
        recent = [v for a, v in zip(ages, values, strict=True) if a < tw]
        before = [v for a, v in zip(ages, values, strict=True) if tw <= a < 2 * tw]
        f["trend_orders"] = _ratio(float(len(recent)), float(len(before)))
        f["trend_spend"] = _ratio(_seq_sum(recent), _seq_sum(before))
        days = sorted(set(ages))
        gaps = [b - a for a, b in itertools.pairwise(days)]
        f["n_purchase_days"] = float(len(days))
        f["gap_mean_days"], f["gap_std_days"] = _mean(gaps), _std(gaps)
        f["overdue_ratio"] = _ratio(f["recency_days"], f["gap_mean_days"])
        first = max(ages, default=_NAN)
        f["bg_frequency"] = len(days) - 1.0 if ages else _NAN
        f["bg_recency_days"] = first - f["recency_days"]
        f["bg_age_days"] = first
        aov = 0.0 if math.isnan(f["mean_order_value"]) else f["mean_order_value"]
        f["cltv"] = aov * f[self._orders_key] * self._lifespan
        known |= self._support(f, tickets, day, end)
        known |= self._attributes(f, attributes, day, end)
        if not known:
            return None
        # np.fmax: the larger of the two, the one known, or NaN
        age, signup = f["bg_age_days"], f.get("days_since_signup", _NAN)
        f["tenure_days"] = signup if math.isnan(age) else age if math.isnan(signup) else max(age, signup)
        f["value_tier"] = "vip" if f["cltv"] >= self._vip and f["cltv"] > 0 else "standard"
        f["as_of_month"] = float(day.month)
        self._bgnbd(f)
        return f

    def _support(self, f: dict[str, Any], tickets: list[dict], day: date, end: datetime) -> bool:
        """Ticket features (``features._support_features``); True when a ticket was opened by ``as_of``."""
        cfg, sla = self._cfg, self._cfg.sla_hours
        ages: list[float] = []
        n_open = n_slow = 0.0
        response: list[tuple[datetime, float]] = []
        resolution: list[tuple[datetime, float]] = []
        csat: list[tuple[datetime, float]] = []
        for t in tickets:
            opened = _utc(t["opened_at"])
            if opened >= end:
                continue
            ages.append(float((day - opened.date()).days))
            answered_at, resolved_at = _utc(t.get("first_response_at")), _utc(t.get("resolved_at"))
            resolved = resolved_at is not None and resolved_at < end
            n_open += not resolved
            if answered_at is not None and answered_at < end:
                hours = (answered_at - opened) / _HOUR
                response.append((opened, hours))
                n_slow += hours > sla
            else:
                n_slow += (end - opened) / _HOUR > sla
            if resolved:
                resolution.append((opened, (resolved_at - opened) / _HOUR))
                score = _float(t.get("csat"))
                if not math.isnan(score):  # a survey answer is known once the ticket is resolved
                    csat.append((opened, score))
        for w in cfg.ticket_windows_days:
            f[f"tickets_{w}d"] = float(sum(a < w for a in ages))
        total = float(len(ages))
        f["tickets_total"], f["days_since_last_ticket"], f["open_tickets"] = total, min(ages, default=_NAN), n_open
        for name, rows, extreme in (("first_response_hours", response, "max"), ("resolution_hours", resolution, "max"),
                                    ("csat", csat, "min")):
            vals = [v for _, v in rows]
            f[f"{name}_mean"] = _mean(vals)
            f[f"{name}_{extreme}"] = (max if extreme == "max" else min)(vals, default=_NAN)
            f[f"{name}_latest"] = max(rows)[1] if rows else _NAN  # latest opened; ties: larger value
        f["slow_response_share"] = _ratio(n_slow, total)
        f["tickets_per_order"] = _ratio(total, f["n_orders"])
        return bool(ages)

    def _attributes(self, f: dict[str, Any], attributes: Mapping[str, Any], day: date, end: datetime) -> bool:
        """Attribute features for the keys given; True when the customer had signed up by ``as_of``."""
        if "loyalty_member" in attributes:
            f["loyalty_member"] = _flag(attributes["loyalty_member"])
        if "loyalty_points" in attributes:
            f["loyalty_points"] = _float(attributes["loyalty_points"])
        if "nps" in attributes:
            nps = f["nps"] = _float(attributes["nps"])
            # pd.cut bins (-0.5, 6.5], (6.5, 8.5], (8.5, 10.5]
            f["nps_group"] = next((g for g, hi in zip(NPS_GROUPS, (6.5, 8.5, 10.5), strict=True) if -0.5 < nps <= hi), None)
        listed = True
        if "signup_date" in attributes:
            signup = _utc(attributes["signup_date"])
            f["days_since_signup"] = _NAN if signup is None else float((day - signup.date()).days)
            listed = signup is None or signup < end
        for key, name in self._attrs:
            if key in attributes:
                value = attributes[key]
                if name in self._codes:
                    text = None if _missing(value) else str(value).strip()
                    f[name] = text or None
                else:
                    f[name] = _float(value)
        return listed

    def _bgnbd(self, f: dict[str, Any]) -> None:
        """``train.add_bgnbd_features`` for one customer (NaN without a purchase)."""
        if math.isnan(f["bg_frequency"]):
            f["bg_expected_purchases"] = f["bg_p_alive"] = _NAN
            return
        # Valid by construction (whole repeat count, 0 <= recency <= age, finite): no checks needed.
        f["bg_expected_purchases"], f["bg_p_alive"] = btyd.expected_purchases_and_prob_alive_one(
            self._bg, self._horizon, f["bg_frequency"], f["bg_recency_days"] / _WEEK, f["bg_age_days"] / _WEEK)
