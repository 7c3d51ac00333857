"""Training on the cluster: the training set built per partition, the number of boosting rounds chosen on a
sample, LightGBM trained with ``lightgbm.dask``, then calibrated, scored and saved like a local model."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard.dataset import Tables
from churnguard.engines.dask._cluster import _client_for, _gather, _Tasks
from churnguard.engines.dask._validate import _concat
from churnguard.engines.dask.features import _combine, _feature_snapshots
from churnguard.features import to_day

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.btyd import BGNBDParams
    from churnguard.config import Config
    from churnguard.engines.dask._read import DaskTables
    from churnguard.model import ChurnModel
    from churnguard.training.run import TrainResult

_TABLES = ("transactions", "tickets", "customers")
_WEEK = 7.0  # BG/NBD runs in weeks, as in churnguard.training.run


def _bg_counts(feats: pd.DataFrame) -> pd.DataFrame:
    """This partition's (x, t_x, T) histories in weeks with their counts, as churnguard.training.run.fit_bgnbd
    compresses them (BG/NBD's fit merges identical rows, so the global fit on these counts is the same)."""
    has = feats["bg_frequency"].notna()
    rows = pd.DataFrame({"x": feats.loc[has, "bg_frequency"], "tx": feats.loc[has, "bg_recency_days"] / _WEEK,
                         "T": feats.loc[has, "bg_age_days"] / _WEEK})
    return rows.value_counts().reset_index(name="n")


def _fit_bgnbd(counts: list[pd.DataFrame]) -> BGNBDParams:
    from churnguard import btyd

    rows = pd.concat(counts, ignore_index=True).groupby(["x", "tx", "T"], sort=False)["n"].sum().reset_index()
    return btyd.fit_bgnbd(rows["x"].to_numpy(), rows["tx"].to_numpy(), rows["T"].to_numpy(), weights=rows["n"].to_numpy())


def _training_rows(feats: pd.DataFrame, tables: Tables, params: BGNBDParams, as_of: pd.Timestamp, horizon: int,
                   lookback: int) -> pd.DataFrame:
    """One snapshot's labelled rows of one partition, as churnguard.training.snapshots.make_training_set makes them."""
    from churnguard.labels import make_labels
    from churnguard.training.run import add_bgnbd_features

    x = add_bgnbd_features(feats, params, horizon)
    y = make_labels(tables.transactions, as_of, horizon, lookback)
    return x.merge(y.drop(columns="as_of"), on="customer_id", how="inner", validate="one_to_one")


def _shape(frame: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    return len(frame), frame.iloc[:0]


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


def _row_hashes(tables: Tables) -> list[np.ndarray]:
    return [pd.util.hash_pandas_object(f, index=False).to_numpy() if f is not None else np.array([], dtype=np.uint64)
            for f in (tables.transactions, tables.tickets, tables.customers)]


def _fingerprint(client: Client, dtables: DaskTables) -> str:
    """churnguard.training.run.data_fingerprint of the same data: the sorted row hashes of each table."""
    import hashlib

    tasks = _Tasks(client)
    hashes = _gather(client, [tasks.submit(f"fingerprint-p{b}", _row_hashes, p) for b, p in enumerate(dtables.partitions)],
                     "fingerprinting the data")
    h = hashlib.sha256()
    for i, name in enumerate(_TABLES):
        if name in dtables.sources:
            h.update(np.sort(np.concatenate([p[i] for p in hashes])).tobytes())
    return h.hexdigest()[:16]


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
    then trains for that many rounds. The validation and test snapshots are gathered locally to calibrate and
    to score the model. The saved model is an ordinary :class:`~churnguard.model.ChurnModel` whose booster is
    the distributed one, so it loads and scores like any other. ``snapshots.max_train_rows`` does not apply:
    the cluster trains on every row (the summary says ``max_train_rows: None``).

    Args:
        dtables: tables from :func:`read_tables_dask`.
        config: the whole configuration.
        client: the tables' client (default) or the same scheduler's address.
        model_out: where the model file is written (atomically).
        as_of: "today": the last day whose data may be used (default: the last transaction day).
        sample_rows: training rows for choosing the number of boosting rounds.
        config_text: the YAML the config came from, logged to MLflow.
        track: record the run in MLflow (with ``churnguard.training.run``'s logging: the training curves are those of
            the round-choosing sample model).
        on_step: progress callback, called with a short description before each step.
    """
    from churnguard.model.churn_model import ChurnModel, _Calibrator
    from churnguard.training.evaluation import compare_to_baselines
    from churnguard.training.run import (
        TrainResult,
        _log_training_run,
        _sampling_summary,
        holdout_scorecards,
        model_metadata,
        split_by_time,
    )
    from churnguard.training.snapshots import snapshot_dates

    step = on_step or (lambda _msg: None)
    client = _client_for(dtables, client)
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be at least 1, got {sample_rows}")
    last = to_day(as_of) if as_of is not None else dtables.last_date()
    horizon, lookback = config.labels.horizon_days, config.labels.lookback_days
    dates = snapshot_dates(dtables.first_timestamp(), last, config.labels, config.snapshots)
    train_days, valid_day, test_day = split_by_time(dates, horizon)
    used = [*train_days, valid_day, test_day]

    step(f"building features for {len(used)} snapshots and today")
    snaps = _feature_snapshots(dtables, client, [*used, last], config.features)
    tasks = _Tasks(client)
    bg_counts = _gather(client, {d: [tasks.submit(f"bgcounts-{d:%Y%m%d}-p{b}", _bg_counts, f)
                                     for b, f in enumerate(s.parts)] for d, s in snaps.items()}, "fitting BG/NBD")
    bg = {d: _fit_bgnbd(c) for d, c in bg_counts.items()}
    rows = {d: [tasks.submit(f"rows-{d:%Y%m%d}-p{b}", _training_rows, f, p, bg[d], d, horizon, lookback)
                for b, (f, p) in enumerate(zip(snaps[d].parts, dtables.partitions, strict=True))] for d in used}
    shapes = _gather(client, {d: [tasks.submit(f"shape-{d:%Y%m%d}-p{b}", _shape, r) for b, r in enumerate(fs)]
                              for d, fs in rows.items()}, "labelling the snapshots")
    metas = [next((m for n, m in shapes[d] if n), shapes[d][0][1]) for d in used]
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

    step(f"choosing the number of boosting rounds on a sample of {min(sample_rows, n_train):,} rows")
    frac = min(1.0, sample_rows / n_train)
    sample = _gather(client, [tasks.submit(f"sample-p{b}", _sample, f, frac, config.model.seed + b)
                              for b, f in train.items()], "sampling training rows")
    sample = _concat(sample).sort_values(["as_of", "customer_id"], kind="stable", ignore_index=True)
    mc = config.model

    def new_model() -> ChurnModel:
        return ChurnModel(mc.params, mc.num_boost_round, mc.early_stopping_rounds, mc.calibration, mc.seed,
                          dict(mc.monotone_constraints))

    probe = new_model().fit(sample, sample["churned"], valid, valid["churned"])
    rounds = probe.best_iteration_

    step(f"training LightGBM on the cluster ({rounds} rounds, {n_train:,} rows)")
    booster = _fit_distributed(client, tasks, train, probe, sample, rounds, config)
    model = new_model()
    model.feature_names_, model.categories_ = probe.feature_names_, probe.categories_
    model.booster_, model.best_iteration_ = booster, int(booster.current_iteration())
    model.evals_result_ = probe.evals_result_  # curves of the round-choosing run (MLflow plots them)
    y_valid, y_test = valid["churned"].to_numpy(), test["churned"].to_numpy()
    model.calibrator_ = _Calibrator.fit(mc.calibration, model.predict_raw(valid), y_valid)

    step("scoring the test snapshot")
    scorecards, baseline_calibrators, probs = holdout_scorecards(model, valid, test, mc.calibration)
    beats, verdict = compare_to_baselines(scorecards)

    step("fingerprinting the data")
    today = snaps[last]
    n_customers = len(_customer_ids(client, tasks, dtables))
    summary = {
        "data_first_day": str(dtables.first_timestamp().date()),
        "as_of": str(last.date()),
        "horizon_days": horizon,
        "transactions": _valid_rows(client, tasks, dtables, "transactions"),
        "tickets": _valid_rows(client, tasks, dtables, "tickets"),
        "customers": n_customers,
        "rejected_rows": len(dtables.rejects),
        "train_snapshots": [str(d.date()) for d in train_days],
        "valid_snapshot": str(valid_day.date()),
        "test_snapshot": str(test_day.date()),
        "train_rows": n_train,
        "valid_rows": len(valid),
        "test_rows": len(test),
        "train_churn_rate": _train_churn_rate(client, tasks, train, n_train),
        "test_churn_rate": float(test["churned"].mean()),
        "best_iteration": model.best_iteration_,
        "n_features": len(model.feature_names_),
        "valid_brier_uncalibrated": float(np.mean((model.predict_raw(valid) - y_valid) ** 2)),
        "valid_brier_calibrated": float(np.mean((model.predict_proba(valid) - y_valid) ** 2)),
        "lifespan_years": today.population.lifespan_years,
        # snapshots.max_train_rows is the local engine's memory bound: the cluster trains on every row.
        **_sampling_summary({last: n_train}, {last: n_train}, None, mc.seed),
        "engine": "dask",
        "rounds_chosen_on_rows": len(sample),
    }
    model.info = model_metadata(
        config, summary=summary, scorecards=scorecards, verdict=verdict, bgnbd_params=bg[last],
        bgnbd_params_by_snapshot={str(d.date()): bg[d] for d in used},
        vip_cltv_threshold=float(today.population.vip_cltv_threshold), baseline_calibrators=baseline_calibrators,
        data_fingerprint=_fingerprint(client, dtables), feature_dtypes=dtypes, drift_reference=test,
        probabilities=probs["model"], feature_names=model.feature_names_,
    )
    step("saving the model file")
    model_path = model.save(model_out)
    result = TrainResult(model, Path(model_path), scorecards, verdict, beats, summary)
    if track:
        step("recording the MLflow run")
        _log_training_run(result, config, config_text, test, probs, y_test)
    return result


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


def _ids(tables: Tables) -> np.ndarray:
    return tables.customer_ids().to_numpy()


def _customer_ids(client: Client, tasks: _Tasks, dtables: DaskTables) -> np.ndarray:
    ids = _gather(client, [tasks.submit(f"ids-p{b}", _ids, p) for b, p in enumerate(dtables.partitions)],
                  "counting customers")
    return np.concatenate(ids) if ids else np.array([])


def _table_len(tables: Tables, name: str) -> int:
    frame = getattr(tables, name)
    return 0 if frame is None else len(frame)


def _valid_rows(client: Client, tasks: _Tasks, dtables: DaskTables, name: str) -> int:
    return int(sum(_gather(client, [tasks.submit(f"len-{name}-p{b}", _table_len, p, name)
                                    for b, p in enumerate(dtables.partitions)], f"counting {name}")))


def _churned(frame: pd.DataFrame) -> int:
    return int(frame["churned"].sum())


def _train_churn_rate(client: Client, tasks: _Tasks, train: dict[int, Future], n_train: int) -> float:
    churned = _gather(client, [tasks.submit(f"churned-p{b}", _churned, f) for b, f in train.items()],
                      "summarising the training set")
    return float(np.float64(sum(churned)) / n_train)
