"""Scoring on the cluster: partitions scored in parallel, the budget selection over all customers, and the scores
streamed into the output file atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard._io.files import table_suffix
from churnguard._io.write import appending_table
from churnguard.dataset import Tables
from churnguard.engines.dask._cluster import _gather, _Tasks
from churnguard.engines.dask._read import _client_for
from churnguard.engines.dask.features import _combine, _feature_snapshots
from churnguard.engines.partitions import concat_frames
from churnguard.features import to_day
from churnguard.lifecycle import in_lookback

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.config import Playbook
    from churnguard.engines.dask._read import DaskTables
    from churnguard.model import ChurnModel
    from churnguard.scoring import ScoreResult

def _score_partition(model: ChurnModel, tables: Tables, feats: pd.DataFrame, playbook: Playbook, reasons_for: str,
                     as_of: pd.Timestamp) -> dict[str, Any]:
    """The steps of :func:`churnguard.scoring.score_tables` after the features, for one partition (without the
    selection, which needs every customer)."""
    from churnguard.scoring import score_features
    from churnguard.scoring.score import (
        LIGHT_COLUMNS,
        SCORES_COLUMNS,
        SELECTION_COLUMNS,
        output_columns,
        unseen_customers,
    )

    info = model.require_info()
    columns = [c for c in output_columns(model, SCORES_COLUMNS) if c not in SELECTION_COLUMNS]
    if len(feats):
        scores = score_features(model, feats, playbook, reasons_for=reasons_for, rejects=tables.rejects)
        scores["model_version"] = info.model_version
        scores = scores[columns]
    else:
        scores = pd.DataFrame(columns=columns)
    keep = in_lookback(feats["recency_days"], info.config.labels.lookback_days)
    drift = feats.loc[keep, ["customer_id", *[c for c in model.feature_names_ if c in feats]]].copy()
    drift["churn_probability"] = scores.loc[keep, "churn_probability"].to_numpy() if len(feats) else []
    light = scores[LIGHT_COLUMNS].assign(_in_lookback=keep)
    return {"scores": scores, "light": light, "unseen": unseen_customers(tables, scores["customer_id"]).to_numpy(),
            "drift": drift}


def _drift_rows(bundle: dict[str, Any], wanted: np.ndarray | None) -> pd.DataFrame:
    drift = bundle["drift"]
    return drift if wanted is None else drift[drift["customer_id"].isin(wanted)]


def _drift_sample(client: Client, tasks: _Tasks, scored: list[Future], light: pd.DataFrame) -> pd.DataFrame | None:
    """The local engine's drift sample: the in-lookback customers (in customer order, labelled by their row
    in the scores) that ``drift_rows`` keeps."""
    from churnguard.scoring.score import drift_rows

    kept = light.loc[light["_in_lookback"]]
    wanted: dict[int, np.ndarray | None] = dict.fromkeys(range(len(scored)))
    labels = kept.index.to_numpy()
    chosen = drift_rows(kept["customer_id"].to_numpy())
    if not chosen.all():
        labels, chosen = labels[chosen], kept.loc[chosen]
        wanted = {b: chosen.loc[chosen["_part"] == b, "customer_id"].to_numpy() for b in range(len(scored))}
    frames = _gather(client, [tasks.submit(f"drift-p{b}", _drift_rows, s, wanted[b]) for b, s in enumerate(scored)],
                     "collecting the drift sample")
    drift = concat_frames(frames)
    drift = drift[[*(c for c in drift.columns if c != "customer_id"), "customer_id"]]  # the local engine's order
    if drift.empty:
        return drift
    position = pd.Series(light.index, index=pd.Index(light["customer_id"]))
    drift.index = position.reindex(drift["customer_id"]).to_numpy()
    return drift.loc[labels]


def score_dask(
    model: ChurnModel,
    dtables: DaskTables,
    as_of: str | pd.Timestamp | None,
    playbook: Playbook,
    *,
    client: Client | str | None = None,
    budget: float | None = None,
    control_fraction: float = 0.1,
    seed: int = 0,
    reasons_for: str = "all",
    out: str | Path | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score every customer on the cluster; the same result as ``score_tables`` on all the data.

    Partitions are scored in parallel (features with the model's lifespan and VIP threshold and with attribute
    kinds decided over all customers, then the model, reasons and actions); the budget selection and the
    control group are then drawn over all customers from their light columns.

    Args:
        model: a loaded model (sent to the workers as an object: they need no model file or key).
        dtables: tables from :func:`read_tables_dask`.
        as_of: score as of this day (default: the last day in the data).
        playbook: the retention playbook.
        client: the tables' client (default) or the same scheduler's address.
        budget, control_fraction, seed, reasons_for: as for ``score_tables``.
        out: when given, the scores are written there (.csv or .parquet, atomically, one partition at a time,
            each sorted by customer id) and the result holds only the light columns, as ``score_files``.
        on_step: progress callback, called with a short description before each step.

    Returns:
        Scores (all columns sorted by customer id; the light ones with ``out``), rejects and the drift sample.

    Raises:
        RuntimeError: a worker failed or died; ``out`` is then not written.
    """
    from churnguard.scoring import ScoreResult
    from churnguard.scoring.rules import check_selection

    client = _client_for(dtables, client)
    check_selection(budget, control_fraction, seed)
    if out is not None:
        table_suffix(Path(out))
    step = on_step or (lambda _msg: None)
    day = to_day(as_of) if as_of is not None else dtables.last_date()
    tasks = _Tasks(client)
    scored = _score_partitions(tasks, model, dtables, day, playbook, reasons_for, step)
    light, flags, rejects = _select(tasks, scored, dtables.rejects, day, step, budget=budget,
                                    control_fraction=control_fraction, seed=seed)
    drift = _drift_sample(client, tasks, scored, light)
    scores = _deliver(client, tasks, model, scored, flags, out, step)
    return ScoreResult(scores, rejects, drift, day)


def _deliver(client: Client, tasks: _Tasks, model: ChurnModel, scored: list[Future], flags: pd.DataFrame,
             out: str | Path | None, step: Callable[[str], None]) -> pd.DataFrame:
    """Every scores column joined with the selection flags, gathered here; with ``out``, written there
    partition by partition instead, and the light columns (``flags``) returned."""
    from churnguard.scoring.score import SCORES_COLUMNS, SELECTION_COLUMNS, output_columns

    selection = flags.set_index("customer_id")[SELECTION_COLUMNS]
    frames = [tasks.submit(f"scores-p{b}", _pick, s, "scores") for b, s in enumerate(scored)]
    if out is None:
        scores = _combine([f for (f,) in _gather(client, frames, "collecting the scores")])
        return scores.join(selection, on="customer_id")[output_columns(model, SCORES_COLUMNS)]
    step(f"writing {out}")
    _write_scores(client, frames, selection, Path(out))
    return flags


def _score_partitions(tasks: _Tasks, model: ChurnModel, dtables: DaskTables, day: pd.Timestamp,
                      playbook: Playbook, reasons_for: str, step: Callable[[str], None]) -> list[Future]:
    """Each partition's features as of ``day`` (with the model's population state), then its scores."""
    from churnguard.scoring import model_population

    client = tasks.client
    step(f"building features as of {day.date()}")
    fcfg = model.require_info().config.features
    snap = _feature_snapshots(dtables, client, [day], fcfg, population=model_population(model))[day]
    step("scoring the partitions")
    remote_model = client.scatter(model, broadcast=True, hash=False)
    return [tasks.submit(f"score-p{b}", _score_partition, remote_model, p, f, playbook, reasons_for, day)
            for b, (p, f) in enumerate(zip(dtables.partitions, snap.parts, strict=True))]


def _select(tasks: _Tasks, scored: list[Future], rejects: pd.DataFrame, day: pd.Timestamp,
            step: Callable[[str], None], **choice: float | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The light columns of every customer (``_part``: their partition), the budget selection over all of them
    (``choice``: as for ``select_customers``), and ``rejects`` with the customers known but not scored."""
    from churnguard.scoring import select_customers
    from churnguard.scoring.score import LIGHT_COLUMNS, unscored_rejects

    parts = _gather(tasks.client, [tasks.submit(f"light-p{b}", _pick, s, "light", "unseen")
                                   for b, s in enumerate(scored)], "scoring")
    step("selecting customers within the budget")
    light = _combine([lt.assign(_part=b) for b, (lt, _) in enumerate(parts)])
    flags = select_customers(light[LIGHT_COLUMNS], **choice)
    return light, flags, unscored_rejects(rejects, pd.Index(np.concatenate([u for _, u in parts])), day)


def _pick(bundle: dict[str, Any], *names: str) -> tuple:
    return tuple(bundle[n] for n in names)


def _write_scores(client: Client, futures: list[Future], selection: pd.DataFrame, out: Path) -> None:
    """Stream the partitions' scores into ``out`` (CSV or Parquet), atomically: all of it or nothing."""
    from churnguard.scoring.score import file_rows

    with appending_table(out) as append:
        written = False
        for b, fut in enumerate(futures):
            (frame,) = _gather(client, fut, f"writing the scores of customer partition {b}")
            if frame.empty and (written or b < len(futures) - 1):
                continue
            append(file_rows(frame.sort_values("customer_id", kind="stable").join(selection, on="customer_id"), out))
            written = True
