"""Training on the cluster: the training set built per partition, the number of boosting rounds chosen on a
sample, LightGBM trained with ``lightgbm.dask``, then calibrated, scored and saved like a local model."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard.dataset import Tables
from churnguard.engines.dask._cluster import _client_for, _gather, _Tasks
from churnguard.engines.dask.features import _combine, _feature_snapshots
from churnguard.engines.partitions import concat_frames as _concat
from churnguard.features import to_day
from churnguard.features.kernel import bgnbd_features
from churnguard.labels import make_labels
from churnguard.model.calibration import fit_calibrator
from churnguard.model.churn_model import ChurnModel
from churnguard.training.bgnbd import fit_history_counts, history_counts
from churnguard.training.run import (
    TrainingRows,
    TrainResult,
    fingerprint,
    finish_training,
    new_model,
    sampling_summary,
)
from churnguard.training.snapshots import snapshot_dates, split_by_time

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.btyd import BGNBDParams
    from churnguard.config import Config
    from churnguard.engines.dask._read import DaskTables

_TABLES = ("transactions", "tickets", "customers")


def _training_rows(feats: pd.DataFrame, tables: Tables, params: BGNBDParams, as_of: pd.Timestamp, horizon: int,
                   lookback: int) -> pd.DataFrame:
    """One snapshot's labelled rows of one partition, as churnguard.training.snapshots.make_training_set makes them."""
    x = feats.assign(**bgnbd_features(feats, params, horizon))
    y = make_labels(tables.transactions, as_of, horizon, lookback)
    return x.merge(y.drop(columns="as_of"), on="customer_id", how="inner", validate="one_to_one")


def _shape(frame: pd.DataFrame) -> tuple[int, int, pd.DataFrame]:
    """A partition's rows of one snapshot: how many, how many churned, and its columns."""
    return len(frame), int(frame["churned"].sum()), frame.iloc[:0]


def _stack(frames: list[pd.DataFrame], dtypes: dict[str, Any]) -> pd.DataFrame:
    """Snapshots of one partition as one frame with the dtypes of the local engine's concatenated set."""
    out = _concat(frames)
    change = {c: t for c, t in dtypes.items() if out[c].dtype != t}
    return out.astype(change) if change else out


def _sample(frame: pd.DataFrame, frac: float, seed: int) -> pd.DataFrame:
    return frame if frac >= 1 else frame.sample(frac=frac, random_state=seed)


def _model_input(frame: pd.DataFrame, probe: ChurnModel) -> pd.DataFrame:
    return probe.prepare(frame)


def _labels(frame: pd.DataFrame) -> pd.Series:
    return frame["churned"]


def _hashes_and_ids(tables: Tables) -> tuple[list[np.ndarray], np.ndarray]:
    """A partition's rows' hashes in each table (none for a table not given) and its customers."""
    return ([pd.util.hash_pandas_object(f, index=False).to_numpy() if f is not None else np.array([], dtype=np.uint64)
             for f in (tables.transactions, tables.tickets, tables.customers)], tables.customer_ids().to_numpy())


def _data_facts(client: Client, tasks: _Tasks, dtables: DaskTables) -> tuple[dict[str, int], str]:
    """The summary's counts of the data and churnguard.training.run.data_fingerprint of it: the sorted row
    hashes of each table."""
    parts = _gather(client, [tasks.submit(f"fingerprint-p{b}", _hashes_and_ids, p)
                             for b, p in enumerate(dtables.partitions)], "fingerprinting the data")
    hashes = [np.concatenate([p[0][i] for p in parts]) for i in range(len(_TABLES))]
    counts = {"transactions": len(hashes[0]), "tickets": len(hashes[1]), "customers": sum(len(p[1]) for p in parts),
              "rejected_rows": len(dtables.rejects)}
    return counts, fingerprint(h if name in dtables.sources else None for h, name in zip(hashes, _TABLES, strict=True))


def train_dask(
    dtables: DaskTables,
    config: Config,
    *,
    client: Client | str | None = None,
    model_out: str | Path,
    as_of: str | pd.Timestamp | None = None,
    sample_rows: int = 200_000,
    config_text: str | None = None,
    track: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, evaluate and save a churn model on the cluster, like ``run_training`` on all the data.

    The training set is built per partition (features with global lifespan, VIP threshold and attribute kinds;
    BG/NBD fitted per snapshot on every partition's histories; labels), with the same time split. LightGBM
    trains with ``lightgbm.dask.DaskLGBMClassifier``; its early stopping does not work on the cluster, so the
    number of boosting rounds is chosen by early stopping on the validation snapshot with a local model trained
    on a sample of ``sample_rows`` training rows (all of them when there are fewer), and the distributed model
    then trains for that many rounds. The validation and test snapshots are gathered here; the rest is
    :func:`churnguard.training.run.finish_training`'s, as for a local run, and the model file an ordinary one.
    ``snapshots.max_train_rows`` does not apply: the cluster trains on every row (``max_train_rows: None``).

    Args:
        dtables: tables from :func:`read_tables_dask`.
        config: the whole configuration.
        client: the tables' client (default) or the same scheduler's address.
        model_out: where the model file is written (atomically).
        as_of: "today": the last day whose data may be used (default: the last transaction day).
        sample_rows: training rows for choosing the number of boosting rounds.
        config_text: the YAML the config came from, logged to MLflow.
        track: record the run in MLflow (the training curves are those of the round-choosing sample model).
        on_step: progress callback, called with a short description before each step.
    """
    step = on_step or (lambda _msg: None)
    client = _client_for(dtables, client)
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be at least 1, got {sample_rows}")
    last = to_day(as_of) if as_of is not None else dtables.last_date()
    days = split_by_time(snapshot_dates(dtables.first_timestamp(), last, config.labels, config.snapshots),
                         config.labels.horizon_days)
    tasks = _Tasks(client)
    rows, train = _snapshot_rows(dtables, client, tasks, days, last, config, step)
    model, sampled = _fit(client, tasks, rows, train, config, sample_rows, step)
    rows.facts["rounds_chosen_on_rows"] = sampled
    return finish_training(model, rows, config, model_out=model_out, config_text=config_text, track=track,
                           on_step=step)


def _snapshot_rows(dtables: DaskTables, client: Client, tasks: _Tasks,
                   days: tuple[list[pd.Timestamp], pd.Timestamp, pd.Timestamp], last: pd.Timestamp, config: Config,
                   step: Callable[[str], None]) -> tuple[TrainingRows, dict[int, Future]]:
    """The validation and test rows gathered here with the facts of the data and of the training set, and the
    training rows of each partition, left on the cluster."""
    train_days, valid_day, test_day = days
    used = [*train_days, valid_day, test_day]
    horizon, lookback = config.labels.horizon_days, config.labels.lookback_days
    step(f"building features for {len(used)} snapshots and today")
    snaps = _feature_snapshots(dtables, client, [*used, last], config.features)
    bg_counts = _gather(client, {d: [tasks.submit(f"bgcounts-{d:%Y%m%d}-p{b}", history_counts, f)
                                     for b, f in enumerate(s.parts)] for d, s in snaps.items()}, "fitting BG/NBD")
    bg = {d: fit_history_counts(c) for d, c in bg_counts.items()}
    rows = {d: [tasks.submit(f"rows-{d:%Y%m%d}-p{b}", _training_rows, f, p, bg[d], d, horizon, lookback)
                for b, (f, p) in enumerate(zip(snaps[d].parts, dtables.partitions, strict=True))] for d in used}
    shapes = _gather(client, {d: [tasks.submit(f"shape-{d:%Y%m%d}-p{b}", _shape, r) for b, r in enumerate(fs)]
                              for d, fs in rows.items()}, "labelling the snapshots")
    metas = [next((m for n, _, m in shapes[d] if n), shapes[d][0][2]) for d in used]
    dtypes = pd.concat(metas, ignore_index=True).dtypes.to_dict()  # as the local engine's concatenated set

    step("gathering the validation and test snapshots")

    def local(day: pd.Timestamp) -> pd.DataFrame:
        frames = _gather(client, [tasks.submit(f"stack-{day:%Y%m%d}-p{b}", _stack, [r], dtypes)
                                  for b, r in enumerate(rows[day])], f"gathering the snapshot {day.date()}")
        return _combine(frames)

    valid, test = local(valid_day), local(test_day)
    parts = [b for b in range(dtables.npartitions) if sum(shapes[d][b][0] for d in train_days)]
    train = {b: tasks.submit(f"train-p{b}", _stack, [rows[d][b] for d in train_days], dtypes) for b in parts}
    n_train = sum(shapes[d][b][0] for d in train_days for b in parts)
    if not n_train:
        raise ValueError("the training snapshots hold no labelled customers")
    churned = sum(shapes[d][b][1] for d in train_days for b in parts)
    step("fingerprinting the data")
    counts, digest = _data_facts(client, tasks, dtables)
    # snapshots.max_train_rows is the local engine's memory bound: the cluster trains on every row.
    facts = {**sampling_summary(n_train, n_train, None, config.model.seed), "engine": "dask"}
    return TrainingRows(valid, test, days, dtables.first_timestamp(), last, counts, n_train,
                        float(np.float64(churned) / n_train), dtypes, replace(snaps[last].population, bgnbd=bg[last]),
                        {str(d.date()): bg[d] for d in used}, digest, facts), train


def _fit(client: Client, tasks: _Tasks, rows: TrainingRows, train: dict[int, Future], config: Config,
         sample_rows: int, step: Callable[[str], None]) -> tuple[ChurnModel, int]:
    """The model trained on the cluster for the number of rounds a local model early-stops at on a sample,
    calibrated on the validation snapshot; and the sample's size."""
    step(f"choosing the number of boosting rounds on a sample of {min(sample_rows, rows.train_rows):,} rows")
    frac = min(1.0, sample_rows / rows.train_rows)
    sample = _gather(client, [tasks.submit(f"sample-p{b}", _sample, f, frac, config.model.seed + b)
                              for b, f in train.items()], "sampling training rows")
    sample = _concat(sample).sort_values(["as_of", "customer_id"], kind="stable", ignore_index=True)
    valid = rows.valid
    probe = new_model(config.model).fit(sample, sample["churned"], valid, valid["churned"])
    rounds = probe.best_iteration_

    step(f"training LightGBM on the cluster ({rounds} rounds, {rows.train_rows:,} rows)")
    booster = _fit_distributed(client, tasks, train, probe, sample, rounds, config)
    model = new_model(config.model)
    model.feature_names_, model.categories_ = probe.feature_names_, probe.categories_
    model.booster_, model.best_iteration_ = booster, int(booster.current_iteration())
    model.evals_result_ = probe.evals_result_  # curves of the round-choosing run (MLflow plots them)
    model.calibrator_ = fit_calibrator(config.model.calibration, model.predict_raw(valid), valid["churned"].to_numpy())
    return model, len(sample)


def _fit_distributed(client: Client, tasks: _Tasks, train: dict[int, Future], probe: ChurnModel,
                     sample: pd.DataFrame, rounds: int, config: Config) -> Any:
    """Train ``rounds`` boosting rounds with lightgbm.dask on the partitions' rows; return the booster."""
    import dask.dataframe as dd
    import lightgbm.dask as lgb_dask

    mc = config.model
    remote_probe = client.scatter(probe, broadcast=True, hash=False)
    xs = [tasks.submit(f"modelinput-p{b}", _model_input, f, remote_probe) for b, f in train.items()]
    ys = [tasks.submit(f"labels-p{b}", _labels, f) for b, f in train.items()]
    _gather(client, [tasks.submit(f"check-p{b}", len, x) for b, x in zip(train, xs, strict=True)],
            "preparing the model inputs")  # failures surface here, not inside lightgbm
    x = dd.from_delayed(xs, meta=probe.prepare(sample.iloc[:0]), verify_meta=False)
    y = dd.from_delayed(ys, meta=sample["churned"].iloc[:0], verify_meta=False)
    params = {"objective": "binary", "metric": "binary_logloss", "verbose": -1, **mc.params, "seed": mc.seed}
    if mc.monotone_constraints:
        params["monotone_constraints"] = [mc.monotone_constraints.get(c, 0) for c in probe.feature_names_]
    classifier = lgb_dask.DaskLGBMClassifier(client=client, n_estimators=rounds, **params)
    try:
        with warnings.catch_warnings():
            # lightgbm.dask warns about n_jobs on every fit: it sets the threads from the workers itself.
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
            classifier.fit(x, y)
        return classifier.booster_
    except Exception as exc:
        raise RuntimeError(f"dask engine: training LightGBM on the cluster failed: {type(exc).__name__}: {exc}") from exc
