"""Scores to actions: risk bands, value tiers, reasons, playbook actions, expected value and who to contact.

One scoring path serves the batch command, the Python API and the HTTP server:
``score_features`` takes point-in-time features (``churnguard.features``) and a loaded model and returns one
row per customer with ``churn_probability, risk_band, value_tier, clv, reason_1..3, action, action_cost,
expected_value``; ``select_customers`` then picks who to contact under a budget and holds out a seeded control
group. ``score_tables`` runs the whole chain from validated tables.

* **Risk band**: the highest band whose lower bound (``model.risk_bands``) the calibrated probability reaches;
  ``low`` below all bounds; ``no_history`` for customers without any purchase (the model has not seen such
  customers, so they get no probability and their own playbook rule).
* **Reasons**: the three features that push this customer's risk up the most, from LightGBM's exact
  TreeSHAP contributions (``pred_contrib``), written in plain words.
* **Expected value** = P(churn) x CLTV x success rate - cost.
* **Budget selection**: customers with positive expected value, best value per unit of cost first (ties: higher
  expected value, then customer id), while the budget lasts. This greedy rule is optimal when each contact's
  cost is small next to the budget, which is the usual case for retention campaigns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from churnguard.config import Playbook
    from churnguard.dataset import Tables
    from churnguard.model import ChurnModel

__all__ = ["OUTPUT_COLUMNS", "ScoreResult", "assign_actions", "drift_report", "explain", "risk_band", "score_features", "score_tables",
           "select_customers", "signals"]

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = [
    "customer_id", "as_of", "churn_probability", "risk_band", "value_tier", "clv", "reason_1", "reason_2",
    "reason_3", "action", "action_cost", "expected_value", "selected", "control_group", "model_version",
]
N_REASONS = 3


def risk_band(prob: np.ndarray, bands: dict[str, float]) -> np.ndarray:
    """Band name per probability: the band with the highest lower bound reached, else ``low``."""
    out = np.full(len(prob), "low", dtype=object)
    for name, lower in sorted(bands.items(), key=lambda kv: kv[1]):
        out[np.asarray(prob) >= lower] = name
    out[np.isnan(prob)] = "no_history"
    return out


def signals(features: pd.DataFrame, *, sla_hours: float, new_customer_days: int, lookback_days: int) -> pd.DataFrame:
    """Boolean playbook signals per customer (see ``configs/actions.yaml``)."""
    def col(name: str, default: float = np.nan) -> pd.Series:
        return features[name] if name in features else pd.Series(default, index=features.index)

    recent_ticket = col("tickets_90d", 0).fillna(0) > 0
    bad = (col("open_tickets", 0).fillna(0) > 0) | (
        recent_ticket & ((col("first_response_hours_latest") > sla_hours) | (col("csat_latest") <= 2))
    )
    return pd.DataFrame(
        {
            "bad_support": bad.to_numpy(),
            "new_customer": (col("tenure_days") <= new_customer_days).to_numpy(),
            "lapsed": (col("recency_days") > lookback_days).to_numpy(),
        },
        index=features.index,
    )


def assign_actions(bands: np.ndarray, tiers: np.ndarray, flags: pd.DataFrame, playbook: Playbook) -> np.ndarray:
    """The first playbook rule whose conditions hold, per customer (vectorised over customers)."""
    action = np.full(len(bands), None, dtype=object)
    for rule in playbook.actions:
        w = rule.when
        ok = np.ones(len(bands), dtype=bool)
        if w.band is not None:
            ok &= np.isin(bands, w.band)
        if w.value_tier is not None:
            ok &= np.isin(tiers, w.value_tier)
        for s in w.signals:
            ok &= flags[s].to_numpy()
        for s in w.not_signals:
            ok &= ~flags[s].to_numpy()
        take = ok & (action == None)
        action[take] = rule.name
    return action


# Plain-word templates, vectorised: feature -> function of the rows (a DataFrame) that returns their texts.
def _num(col: pd.Series, digits: int = 0) -> pd.Series:
    return col.astype("float64").round(digits).map(f"{{:.{digits}f}}".format)


def _pct(col: pd.Series) -> pd.Series:
    return (col.astype("float64") * 100).round().map("{:.0f}%".format)


# Plain words for each feature: (text before the value, digits or "%", text after the value). Both the batch
# path (vectorised, below) and the single-customer path (``fastpath``) write reasons from this one table;
# ``loyalty_member`` and the overdue remark after ``recency_days`` are special-cased in each.
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


OVERDUE_REMARK = 1.5  # "about 3.1x their usual gap" is added to the recency reason from this ratio on


def _template(feature: str, rows: pd.DataFrame) -> pd.Series:
    before, digits, after = REASON_TEMPLATES[feature]
    value = rows[feature]
    text = before + (_pct(value) if digits == "%" else _num(value, digits)) + after
    if feature == "recency_days" and "overdue_ratio" in rows:
        overdue = rows["overdue_ratio"] >= OVERDUE_REMARK
        text = text.where(~overdue, text + ", about " + _num(rows["overdue_ratio"], 1) + "x their usual gap")
    return text


def _describe(feature: str, rows: pd.DataFrame) -> pd.Series:
    """Texts for ``rows`` whose reason is ``feature``; unknown values and unlisted features get a plain form."""
    label = feature.replace("_", " ")
    if feature not in rows:  # e.g. a support feature when no tickets were given
        return pd.Series(unknown_text(feature), index=rows.index)
    value = rows[feature]
    if isinstance(value.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(value):
        return label + " = " + value.astype("object").fillna("unknown").astype(str)
    missing = value.isna()
    if feature == "loyalty_member":
        text = pd.Series(np.where(value == 1, "loyalty member", "not a loyalty member"), index=rows.index)
    elif feature in REASON_TEMPLATES:
        text = _template(feature, rows)
    elif feature.startswith(("orders_", "spend_", "tickets_")) and feature.endswith("d"):
        kind, days = feature.rsplit("_", 1)
        text = kind + " in the last " + days[:-1] + " days: " + _num(value)
    else:
        text = label + " = " + value.map("{:.3g}".format)
    return text.where(~missing, unknown_text(feature))


def explain(model: ChurnModel, features: pd.DataFrame, *, n: int = N_REASONS, chunk: int = 500_000,
            probability: bool = False) -> pd.DataFrame:
    """Top ``n`` risk-raising reasons per row, in words, and the features behind them.

    Only features with a positive contribution (raising risk) are named; fewer than ``n`` leave blanks; ties
    go to the feature that comes first in the model. The contributions are LightGBM's TreeSHAP values,
    computed once per distinct path through each tree for large inputs (``churnguard._contrib``). With
    ``probability``, a ``churn_probability`` column holds ``model.predict_proba(features)``, found on the
    same walk over the trees.
    """
    from churnguard._contrib import contributions

    names = np.asarray(model.feature_names_)
    top_idx, top_val = np.empty((len(features), n), dtype=np.intp), np.empty((len(features), n))
    prob = np.empty(len(features))
    for start in range(0, len(features), chunk):
        part = features.iloc[start : start + chunk]
        if probability:
            contrib, prob[start : start + len(part)] = contributions(model, part, probability=True)
        else:
            contrib = contributions(model, part)
        top_idx[start : start + len(contrib)], top_val[start : start + len(contrib)] = _top(contrib, n)
        del contrib
    out = {}
    for k in range(n):
        pick = np.where(top_val[:, k] > 0, top_idx[:, k], -1)
        texts = np.full(len(features), "", dtype=object)
        order = np.argsort(pick, kind="stable")
        bounds = np.searchsorted(pick[order], np.arange(-1, len(names) + 1))
        for f in range(len(names)):
            hit = order[bounds[f + 1] : bounds[f + 2]]
            if len(hit):
                texts[hit] = _texts(names[f], features, hit)
        out[f"reason_{k + 1}"] = texts
        out[f"reason_{k + 1}_feature"] = np.where(pick >= 0, names[np.maximum(pick, 0)], "")
    if probability:
        out["churn_probability"] = prob
    return pd.DataFrame(out, index=features.index)


def _top(contrib: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column and value of the ``n`` largest values per row, largest first, ties to the lower column: the
    first ``n`` of a stable descending sort, found with ``n`` passes of ``argmax`` instead of sorting."""
    rest = np.array(contrib, dtype="float64", order="C")  # a copy: the chosen values are knocked out below
    idx = np.zeros((len(rest), n), dtype=np.intp)
    val = np.full((len(rest), n), -np.inf)
    rows = np.arange(len(rest))
    for k in range(min(n, rest.shape[1])):
        idx[:, k] = rest.argmax(axis=1)
        val[:, k] = rest[rows, idx[:, k]]
        rest[rows, idx[:, k]] = -np.inf
    return idx, val


def _texts(feature: str, features: pd.DataFrame, hit: np.ndarray) -> np.ndarray:
    """``_describe`` for the rows ``hit``, written once per distinct value (bit for bit: ``-0.0`` and each
    NaN stay apart) and copied to every row that has it."""
    # Only the columns the text needs, so each feature's rows are not copied whole.
    cols = [c for c in (feature, "overdue_ratio" if feature == "recency_days" else None) if c in features]
    rows = features[cols].iloc[hit]
    if not cols or not all(pd.api.types.is_float_dtype(rows[c]) for c in cols):
        return _describe(feature, rows).to_numpy()
    key = np.zeros(len(rows), dtype=np.int64)
    for c in cols:
        codes, uniques = pd.factorize(rows[c].to_numpy(dtype="float64").view(np.int64))
        key = key * len(uniques) + codes
    groups, uniques = pd.factorize(key)
    first = np.empty(len(uniques), dtype=np.intp)
    first[groups[::-1]] = np.arange(len(groups))[::-1]
    return _describe(feature, rows.iloc[first]).to_numpy()[groups]


def score_features(
    model: ChurnModel,
    features: pd.DataFrame,
    playbook: Playbook,
    *,
    reasons_for: str = "all",
) -> pd.DataFrame:
    """Probability, band, tier, value, reasons, action and expected value for feature rows.

    Args:
        model: a loaded model; its info gives the risk bands, SLA and the VIP threshold.
        features: point-in-time features with BG/NBD columns (see :func:`score_tables`).
        playbook: the ordered action rules.
        reasons_for: ``all`` rows, or ``at_risk`` (skip the contributions for the ``low`` band, faster).
    """
    info = model.require_info()
    cfg = info.config
    has_history = (features["n_orders"].fillna(0) > 0).to_numpy()
    prob = np.full(len(features), np.nan)
    with_history = features[has_history] if has_history.any() else None  # one copy, for both model calls
    explained = None  # reasons of every row with history, found with the probabilities when they are all wanted
    if with_history is not None and reasons_for == "all":
        explained = explain(model, with_history, probability=True)
        prob[has_history] = explained["churn_probability"].to_numpy()
    elif with_history is not None:
        prob[has_history] = model.predict_proba(with_history)
    bands = risk_band(prob, info.risk_bands)
    clv = features["cltv"].fillna(0).to_numpy(dtype="float64")
    tiers = np.where((clv >= info.population.vip_cltv_threshold) & (clv > 0), "vip", "standard")
    flags = signals(features, sla_hours=cfg.features.sla_hours, new_customer_days=playbook.new_customer_days,
                    lookback_days=cfg.labels.lookback_days)
    action = assign_actions(bands, tiers, flags, playbook)
    rules = {r.name: r for r in playbook.actions}
    cost = np.array([rules[a].cost for a in action])
    success = np.array([rules[a].success_rate for a in action])
    p_for_value = np.where(np.isnan(prob), 1.0, prob)  # no history: value at stake is the whole CLTV (0 today)
    ev = np.where(cost > 0, p_for_value * clv * success - cost, 0.0)
    out = pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "as_of": features["as_of"].to_numpy(),
            "churn_probability": prob,
            "risk_band": bands,
            "value_tier": tiers,
            "clv": clv,
        }
    )
    need = has_history if reasons_for == "all" else has_history & (bands != "low")
    reasons = pd.DataFrame({f"reason_{k}": "" for k in range(1, N_REASONS + 1)}, index=features.index)
    if need.any():
        found = explained if explained is not None else explain(model, features[need])
        reasons.loc[need] = found[[f"reason_{k}" for k in range(1, N_REASONS + 1)]]
    for k in range(1, N_REASONS + 1):
        out[f"reason_{k}"] = reasons[f"reason_{k}"].to_numpy()
    out["action"] = action
    out["action_cost"] = cost
    out["expected_value"] = ev
    return out


def select_customers(
    scores: pd.DataFrame, *, budget: float | None = None, control_fraction: float = 0.1, seed: int = 0
) -> pd.DataFrame:
    """Mark ``selected`` (contact within budget) and ``control_group`` (selected but held out, seeded).

    Selection does not depend on row order; the control group is drawn among the selected customers sorted by
    id, so the same seed and scores always give the same group.
    """
    if not 0 <= control_fraction < 1:
        raise ValueError(f"control_fraction must be in [0, 1), got {control_fraction}")
    if budget is not None and budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    out = scores.copy()
    candidates = out[(out["expected_value"] > 0) & (out["action_cost"] > 0)]
    ratio = candidates["expected_value"] / candidates["action_cost"]
    ranked = candidates.assign(_ratio=ratio).sort_values(
        ["_ratio", "expected_value", "customer_id"], ascending=[False, False, True], kind="stable"
    )
    if budget is None:
        chosen = ranked.index
    else:
        fits = ranked["action_cost"].cumsum() <= budget + 1e-9
        # Greedy: walk down the ranking, skipping any contact that no longer fits.
        chosen, spent = [], 0.0
        if fits.all():
            chosen = list(ranked.index)
        else:
            for idx, c in zip(ranked.index, ranked["action_cost"].to_numpy(), strict=True):
                if spent + c <= budget + 1e-9:
                    chosen.append(idx)
                    spent += c
    out["selected"] = False
    out.loc[chosen, "selected"] = True
    out["control_group"] = False
    picked = out.loc[out["selected"]].sort_values("customer_id", kind="stable").index
    n_control = round(control_fraction * len(picked))
    if n_control:
        rng = np.random.default_rng(seed)
        out.loc[rng.choice(picked, size=n_control, replace=False), "control_group"] = True
    return out


@dataclass(frozen=True)
class ScoreResult:
    """Scores for every customer that could be scored, and everything that could not, with the reason."""

    scores: pd.DataFrame
    rejects: pd.DataFrame
    drift_sample: pd.DataFrame | None = None  # model features + probability of the in-lookback population

    def counts(self) -> dict[str, int]:
        """Customers in, scored and rejected (a customer is rejected only when none of their rows scored)."""
        ids = self.rejects["customer_id"].dropna()
        rejected = set(ids.unique()) - set(self.scores["customer_id"]) if len(ids) else set()
        return {"in": len(self.scores) + len(rejected), "scored": len(self.scores), "rejected": len(rejected)}


def score_tables(
    model: ChurnModel,
    tables: Tables,
    as_of: str | pd.Timestamp | None,
    playbook: Playbook,
    *,
    budget: float | None = None,
    control_fraction: float = 0.1,
    seed: int = 0,
    reasons_for: str = "all",
) -> ScoreResult:
    """The whole chain from validated tables: features as of ``as_of`` (default: the last day in the data),
    scores, actions and selection. Customers first seen after ``as_of`` are reported, not dropped."""
    from churnguard.dataset import _isin
    from churnguard.features import build_features, to_day
    from churnguard.train import add_bgnbd_features

    info = model.require_info()
    as_of = to_day(as_of) if as_of is not None else tables.last_date()
    fcfg = info.config.features
    feats = build_features(tables, as_of, fcfg, lifespan_years=info.population.lifespan_years,
                           vip_threshold=info.population.vip_cltv_threshold)
    feats = add_bgnbd_features(feats, info.population.bgnbd, info.population.horizon_days)
    scores = score_features(model, feats, playbook, reasons_for=reasons_for)
    scores = select_customers(scores, budget=budget, control_fraction=control_fraction, seed=seed)
    scores["model_version"] = info.model_version
    # Customers known from any table but not scored, sorted; found with Arrow's hash lookup (1M ids: ~0.5 s).
    known = [t["customer_id"] for t in (tables.transactions, tables.customers, tables.tickets) if t is not None]
    missing = [ids[~_isin(ids, [scores["customer_id"]])] for ids in known]
    unseen = pd.Index(pd.concat(missing, ignore_index=True).unique()).sort_values()
    late = pd.DataFrame({"table": "all", "source": "", "row": pd.NA, "customer_id": unseen.to_numpy(),
                         "column": "", "value": "", "reason": f"no activity on or before as_of {as_of.date()}"})
    rejects = pd.concat([r for r in (tables.rejects, late) if not r.empty], ignore_index=True) if (
        not tables.rejects.empty or not late.empty) else tables.rejects
    return ScoreResult(scores[OUTPUT_COLUMNS], rejects, _drift_sample(model, feats, scores))


def _drift_sample(model: ChurnModel, feats: pd.DataFrame, scores: pd.DataFrame, limit: int = 200_000) -> pd.DataFrame:
    """The rows comparable with the training reference: customers who bought within the lookback window."""
    lookback = model.require_info().config.labels.lookback_days
    keep = (feats["recency_days"] <= lookback).to_numpy()
    sample = feats.loc[keep, [c for c in model.feature_names_ if c in feats]].copy()
    sample["churn_probability"] = scores.loc[keep, "churn_probability"].to_numpy()
    return sample.sample(n=limit, random_state=0) if len(sample) > limit else sample


def drift_report(model: ChurnModel, sample: pd.DataFrame, *, threshold: float = 0.2) -> pd.DataFrame | None:
    """PSI per feature and for the score against the training reference stored in the model (None if absent)."""
    from churnguard.monitoring import drift_table

    profiles = model.require_info().drift_profiles
    if not profiles or sample is None or sample.empty:
        return None
    return drift_table(profiles, sample, threshold=threshold)
