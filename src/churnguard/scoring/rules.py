"""The scoring rules, each written once as a function of arrays over ``n`` customers (``n = 1`` included).

* **Lifecycle stage and the model's population**: :mod:`churnguard.lifecycle`.
* **Risk band**: the highest band whose lower bound (``model.risk_bands``) the calibrated probability reaches;
  ``low`` below all bounds; the lifecycle stage (``lost`` or ``never_bought``) for a customer without a
  probability.
* **Signals**: the playbook's conditions (``bad_support``, ``new_customer``, ``lapsed``, and from the events
  table ``browsing_not_buying`` and ``gone_quiet``).
* **Action**: the first playbook rule whose conditions hold.
* **Expected value** = P(churn) x value x success rate - cost, with P = 1 for a customer without a probability;
  the value is the CLTV counting at most the playbook's ``max_value_years`` of the lifespan it assumes, the
  success rate at most its ``max_success_rate``.
* **Ranks**: by churn probability and by expected value, 1 = the highest, ties in customer id order.
* **Selection**: customers with positive expected value, best value per unit of cost first (ties: higher
  expected value, then customer id), while the budget lasts; a seeded share of them is held out as control.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from churnguard.lifecycle import (  # re-exported: the scoring rules start from the customer's stage
    LIFECYCLE_STAGES,
    STAGES,
    in_lookback,
    in_population,
    lifecycle_codes,
    lifecycle_stage,
)

if TYPE_CHECKING:
    from churnguard.config import Playbook

__all__ = ["LIFECYCLE_STAGES", "STAGES", "assign_actions", "expected_value", "in_lookback", "in_population",
           "lifecycle_codes", "lifecycle_stage", "ranks", "risk_band", "rule_matches", "select", "signals",
           "success_rates", "value_at_stake", "worth_contacting"]


BROWSING_VISITS = 3  # visits since the last order from which a customer is browsing but not buying
QUIET_DAYS = 30  # days without a visit (or an order) that make a customer quiet
UNOPENED_EMAILS = 3  # unopened emails in a row that count as not reading them


def risk_band(prob: np.ndarray, bands: Mapping[str, float], stage: np.ndarray | None = None) -> np.ndarray:
    """Band name per probability: the band with the highest lower bound reached, else ``low``; where the
    probability is NaN (a customer outside the model's population), the customer's ``stage``.

    Raises:
        ValueError: a probability is NaN and no ``stage`` is given.
    """
    prob = np.asarray(prob, dtype="float64")
    out = np.full(len(prob), "low", dtype=object)
    for name, lower in sorted(bands.items(), key=lambda kv: kv[1]):
        out[prob >= lower] = name
    missing = np.isnan(prob)
    if missing.any():
        if stage is None:
            raise ValueError("customers without a probability take their lifecycle stage as band: give `stage`")
        out[missing] = np.asarray(stage, dtype=object)[missing]
    return out


def signals(cols: Mapping[str, np.ndarray], n: int, *, sla_hours: float, new_customer_days: int,
            lookback_days: int) -> dict[str, np.ndarray]:
    """Boolean playbook signals per customer (see ``configs/actions.yaml``); a feature that is absent counts
    as unknown (NaN), and unknown ticket counts as none.

    * ``bad_support``: a ticket still open, or a ticket in the last 90 days and a last first answer slower than
      the SLA or a last CSAT of 2 or less;
    * ``new_customer``: a customer for at most ``new_customer_days``;
    * ``lapsed``: no purchase in the last ``lookback_days`` days (the lifecycle stage ``lost``);
    * ``browsing_not_buying``: at least :data:`BROWSING_VISITS` visits since the last order, and no order for
      :data:`QUIET_DAYS` days;
    * ``gone_quiet``: no visit for :data:`QUIET_DAYS` days after earlier ones, and the last
      :data:`UNOPENED_EMAILS` emails unopened (or no email data).

    Without an events table the last two never hold.
    """
    def col(name: str) -> np.ndarray:
        return np.asarray(cols[name], dtype="float64") if name in cols else np.full(n, np.nan)

    recent_ticket = col("tickets_90d") > 0  # unknown (NaN) counts as none: NaN > 0 is False
    bad = (col("open_tickets") > 0) | (
        recent_ticket & ((col("first_response_hours_latest") > sla_hours) | (col("csat_latest") <= 2)))
    return {"bad_support": bad, "new_customer": col("tenure_days") <= new_customer_days,
            "lapsed": np.isfinite(col("recency_days")) & ~in_lookback(col("recency_days"), lookback_days),
            "browsing_not_buying": (col("visits_since_last_order") >= BROWSING_VISITS)
            & (col("recency_days") >= QUIET_DAYS),
            "gone_quiet": (col("days_since_last_visit") >= QUIET_DAYS)
            & ~(col("emails_since_last_open") < UNOPENED_EMAILS)}


def rule_matches(bands: np.ndarray, stages: np.ndarray, tiers: np.ndarray, flags: Mapping[str, np.ndarray],
                 playbook: Playbook) -> dict[str, np.ndarray]:
    """Per playbook rule (in playbook order), whether its conditions (band, lifecycle stage, value tier, signals)
    hold for each customer: the actions the playbook allows."""
    holds = _holds(bands, stages, tiers, flags, playbook)
    return {rule.name: holds[r] for r, rule in enumerate(playbook.actions)}


def assign_actions(bands: np.ndarray, stages: np.ndarray, tiers: np.ndarray, flags: Mapping[str, np.ndarray],
                   playbook: Playbook) -> np.ndarray:
    """The name of the first playbook rule whose conditions hold (:func:`rule_matches`), per customer (None
    where none does)."""
    holds = _holds(bands, stages, tiers, flags, playbook)
    first = np.where(holds.any(axis=0), holds.argmax(axis=0), len(holds))
    return _conditions(playbook).names[first]


@dataclass(frozen=True)
class _Conditions:
    """A playbook's conditions as arrays, rules in playbook order: per kind (band, stage, value tier) the labels
    its rules name and which of them each rule allows (a last column for any other label: allowed only by a
    rule without that condition); the signals its rules name, those each rule needs and those it refuses; the
    rules' names and None after them."""

    kinds: tuple[tuple[str, dict[str, int], np.ndarray], ...]  # the labels as label -> position
    signals: tuple[str, ...]
    need: np.ndarray
    refuse: np.ndarray
    names: np.ndarray
    costs: dict[str, float]  # per rule name: its cost and its success rate (success_rates)
    rates: dict[str, float]


_CONDITIONS: dict[int, tuple[Playbook, _Conditions]] = {}


def _conditions(playbook: Playbook) -> _Conditions:
    """:class:`_Conditions` of ``playbook``, built once per playbook object (frozen) and kept for the next
    calls."""
    hit = _CONDITIONS.get(id(playbook))
    if hit is None or hit[0] is not playbook:
        whens = [rule.when for rule in playbook.actions]
        kinds = []
        for kind in ("band", "stage", "value_tier"):
            allowed = [getattr(w, kind) for w in whens]
            labels = tuple(dict.fromkeys(v for a in allowed if a is not None for v in a))
            table = np.array([[a is None or label in a for label in labels] + [a is None] for a in allowed], bool)
            kinds.append((kind, {label: i for i, label in enumerate(labels)}, table.reshape(len(whens), len(labels) + 1)))
        signals = tuple(dict.fromkeys(s for w in whens for s in (*w.signals, *w.not_signals)))
        need, refuse = (np.array([[s in getattr(w, part) for s in signals] for w in whens], bool
                                 ).reshape(len(whens), len(signals)) for part in ("signals", "not_signals"))
        names = np.array([*(rule.name for rule in playbook.actions), None], dtype=object)
        hit = (playbook, _Conditions(tuple(kinds), signals, need, refuse, names,
                                     {r.name: r.cost for r in playbook.actions}, success_rates(playbook)))
        if len(_CONDITIONS) >= 8:  # playbooks loaded one after the other (tests): keep only the recent ones
            _CONDITIONS.clear()
        _CONDITIONS[id(playbook)] = hit
    return hit[1]


def _holds(bands: np.ndarray, stages: np.ndarray, tiers: np.ndarray, flags: Mapping[str, np.ndarray],
           playbook: Playbook) -> np.ndarray:
    """Rules x customers: whether each playbook rule's conditions hold: the customer's band, stage and tier
    among those the rule allows, every signal it needs on and every signal it refuses off."""
    c = _conditions(playbook)
    holds = np.ones((len(c.names) - 1, len(bands)), dtype=bool)
    for (_, labels, table), values in zip(c.kinds, (bands, stages, tiers), strict=True):
        if labels:
            holds &= table[:, _label_codes(values, labels)]
    if c.signals:
        on = np.array([flags[s] for s in c.signals], dtype=bool).reshape(len(c.signals), len(bands))
        holds &= ~(c.need @ ~on) & ~(c.refuse @ on)
    return holds


_FEW = 64  # up to this many customers, labels are coded one by one instead of one pass per label


def _label_codes(values: np.ndarray, labels: dict[str, int]) -> np.ndarray:
    """Each value's position in ``labels`` (label -> position), ``len(labels)`` for any other value."""
    if len(values) <= _FEW:
        return np.array([labels.get(v, len(labels)) for v in values.tolist()], dtype=np.intp)
    code = np.full(len(values), len(labels))
    for i, label in enumerate(labels):
        code[values == label] = i
    return code


def value_at_stake(clv: np.ndarray, lifespan_years: float, max_years: float) -> np.ndarray:
    """The value an action can keep: CLTV, counting at most ``max_years`` of the ``lifespan_years`` it
    assumes (a customer kept by one campaign is not kept for life)."""
    return np.asarray(clv, dtype="float64") * min(1.0, max_years / lifespan_years) if lifespan_years > 0 else clv


def success_rates(playbook: Playbook) -> dict[str, float]:
    """Each action's success rate as the expected value assumes it: the playbook's, at most its
    ``max_success_rate``."""
    return {r.name: min(r.success_rate, playbook.max_success_rate) for r in playbook.actions}


def expected_value(prob: np.ndarray, clv: np.ndarray, actions: np.ndarray, playbook: Playbook,
                   lifespan_years: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each action's cost and its expected value, P(churn) x value x success rate - cost (0 for free
    actions), with the value :func:`value_at_stake` (the CLTV as it is without ``lifespan_years``) and the
    rates :func:`success_rates`.

    A customer without a probability (outside the model's population: lost or never bought) counts with
    P = 1: they are not buying now, so without an action all of their CLTV is lost. CLTV counts the orders of
    the last 365 days (``churnguard.features.kernel.cltv``), so a lost customer's is 0 unless ``lookback_days``
    is shorter than that, and a never-bought customer's is 0: their contact then has a negative expected value
    and is not selected.
    """
    c = _conditions(playbook)
    costs, rates = c.costs, c.rates
    cost = np.array([costs[a] for a in actions], dtype="float64")
    success = np.array([rates[a] for a in actions], dtype="float64")
    value = clv if lifespan_years is None else value_at_stake(clv, lifespan_years, playbook.max_value_years)
    p = np.where(np.isnan(prob), 1.0, prob)
    return cost, np.where(cost > 0, p * value * success - cost, 0.0)


def id_places(ids: np.ndarray) -> np.ndarray:
    """Each customer's place when the ``ids`` are sorted as text (ties, the same id twice, in row order): the
    order of :func:`ranks`' and :func:`select`'s ties."""
    return np.argsort(np.argsort(np.asarray(ids, dtype=object).astype(str), kind="stable"), kind="stable")


def ranks(ids: np.ndarray, risk: np.ndarray, value: np.ndarray, places: np.ndarray | None = None
          ) -> dict[str, np.ndarray]:
    """``risk_rank`` and ``value_rank``: each customer's place by ``risk`` and by ``value`` (1 = the highest),
    ties in customer id order, NaN where the value is NaN; they do not depend on row order. ``places``: the
    ids' :func:`id_places`, when the caller has them."""
    places = id_places(ids) if places is None else places
    return {"risk_rank": _rank(places, risk), "value_rank": _rank(places, value)}


def _rank(places: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Places by ``values``, ties by ``places`` (each id's place when the ids are sorted as text)."""
    values = np.asarray(values, dtype="float64")
    known = np.flatnonzero(~np.isnan(values))
    out = np.full(len(values), np.nan)
    out[known[np.lexsort((places[known], -values[known]))]] = np.arange(1, len(known) + 1)
    return out


def check_selection(budget: float | None, control_fraction: float, seed: int = 0) -> None:
    """ValueError unless ``budget`` is None or a finite amount >= 0, ``control_fraction`` is in [0, 1) and
    ``seed`` (of the control group) is a whole number >= 0."""
    if not 0 <= control_fraction < 1:
        raise ValueError(f"control_fraction must be in [0, 1), got {control_fraction}")
    if budget is not None and not 0 <= budget < math.inf:  # NaN fails too: it selected nobody, silently
        raise ValueError(f"budget must be a finite amount >= 0, got {budget}; without a budget every customer "
                         "with a positive expected value is selected")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"the control group's seed must be a whole number >= 0, got {seed!r}")


def worth_contacting(ev: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Whether each customer is one :func:`select` may pick: a positive expected value and a contact that costs
    something (a free action is no contact)."""
    return (np.asarray(ev) > 0) & (np.asarray(cost) > 0)


def select(ids: np.ndarray, ev: np.ndarray, cost: np.ndarray, *, budget: float | None = None,
           control_fraction: float = 0.1, seed: int = 0, places: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Who to contact (``selected``) and who of them to hold out (``control_group``).

    Selection does not depend on row order; the control group is drawn among the selected customers sorted by
    id, so the same seed and scores always give the same group; ids sort as :func:`id_places` has them
    (``places``, when the caller has them).
    """
    check_selection(budget, control_fraction, seed)
    ids = np.asarray(ids, dtype=object)
    candidates = np.flatnonzero(worth_contacting(ev, cost))
    selected = np.zeros(len(ids), dtype=bool)
    if budget is None:
        selected[candidates] = True
    elif len(candidates):
        ratio = ev[candidates] / cost[candidates]
        # best ratio first, then higher expected value, then customer id (ids sort as text)
        places = id_places(ids) if places is None else places
        ranked = candidates[np.lexsort((places[candidates], -ev[candidates], -ratio))]
        spent = np.cumsum(cost[ranked])
        if spent[-1] <= budget + 1e-9:
            selected[ranked] = True
        else:  # greedy: walk down the ranking, skipping any contact that no longer fits
            total = 0.0
            for i, c in zip(ranked.tolist(), cost[ranked].tolist(), strict=True):
                if total + c <= budget + 1e-9:
                    selected[i] = True
                    total += c
    control = np.zeros(len(ids), dtype=bool)
    picked = np.flatnonzero(selected)
    n_control = round(control_fraction * len(picked))
    if n_control:
        places = id_places(ids) if places is None else places
        picked = picked[np.argsort(places[picked], kind="stable")]  # by id
        control[np.random.default_rng(seed).choice(picked, size=n_control, replace=False)] = True
    return selected, control
