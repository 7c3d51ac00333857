"""Engine parity with an events table: the local engine in one piece and in customer partitions, and the Dask
engine on a real LocalCluster, give the same features and scores; and on the demo world, whose engagement
falls before customers stop buying, a model with the events beats the one without."""

from __future__ import annotations

from pathlib import Path

import distributed
import pandas as pd
import pytest

from churnguard.config import DataConfig, load_config, load_playbook
from churnguard.dataset import load_tables, validate_tables
from churnguard.demo import generate_demo_data, write_demo_data
from churnguard.engines.dask import build_features_dask, read_tables_dask, score_dask
from churnguard.engines.local import score_files
from churnguard.features import build_features
from churnguard.scoring import score_tables

pytestmark = pytest.mark.slow

AS_OF = "2025-06-30"
NAMES = ("transactions", "tickets", "customers")


@pytest.fixture(scope="module")
def files(trained, tmp_path_factory) -> dict[str, Path]:
    """The trained model's demo world (the same seed) written with its events table."""
    demo = generate_demo_data(1500, seed=3, events=True)
    pd.testing.assert_frame_equal(demo.transactions, trained["demo"].transactions)  # the events add, change nothing
    return write_demo_data(demo, tmp_path_factory.mktemp("events-data"), fmt="csv")


@pytest.fixture(scope="module")
def local(files):
    return load_tables(*(files[n] for n in NAMES), config=DataConfig(), events=files["events"])


def test_partitioned_local_scores_equal_the_whole_tables(trained, files, local, tmp_path):
    model, playbook = trained["result"].model, load_playbook()
    want = score_tables(model, local, AS_OF, playbook, control_fraction=0.0).scores
    assert want["action"].isin(["browsing_reminder", "quiet_win_back"]).any()  # the signals read the events
    score_files(model, **{n: files[n] for n in NAMES}, events=files["events"], out=tmp_path / "s.parquet",
                playbook=playbook, data_config=DataConfig(), as_of=AS_OF, partitions=3, control_fraction=0.0)
    got = pd.read_parquet(tmp_path / "s.parquet").sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(got[want.columns], want, check_exact=False, rtol=0, atol=1e-12)


def test_dask_features_and_scores_equal_the_local_engine(trained, files, local):
    from tests.dask_cluster import local_cluster

    cfg, model, playbook = load_config(), trained["result"].model, load_playbook()
    with local_cluster() as cluster, distributed.Client(cluster) as client, read_tables_dask(
            *(files[n] for n in NAMES), config=DataConfig(), client=client, npartitions=3,
            events=files["events"]) as dt:
        assert dt.rows["events"] == len(local.events)
        for as_of in ("2024-06-30", AS_OF):
            want = build_features(local, as_of, cfg.features)
            assert "sessions_30d" in want
            pd.testing.assert_frame_equal(build_features_dask(dt, as_of, cfg.features), want)
        want = score_tables(model, local, AS_OF, playbook, budget=300, seed=2).scores
        got = score_dask(model, dt, AS_OF, playbook, budget=300, seed=2).scores
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-12)


def test_on_the_demo_a_model_with_events_beats_the_one_without(tmp_path, monkeypatch):
    from churnguard.training.run import run_training

    monkeypatch.chdir(tmp_path)
    demo = generate_demo_data(1500, seed=7, events=True)
    cfg = load_config().with_overrides(tracking={"tracking_uri": f"sqlite:///{tmp_path / 'ml.db'}"},
                                       snapshots={"max_snapshots": 8})
    auc = {}
    for name, events in (("without", None), ("with", demo.events)):
        tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=cfg.data, events=events)
        result = run_training(tables, cfg, model_out=tmp_path / f"{name}.zip")
        auc[name] = result.scorecards["model"]["roc_auc"]
        assert ("sessions_trend_30d" in result.model.feature_names_) == (events is not None)
    assert auc["with"] > auc["without"] + 0.02, auc
