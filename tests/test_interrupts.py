"""Runs that are stopped (SIGTERM), killed (SIGKILL) or run at once: real ``churnguard`` processes, real files
and a real MLflow SQLite store. A stopped or killed run never leaves a new output without the rest of its run,
and what a killed run left is removed by the next run in the same place."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.demo import generate_demo_data, write_demo_data

pytestmark = pytest.mark.slow

PREVIOUS = b"the previous run's file\n"
CUSTOMERS = 12_000  # enough that a 4-partition score is still running well after its input is spilled


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen([sys.executable, "-m", "churnguard.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """Wait until ``ready()`` holds while ``proc`` still runs (fails if it ends first)."""
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) first: {proc.stdout.read().decode()[-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            pytest.fail("timed out")
        time.sleep(0.02)


def _stop(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=60)  # reaps it: its pid is no longer alive
    print(output.decode()[-3000:])
    return proc.returncode


def _finish(proc: subprocess.Popen) -> int:
    """Wait for ``proc`` to end; its exit code (its output printed, for a failure's message)."""
    output, _ = proc.communicate(timeout=600)
    print(output.decode()[-3000:])
    return proc.returncode


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- score -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scoring(trained, tmp_path_factory):
    """A trained model file and ``CUSTOMERS`` customers' files, big enough to stop a 4-partition run in the
    middle."""
    tmp = tmp_path_factory.mktemp("scoring")
    paths = write_demo_data(generate_demo_data(CUSTOMERS, seed=1), tmp / "data")
    return {"model": trained["result"].model_path, **paths}


def _score_args(scoring, out: Path, *extra: str) -> list[str]:
    return ["score", "-m", str(scoring["model"]), "-t", str(scoring["transactions"]), "--tickets",
            str(scoring["tickets"]), "--customers", str(scoring["customers"]), "-o", str(out), "--partitions", "4",
            *extra]


def _spilled(folder: Path):
    """True once a run's work directory in ``folder`` holds Arrow copies of the input."""
    return lambda: any(folder.glob(".churnguard-work-*/**/*.arrow"))


def _stopped_score(scoring, out: Path, sig: int, cwd: Path, pids: list[int] | None = None) -> int:
    """Start a score into ``out``, send ``sig`` once its input is spilled, and return its exit code: 0 when the
    run had ended before the signal arrived (on a busy machine the check can come late), for the caller to try
    again."""
    proc = _start(*_score_args(scoring, out / "scores.csv"), cwd=cwd)
    if pids is not None:
        pids.append(proc.pid)
    _when(proc, _spilled(out))
    return _stop(proc, sig)


def test_score_stopped_with_sigterm_leaves_nothing_and_keeps_the_previous_scores(scoring, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for _ in range(3):
        for left in out.iterdir():  # what a run that ended before the signal wrote
            left.unlink()
        (out / "scores.csv").write_bytes(PREVIOUS)
        code = _stopped_score(scoring, out, signal.SIGTERM, tmp_path)
        if code != 0:
            break
    assert code == 128 + signal.SIGTERM
    assert _listing(out) == ["scores.csv"]  # no work directory, no Arrow copies, no half-written scores
    assert (out / "scores.csv").read_bytes() == PREVIOUS


def test_what_a_killed_score_left_is_removed_by_the_next_run(scoring, training, tmp_path):
    out = tmp_path / "out"
    for _ in range(3):
        pids = []
        code = _stopped_score(scoring, out, signal.SIGKILL, tmp_path, pids)
        if code != 0:
            break
        for left in out.iterdir():  # what a run that ended before the signal wrote
            left.unlink()
    assert code == -signal.SIGKILL
    left = [p.name for p in out.glob(".churnguard-work-*")]
    assert len(left) == 1
    assert f"-{pids[0]}-" in left[0]
    assert not (out / "scores.csv").exists()
    # The next run there (of the training tests' 600 customers: only where it writes matters) removes it.
    done = _start(*_score_args({**scoring, **training}, out / "scores.csv"), cwd=tmp_path)
    assert _finish(done) == 0
    assert _listing(out) == ["scores.csv", "scores.drift.csv"]  # ...until the next run there
    assert len(pd.read_csv(out / "scores.csv")) == 600


def test_a_clean_rerun_replaces_the_rejects_of_the_previous_run(trained, training, tmp_path):
    # Nothing is stopped here: the small files of the training tests (600 customers) do, scored in 4 partitions.
    small = {"model": trained["result"].model_path, **training}
    bad = tmp_path / "transactions.csv"
    lines = small["transactions"].read_text().splitlines()
    head = lines[0].split(",")
    row = lines[1].split(",")
    row[head.index("amount")] = "lots"
    bad.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    out = tmp_path / "out" / "scores.csv"
    args = _score_args(small, out)
    bad_args = [str(bad) if a == str(small["transactions"]) else a for a in args]

    first = CliRunner().invoke(app, [*bad_args, "--reject-bad-rows"])
    assert first.exit_code == 0, first.output
    rejects = pd.read_csv(out.with_name("scores.rejects.csv"))
    assert rejects[["column", "value"]].to_numpy().tolist() == [["amount", "lots"]]
    said = first.output.replace("\n", "")  # unwrapped
    assert f"-> {out.with_name('scores.rejects.csv')}" in said  # the final names, not the staged ones
    assert ".churnguard-work" not in said
    # A failed run changes nothing: the scores and rejects of the first run stay together.
    failed = CliRunner().invoke(app, bad_args)
    assert failed.exit_code == 2
    assert _listing(out.parent) == ["scores.csv", "scores.drift.csv", "scores.rejects.csv"]
    assert len(pd.read_csv(out.with_name("scores.rejects.csv"))) == 1
    # A clean run replaces all of them: no rejects of the first run beside its scores.
    clean = CliRunner().invoke(app, args)
    assert clean.exit_code == 0, clean.output
    assert _listing(out.parent) == ["scores.csv", "scores.drift.csv"]
    assert len(pd.read_csv(out)) == len(pd.read_csv(small["customers"])) == 600


# -- train -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    """Small demo files and a config (horizon 90 days, few snapshots to be quick)."""
    tmp = tmp_path_factory.mktemp("training")
    paths = write_demo_data(generate_demo_data(600, seed=5), tmp / "data")
    config = tmp / "train.yaml"
    config.write_text("labels:\n  horizon_days: 90\nsnapshots:\n  max_snapshots: 5\n")
    return {"config": config, **paths}


def _train_args(training, out: Path, db: Path, horizon: int = 60) -> list[str]:
    return ["train", "-c", str(training["config"]), "-t", str(training["transactions"]), "--tickets",
            str(training["tickets"]), "--customers", str(training["customers"]), "-o", str(out),
            "--tracking-uri", f"sqlite:///{db}", "--horizon-days", str(horizon)]


def _runs(db: Path) -> list[tuple[str, str]]:
    """(run id, status) of every run in the store, oldest first; none before the store exists."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT run_uuid, status FROM runs ORDER BY start_time").fetchall()
    except sqlite3.Error:
        return []


def _ended_before(db: Path, when: float) -> bool:
    """True when every run in the store had ended (MLflow's end_time, in ms) before ``when`` (seconds)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        ends = [row[0] for row in con.execute("SELECT end_time FROM runs")]
    return bool(ends) and all(end is not None and end / 1000 < when for end in ends)


def _logging(db: Path):
    """True once a run is being recorded (RUNNING in the store)."""
    return lambda: any(status == "RUNNING" for _, status in _runs(db))


def test_train_stopped_or_killed_while_logging_leaves_the_previous_model_and_no_orphan_run(training, tmp_path):
    from mlflow.tracking import MlflowClient

    from churnguard.config import load_config
    from churnguard.model import ChurnModel

    out = tmp_path / "models" / "m.zip"
    out.parent.mkdir()
    for attempt in range(3):
        out.write_bytes(PREVIOUS)
        db = tmp_path / f"mlflow{attempt}.db"
        stopped = _start(*_train_args(training, out, db), cwd=tmp_path)
        _when(stopped, _logging(db), timeout=300)
        sent = time.time()
        code = _stop(stopped, signal.SIGTERM)
        if code in (0, -signal.SIGTERM) and _ended_before(db, sent):
            continue  # the run had ended before the signal was sent (seen RUNNING just before it did): again
        break
    assert code == 128 + signal.SIGTERM, f"exit {code}; runs {_runs(db)}, signal sent at {sent:.3f}"
    assert [s for _, s in _runs(db)] in (["FAILED"], ["RUNNING"])  # FAILED by its own end, unless the store is busy
    assert _listing(out.parent) == ["m.zip"]
    assert out.read_bytes() == PREVIOUS

    killed = _start(*_train_args(training, out, db), cwd=tmp_path)
    _when(killed, lambda: len(_runs(db)) == 2 and _runs(db)[1][1] == "RUNNING", timeout=300)
    assert _stop(killed, signal.SIGKILL) == -signal.SIGKILL
    assert out.read_bytes() == PREVIOUS  # the new model file only comes once its run is recorded

    done = _start(*_train_args(training, out, db), cwd=tmp_path)
    assert _finish(done) == 0
    client = MlflowClient(f"sqlite:///{db}")
    (_, stopped_status), (killed_id, killed_status), (run_id, status) = _runs(db)
    # The next run marked the killed one (and the stopped one, had its store been too busy to be told).
    assert (stopped_status, killed_status, status) == ("FAILED", "FAILED", "FINISHED")
    assert "interrupted" in client.get_run(killed_id).data.tags
    assert _listing(out.parent) == ["m.zip"]  # the killed run's work directory is gone
    run = client.get_run(run_id)
    assert run.info.run_name == "train 2025-12-31 h60"
    assert run.data.tags["model_sha256"] == _sha(out)
    version = client.get_model_version("churnguard", "1")
    assert version.run_id == run_id
    assert "no purchase in the 60 days" in version.description
    assert "ROC AUC" in version.description
    assert "2023-01-01 to 2025-12-31" in version.description
    # The logged config is the one the run used: the command line's horizon, not the file's.
    logged = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path)))
    assert load_config(logged).labels.horizon_days == 60 == ChurnModel.load(out).require_info().population.horizon_days
    assert "horizon_days: 90" in Path(client.download_artifacts(run_id, "config_source.yaml", str(tmp_path))).read_text()


def test_two_trains_at_once_to_one_file_each_log_their_own_model(training, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from churnguard.model import ChurnModel

    out = tmp_path / "m.zip"
    procs = {h: _start(*_train_args(training, out, tmp_path / f"h{h}.db", horizon=h), cwd=tmp_path) for h in (60, 90)}
    for proc in procs.values():
        assert _finish(proc) == 0
    owners = []
    for horizon in procs:
        uri = f"sqlite:///{tmp_path / f'h{horizon}.db'}"
        client = MlflowClient(uri)
        ((run_id, _),) = _runs(tmp_path / f"h{horizon}.db")
        tags = client.get_run(run_id).data.tags
        mlflow.set_tracking_uri(uri)  # where models:/ URIs are looked up
        local = mlflow.artifacts.download_artifacts("models:/churnguard/1", dst_path=str(tmp_path / f"m{horizon}"))
        artifact = Path(local, "artifacts", "churn_model.zip")
        assert ChurnModel.load(artifact).require_info().population.horizon_days == horizon  # its own model
        assert _sha(artifact) == tags["model_sha256"]
        owners += [horizon] if tags["model_sha256"] == _sha(out) else []
    assert len(owners) == 1  # the file is one run's model, named by that run's model_sha256
    assert ChurnModel.load(out).require_info().population.horizon_days == owners[0]
    assert list(tmp_path.glob(".churnguard-work-*")) == []
