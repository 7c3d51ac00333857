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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With ``-n auto --dist loadgroup`` (make test) each test process runs whole modules, as ``loadfile`` would,
    except that the modules using the churn curve's model (a session fixture trained per process) run in one
    process, so it is trained once per suite."""
    modules_with_curve = {item.path for item in items if "trained_curve" in getattr(item, "fixturenames", ())}
    for item in items:
        item.add_marker(pytest.mark.xdist_group("trained_curve" if item.path in modules_with_curve else item.path.name))


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


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A model trained once on small demo data, with its MLflow store, for the tests that need one."""
    from churnguard.demo import generate_demo_data
    from churnguard.training.run import run_training

    tmp = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(tmp)
        demo = generate_demo_data(1500, seed=3)
        cfg = load_config()
        tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=cfg.data)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        # 12 snapshots (a year of training snapshots) keep the suite quick; the default is 24.
        cfg = cfg.with_overrides(tracking={"tracking_uri": uri}, snapshots={"max_snapshots": 12})
        result = run_training(tables, cfg, model_out=tmp / "models" / "m.zip")
        yield {"tmp": tmp, "cfg": cfg, "tables": tables, "result": result, "uri": uri, "demo": demo}


@pytest.fixture(scope="session")
def model(trained):
    """The trained model loaded from its file, as scoring loads it (a module may override this fixture)."""
    from churnguard.model import ChurnModel

    return ChurnModel.load(trained["result"].model_path)


@pytest.fixture(scope="session")
def trained_curve(trained):
    """A model with a churn curve over 30, 60, 90 and 180 days (``labels.horizons``), trained once on the
    session's demo data with the session's config, recorded in its own MLflow store."""
    from churnguard.training.run import run_training

    tmp = trained["tmp"] / "curve"
    tmp.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(tmp)
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        cfg = trained["cfg"].with_overrides(tracking={"tracking_uri": uri}, labels={"horizons": [30, 60, 90, 180]})
        result = run_training(trained["tables"], cfg, model_out=tmp / "models" / "curve.zip")
        yield {"tmp": tmp, "cfg": cfg, "result": result, "uri": uri}


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
