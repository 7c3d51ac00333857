"""``churnguard features|train|score --engine dask`` against ``--engine local``, on a real LocalCluster.

The commands run for real (typer's CliRunner) on a few hundred demo customers. Most of them use one cluster
of 2 worker processes through ``--scheduler ADDRESS``; one starts its own (``--workers 2``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.demo import write_demo_data
from churnguard.model import ChurnModel

pytestmark = pytest.mark.slow
distributed = pytest.importorskip("distributed")
from tests.dask_cluster import local_cluster

NAMES = ("transactions", "tickets", "customers")
AS_OF = "2025-06-30"
runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as c:
        yield c


@pytest.fixture(scope="module")
def data(trained, tmp_path_factory):
    """400 of the model's demo customers: CSV files, and Parquet datasets of three files each."""
    demo = trained["demo"]
    keep = demo.customers["customer_id"].iloc[:400]
    small = dataclasses.replace(demo, **{n: getattr(demo, n)[getattr(demo, n)["customer_id"].isin(keep)]
                                         for n in NAMES})
    root = tmp_path_factory.mktemp("dask-cli")
    csv = write_demo_data(small, root / "csv", fmt="csv")
    dataset = {}
    for name in NAMES:
        frame = getattr(small, name)
        dataset[name] = root / "dataset" / name
        dataset[name].mkdir(parents=True)
        for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
            frame.iloc[rows].to_parquet(dataset[name] / f"part-{i}.parquet", index=False, row_group_size=500)
    return {"csv": csv, "dataset": dataset, "n_customers": len(keep)}


def _inputs(paths: dict[str, Path]) -> list[str]:
    return ["-t", str(paths["transactions"]), "--tickets", str(paths["tickets"]),
            "--customers", str(paths["customers"])]


def _invoke(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".")]


def test_features_on_dask_equal_the_local_engine(data, cluster, tmp_path):
    base = ["features", "--as-of", AS_OF]
    _invoke([*base, *_inputs(data["csv"]), "-o", str(tmp_path / "local.parquet")])
    # A local cluster started by the command itself, reading the CSV files ...
    own = _invoke([*base, *_inputs(data["csv"]), "-o", str(tmp_path / "own.parquet"), "--engine", "dask",
                   "--workers", "2"])
    # ... and the running cluster, reading the same rows as Parquet dataset directories.
    remote = _invoke([*base, *_inputs(data["dataset"]), "-o", str(tmp_path / "remote.parquet"), "--engine", "dask",
                      "--scheduler", cluster.scheduler_address])
    want = pd.read_parquet(tmp_path / "local.parquet")
    assert len(want) > 300
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "own.parquet"), want)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "remote.parquet"), want)
    assert "dask: local cluster, 2 worker(s), 2 thread(s); dashboard http://" in own.output
    assert f"dask: scheduler {cluster.scheduler_address}, 2 worker(s)" in remote.output
    assert "customer partitions" in remote.output
    assert f"features: {len(want):,} customers" in remote.output


def test_scores_on_dask_equal_the_local_engine(trained, data, cluster, tmp_path):
    base = ["score", "-m", str(trained["result"].model_path), *_inputs(data["csv"]), "--as-of", AS_OF,
            "--budget", "200", "--seed", "3"]
    local = _invoke([*base, "-o", str(tmp_path / "local.csv")])
    dask = _invoke([*base, "-o", str(tmp_path / "dask.csv"), "--engine", "dask",
                    "--scheduler", cluster.scheduler_address, "--partitions", "3"])
    assert "3 customer partitions" in dask.output

    def read(name: str) -> pd.DataFrame:
        frame = pd.read_csv(tmp_path / name, dtype={"customer_id": str})
        return frame.sort_values(list(frame.columns[:1]), ignore_index=True)

    want, got = read("local.csv"), read("dask.csv")
    assert want["selected"].sum() > 5
    assert want["control_group"].any()
    exact = [c for c in want.columns if c != "churn_probability"]
    pd.testing.assert_frame_equal(got[exact], want[exact])
    pd.testing.assert_series_equal(got["churn_probability"], want["churn_probability"], check_exact=False,
                                   rtol=0, atol=1e-12)
    pd.testing.assert_frame_equal(read("dask.rejects.csv"), read("local.rejects.csv"))
    pd.testing.assert_frame_equal(read("dask.drift.csv"), read("local.drift.csv"), check_exact=False, rtol=1e-9)
    # The same summary lines: counts, bands, selection and cost.
    summary = [line.replace("dask.csv", "local.csv") for line in dask.output.splitlines()
               if line.startswith(("customers:", "bands:", "selected:"))]
    assert len(summary) == 3
    assert all(line in local.output for line in summary)



def test_features_and_score_read_only_the_feature_inputs_on_both_engines(trained, data, cluster, tmp_path):
    """A bad value in a column no feature reads (a discount that is not a number) stops ``train``, which
    checks every column, but neither ``features`` nor ``score``: both commands read only the features' columns,
    so they set aside the same rows, and both engines agree."""
    paths = dict(data["csv"])
    tx = pd.read_csv(paths["transactions"], dtype=str)
    tx.loc[5, "discount"] = "ten percent"
    paths["transactions"] = tmp_path / "transactions.csv"
    tx.to_csv(paths["transactions"], index=False)
    failed = runner.invoke(app, ["train", *_inputs(paths), "--as-of", AS_OF, "-o", str(tmp_path / "m.zip"),
                                 "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"])
    assert failed.exit_code != 0
    assert "discount" in failed.output
    assert "ten percent" in failed.output
    features = ["features", *_inputs(paths), "--as-of", AS_OF]
    _invoke([*features, "-o", str(tmp_path / "local.parquet")])
    _invoke([*features, "-o", str(tmp_path / "dask.parquet"), "--engine", "dask",
             "--scheduler", cluster.scheduler_address])
    clean = _invoke(["features", *_inputs(data["csv"]), "--as-of", AS_OF, "-o", str(tmp_path / "clean.parquet")])
    want = pd.read_parquet(tmp_path / "clean.parquet")
    assert f"features: {len(want):,} customers" in clean.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local.parquet"), want)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask.parquet"), want)
    base = ["score", "-m", str(trained["result"].model_path), *_inputs(paths), "--as-of", AS_OF]
    local = _invoke([*base, "-o", str(tmp_path / "local.csv")])
    _invoke([*base, "-o", str(tmp_path / "dask.csv"), "--engine", "dask", "--scheduler", cluster.scheduler_address])
    want = pd.read_csv(tmp_path / "local.csv").sort_values("customer_id", ignore_index=True)
    got = pd.read_csv(tmp_path / "dask.csv").sort_values("customer_id", ignore_index=True)
    assert f"customers: {data['n_customers']:,} in, {len(want):,} scored" in local.output
    rejects = pd.read_csv(tmp_path / "local.rejects.csv")
    assert len(want) + len(rejects) == data["n_customers"]
    assert "discount" not in set(rejects["column"])
    pd.testing.assert_frame_equal(got.drop(columns="churn_probability"), want.drop(columns="churn_probability"))


def test_training_on_dask_matches_the_local_engine(data, cluster, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text("snapshots:\n  max_snapshots: 8\n")
    base = ["train", *_inputs(data["csv"]), "-c", str(cfg), "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"]
    _invoke([*base, "-o", str(tmp_path / "local.zip")])
    out = _invoke([*base, "-o", str(tmp_path / "dask.zip"), "--engine", "dask",
                   "--scheduler", cluster.scheduler_address])
    assert "Scorecard of the backtest as of" in out.output
    assert "lightgbm.dask" in out.output  # the tuning row says how the trees were chosen and trained
    local, dask = ChurnModel.load(tmp_path / "local.zip"), ChurnModel.load(tmp_path / "dask.zip")
    # The same training set (rows, snapshots, lifespan) and the same data ...
    for key in ("train_rows", "backtest_rows", "deployed_snapshots", "backtest_snapshots", "backtest_as_of",
                "customers", "lifespan_years"):
        assert dask.info.summary[key] == local.info.summary[key], key
    assert dask.info.data_fingerprint == local.info.data_fingerprint
    assert dask.info.summary["engine"] == "dask"
    # ... and, trained on the cluster, a model about as good as the local one.
    auc = {name: m.info.scorecards["model"]["roc_auc"] for name, m in (("local", local), ("dask", dask))}
    assert auc["dask"] > 0.6
    assert abs(auc["dask"] - auc["local"]) < 0.05, auc


def test_dask_options_need_the_dask_engine(data, tmp_path):
    out = tmp_path / "f.parquet"
    base = ["features", *_inputs(data["csv"]), "--as-of", AS_OF, "-o", str(out)]
    result = runner.invoke(app, [*base, "--scheduler", "tcp://127.0.0.1:8786"])
    assert result.exit_code == 2
    assert "--scheduler is an option of the dask engine: add --engine dask" in result.output
    result = runner.invoke(app, ["score", "-m", "m.zip", "-t", "x.csv", "-o", str(out), "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers is an option of the dask engine" in result.output
    result = runner.invoke(app, [*base, "--engine", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers sizes the local cluster" in result.output
    result = runner.invoke(app, [*base, "--engine", "spark"])
    assert result.exit_code == 2
    assert "--engine must be local or dask, got 'spark'" in result.output
    # A Parquet dataset directory is for the dask engine; the local one says so instead of "not found".
    result = runner.invoke(app, ["features", "-t", str(data["dataset"]["transactions"]), "--as-of", AS_OF,
                                 "-o", str(out)])
    assert result.exit_code == 2
    assert "is a directory" in result.output
    assert "needs --engine dask" in result.output
    result = runner.invoke(app, ["train", "--engine", "dask"])
    assert result.exit_code == 2
    assert "--engine dask trains on files: give --transactions" in result.output
    assert not out.exists()


def test_without_the_dask_extra_the_message_says_what_to_install(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    out = tmp_path / "f.parquet"
    result = runner.invoke(app, ["features", *_inputs(data["csv"]), "--as-of", AS_OF, "-o", str(out),
                                 "--engine", "dask"])
    assert result.exit_code == 2
    assert "pip install 'churnguard[dask]'" in result.output
    assert not out.exists()


class _DieWhenScoring(distributed.WorkerPlugin):
    """Ends the worker's process as soon as it starts scoring a customer partition."""

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "-score-p" in str(key):
            os._exit(1)


def test_a_worker_dying_mid_run_fails_the_command_and_writes_nothing(trained, data, tmp_path):
    out = tmp_path / "scores.parquet"
    # No retries on another worker: the first death ends the run (the default, 3, would rerun the task).
    with (local_cluster(**{"distributed.scheduler.allowed-failures": 0}) as cluster,
          distributed.Client(cluster) as client):
        client.register_plugin(_DieWhenScoring())
        result = runner.invoke(app, ["score", "-m", str(trained["result"].model_path), *_inputs(data["csv"]),
                                     "--as-of", AS_OF, "-o", str(out), "--engine", "dask",
                                     "--scheduler", cluster.scheduler_address])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "error: dask engine: scoring failed: the worker running task 'score' (customer partition" in message
    assert "died" in message
    assert "nothing was written" in message
    assert not out.exists()
    assert _leftovers(tmp_path) == []
