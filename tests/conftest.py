"""Shared tiny fixtures. Every expected value in the tests is worked out by hand from these rows."""

from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One OpenMP thread per test process when the suite runs on every core (make test): LightGBM's default of a
    # thread per core, in each of the processes, left the threads spinning on each other's cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd
import pytest

from churnguard.config import load_config
from churnguard.dataset import validate_tables

# The modules that use the churn curve's model (``trained_curve``, a session fixture trained once per session): with
# ``-n auto --dist loadfile`` (make test) they run in one process, so no other process waits for that model.
CURVE_MODULES = frozenset({"test_curve.py", "test_pages.py", "test_parity.py"})


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that the modules of ``CURVE_MODULES`` are one unit of work."""
    if config.getvalue("dist") != "loadfile":
        return None
    from pathlib import PurePosixPath

    from xdist.scheduler import LoadScopeScheduling

    class _ModulesWithTheCurveTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "trained_curve" if PurePosixPath(module).name in CURVE_MODULES else module

    return _ModulesWithTheCurveTogether(config, log)


def pytest_collection_modifyitems(config, items):
    unlisted = {item.path.name for item in items if "trained_curve" in getattr(item, "fixturenames", ())} - CURVE_MODULES
    if unlisted:
        raise pytest.UsageError(f"tests/conftest.py: add {sorted(unlisted)} to CURVE_MODULES (they use trained_curve)")


@pytest.fixture(scope="session")
def config():
    return load_config()


def tiny_raw() -> dict[str, pd.DataFrame]:
    """Three customers with purchases, one listed customer without any, as_of = 2024-01-31.

    a: buys 10 on 01-01 and 20 on 01-11, refunds 5 on 01-31; one ticket answered after 26 h, CSAT 2.
    b: buys 7 on 01-05 and 3 on 01-06 (same order id split over two lines on 01-06? no: two orders);
       one ticket opened 01-30 12:00, never answered -> waiting 36 h at the end of 01-31.
    c: buys 100 on 02-01, after as_of: known only through the customers table (signup 01-15).
    d: listed, never bought.
    """
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b", "c"],
            "timestamp": ["2024-01-01", "2024-01-11", "2024-01-31", "2024-01-05", "2024-01-06", "2024-02-01"],
            "amount": ["10", "20", "-5", "7", "3", "100"],
        }
    )
    tk = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "opened_at": ["2024-01-20 10:00", "2024-01-30 12:00"],
            "first_response_at": ["2024-01-21 12:00", None],
            "resolved_at": ["2024-01-22 10:00", None],
            "csat": ["2", None],
        }
    )
    cu = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_date": ["2023-12-01", "2024-01-01", "2024-01-15", "2024-01-01"],
            "loyalty_member": ["yes", "no", "no", "yes"],
            "nps": ["9", "3", "", "7"],
            "region": ["n", "s", "s", "n"],
        }
    )
    return {"transactions": tx, "tickets": tk, "customers": cu}


@pytest.fixture
def tiny_tables(config):
    raw = tiny_raw()
    return validate_tables(raw["transactions"], raw["tickets"], raw["customers"], config=config.data)


def _once_per_session(tmp_path_factory, name: str, build):
    """``build(folder)``, run once per test session however many processes ask (``make test`` runs the suite in
    one process per core): the first to ask builds into its own folder under the session's temp root, holding a
    lock, and leaves the result there pickled; the others wait on the lock and read it. A failed build leaves
    nothing behind, so the next process to ask builds again. Only the tests of one process write into what was
    built (see tests/test_train.py), so sharing it changes nothing they see."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:  # one process: nobody to share with
        return build(tmp_path_factory.mktemp(name))
    import fcntl
    import pickle

    root = tmp_path_factory.getbasetemp().parent  # the session's: each process's basetemp is a folder in it
    done = root / f"{name}.pickle"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if done.exists():
            return pickle.loads(done.read_bytes())
        folder = root / f"{name}-{worker}"
        folder.mkdir()
        value = build(folder)
        part = root / f"{name}.pickle.part"
        part.write_bytes(pickle.dumps(value))
        part.replace(done)
        return value


def _demo_tables():
    """The session's demo data (1500 customers) and its validated tables (cheap; the same in every process)."""
    from churnguard.demo import generate_demo_data

    demo = generate_demo_data(1500, seed=3)
    return demo, validate_tables(demo.transactions, demo.tickets, demo.customers, config=load_config().data)


def _train_into(folder, tables, cfg, model_name: str) -> dict:
    """A training run of ``tables`` with ``cfg`` recorded in a new MLflow store in ``folder``."""
    from churnguard.training.run import run_training

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(folder)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        cfg = cfg.with_overrides(tracking={"tracking_uri": uri})
        result = run_training(tables, cfg, model_out=folder / "models" / model_name)
    return {"tmp": folder, "cfg": cfg, "result": result, "uri": uri}


# 12 snapshots (a year of training snapshots) keep the suite quick; the default is 24.
_SNAPSHOTS = {"max_snapshots": 12}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A model trained once on small demo data, with its MLflow store, for the tests that need one (trained
    once per session, shared by the test processes)."""
    demo, tables = _demo_tables()
    cfg = load_config().with_overrides(snapshots=_SNAPSHOTS)
    built = _once_per_session(tmp_path_factory, "trained", lambda folder: _train_into(folder, tables, cfg, "m.zip"))
    return {**built, "tables": tables, "demo": demo}


@pytest.fixture(scope="session")
def model(trained):
    """The trained model loaded from its file, as scoring loads it (a module may override this fixture)."""
    from churnguard.model import ChurnModel

    return ChurnModel.load(trained["result"].model_path)


@pytest.fixture(scope="session")
def trained_curve(tmp_path_factory):
    """A model with a churn curve over 30, 60, 90 and 180 days (``labels.horizons``), trained once per session
    on the session's demo data with the session's config, recorded in its own MLflow store."""
    _, tables = _demo_tables()
    cfg = load_config().with_overrides(snapshots=_SNAPSHOTS, labels={"horizons": [30, 60, 90, 180]})
    return _once_per_session(tmp_path_factory, "trained_curve",
                             lambda folder: _train_into(folder, tables, cfg, "curve.zip"))


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server on 127.0.0.1 for the session (password auth; see ``tests/pg_server.py``);
    its password is in PGPASSWORD for the tests that use it."""
    from importlib.util import find_spec

    from tests.pg_server import PASSWORD, pg_bin, running_server

    bindir = pg_bin()
    missing = ("PostgreSQL is not installed (apt-get install postgresql)" if bindir is None else
               "the 'db' extra is not installed" if find_spec("adbc_driver_postgresql") is None else None)
    if missing:  # .ci/run sets CHURNGUARD_REQUIRE_POSTGRES: no skipping there
        (pytest.fail if os.environ.get("CHURNGUARD_REQUIRE_POSTGRES") else pytest.skip)(missing)
    with running_server(bindir) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSWORD", PASSWORD)
        yield server
