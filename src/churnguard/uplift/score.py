"""Scoring with an uplift model: contact the customers an action will keep.

Per customer the churn model's scores come first (``churnguard.scoring.score_tables``); then, among the actions
the playbook allows the customer (every rule whose conditions hold, ``churnguard.scoring.rules.rule_matches``)
and the uplift model knows, the one with the best **incremental value** = uplift x value - cost, where uplift is
the change in the chance of buying within the horizon the action makes and value the value at stake of the
expected value (``rules.value_at_stake``). Customers whose best action has no positive uplift are never selected;
the others are selected within the budget by incremental value per unit of cost (``rules.select``), with the
same seeded control group. A customer no known action is allowed for keeps the playbook's action, without uplift.

The batch path (:func:`score_with_uplift`, from tables) and the HTTP server (:func:`score_records_with_uplift`,
from records: no budget, no control group) both end in :func:`with_uplift`; the uplift model's features come
from the one feature kernel with its own feature config and population (:func:`kernel_state`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churnguard._text import plural
from churnguard.scoring import rules
from churnguard.scoring.score import (
    ScoreResult,
    file_rows,
    frame_columns,
    rank_columns,
    score_records,
    score_tables,
)

if TYPE_CHECKING:
    from churnguard.config import DataConfig, FeatureConfig, Playbook
    from churnguard.dataset import Tables
    from churnguard.features.records import CustomerRecords
    from churnguard.model import ChurnModel
    from churnguard.population import Population
    from churnguard.uplift.model import UpliftModel

__all__ = ["RECORD_COLUMNS", "UPLIFT_COLUMNS", "best_actions", "kernel_state", "playbook_actions", "record_features",
           "score_files_with_uplift", "score_records_with_uplift", "score_with_uplift", "select_by_uplift",
           "uplift_features", "uplift_file_rows", "uplift_summary", "with_uplift"]

logger = logging.getLogger(__name__)

UPLIFT_COLUMNS = ["uplift", "incremental_value"]
# What the uplift model changes of a row of churnguard.scoring.score_records (the server's answer).
RECORD_COLUMNS = ["action", "action_cost", "expected_value", *UPLIFT_COLUMNS, "selected", "control_group"]


def best_actions(uplift: pd.DataFrame, allowed: Mapping[str, np.ndarray], value: np.ndarray,
                 costs: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer, of the actions both ``allowed`` and in ``uplift`` (one column per action) with a known (not
    NaN) uplift, the one with the highest uplift x ``value`` - cost: its name (None when there is none), uplift and
    incremental value (NaN)."""
    names = [a for a in uplift.columns if a in allowed and a in costs]
    n = len(value)
    if not names:
        return np.full(n, None, dtype=object), np.full(n, np.nan), np.full(n, np.nan)
    u = uplift[names].to_numpy(dtype="float64")
    inc = u * np.asarray(value, dtype="float64")[:, None] - np.array([costs[a] for a in names])
    inc = np.where(np.column_stack([allowed[a] for a in names]) & ~np.isnan(inc), inc, -np.inf)
    best = np.argmax(inc, axis=1)
    rows = np.arange(n)
    known = np.isfinite(inc[rows, best])
    action = np.where(known, np.asarray(names, dtype=object)[best], None)
    return action, np.where(known, u[rows, best], np.nan), np.where(known, inc[rows, best], np.nan)


def select_by_uplift(ids: np.ndarray, uplift: np.ndarray, incremental: np.ndarray, cost: np.ndarray, *,
                     budget: float | None = None, control_fraction: float = 0.1, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Who to contact and who of them to hold out: :func:`churnguard.scoring.rules.select` by incremental value,
    among the customers with a positive uplift only (contact that makes a customer worse is never chosen)."""
    worth = np.where(np.asarray(uplift, dtype="float64") > 0, incremental, np.nan)
    return rules.select(ids, worth, cost, budget=budget, control_fraction=control_fraction, seed=seed)


def kernel_state(uplift: UpliftModel) -> tuple[FeatureConfig, Population]:
    """The feature config and population the uplift model's features were built with at training."""
    from churnguard.config import FeatureConfig
    from churnguard.population import Population

    return FeatureConfig(**uplift.info_["features"]), Population.from_dict(uplift.info_["population"])


def uplift_features(uplift: UpliftModel, tables: Tables, as_of: pd.Timestamp, ids: pd.Series) -> pd.DataFrame:
    """The features of the customers ``ids`` as of ``as_of``, by the kernel with the uplift model's feature config
    and population (:func:`kernel_state`), in the order of ``ids``."""
    from churnguard.features import build_features

    feats = build_features(tables, as_of, *kernel_state(uplift))
    return feats.set_index("customer_id").reindex(pd.Index(ids.to_numpy())).reset_index(names="customer_id")


def record_features(uplift: UpliftModel, customers: Sequence[CustomerRecords], as_of: date) -> pd.DataFrame:
    """:func:`uplift_features` of customers given as records (``churnguard.features.records``, the same kernel):
    one row per customer known at ``as_of``, in the order given."""
    from churnguard.features.build import frame_columns as kernel_frame
    from churnguard.features.records import records_features

    config, population = kernel_state(uplift)
    known, cols = records_features(customers, as_of, config, population)
    ids = [c.customer_id for c, kept in zip(customers, known.tolist(), strict=True) if kept]
    return pd.DataFrame({"customer_id": ids, "as_of": pd.Timestamp(as_of),
                         **kernel_frame(cols, population.attributes)})


def with_uplift(scores: pd.DataFrame, feats: pd.DataFrame, uplift: UpliftModel, model: ChurnModel,
                playbook: Playbook, *, budget: float | None = None, control_fraction: float = 0.1, seed: int = 0
                ) -> pd.DataFrame:
    """``scores`` (the churn model's, one row per customer of ``feats``, same order) with the best action by
    incremental value, its cost and expected value, ``uplift``, ``incremental_value``, and the selection and
    ranks made by incremental value (see the module docstring)."""
    info = model.require_info()
    cols, _ = frame_columns(feats)
    flags = rules.signals(cols, len(feats), sla_hours=info.config.features.sla_hours,
                          new_customer_days=playbook.new_customer_days, lookback_days=info.config.labels.lookback_days)
    allowed = rules.rule_matches(scores["risk_band"].to_numpy(dtype=object),
                                 scores["lifecycle_stage"].to_numpy(dtype=object),
                                 scores["value_tier"].to_numpy(dtype=object), flags, playbook)
    clv = scores["clv"].to_numpy(dtype="float64")
    value = rules.value_at_stake(clv, info.population.lifespan_years, playbook.max_value_years)
    costs = {r.name: r.cost for r in playbook.actions}
    best, lift, inc = best_actions(uplift.predict(feats), allowed, value, costs)
    action = np.where(best == None, scores["action"].to_numpy(dtype=object), best)
    prob = scores["churn_probability"].to_numpy(dtype="float64")
    cost, ev = rules.expected_value(prob, clv, action, playbook, info.population.lifespan_years)
    ids = scores["customer_id"].to_numpy(dtype=object)
    selected, control = select_by_uplift(ids, lift, inc, cost, budget=budget, control_fraction=control_fraction,
                                         seed=seed)
    return scores.assign(action=action, action_cost=cost, expected_value=ev, uplift=lift, incremental_value=inc,
                         selected=selected, control_group=control, **rank_columns(ids, prob, inc))


def playbook_actions(uplift: UpliftModel, playbook: Playbook) -> list[str]:
    """The uplift model's actions that the playbook has, the only ones :func:`best_actions` can choose; the
    others are logged as a warning.

    Raises:
        ValueError: the playbook has none of them: every customer would keep the playbook's action without an
            uplift, and nobody would be selected (it was so, without a word).
    """
    names = {rule.name for rule in playbook.actions}
    known = [a for a in uplift.actions if a in names]
    others = [a for a in uplift.actions if a not in names]
    if not known:
        raise ValueError(f"none of the uplift model's actions ({', '.join(others)}) is an action of the playbook "
                         f"({', '.join(sorted(names))}): it would choose no action and select nobody; train it on "
                         "campaigns of the playbook's actions, or give the playbook that has them")
    if others:
        logger.warning("the uplift model's actions %s are not in the playbook: they are never chosen",
                       ", ".join(others))
    return known


def score_with_uplift(model: ChurnModel, uplift: UpliftModel, tables: Tables, as_of: str | pd.Timestamp | None,
                      playbook: Playbook, *, budget: float | None = None, control_fraction: float = 0.1,
                      seed: int = 0) -> ScoreResult:
    """:func:`churnguard.scoring.score_tables`, then actions and selection by incremental value
    (:func:`with_uplift`); every customer scored gets ``uplift`` and ``incremental_value`` (NaN without a known
    action)."""
    playbook_actions(uplift, playbook)
    result = score_tables(model, tables, as_of, playbook, control_fraction=0.0)
    feats = uplift_features(uplift, tables, result.as_of, result.scores["customer_id"])
    scores = with_uplift(result.scores, feats, uplift, model, playbook, budget=budget,
                         control_fraction=control_fraction, seed=seed)
    return replace(result, scores=scores)


def score_files_with_uplift(model: ChurnModel, uplift: UpliftModel, inputs: Sequence, *, out: str | Path,
                            playbook: Playbook, data_config: DataConfig, as_of: str | None = None,
                            budget: float | None = None, control_fraction: float = 0.1, seed: int = 0,
                            on_step: Callable[..., object] = lambda *_: None,
                            on_note: Callable[[str], object] = lambda _: None) -> ScoreResult:
    """:func:`score_with_uplift` of the tables ``inputs`` (transactions, tickets, customers, events: files or
    database tables, None when absent) read in memory with ``data_config``; the rows of the scores file
    (:func:`uplift_file_rows`) written to ``out``. ``on_step``, ``on_note``: progress reports, as
    ``churnguard.engines.score_from_files`` takes them (this path has no notes)."""
    from churnguard._io.write import write_table
    from churnguard.dataset import load_tables

    on_step("Reading and validating input")
    tables = load_tables(*inputs[:3], config=data_config, feature_inputs_only=True, events=inputs[3])
    on_step("scoring with the uplift model")
    result = score_with_uplift(model, uplift, tables, as_of, playbook, budget=budget,
                               control_fraction=control_fraction, seed=seed)
    write_table(uplift_file_rows(result.scores, out), out)
    return result


def score_records_with_uplift(model: ChurnModel, uplift: UpliftModel, customers: Sequence[CustomerRecords],
                              as_of: date, playbook: Playbook, population: Population | None = None) -> list[dict]:
    """:func:`churnguard.scoring.score_records` (the server's path: no budget, no control group), with the
    :data:`RECORD_COLUMNS` of each known customer's row replaced by :func:`with_uplift`'s (``uplift`` and
    ``incremental_value`` None without a known action). Rows of customers unknown at ``as_of`` are unchanged."""
    rows = score_records(model, customers, as_of, playbook, population)
    known = [i for i, row in enumerate(rows) if "reason" not in row]
    if not known:
        return rows
    scores = pd.DataFrame([rows[i] for i in known])
    feats = record_features(uplift, customers, as_of)
    out = with_uplift(scores, feats, uplift, model, playbook, control_fraction=0.0)
    columns = {c: out[c].astype(object).where(out[c].notna(), None).tolist() for c in RECORD_COLUMNS}
    for k, i in enumerate(known):
        rows[i] |= {c: v[k] for c, v in columns.items()}
    return rows


def uplift_file_rows(scores: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The scores file's rows (``churnguard.scoring.score.file_rows``) with :data:`UPLIFT_COLUMNS` after
    ``expected_value`` (a CSV: uplift to 4 decimals, incremental value to cents)."""
    rows = file_rows(scores, path)
    csv = Path(path).suffix.lower() == ".csv"
    at = rows.columns.get_loc("expected_value") + 1
    for k, (name, digits) in enumerate((("uplift", 4), ("incremental_value", 2))):
        values = scores[name].to_numpy(dtype="float64")
        rows.insert(at + k, name, np.round(values, digits) if csv else values)
    return rows


def uplift_summary(scores: pd.DataFrame, uplift: UpliftModel) -> str:
    """What the uplift model did: per action, learned or its average effect; and for the customers to contact,
    the buyers the contact is expected to add and the incremental value."""
    contacted = scores[scores["selected"].to_numpy(dtype=bool) & ~scores["control_group"].to_numpy(dtype=bool)]
    kinds = ", ".join(f"{e.action} ({_effect_kind(e)})" for e in uplift.effects_.values())
    return (f"uplift: actions {kinds}; contacting {plural(len(contacted), 'customer')} adds an expected "
            f"{contacted['uplift'].sum():,.1f} buyers within {uplift.info_['horizon_days']} days, incremental value "
            f"{contacted['incremental_value'].sum():,.2f}")


def _effect_kind(effect) -> str:
    if effect.kind == "model":
        return "learned"
    return f"average {effect.average:+.1%}" if np.isfinite(effect.average) else "no effect measured: never chosen"
