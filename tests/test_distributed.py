"""The Dask engine against the local one, on a real LocalCluster (2 worker processes, 1 thread each).

Features, scores and the training set must equal the local engine's; the distributed model must be as good as
the local one; a failing or dying worker must give a clear error and no output file.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnguard.config import DataConfig, load_config, load_playbook
from churnguard.dataset import DataError, load_tables
from churnguard.demo import write_demo_data
from churnguard.features import build_features
from churnguard.model import ChurnModel
from churnguard.scoring import score_tables

pytestmark = [pytest.mark.slow, pytest.mark.floors]  # make test-floors runs these too
distributed = pytest.importorskip("distributed")

from churnguard.engines.dask import (  # after the importorskip: it needs the optional dask extra
    build_features_dask,
    read_tables_dask,
    score_dask,
    train_dask,
)

NAMES = ("transactions", "tickets", "customers")
AS_OF = "2025-06-30"


@contextmanager
def _cluster(**config) -> Iterator[distributed.Client]:
    """A client of a new two-worker LocalCluster (see ``tests.dask_cluster``); both close on exit."""
    from tests.dask_cluster import local_cluster

    with local_cluster(**config) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def client():
    with _cluster() as c:
        yield c


@pytest.fixture(scope="module")
def data(trained, tmp_path_factory):
    """The model's demo data as CSV files and as Parquet datasets of three files each (small row groups)."""
    root = tmp_path_factory.mktemp("dask-data")
    csv = write_demo_data(trained["demo"], root / "csv", fmt="csv")
    parquet = {}
    for name in NAMES:
        frame = getattr(trained["demo"], name)
        parquet[name] = root / "parquet" / name
        parquet[name].mkdir(parents=True)
        for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
            frame.iloc[rows].to_parquet(parquet[name] / f"part-{i}.parquet", index=False, row_group_size=1500)
    local = load_tables(csv["transactions"], csv["tickets"], csv["customers"], config=DataConfig())
    return {"root": root, "csv": csv, "parquet": parquet, "local": local}


@pytest.fixture(scope="module")
def dtables(client, data):
    dt = read_tables_dask(*(data["csv"][n] for n in NAMES), config=DataConfig(), client=client, npartitions=4)
    yield dt
    dt.close()


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_features_equal_the_local_engine_for_csv_and_parquet_datasets(trained, client, data, tmp_path):
    # An attribute that is numeric in some partitions but not overall: build_features makes it categorical
    # over all customers, so every partition must too.
    demo = trained["demo"]
    customers = demo.customers.assign(segment=np.where(np.arange(len(demo.customers)) % 97 == 0, "gold",
                                                       (np.arange(len(demo.customers)) % 3).astype(str)))
    csv = {"transactions": data["csv"]["transactions"], "tickets": data["csv"]["tickets"],
           "customers": tmp_path / "customers.csv"}
    customers.to_csv(csv["customers"], index=False)
    dataset = dict(data["parquet"])
    dataset["customers"] = tmp_path / "customers"
    dataset["customers"].mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(customers)), 3)):
        customers.iloc[rows].to_parquet(dataset["customers"] / f"part-{i}.parquet", index=False)
    cfg = load_config()
    local = load_tables(*(csv[n] for n in NAMES), config=cfg.data)
    for paths, block_bytes in ((csv, 300_000), (dataset, 64 * 2**20)):  # several CSV chunks; many row groups
        with read_tables_dask(*(paths[n] for n in NAMES), config=cfg.data, client=client, npartitions=5,
                              block_bytes=block_bytes) as dt:
            assert dt.rows == {n: len(getattr(local, n)) for n in NAMES}
            assert dt.last_date() == local.last_date()
            for as_of in ("2024-06-30", AS_OF):  # default and estimated lifespan
                got = build_features_dask(dt, as_of, cfg.features)
                want = build_features(local, as_of, cfg.features)
                pd.testing.assert_frame_equal(got, want)
                assert got.attrs["lifespan_years"] == want.attrs["lifespan_years"]
                assert isinstance(got["attr_segment"].dtype, pd.CategoricalDtype)


def test_scores_equal_the_local_engine(trained, client, data, dtables, tmp_path):
    model, playbook = trained["result"].model, load_playbook()
    want = score_tables(model, data["local"], AS_OF, playbook, budget=300, seed=2)
    got = score_dask(model, dtables, AS_OF, playbook, budget=300, seed=2)
    pd.testing.assert_series_equal(got.scores["churn_probability"], want.scores["churn_probability"],
                                   check_exact=False, rtol=0, atol=1e-12)
    exact = [c for c in want.scores.columns if c != "churn_probability"]
    pd.testing.assert_frame_equal(got.scores[exact], want.scores[exact])
    pd.testing.assert_frame_equal(got.rejects, want.rejects)
    pd.testing.assert_frame_equal(got.drift_sample, want.drift_sample, check_exact=False, rtol=0, atol=1e-12)
    assert want.scores["selected"].sum() > 10
    assert want.scores["control_group"].any()

    out = tmp_path / "scores.parquet"  # written one partition at a time, same rows
    light = score_dask(model, dtables, AS_OF, playbook, budget=300, seed=2, out=out)
    written = pd.read_parquet(out).sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(written[exact], want.scores[exact])
    assert light.scores["selected"].tolist() == want.scores["selected"].tolist()
    assert _leftovers(tmp_path) == []


def test_rejects_and_errors_equal_the_local_engine(client, data, tmp_path):
    tx = pd.read_csv(data["csv"]["transactions"], dtype=str, keep_default_na=False)
    tx.loc[[5, 4000, 9000], "amount"] = ["n/a", "ten", "n/a"]
    tx.loc[7000, "timestamp"] = "not a date"
    tickets = pd.read_csv(data["csv"]["tickets"], dtype=str, keep_default_na=False)
    tickets.loc[[3, 1500], "customer_id"] = ["NOBODY-1", "NOBODY-2"]
    paths = {"transactions": tmp_path / "tx.csv", "tickets": tmp_path / "tickets.csv",
             "customers": data["csv"]["customers"]}
    tx.to_csv(paths["transactions"], index=False)
    tickets.to_csv(paths["tickets"], index=False)
    with pytest.raises(DataError) as local_error:
        load_tables(*(paths[n] for n in NAMES), config=DataConfig())
    with pytest.raises(DataError) as dask_error:
        read_tables_dask(*(paths[n] for n in NAMES), config=DataConfig(), client=client, npartitions=3,
                         block_bytes=200_000)
    assert str(dask_error.value) == str(local_error.value)
    reject = DataConfig(on_bad_rows="reject")
    local = load_tables(*(paths[n] for n in NAMES), config=reject)
    with read_tables_dask(*(paths[n] for n in NAMES), config=reject, client=client, npartitions=3,
                          block_bytes=200_000) as dt:
        assert len(local.rejects) == 6
        pd.testing.assert_frame_equal(dt.rejects, local.rejects)
        cfg = load_config()
        pd.testing.assert_frame_equal(build_features_dask(dt, AS_OF, cfg.features),
                                      build_features(local, AS_OF, cfg.features))

    # Day-first dates: every partition must read them in the style of the file's first value (a day > 12, so
    # it is day-first), not guess one from its own first value (which may be "01/02/...", month-first).
    tx = pd.read_csv(data["csv"]["transactions"], dtype=str, keep_default_na=False).head(3000)
    first = int(np.flatnonzero(pd.to_datetime(tx["timestamp"]).dt.day.to_numpy() > 12)[0])
    tx = pd.concat([tx.iloc[[first]], tx.drop(index=tx.index[first])], ignore_index=True)
    tx["timestamp"] = pd.to_datetime(tx["timestamp"]).dt.strftime("%d/%m/%Y %H:%M")
    tx.to_csv(paths["transactions"], index=False)
    with warnings.catch_warnings():  # pandas hints at dayfirst when the local engine guesses the style
        warnings.simplefilter("ignore", UserWarning)
        local = load_tables(paths["transactions"], config=DataConfig())
    with read_tables_dask(paths["transactions"], config=DataConfig(), client=client, npartitions=3) as dt:
        pd.testing.assert_frame_equal(build_features_dask(dt, "2024-06-30", cfg.features),
                                      build_features(local, "2024-06-30", cfg.features))
    tx.loc[2000, "timestamp"] = "2024-05-01 10:00"  # one row in another style: the file is refused, as locally
    tx.to_csv(paths["transactions"], index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(DataError) as local_error:
            load_tables(paths["transactions"], config=DataConfig())
    with pytest.raises(DataError) as dask_error:
        read_tables_dask(paths["transactions"], config=DataConfig(), client=client, npartitions=3)
    assert str(dask_error.value) == str(local_error.value)


def test_distributed_training_matches_the_local_model(trained, client, dtables, tmp_path):
    from churnguard.features.kernel import bgnbd_features
    from churnguard.labels import make_labels

    cfg, local = trained["cfg"], trained["result"].model
    result = train_dask(dtables, cfg, model_out=tmp_path / "m.zip", track=False)
    info, local_info = result.model.info, local.info
    # The same training set as the local run: rows, lifespan, VIP threshold, BG/NBD fits, data fingerprint.
    for key in ("train_rows", "backtest_rows", "deployed_snapshots", "backtest_snapshots", "customers",
                "transactions", "train_churn_rate", "lifespan_years", "best_iteration"):
        assert result.summary[key] == local_info.summary[key], key
    assert info.population == local_info.population
    assert info.bgnbd_params_by_snapshot == local_info.bgnbd_params_by_snapshot  # same compressed histories
    assert info.data_fingerprint == local_info.data_fingerprint
    # The distributed booster is as good as the local one on the held-out test snapshot.
    assert abs(result.scorecards["model"]["roc_auc"] - local_info.scorecards["model"]["roc_auc"]) < 0.03
    loaded = ChurnModel.load(result.model_path)
    test_day = pd.Timestamp(local_info.summary["backtest_as_of"])
    feats = build_features(trained["tables"], test_day, cfg.features)
    params = local_info.bgnbd_params_by_snapshot[str(test_day.date())]
    rows = feats.assign(**bgnbd_features(feats, params, cfg.labels.horizon_days)).merge(
        make_labels(trained["tables"].transactions, test_day, cfg.labels.horizon_days).drop(columns="as_of"),
        on="customer_id")
    assert np.corrcoef(loaded.predict_proba(rows), local.predict_proba(rows))[0, 1] > 0.95
    scores = score_tables(loaded, trained["tables"], AS_OF, load_playbook()).scores  # scores like any model
    assert scores["churn_probability"].notna().sum() > 1000


def test_a_failing_task_raises_a_clear_error_and_writes_nothing(trained, client, dtables, tmp_path):
    broken = copy.copy(trained["result"].model)
    del broken.booster_  # scoring raises NotFittedError on the workers
    out = tmp_path / "scores.csv"
    with pytest.raises(RuntimeError, match=r"scoring failed on a worker: NotFittedError"):
        score_dask(broken, dtables, AS_OF, load_playbook(), out=out)
    assert not out.exists()
    assert _leftovers(tmp_path) == []


class _SlowModel(ChurnModel):
    """Takes seconds per partition, so a worker can be killed while it scores."""

    def explain(self, matrix, **kw):
        time.sleep(3)
        return super().explain(matrix, **kw)


def test_a_worker_dying_mid_run_raises_a_clear_error_and_writes_nothing(trained, data, tmp_path):
    slow = _SlowModel.__new__(_SlowModel)
    slow.__dict__.update(trained["result"].model.__dict__)
    out = tmp_path / "scores.parquet"
    # No retries on another worker: the first death ends the run (the default, 3, would rerun the task).
    with _cluster(**{"distributed.scheduler.allowed-failures": 0}) as client:
        dt = read_tables_dask(*(data["csv"][n] for n in NAMES), config=DataConfig(), client=client, npartitions=2)
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(score_dask, slow, dt, AS_OF, load_playbook(), out=out)
            deadline = time.monotonic() + 30
            while not (busy := [w for w, keys in client.processing().items() if any("-score-" in k for k in keys)]):
                assert time.monotonic() < deadline, "scoring never started"
                assert not run.done(), run.exception()
                time.sleep(0.05)
            client.run(os._exit, 1, workers=busy[:1], on_error="ignore")  # it cannot answer: it is gone
            with pytest.raises(RuntimeError, match=r"the worker running task 'score' \(customer partition \d\) died"):
                run.result(timeout=60)
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def _days_by_customer(purchases) -> list[tuple[int, ...]]:
    """Each customer's purchase days, whatever the engine's customer codes: sorted day tuples."""
    order = np.lexsort((purchases.day, purchases.customer))
    customer, day = purchases.customer[order], purchases.day[order]
    cuts = np.flatnonzero(np.diff(customer)) + 1
    return sorted(tuple(d.tolist()) for d in np.split(day, cuts))


def test_purchase_days_of_the_level_correction_equal_the_local_engine(client, data, dtables):
    from types import SimpleNamespace

    from churnguard.engines.dask._cluster import _Tasks
    from churnguard.engines.dask.training import _DaskRows
    from churnguard.training.run import LocalRows

    config, today, last = load_config(), pd.Timestamp(AS_OF), pd.Timestamp("2025-01-15")
    local = LocalRows(data["local"], config, today, lambda _msg: None).purchase_days(last)
    # the row source's method on the real cluster, without building its snapshots
    rows = SimpleNamespace(client=client, tasks=_Tasks(client), dtables=dtables, last=today)
    dask = _DaskRows.purchase_days(rows, last)
    assert dask.last == local.last == last
    assert len(dask.day) == len(local.day) > 1000
    assert _days_by_customer(dask) == _days_by_customer(local)
    assert dask.day.max() <= (last - pd.Timestamp("1970-01-01")).days
    window = pd.Timestamp("2024-10-01")
    assert dask.intensity(window, 60) == pytest.approx(local.intensity(window, 60), rel=1e-12)
