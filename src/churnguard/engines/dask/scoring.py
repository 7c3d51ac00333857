"""Scoring on the cluster: partitions scored in parallel, the budget selection over all customers, and the scores
streamed into the output file atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard._io import TABLE_SUFFIXES, atomic_path
from churnguard.dataset import Tables
from churnguard.engines.dask._cluster import _client_for, _gather, _Tasks
from churnguard.engines.dask._validate import _concat
from churnguard.engines.dask.features import _combine, _feature_snapshots
from churnguard.features import to_day

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.config import Playbook
    from churnguard.engines.dask._read import DaskTables
    from churnguard.model import ChurnModel
    from churnguard.scoring import ScoreResult

_DRIFT_LIMIT = 200_000  # rows in the drift sample, as in churnguard.scoring


def _score_partition(model: ChurnModel, tables: Tables, feats: pd.DataFrame, playbook: Playbook, reasons_for: str,
                     as_of: pd.Timestamp) -> dict[str, Any]:
    """The steps of :func:`churnguard.scoring.score_tables` after the features, for one partition (without the
    selection, which needs every customer)."""
    from churnguard.scoring import OUTPUT_COLUMNS, score_features

    info = model.require_info()
    columns = [c for c in OUTPUT_COLUMNS if c not in ("selected", "control_group")]
    if len(feats):
        scores = score_features(model, feats, playbook, reasons_for=reasons_for)
        scores["model_version"] = info.model_version
        scores = scores[columns]
    else:
        scores = pd.DataFrame(columns=columns)
    known = tables.customer_ids()
    if tables.tickets is not None:
        known = known.union(pd.Index(tables.tickets["customer_id"].unique()))
    keep = (feats["recency_days"] <= info.config.labels.lookback_days).to_numpy()
    drift = feats.loc[keep, ["customer_id", *[c for c in model.feature_names_ if c in feats]]].copy()
    drift["churn_probability"] = scores.loc[keep, "churn_probability"].to_numpy() if len(feats) else []
    light = scores[["customer_id", "risk_band", "expected_value", "action_cost"]].assign(_in_lookback=keep)
    return {"scores": scores, "light": light, "unseen": known.difference(pd.Index(scores["customer_id"])).to_numpy(),
            "drift": drift}


def _drift_rows(bundle: dict[str, Any], wanted: np.ndarray | None) -> pd.DataFrame:
    drift = bundle["drift"]
    return drift if wanted is None else drift[drift["customer_id"].isin(wanted)]


def _drift_sample(client: Client, tasks: _Tasks, scored: list[Future], light: pd.DataFrame) -> pd.DataFrame | None:
    """The local engine's drift sample: the in-lookback customers (in customer order, labelled by their row
    in the scores), or the same ``sample(n=200_000, random_state=0)`` of them when there are more."""
    kept = light.loc[light["_in_lookback"]]
    wanted: dict[int, np.ndarray | None] = dict.fromkeys(range(len(scored)))
    labels = kept.index.to_numpy()
    if len(kept) > _DRIFT_LIMIT:  # pandas' DataFrame.sample draws RandomState(seed).choice(n, size, replace=False)
        labels = labels[np.random.RandomState(0).choice(len(kept), size=_DRIFT_LIMIT, replace=False)]
        chosen = light.loc[labels]
        wanted = {b: chosen.loc[chosen["_part"] == b, "customer_id"].to_numpy() for b in range(len(scored))}
    frames = _gather(client, [tasks.submit(f"drift-p{b}", _drift_rows, s, wanted[b]) for b, s in enumerate(scored)],
                     "collecting the drift sample")
    drift = _concat(frames)
    if drift.empty:
        return drift.drop(columns="customer_id")
    position = pd.Series(light.index, index=pd.Index(light["customer_id"]))
    drift.index = position.reindex(drift["customer_id"]).to_numpy()
    return drift.drop(columns="customer_id").loc[labels]


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
        Scores (all columns sorted by customer id, or the light ones when ``out`` is given), rejects and the
        drift sample.

    Raises:
        RuntimeError: a worker failed or died; ``out`` is then not written.
    """
    from churnguard.scoring import (
        OUTPUT_COLUMNS,
        ScoreResult,
        model_population,
        no_activity_reason,
        select_customers,
    )

    step = on_step or (lambda _msg: None)
    client = _client_for(dtables, client)
    if not 0 <= control_fraction < 1:
        raise ValueError(f"control_fraction must be in [0, 1), got {control_fraction}")
    if budget is not None and budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if out is not None and Path(out).suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"{out}: unsupported file type {Path(out).suffix or '(none)'!r}; use .csv or .parquet")
    info = model.require_info()
    day = to_day(as_of) if as_of is not None else dtables.last_date()
    fcfg = info.config.features
    step(f"building features as of {day.date()}")
    snap = _feature_snapshots(dtables, client, [day], fcfg, population=model_population(model))[day]
    step("scoring the partitions")
    tasks = _Tasks(client)
    remote_model = client.scatter(model, broadcast=True, hash=False)
    scored = [tasks.submit(f"score-p{b}", _score_partition, remote_model, p, f, playbook, reasons_for, day)
              for b, (p, f) in enumerate(zip(dtables.partitions, snap.parts, strict=True))]
    parts = _gather(client, [tasks.submit(f"light-p{b}", _pick, s, "light", "unseen") for b, s in enumerate(scored)],
                    "scoring")
    step("selecting customers within the budget")
    light = _combine([lt.assign(_part=b) for b, (lt, _) in enumerate(parts)])
    flags = select_customers(light[["customer_id", "risk_band", "expected_value", "action_cost"]], budget=budget,
                             control_fraction=control_fraction, seed=seed)
    unseen = pd.Index(np.concatenate([u for _, u in parts])).sort_values()
    late = pd.DataFrame({"table": "all", "source": "", "row": pd.NA, "customer_id": unseen.to_numpy(),
                         "column": "", "value": "", "reason": no_activity_reason(day)})
    base = dtables.rejects
    rejects = (pd.concat([r for r in (base, late) if not r.empty], ignore_index=True)
               if not base.empty or not late.empty else base)
    drift = _drift_sample(client, tasks, scored, light)
    selection = flags.set_index("customer_id")[["selected", "control_group"]]
    if out is None:
        frames = _gather(client, [tasks.submit(f"scores-p{b}", _pick, s, "scores") for b, s in enumerate(scored)],
                         "collecting the scores")
        scores = _combine([f for (f,) in frames]).join(selection, on="customer_id")[OUTPUT_COLUMNS]
        return ScoreResult(scores, rejects, drift)
    step(f"writing {out}")
    _write_scores(client, [tasks.submit(f"scores-p{b}", _pick, s, "scores") for b, s in enumerate(scored)],
                  selection, Path(out))
    return ScoreResult(flags, rejects, drift)


def _pick(bundle: dict[str, Any], *names: str) -> tuple:
    return tuple(bundle[n] for n in names)


def _write_scores(client: Client, futures: list[Future], selection: pd.DataFrame, out: Path) -> None:
    """Stream the partitions' scores into ``out`` (CSV or Parquet), atomically: all of it or nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churnguard.scoring import OUTPUT_COLUMNS

    csv = out.suffix.lower() == ".csv"
    with atomic_path(out) as tmp:
        writer = None
        written = False
        try:
            for b, fut in enumerate(futures):
                (frame,) = _gather(client, fut, f"writing the scores of customer partition {b}")
                if frame.empty and (written or b < len(futures) - 1):
                    continue
                frame = frame.sort_values("customer_id", kind="stable").join(selection, on="customer_id")[OUTPUT_COLUMNS]
                if csv:
                    frame.to_csv(tmp, index=False, mode="a" if written else "w", header=not written)
                else:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table.cast(writer.schema))
                written = True
        finally:
            if writer is not None:
                writer.close()
