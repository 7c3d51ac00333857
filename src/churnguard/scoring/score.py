"""Scores to actions for ``n`` customers: one chain, whatever brought the features in.

:func:`score_columns` takes the feature columns of ``n`` customers (``churnguard.features.kernel``'s output)
and returns, per customer, ``lifecycle_stage, churn_probability, risk_band, value_tier, clv, reason_1..3, action,
action_cost, expected_value`` and the context an analyst checks (``n_orders``, ``spend_last_year``); no
probability outside the model's population (see ``churnguard.scoring.rules``). The batch path
(:func:`score_features` on a features frame, :func:`score_tables` from validated tables) and the HTTP server
(records -> kernel -> this) both call it. ``select_customers`` then picks who to contact under a budget, holds
out a seeded control group and ranks every customer by risk and by expected value; :func:`file_rows` gives the
rows of the scores file."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard.scoring import reasons, rules

if TYPE_CHECKING:
    from churnguard.config import Playbook
    from churnguard.dataset import Tables
    from churnguard.features.records import CustomerRecords
    from churnguard.model import ChurnModel
    from churnguard.model.info import ModelInfo
    from churnguard.population import Population
    from churnguard.reporting.monitoring import DriftCheck
    from churnguard.scoring.campaign import Campaign

__all__ = ["LIGHT_COLUMNS", "OUTPUT_COLUMNS", "SCORES_COLUMNS", "SELECTION_COLUMNS", "ScoreResult", "drift_check",
           "drift_report", "file_rows", "frame_columns", "last_purchase_dates", "model_population", "output_columns",
           "read_scores", "rejected_rows", "score_columns", "score_features", "score_frames", "score_records",
           "score_tables", "select_customers", "tables_drift", "unscored_rejects", "unseen_customers"]

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = [
    "customer_id", "as_of", "lifecycle_stage", "churn_probability", "risk_band", "value_tier", "clv", "reason_1",
    "reason_2", "reason_3", "action", "action_cost", "expected_value", "selected", "control_group", "model_version",
]
# The scores file (and ScoreResult.scores): the rows above with what an analyst checks first, and the ranks.
SCORES_COLUMNS = [
    "customer_id", "as_of", "lifecycle_stage", "last_purchase_date", "n_orders", "rejected_rows", "spend_last_year",
    "churn_probability", "risk_rank", "risk_band", "value_tier", "clv", "reason_1", "reason_2", "reason_3", "action",
    "action_cost", "expected_value", "value_rank", "selected", "control_group", "model_version",
]
# What the engines keep of every customer in memory, for the selection and the summary.
LIGHT_COLUMNS = ["customer_id", "lifecycle_stage", "rejected_rows", "churn_probability", "risk_band", "clv", "action",
                 "action_cost", "expected_value"]
SELECTION_COLUMNS = ["selected", "control_group", "risk_rank", "value_rank"]
REASON_COLUMNS = [f"reason_{k}" for k in range(1, reasons.N_REASONS + 1)]
_NEEDED = ("n_orders", "cltv", "recency_days", "bg_age_days")  # features the rules read besides the model's


def output_columns(model: ChurnModel, base: list[str] = OUTPUT_COLUMNS) -> list[str]:
    """The columns ``base`` (:data:`OUTPUT_COLUMNS`, or :data:`SCORES_COLUMNS` for the scores file) of
    ``model``'s scores, with the churn curve's ``churn_probability_<h>d`` columns after ``churn_probability``
    when the model has a curve."""
    return _with_curve(base, [] if model.curve_ is None else list(model.curve_.columns))


def _with_curve(base: list[str], curve: list[str]) -> list[str]:
    at = base.index("churn_probability") + 1
    return [*base[:at], *curve, *base[at:]]


def model_population(model: ChurnModel) -> Population:
    """The population state the model learned at training; the free attributes' kinds are the model's own
    inputs (its numeric ``attr_`` features and its categorical ones with their training levels)."""
    from dataclasses import replace

    kinds = {name[5:]: (tuple(model.categories_[name]) if name in model.categories_ else None)
             for name in model.feature_names_ if name.startswith("attr_")}
    return replace(model.require_info().population, attributes=kinds)


def score_columns(model: ChurnModel, cols: Mapping[str, np.ndarray], levels: Mapping[str, tuple[str, ...]],
                  playbook: Playbook, *, as_of: Any, reasons_for: str = "all") -> dict[str, np.ndarray]:
    """Stage, probability, band, tier, value, reasons, action and expected value for ``n`` customers' features.

    Only customers of the model's population (a purchase in the last ``lookback_days``, the stages ``new`` to
    ``lapsing``) get a probability; the others (``lost``, ``never_bought``) get NaN, their stage as band and,
    as ``reason_1``, why they have no probability (``churnguard.scoring.rules``). A scored customer silent
    longer than any the model learned from (``ModelInfo.support_days``) has that said among their reasons;
    with a model that has the purchases' seasonal model for them (``ChurnModel.beyond_``), they get its
    probability instead of the trees'.

    Args:
        model: a loaded model (risk bands, VIP cut-off, SLA and lookback from its ``info``).
        cols: feature columns, one entry per customer: floats, and categorical features as codes into
            ``levels`` (-1 when unknown).
        levels: the levels of each categorical feature in ``cols``.
        playbook: the ordered action rules.
        as_of: the day the features are as of (one, or one per customer).
        reasons_for: ``all`` rows, ``at_risk`` (skip the contributions for the ``low`` band, faster) or
            ``none`` (no contributions: only the unscored customers' reasons; the probabilities alone, for a
            drift check).
    """
    from churnguard.features.kernel import value_tiers

    info = model.require_info()
    model._check_fitted()
    n, lookback = len(cols["n_orders"]), info.config.labels.lookback_days
    recency = np.asarray(cols["recency_days"], dtype="float64")
    stage = rules.lifecycle_stage(recency, cols["bg_age_days"], lookback)
    scored = rules.in_population(stage)

    def probabilities(scored_prob: np.ndarray) -> np.ndarray:  # every customer's: NaN for those not scored
        prob = np.full(n, np.nan)
        prob[scored] = scored_prob
        return prob if model.beyond_ is None else model.beyond_.apply(prob, cols, as_of)

    contrib, prob = _explain(model, _matrix(model.feature_names_, model.categories_, cols, levels, scored),
                             reasons_for, info.risk_bands, probabilities, scored)
    bands = rules.risk_band(prob, info.risk_bands, stage)
    clv = np.asarray(cols["cltv"], dtype="float64")
    clv = np.where(np.isnan(clv), 0.0, clv)
    tiers = value_tiers(clv, info.population.vip_cltv_threshold)
    flags = rules.signals(cols, n, sla_hours=info.config.features.sla_hours,
                          new_customer_days=playbook.new_customer_days, lookback_days=lookback)
    action = rules.assign_actions(bands, stage, tiers, flags, playbook)
    cost, ev = rules.expected_value(prob, clv, action, playbook, info.population.lifespan_years)
    texts = _reasons(model, cols, levels, contrib, scored, bands if reasons_for != "all" else None)
    if not scored.all():
        texts[~scored, 0] = reasons.unscored_texts(stage[~scored], recency[~scored], lookback)
    if info.support_days is not None and info.support_days < lookback:  # silences the model never learned from
        reasons.with_beyond_support(texts, scored & (recency > info.support_days), info.support_days,
                                    rhythm=model.beyond_ is not None)
    out = {"lifecycle_stage": stage, "churn_probability": prob, **_curve(model, cols, levels, scored, as_of),
           "risk_band": bands, "value_tier": tiers, "clv": clv}
    out |= {name: texts[:, k] for k, name in enumerate(REASON_COLUMNS)}
    out |= {"action": action, "action_cost": cost, "expected_value": ev}
    return out | {"n_orders": np.asarray(cols["n_orders"], dtype="float64"), "spend_last_year": _last_year(cols)}


def _reasons(model: ChurnModel, cols: Mapping[str, np.ndarray], levels: Mapping[str, tuple[str, ...]],
             contrib: np.ndarray | None, scored: np.ndarray, bands: np.ndarray | None) -> np.ndarray:
    """The reason texts of every customer (``n x N_REASONS``, '' where none): for the customers ``scored``
    (those above ``low`` only, when ``bands`` are given), from their contributions ``contrib``."""
    common, wording = _reason_settings(model.require_info())
    names = model.feature_names_
    picks = np.full((len(scored), reasons.N_REASONS), -1, dtype=np.intp)
    if contrib is not None:
        rows = scored.nonzero()[0]
        need = bands[rows] != "low" if bands is not None else np.ones(len(rows), dtype=bool)
        hidden = reasons.uninformative(names, cols, levels, common, rows[need])
        mine = contrib[need] if len(contrib) == len(rows) and not need.all() else contrib  # no copy of them all
        picks[rows[need]] = reasons.pick_reasons(mine, names, hidden)
    return reasons.reason_texts(picks, names, cols, levels, wording)


_SETTINGS: dict[int, tuple[ModelInfo, Mapping[str, float | str | None], reasons.Wording]] = {}


def _reason_settings(info: ModelInfo) -> tuple[Mapping[str, float | str | None], reasons.Wording]:
    """What a model's reasons read from its ``info``: the common values of its population
    (``churnguard.scoring.reasons.common_values``, read-only) and the wording; worked out once per loaded
    model (per ``info`` object, which is frozen) and kept for the next calls."""
    hit = _SETTINGS.get(id(info))
    if hit is None or hit[0] is not info:
        features = info.config.features
        hit = (info, MappingProxyType(reasons.common_values(info.drift_profiles)),
               reasons.Wording(trend_days=features.trend_window_days, horizon_days=info.config.labels.horizon_days,
                               sla_hours=features.sla_hours))
        if len(_SETTINGS) >= 8:  # models loaded one after the other (tests): keep only the recent ones
            _SETTINGS.clear()
        _SETTINGS[id(info)] = hit
    return hit[1], hit[2]


def _last_year(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    """Spend in the last 365 days (NaN when the features have no 365-day window)."""
    n = len(cols["n_orders"])
    return np.asarray(cols["spend_365d"], dtype="float64") if "spend_365d" in cols else np.full(n, np.nan)


def _curve(model: ChurnModel, cols: Mapping[str, np.ndarray], levels: Mapping[str, tuple[str, ...]],
           rows: np.ndarray, as_of: Any) -> dict[str, np.ndarray]:
    """The churn curve's columns (none without a curve): the customers ``rows`` (a mask) get their
    probabilities, the others NaN."""
    curve = model.curve_
    if curve is None:
        return {}
    out = np.full((len(rows), len(curve.horizons)), np.nan)
    out[rows] = curve.probabilities(_matrix(curve.feature_names, curve.categories, cols, levels, rows))
    if model.beyond_ is not None:
        out = model.beyond_.apply_curve(out, cols, curve.horizons, as_of)
    return {name: out[:, k] for k, name in enumerate(curve.columns)}


def _matrix(names: Sequence[str], categories: Mapping[str, Sequence[str]], cols: Mapping[str, np.ndarray],
            levels: Mapping[str, tuple[str, ...]], rows: np.ndarray) -> np.ndarray:
    """The inputs ``names`` of the customers ``rows`` (a mask), categorical codes mapped onto the trained
    ``categories``."""
    from churnguard.model._modelcore import column_matrix

    recoded = {name: table[np.where(cols[name] >= 0, cols[name], len(table) - 1)]
               for name, table in _recoding(names, categories, levels) if name in cols}
    return column_matrix({**cols, **recoded} if recoded else cols, int(rows.sum()), names, categories,
                         None if rows.all() else rows)


_RECODINGS: dict[tuple, tuple[Sequence[str], Mapping[str, Sequence[str]], list[tuple[str, np.ndarray]]]] = {}


def _recoding(names: Sequence[str], categories: Mapping[str, Sequence[str]], levels: Mapping[str, tuple[str, ...]]
              ) -> list[tuple[str, np.ndarray]]:
    """The inputs whose codes the model does not read as they are, each with the table its values are read
    through (indexed by code, the last entry for -1): a categorical input coded into other levels than its
    trained ones (through the labels, -1 when not a trained level), and a number given as text (or only
    nulls), read as the model reads text (NaN if not a number). Worked out once per model inputs and levels."""
    key = (id(names), id(categories), tuple(levels.items()))
    hit = _RECODINGS.get(key)
    if hit is None or hit[0] is not names or hit[1] is not categories:
        plan = []
        for name in names:
            if name in categories:
                trained, given = list(categories[name]), list(levels.get(name, ()))
                if given != trained:  # codes into other levels: through the labels
                    plan.append((name, np.array([trained.index(v) if v in trained else -1 for v in given] + [-1],
                                                dtype=np.int64)))
            elif name in levels:  # a number given as text (or only nulls): as the model reads text
                numbers = pd.to_numeric(pd.Series([*levels[name], None], dtype=object), errors="coerce")
                plan.append((name, numbers.to_numpy(dtype="float64")))
        if len(_RECODINGS) >= 8:  # models loaded one after the other (tests): keep only the recent ones
            _RECODINGS.clear()
        hit = _RECODINGS[key] = (names, categories, plan)
    return hit[2]


def _explain(model: ChurnModel, matrix: np.ndarray, reasons_for: str, bands: Mapping[str, float],
             probabilities: Callable[[np.ndarray], np.ndarray], scored: np.ndarray
             ) -> tuple[np.ndarray | None, np.ndarray]:
    """Contributions of the ``scored`` customers' inputs ``matrix`` (of every row, of the rows above ``low``
    for ``at_risk``, none for ``none``) and every customer's probability (``probabilities`` of the model's)."""
    if len(matrix) == 0:
        return None, probabilities(np.zeros(0))
    if reasons_for == "all":
        contrib, prob = model.explain(matrix)
        return contrib, probabilities(prob)
    prob = probabilities(model.explain(matrix, contributions=False)[1])
    if reasons_for == "none":
        return None, prob
    at_risk = rules.risk_band(prob[scored], bands) != "low"
    contrib = model.explain(matrix[at_risk])[0] if at_risk.any() else np.zeros((0, matrix.shape[1]))
    return contrib, prob


def frame_columns(features: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, ...]]]:
    """A features frame as the columns :func:`score_columns` takes: numbers as float64, categoricals (and text
    columns) as codes into their levels."""
    cols, levels = {}, {}
    for name in features.columns:
        if name in ("customer_id", "as_of"):
            continue
        values = features[name]
        if isinstance(values.dtype, pd.CategoricalDtype):
            cols[name] = values.cat.codes.to_numpy(dtype=np.int64)
            levels[name] = tuple(map(str, values.cat.categories))
        elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            cols[name] = values.to_numpy(dtype="float64", na_value=np.nan)
        else:
            codes, uniques = pd.factorize(values)
            cols[name], levels[name] = codes.astype(np.int64), tuple(map(str, uniques))
    return cols, levels


def score_features(model: ChurnModel, features: pd.DataFrame, playbook: Playbook, *, reasons_for: str = "all",
                   rejects: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`score_columns` for a features frame (``customer_id``, ``as_of`` and the features), as a frame,
    with each customer's ``rejected_rows`` (:func:`rejected_rows` of ``rejects``, the rows set aside from the
    tables the features came from; 0 without them). A customer with no purchase but rows set aside is told so
    in ``reason_1`` (``churnguard.scoring.reasons.set_aside_text``): not a customer without history."""
    cols, levels = frame_columns(features)
    missing = [c for c in _NEEDED if c not in cols]
    if missing:
        raise ValueError(f"feature rows need {', '.join(map(repr, missing))}")
    as_of = features["as_of"].to_numpy()
    scored = score_columns(model, cols, levels, playbook, as_of=as_of, reasons_for=reasons_for)
    set_aside = rejected_rows(rejects, features["customer_id"])
    hidden = (scored["lifecycle_stage"] == "never_bought") & (set_aside > 0)
    if hidden.any():
        scored["reason_1"] = np.array(scored["reason_1"], dtype=object)
        scored["reason_1"][hidden] = reasons.set_aside_texts(set_aside[hidden])
    frame = pd.DataFrame({"customer_id": features["customer_id"].to_numpy(), "as_of": as_of,
                          "last_purchase_date": last_purchase_dates(as_of, cols["recency_days"]), **scored,
                          "rejected_rows": set_aside})
    return frame.astype({"n_orders": "Int64"})  # a count


def rejected_rows(rejects: pd.DataFrame | None, ids: pd.Series) -> np.ndarray:
    """How many of each customer's transaction rows (``ids``: customer ids as validated) are among ``rejects``,
    the rows set aside by ``--reject-bad-rows`` (int64; 0 for none): scores computed on part of a customer's
    purchase history say so."""
    if rejects is None or rejects.empty:
        return np.zeros(len(ids), dtype=np.int64)
    mine = rejects.loc[(rejects["table"] == "transactions").to_numpy(), "customer_id"].dropna()
    counts = mine.astype(str).value_counts()
    found = counts.reindex(pd.Index(np.asarray(ids, dtype=object).astype(str)))
    return found.fillna(0).to_numpy(dtype=np.int64)


def last_purchase_dates(as_of: np.ndarray, recency_days: np.ndarray) -> np.ndarray:
    """The day of each customer's last purchase (NaT without one): ``as_of`` minus the recency in days."""
    days = np.asarray(recency_days, dtype="float64")
    whole = np.where(np.isnan(days), 0, days).astype("int64").astype("timedelta64[D]")
    dates = np.asarray(as_of, dtype="datetime64[D]") - whole
    return np.where(np.isnan(days), np.datetime64("NaT"), dates).astype("datetime64[ns]")


def select_customers(scores: pd.DataFrame, *, budget: float | None = None, control_fraction: float = 0.1,
                     seed: int = 0) -> pd.DataFrame:
    """``scores`` with ``selected`` (contact within budget), ``control_group`` (selected but held out,
    seeded): :func:`churnguard.scoring.rules.select`; and ``risk_rank`` and ``value_rank`` among all of them
    (:func:`churnguard.scoring.rules.ranks`; no risk rank without a probability)."""
    ids = scores["customer_id"].to_numpy(dtype=object)
    ev = scores["expected_value"].to_numpy(dtype="float64")
    places = rules.id_places(ids)  # the ids sorted once, for the selection's ties and the ranks'
    selected, control = rules.select(ids, ev, scores["action_cost"].to_numpy(dtype="float64"), budget=budget,
                                     control_fraction=control_fraction, seed=seed, places=places)
    return scores.assign(selected=selected, control_group=control,
                         **rank_columns(ids, scores["churn_probability"].to_numpy(dtype="float64"), ev, places))


def rank_columns(ids: np.ndarray, risk: np.ndarray, value: np.ndarray, places: np.ndarray | None = None
                 ) -> dict[str, pd.api.extensions.ExtensionArray]:
    """:func:`churnguard.scoring.rules.ranks` as nullable integer columns (no rank where the value is NaN)."""
    return {k: pd.array(v, dtype="Float64").astype("Int64")
            for k, v in rules.ranks(ids, risk, value, places).items()}


@dataclass(frozen=True)
class ScoreResult:
    """Scores for every customer that could be scored, and everything that could not, with the reason."""

    scores: pd.DataFrame
    rejects: pd.DataFrame
    drift_sample: pd.DataFrame | None = None  # model features + probability of the in-lookback population
    as_of: pd.Timestamp | None = None  # the day scored
    unseen: pd.Index | None = None  # score_tables: the customers of the tables without a features row (in rejects)

    def counts(self) -> dict[str, int]:
        """Customers in, scored and rejected (a customer is rejected only when none of their rows scored)."""
        ids = self.rejects["customer_id"].dropna().unique()
        scored = self.scores["customer_id"]  # those of ``ids`` among them, looked up in a hash of ``ids`` only
        rejected = len(ids) - scored[scored.isin(ids)].nunique() if len(ids) else 0
        return {"in": len(self.scores) + rejected, "scored": len(self.scores), "rejected": rejected}

    def summary(self, out: str | Path, campaign: Campaign | None = None) -> str:
        """Customers in, scored and rejected, those scored on partial history (:func:`_partial_history`),
        customers per risk band, those without a probability per lifecycle stage (their band), and the
        selection with its cost and expected value (control customers are not contacted, so they cost nothing);
        with ``campaign``, how each action's expected value is made and what to do next
        (:func:`churnguard.scoring.campaign.campaign_text`)."""
        c, s = self.counts(), self.scores
        chosen = s[["control_group", "action_cost", "expected_value"]][s["selected"]]  # not every column's rows
        contacted = chosen[~chosen["control_group"]]
        counts = s["risk_band"].value_counts()
        stages = [k for k in rules.LIFECYCLE_STAGES if k in counts.index]  # the bands without a probability
        text = (
            f"customers: {c['in']:,} in, {c['scored']:,} scored -> {out}, {c['rejected']:,} rejected\n"
            f"{_partial_history(s)}"
            f"bands: {', '.join(f'{k} {v:,}' for k, v in counts.drop(stages).items()) or 'none'}\n"
            f"no probability (no purchase in the model's lookback): "
            f"{', '.join(f'{k} {counts[k]:,}' for k in stages) or 'none'}\n"
            f"selected: {len(chosen):,} ({int(chosen['control_group'].sum()):,} held out as control), cost "
            f"{contacted['action_cost'].sum():,.2f}, EV {contacted['expected_value'].sum():,.2f}"
        )
        if campaign is None:
            return text
        from churnguard.scoring.campaign import campaign_text

        return text + "\n" + campaign_text(s, out, self.as_of, campaign)


def _partial_history(scores: pd.DataFrame) -> str:
    """A line (or '' when there are none) counting the customers scored with some of their transaction rows set
    aside (``rejected_rows`` > 0), and those of them with no purchase left."""
    if "rejected_rows" not in scores:
        return ""
    partial = scores["rejected_rows"].to_numpy(dtype="int64") > 0
    if not partial.any():
        return ""
    n, emptied = int(partial.sum()), int((partial & (scores["lifecycle_stage"] == "never_bought").to_numpy()).sum())
    return (f"partial history: {n:,} customer{'s' * (n != 1)} scored with transaction rows set aside (column "
            f"rejected_rows), {emptied:,} of them with no purchase left (no probability)\n")


_PROBABILITY_DIGITS, _MONEY_DIGITS = 4, 2
_MONEY = ("spend_last_year", "clv", "action_cost", "expected_value")


def file_rows(scores: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Score rows as the scores file holds them (:data:`SCORES_COLUMNS`); for a CSV file also rounded for
    people (probabilities to 4 decimals, money to cents) and safe to open in a spreadsheet
    (``churnguard._io.spreadsheet.spreadsheet_safe``). Parquet keeps every digit."""
    from churnguard._io.spreadsheet import spreadsheet_safe

    curve = [c for c in scores.columns if c.startswith("churn_probability_")]
    out = scores[_with_curve(SCORES_COLUMNS, curve)]
    if Path(path).suffix.lower() != ".csv":
        return out
    out = out.assign(**{c: out[c].round(_PROBABILITY_DIGITS) for c in ["churn_probability", *curve]},
                     **{c: out[c].round(_MONEY_DIGITS) for c in _MONEY})
    return spreadsheet_safe(out)


def read_scores(path: str | Path) -> pd.DataFrame:
    """A scores file as ``churnguard score`` wrote it, text cells as they were before being made safe for
    spreadsheets (every column of a CSV as text, as ``churnguard._io.read.read_table`` reads it)."""
    from churnguard._io.read import read_table
    from churnguard._io.spreadsheet import spreadsheet_restored

    try:
        return spreadsheet_restored(read_table(path))
    except pd.errors.EmptyDataError:  # a file of 0 bytes: pandas' message names no file
        raise ValueError(f"{path}: the scores file is empty") from None


def no_activity_reason(as_of: pd.Timestamp) -> str:
    """Why a customer known to the tables has no features row, so no score: nothing of theirs happened by
    ``as_of``."""
    return f"no activity on or before as_of {pd.Timestamp(as_of).date()}"


def score_tables(model: ChurnModel, tables: Tables, as_of: str | pd.Timestamp | None, playbook: Playbook, *,
                 budget: float | None = None, control_fraction: float = 0.1, seed: int = 0,
                 reasons_for: str = "all", select: bool = True) -> ScoreResult:
    """The whole chain from validated tables: features as of ``as_of`` (default: the last day in the data),
    scores (with each customer's ``rejected_rows`` from ``tables.rejects``), actions and selection. Customers
    first seen after ``as_of`` are reported, not dropped. ``select=False``: the scores without the selection's
    columns (:data:`SELECTION_COLUMNS`), for a part of the customers whose selection is made over all of them."""
    from churnguard.features import build_features, to_day

    info = model.require_info()
    as_of = to_day(as_of) if as_of is not None else tables.last_date()
    feats = build_features(tables, as_of, info.config.features, model_population(model))
    scores = score_features(model, feats, playbook, reasons_for=reasons_for, rejects=tables.rejects)
    if select:
        scores = select_customers(scores, budget=budget, control_fraction=control_fraction, seed=seed)
    scores["model_version"] = info.model_version
    unseen = unseen_customers(tables, scores["customer_id"])
    rejects = unscored_rejects(tables.rejects, unseen, as_of)
    rows = _drift_rows(model, feats)
    drift = _drift_sample(model, feats, rows, scores["churn_probability"].to_numpy()[rows])
    columns = output_columns(model, SCORES_COLUMNS)
    return ScoreResult(scores[columns if select else [c for c in columns if c not in SELECTION_COLUMNS]], rejects,
                       drift, as_of, unseen)


def unseen_customers(tables: Tables, seen: pd.Series) -> pd.Index:
    """The customers known from any of ``tables`` but not among ``seen`` (those with a features row): the ones
    with no activity on or before the day, reported by ``score`` and ``features`` alike (:func:`unscored_rejects`).
    Found with Arrow's hash lookup (``Tables.ids_not_in``)."""
    return tables.ids_not_in(seen, ("transactions", "customers", "tickets"))


def unscored_rejects(rejects: pd.DataFrame, unseen: pd.Index, as_of: pd.Timestamp) -> pd.DataFrame:
    """``rejects`` followed by a row for each customer known to the tables but without a features row
    (:func:`unseen_customers`), in id order, with :func:`no_activity_reason`."""
    unseen = unseen.sort_values()
    late = pd.DataFrame({"table": "all", "source": "", "row": pd.NA, "customer_id": unseen.to_numpy(),
                         "column": "", "value": "", "reason": no_activity_reason(as_of)})
    return pd.concat([r for r in (rejects, late) if not r.empty], ignore_index=True) if (
        not rejects.empty or not late.empty) else rejects


def emptied_customers(rejects: pd.DataFrame, kept: list) -> int:
    """How many customers had every row set aside: the ids of rows in ``rejects`` (of an input table, not the
    customers left out, table ``all``) among none of the ids ``kept`` (arrays or Series: those with a features
    row, and those left out). Nothing to look up without rejects."""
    if rejects.empty:
        return 0
    ids = pd.Index(pd.unique(rejects.loc[(rejects["table"] != "all").to_numpy(), "customer_id"].to_numpy()))
    ids = ids.dropna()
    if ids.empty:
        return 0
    found = np.zeros(len(ids), dtype=bool)
    for part in kept:
        found |= ids.isin(np.asarray(part, dtype=object))
    return int((~found).sum())


def score_frames(model: ChurnModel, *, transactions, tickets=None, customers=None,
                 as_of: str | pd.Timestamp | None = None, playbook: Playbook | None = None, budget: float | None = None,
                 control_fraction: float = 0.1, seed: int = 0) -> ScoreResult:
    """:func:`score_tables` from raw tables: DataFrames in the training data's column names, or file paths,
    validated with the model's data config; the default playbook unless one is given."""
    from churnguard.config import load_playbook
    from churnguard.dataset import load_tables, validate_tables

    data_cfg = model.require_info().config.data
    if isinstance(transactions, pd.DataFrame):
        tables = validate_tables(transactions, tickets, customers, config=data_cfg)
    else:
        tables = load_tables(transactions, tickets, customers, config=data_cfg)
    return score_tables(model, tables, as_of, playbook or load_playbook(), budget=budget,
                        control_fraction=control_fraction, seed=seed)

def score_records(model: ChurnModel, customers: Sequence[CustomerRecords], as_of: date, playbook: Playbook,
                  population: Population | None = None) -> list[dict]:
    """:func:`score_columns` for customers given as plain records (the HTTP server's path): their features by
    the same kernel (``churnguard.features.records``), no budget and no control group. Each customer is scored
    on its own data only, so scoring several requests' customers in one call gives each the same answer.

    Returns:
        One dict per customer, in the order given: a row of ``OUTPUT_COLUMNS`` for a customer known at
        ``as_of``, else ``{"customer_id", "reason"}`` (no activity on or before ``as_of``).
    """
    from churnguard.features.kernel import categorical_levels
    from churnguard.features.records import records_features

    population = population or model_population(model)
    info = model.require_info()
    known, cols = records_features(customers, as_of, info.config.features, population)
    scored = score_columns(model, cols, categorical_levels(population.attributes or {}), playbook, as_of=as_of)
    ids = [c.customer_id for c, k in zip(customers, known, strict=True) if k]
    selected, control = rules.select(np.array(ids, dtype=object), scored["expected_value"], scored["action_cost"],
                                     control_fraction=0.0)
    scored |= {"selected": selected, "control_group": control}
    columns = {c: scored[c].tolist() for c in output_columns(model) if c in scored}
    probabilities = [c for c in columns if c.startswith("churn_probability")]
    out, i, reason = [], 0, None if known.all() else no_activity_reason(as_of)
    for customer, kept in zip(customers, known.tolist(), strict=True):
        if not kept:
            out.append({"customer_id": customer.customer_id, "reason": reason})
            continue
        row = {"customer_id": customer.customer_id, "as_of": as_of, **{c: v[i] for c, v in columns.items()},
               "model_version": info.model_version}
        if row["churn_probability"] != row["churn_probability"]:  # NaN: outside the model's population
            row |= dict.fromkeys(probabilities)
        out.append(row)
        i += 1
    return out


DRIFT_LIMIT = 200_000  # rows in the drift sample


def drift_rows(ids: pd.Series | np.ndarray, limit: int | None = None) -> np.ndarray:
    """Which of the drift candidates ``ids`` (the customers who bought within the lookback window) the drift
    sample keeps: all of them, or when there are more than ``limit`` (default :data:`DRIFT_LIMIT`) the
    ``limit`` whose ids hash smallest (ties by id). Whichever engine, partitions or order the candidates come
    in, the same customers: the smallest of each part's kept ones are the smallest of all."""
    limit = DRIFT_LIMIT if limit is None else limit
    keep = np.ones(len(ids), dtype=bool)
    if len(ids) > limit:
        ids = pd.Series(np.asarray(ids, dtype=object)).astype(str)
        hashed = pd.util.hash_array(ids.to_numpy(dtype=object), categorize=False)  # distinct ids: the same
        # hashes as categorized first, without the pass that would find their duplicates (8x less CPU)
        keep = hashed <= np.partition(hashed, limit - 1)[limit - 1]  # the ``limit`` smallest, unless tied
        if keep.sum() > limit:  # ids of one hash at the cut: by id, then as they came
            order = pd.DataFrame({"h": hashed, "id": ids}).sort_values(["h", "id"], kind="stable").index.to_numpy()
            keep[:] = False
            keep[order[:limit]] = True
    return keep


def _drift_rows(model: ChurnModel, feats: pd.DataFrame) -> np.ndarray:
    """Positions in ``feats`` of its customers in the drift sample (:func:`drift_rows` of those who bought
    within the lookback window, the rows comparable with the training reference), in ``feats``' order."""
    lookback = model.require_info().config.labels.lookback_days
    candidates = np.flatnonzero(rules.in_lookback(feats["recency_days"], lookback))
    return candidates[drift_rows(feats["customer_id"].to_numpy()[candidates])]


def _drift_sample(model: ChurnModel, feats: pd.DataFrame, rows: np.ndarray, probability: np.ndarray
                  ) -> pd.DataFrame:
    """The model's features of ``feats``' drift ``rows`` (:func:`_drift_rows`), their churn ``probability`` and
    ``customer_id`` (which the drift check does not read: it lets partitions' samples be merged)."""
    names = [c for c in model.feature_names_ if c in feats]
    sample = feats.iloc[rows, feats.columns.get_indexer(names)]  # the rows of those columns only: one copy
    sample["churn_probability"] = probability
    sample["customer_id"] = feats["customer_id"].to_numpy()[rows]
    return sample


def drift_report(model: ChurnModel, sample: pd.DataFrame | None, *, threshold: float = 0.2) -> pd.DataFrame | None:
    """PSI per feature and for the score against the training reference stored in the model (None if absent)."""
    return drift_check(model, sample, threshold=threshold).table


def drift_check(model: ChurnModel, sample: pd.DataFrame | None, *, threshold: float = 0.2) -> DriftCheck:
    """:func:`drift_report` with its threshold, to write and describe (its table is None without a reference)."""
    from churnguard.reporting.monitoring import DriftCheck, drift_table

    info = model.require_info()
    day = info.training_window.get("as_of")
    if not info.drift_profiles or sample is None or sample.empty:
        return DriftCheck(None, threshold, day)
    return DriftCheck(drift_table(info.drift_profiles, sample, threshold=threshold), threshold, day)


def tables_drift(model: ChurnModel, tables: Tables) -> DriftCheck:
    """:func:`drift_check` of the customers in ``tables`` as of the last day in the data: the drift sample of
    ``score``, each customer's probability as ``score`` gives it, only the sampled customers scored (without
    reasons, which the check does not read)."""
    from churnguard.config import load_playbook
    from churnguard.features import build_features

    feats = build_features(tables, tables.last_date(), model.require_info().config.features, model_population(model))
    rows = _drift_rows(model, feats)
    scores = score_features(model, feats.iloc[rows], load_playbook(), reasons_for="none")
    return drift_check(model, _drift_sample(model, feats, rows, scores["churn_probability"].to_numpy()))
