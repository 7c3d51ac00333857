"""Training on the cluster by the procedure of :mod:`churnguard.training.procedure`: the snapshots built per
partition, the tuning model (number of trees, calibration) trained here on a sample, the refit trained with
``lightgbm.dask``, then backtested, scored and saved like a local model."""

from __future__ import annotations

import functools
import operator
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnguard.dataset import Tables
from churnguard.engines.dask._cluster import _gather, _Tasks
from churnguard.engines.dask._read import _client_for
from churnguard.engines.dask.features import _combine, _feature_snapshots
from churnguard.engines.partitions import concat_frames as _concat
from churnguard.features import to_day
from churnguard.features.kernel import bgnbd_features, day_numbers
from churnguard.labels import make_labels
from churnguard.reporting.monitoring import REFERENCE_ROWS, drift_population
from churnguard.training.bgnbd import fit_history_counts, history_counts
from churnguard.training.level import PurchaseDays
from churnguard.training.procedure import Plan, fit_procedure, judge, plan_training
from churnguard.training.promotion import same_procedure
from churnguard.training.run import (
    TrainingRows,
    TrainResult,
    backtest_day,
    fingerprint,
    finish_training,
    judging_step,
    sampling_summary,
    schedule_facts,
    with_schedule,
)
from churnguard.training.snapshots import has_backtest
from churnguard.training.tracking import check_tracking

if TYPE_CHECKING:
    from distributed import Client, Future

    from churnguard.btyd import BGNBDParams
    from churnguard.config import Config
    from churnguard.engines.dask._read import DaskTables
    from churnguard.model.churn_model import ChurnModel

_TABLES = ("transactions", "tickets", "customers", "events")


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


def _hashes_and_ids(tables: Tables) -> tuple[list[np.ndarray], np.ndarray]:
    """A partition's rows' hashes in each table (none for a table not given) and its customers."""
    return ([pd.util.hash_pandas_object(f, index=False).to_numpy() if f is not None else np.array([], dtype=np.uint64)
             for f in (tables.transactions, tables.tickets, tables.customers, tables.events)],
            tables.customer_ids().to_numpy())


def _purchase_days(tables: Tables, last: pd.Timestamp) -> PurchaseDays:
    """One partition's purchase days up to ``last``, its customers coded 0, 1, ... within the partition."""
    tx = tables.transactions
    bought = tx["amount"].to_numpy() > 0
    return PurchaseDays.of(pd.factorize(tx["customer_id"])[0][bought],
                           day_numbers(tx["timestamp"].to_numpy()[bought]), last)


def _data_facts(client: Client, tasks: _Tasks, dtables: DaskTables) -> tuple[dict[str, int], str]:
    """The summary's counts of the data and churnguard.training.run.data_fingerprint of it: the sorted row
    hashes of each table."""
    parts = _gather(client, [tasks.submit(f"fingerprint-p{b}", _hashes_and_ids, p)
                             for b, p in enumerate(dtables.partitions)], "fingerprinting the data")
    hashes = [np.concatenate([p[0][i] for p in parts]) for i in range(len(_TABLES))]
    counts = {"transactions": len(hashes[0]), "tickets": len(hashes[1]), "customers": sum(len(p[1]) for p in parts),
              "rejected_rows": len(dtables.rejects)}
    return counts, fingerprint(h if name in dtables.sources else None for h, name in zip(hashes, _TABLES, strict=True))


def _reference_part(feats: pd.DataFrame, params: BGNBDParams, horizon: int, lookback: int) -> pd.DataFrame:
    """A partition's customers of the drift reference (every one: the sample is drawn over all partitions)."""
    rows = drift_population(feats, lookback, limit=len(feats) + 1)
    return rows.assign(**bgnbd_features(rows, params, horizon))


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
    """Train, backtest and save a churn model on the cluster by the procedure of ``run_training``
    (:mod:`churnguard.training.procedure`): the same plans, tuning, refit and backtest.

    The snapshots are built per partition (features with global lifespan, VIP threshold and attribute kinds;
    BG/NBD fitted per snapshot on every partition's histories; labels). The tuning model (which chooses the
    number of trees and the calibration) trains here on a sample of ``sample_rows`` of its rows (all of them
    when there are fewer): ``lightgbm.dask``'s early stopping does not work on the cluster. The refit on every
    snapshot trains on the cluster with ``lightgbm.dask.DaskLGBMClassifier`` for that many trees. The rest is
    :func:`churnguard.training.run.finish_training`'s, as for a local run, and the model file an ordinary one.
    ``snapshots.max_train_rows`` does not apply: the cluster trains on every row (``max_train_rows: None``).

    Args:
        dtables: tables from :func:`read_tables_dask`.
        config: the whole configuration.
        client: the tables' client (default) or the same scheduler's address.
        model_out: where the model file is written (atomically).
        as_of: "today": the last day whose data may be used (default: the last transaction day).
        sample_rows: rows of the tuning model.
        config_text: the YAML the config came from, logged to MLflow.
        track: record the run in MLflow (the training curves are those of the tuning model).
        on_step: progress callback, called with a short description before each step.
    """
    if track:
        check_tracking(config.tracking)  # a store MLflow refuses stops the run now, not after the training
    step = on_step or (lambda _msg: None)
    _check_arguments(config, sample_rows)
    client = _client_for(dtables, client)
    last = to_day(as_of) if as_of is not None else dtables.last_date()
    first = dtables.first_timestamp()
    configured, config = config, with_schedule(config, first, last)
    plan = plan_training(first, last, config.labels, config.snapshots)
    bt_day, days = _snapshot_days(first, last, plan, config)
    source = _DaskRows(dtables, client, days, last, config, sample_rows, step)
    step(judging_step(first, last, config))
    backtest = judge(source, first, plan, config)
    step("training the deployed model on every labelled snapshot")
    fit = fit_procedure(source, plan, config.model)

    rows = source.training_rows(plan, fit.model)
    rows = replace(rows, facts={**rows.facts, **schedule_facts(configured.snapshots, config.snapshots)})
    return finish_training(fit, backtest, rows, config, model_out=model_out, config_text=config_text, track=track,
                           on_step=step, rows_for=functools.partial(source.rows_for, first=first, bt_day=bt_day))


def _check_arguments(config: Config, sample_rows: int) -> None:
    """Refuse what the cluster's training cannot do, before any work."""
    if config.labels.horizons:
        raise ValueError("labels.horizons: the churn curve is trained by the local engine only; train without "
                         "--engine dask (the model it writes scores on every engine)")
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be at least 1, got {sample_rows}")


def _snapshot_days(first: pd.Timestamp, last: pd.Timestamp, plan: Plan, config: Config
                   ) -> tuple[pd.Timestamp, list[pd.Timestamp]]:
    """The backtest's day, and every snapshot day the cluster builds: the deployed plan's and the backtest's."""
    bt_day = backtest_day(last, config)
    bt_days = (plan_training(first, bt_day, config.labels, config.snapshots).snapshots
               if has_backtest(first, last, config.labels, config.snapshots) else ())
    return bt_day, sorted({*plan.snapshots, *bt_days})


class _DaskRows:
    """:class:`~churnguard.training.procedure.RowSource` on the cluster: each snapshot's labelled rows per
    partition, left on the workers; a whole snapshot is gathered here once when asked for."""

    def __init__(self, dtables: DaskTables, client: Client, days: list[pd.Timestamp], last: pd.Timestamp,
                 config: Config, sample_rows: int, step: Callable[[str], None]) -> None:
        self.dtables, self.client, self.tasks, self.last = dtables, client, _Tasks(client), last
        self.config, self.sample_rows, self.step = config, sample_rows, step
        horizon, lookback = config.labels.horizon_days, config.labels.lookback_days
        step(f"building features for {len(days)} snapshots and today")
        self.snaps = _feature_snapshots(dtables, client, [*days, last], config.features)
        tasks = self.tasks
        counts = _gather(client, {d: [tasks.submit(f"bgcounts-{d:%Y%m%d}-p{b}", history_counts, f)
                                      for b, f in enumerate(s.parts)] for d, s in self.snaps.items()}, "fitting BG/NBD")
        self.bg = {d: fit_history_counts(c) for d, c in counts.items()}
        self.rows = {d: [tasks.submit(f"rows-{d:%Y%m%d}-p{b}", _training_rows, f, p, self.bg[d], d, horizon, lookback)
                         for b, (f, p) in enumerate(zip(self.snaps[d].parts, dtables.partitions, strict=True))]
                     for d in days}
        self.shapes = _gather(client, {d: [tasks.submit(f"shape-{d:%Y%m%d}-p{b}", _shape, r) for b, r in enumerate(fs)]
                                       for d, fs in self.rows.items()}, "labelling the snapshots")
        metas = [next((m for n, _, m in self.shapes[d] if n), self.shapes[d][0][2]) for d in days]
        self.dtypes = pd.concat(metas, ignore_index=True).dtypes.to_dict()  # as the local engine's concatenated set
        self._whole: dict[pd.Timestamp, pd.DataFrame] = {}
        self.tuned_on_rows = 0
        self._kept: dict[tuple[pd.Timestamp, ...], dict[int, Future]] = {}

    def rows_for(self, other: Config, *, first: pd.Timestamp, bt_day: pd.Timestamp) -> _DaskRows:
        """The rows of ``other``'s procedure on the backtest day (to score the registry's champion there)."""
        if same_procedure(other, self.config):
            return self
        days = {*plan_training(first, bt_day, other.labels, other.snapshots).snapshots, bt_day}
        return _DaskRows(self.dtables, self.client, sorted(days), self.last, other, self.sample_rows, self.step)

    def whole(self, day: pd.Timestamp) -> pd.DataFrame:
        if day not in self._whole:
            frames = _gather(self.client, [self.tasks.submit(f"stack-{day:%Y%m%d}-p{b}", _stack, [r], self.dtypes)
                                           for b, r in enumerate(self.rows[day])], f"gathering the snapshot {day.date()}")
            self._whole[day] = _combine(frames)
        return self._whole[day]

    def _count(self, days: tuple[pd.Timestamp, ...], b: int | None = None, at: int = 0) -> int:
        parts = range(self.dtables.npartitions) if b is None else [b]
        return sum(self.shapes[d][p][at] for d in days for p in parts)

    def _stacked(self, name: str, days: tuple[pd.Timestamp, ...], *, keep: bool = False) -> dict[int, Future]:
        """Each partition's rows of ``days`` as one frame, on the workers (partitions without rows left out);
        ``keep``: also for the refit (:meth:`booster`), which reads the cross-fit's days."""
        stacked = {b: self.tasks.submit(f"{name}-p{b}", _stack, [self.rows[d][b] for d in days], self.dtypes)
                   for b in range(self.dtables.npartitions) if self._count(days, b)}
        if keep:
            self._kept[days] = stacked
        return stacked

    def tuning_rows(self, plan: Plan) -> pd.DataFrame:
        n = self._count(plan.tune_train)
        if not n:
            raise ValueError("the tuning snapshots hold no labelled customers")
        self.step(f"choosing the number of trees on a sample of {min(self.sample_rows, n):,} rows")
        rows = self._sample(f"tune-{plan.today:%Y%m%d}", plan.tune_train)
        self.tuned_on_rows = len(rows)
        return rows

    def crossfit_rows(self, plan: Plan) -> pd.DataFrame:
        self.step(f"cross-fitting the calibration on a sample of {min(self.sample_rows, self._count(plan.snapshots)):,}"
                  " rows")
        return self._sample(f"crossfit-{plan.today:%Y%m%d}", plan.snapshots, keep=True)

    def _sample(self, name: str, days: tuple[pd.Timestamp, ...], *, keep: bool = False) -> pd.DataFrame:
        """A seeded sample of up to ``sample_rows`` of the rows of ``days``, gathered here."""
        frac = min(1.0, self.sample_rows / max(self._count(days), 1))
        stacked = self._stacked(name, days, keep=keep)
        sample = _gather(self.client, [self.tasks.submit(f"sample-{name}-p{b}", _sample, f, frac,
                                                         self.config.model.seed + b) for b, f in stacked.items()],
                         "sampling training rows")
        return _concat(sample).sort_values(["as_of", "customer_id"], kind="stable", ignore_index=True)

    def booster(self, plan: Plan, tuned: ChurnModel) -> Any:
        n = self._count(plan.snapshots)
        self.step(f"training LightGBM on the cluster ({tuned.best_iteration_} trees, {n:,} rows)")
        train = self._kept.pop(plan.snapshots, None) or self._stacked(f"train-{plan.today:%Y%m%d}", plan.snapshots)
        return _fit_distributed(self.client, self.tasks, train, tuned, self.whole(plan.tune_day), self.config,
                                f"{plan.today:%Y%m%d}")

    def purchase_days(self, last: pd.Timestamp) -> PurchaseDays:
        """The customers' purchase days up to ``last`` (the ``intensity`` level correction's input), as the
        local engine's: each partition's, its customer codes moved past the previous partitions' (a customer
        lives in one partition)."""
        last = min(last, self.last)
        parts = _gather(self.client, [self.tasks.submit(f"purchasedays-{last:%Y%m%d}-p{b}", _purchase_days, p, last)
                                      for b, p in enumerate(self.dtables.partitions)], "reading the purchase days")
        offsets = np.cumsum([0, *(int(p.customer.max()) + 1 if len(p.customer) else 0 for p in parts)])
        return PurchaseDays(np.concatenate([p.customer + o for p, o in zip(parts, offsets, strict=False)]),
                            np.concatenate([p.day for p in parts]), last)

    def training_rows(self, plan: Plan, model: ChurnModel) -> TrainingRows:
        """What :func:`finish_training` needs of the deployed ``plan``: the newest snapshot, the drift
        reference, the facts of the data and of the training set."""
        n, churned = self._count(plan.snapshots), self._count(plan.snapshots, at=1)
        self.step("fingerprinting the data")
        counts, digest = _data_facts(self.client, self.tasks, self.dtables)
        facts = {**sampling_summary(n, n, None, self.config.model.seed), "engine": "dask",
                 "rounds_chosen_on_rows": self.tuned_on_rows}
        population = replace(self.snaps[self.last].population, bgnbd=self.bg[self.last])
        return TrainingRows(plan, self.whole(plan.tune_day), self._reference(), self.dtables.first_timestamp(),
                            counts, n, float(np.float64(churned) / n), self.dtypes, population,
                            {str(d.date()): self.bg[d] for d in self.rows}, digest, facts)

    def _reference(self) -> pd.DataFrame:
        """Today's customers of the drift reference, gathered (a seeded sample over all partitions when more
        than ``REFERENCE_ROWS``)."""
        c = self.config
        parts = [self.tasks.submit(f"reference-p{b}", _reference_part, f, self.bg[self.last], c.labels.horizon_days,
                                   c.labels.lookback_days) for b, f in enumerate(self.snaps[self.last].parts)]
        n = sum(_gather(self.client, [self.tasks.submit(f"refcount-p{b}", len, f) for b, f in enumerate(parts)],
                        "counting today's customers"))
        frac = min(1.0, REFERENCE_ROWS / max(n, 1))
        return _combine(_gather(self.client, [self.tasks.submit(f"refsample-p{b}", _sample, f, frac, c.model.seed + b)
                                              for b, f in enumerate(parts)], "gathering the drift reference"))


def _fit_distributed(client: Client, tasks: _Tasks, train: dict[int, Future], probe: ChurnModel,
                     sample: pd.DataFrame, config: Config, tag: str) -> Any:
    """Train ``probe.best_iteration_`` boosting rounds with lightgbm.dask, with ``probe``'s inputs, on the
    partitions' rows (``sample``: rows of the same columns, for the metadata; ``tag`` names the tasks);
    return the booster."""
    import dask.dataframe as dd
    import lightgbm.dask as lgb_dask

    rounds = probe.best_iteration_
    remote_probe = client.scatter(probe, broadcast=True, hash=False)
    xs = [tasks.submit(f"modelinput-{tag}-p{b}", _model_input, f, remote_probe) for b, f in train.items()]
    ys = [tasks.submit(f"labels-{tag}-p{b}", operator.itemgetter("churned"), f) for b, f in train.items()]
    _gather(client, [tasks.submit(f"check-{tag}-p{b}", len, x) for b, x in zip(train, xs, strict=True)],
            "preparing the model inputs")  # failures surface here, not inside lightgbm
    x = dd.from_delayed(xs, meta=probe.prepare(sample.iloc[:0]), verify_meta=False)
    y = dd.from_delayed(ys, meta=sample["churned"].iloc[:0], verify_meta=False)
    params = probe.lightgbm_params(probe.feature_names_)
    classifier = lgb_dask.DaskLGBMClassifier(client=client, n_estimators=rounds, **params)
    try:
        with warnings.catch_warnings():
            # lightgbm.dask warns about n_jobs on every fit: it sets the threads from the workers itself.
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
            classifier.fit(x, y)
        return classifier.booster_
    except Exception as exc:
        raise RuntimeError(f"dask engine: training LightGBM on the cluster failed: {type(exc).__name__}: {exc}") from exc
