"""Scoring with an uplift model wherever it runs: ``score --uplift-model`` into a file, with the events table,
into a database table, and ``POST /predict`` on the real server on 127.0.0.1 started with the uplift model; the
same customers get the same uplift, action, incremental value and selection everywhere."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.config import load_config
from churnguard.dataset import validate_campaigns, validate_tables
from churnguard.demo import generate_demo_data, write_demo_data
from churnguard.sources import DbSource, read_source
from churnguard.uplift import train_uplift
from tests.live_server import serve

pytestmark = pytest.mark.slow

runner = CliRunner()
# What the uplift model decides per customer, and what it leaves as the churn model scored it.
COMPARED = ["action", "action_cost", "expected_value", "uplift", "incremental_value", "selected", "control_group",
            "churn_probability", "risk_band", "lifecycle_stage", "value_tier", "clv"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A demo world with events and its two campaigns written as CSV files, and the uplift model learned from
    them (without the events)."""
    tmp = tmp_path_factory.mktemp("uplift_engines")
    cfg = load_config()
    demo = generate_demo_data(2000, seed=5, campaign=True, events=True)
    files = write_demo_data(demo, tmp / "data")
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=cfg.data)
    campaigns = validate_campaigns(demo.campaigns, config=cfg.data)
    result = train_uplift(tables, campaigns, cfg, model_out=tmp / "uplift.zip", min_customers=100, track=False)
    return {"tmp": tmp, "demo": demo, "files": files, "uplift": result.model_path,
            "as_of": str(tables.last_date().date())}


def _score(world, model, out: str, *more: str):
    files = world["files"]
    args = ["score", "--model", str(model), "--uplift-model", str(world["uplift"]), "-t", str(files["transactions"]),
            "--tickets", str(files["tickets"]), "--customers", str(files["customers"]), "--events",
            str(files["events"]), "--as-of", world["as_of"], "--control-fraction", "0", "--out", out, *more]
    return runner.invoke(app, args)


@pytest.fixture(scope="module")
def file_scores(world, trained):
    """``score --uplift-model`` with the events table into a Parquet file (every digit kept)."""
    out = world["tmp"] / "scores.parquet"
    result = _score(world, trained["result"].model_path, str(out))
    assert result.exit_code == 0, result.output
    assert "adds an expected" in " ".join(result.output.split())
    return pd.read_parquet(out)


def test_events_reach_the_uplift_path(file_scores, world, trained):
    """The events table is read (it was refused with the uplift model before): the scores differ without it."""
    without = world["tmp"] / "no_events.parquet"
    files = world["files"]
    result = runner.invoke(app, ["score", "--model", str(trained["result"].model_path), "--uplift-model",
                                 str(world["uplift"]), "-t", str(files["transactions"]), "--tickets",
                                 str(files["tickets"]), "--customers", str(files["customers"]), "--as-of",
                                 world["as_of"], "--control-fraction", "0", "--out", str(without)])
    assert result.exit_code == 0, result.output
    assert not file_scores.equals(pd.read_parquet(without))


def test_score_with_uplift_into_a_database_table_equals_the_file(file_scores, world, trained):
    pytest.importorskip("duckdb")
    path = world["tmp"] / "scores.duckdb"
    result = _score(world, trained["result"].model_path, f"duckdb://{path}?table=uplift_scores")
    assert result.exit_code == 0, result.output
    said = "".join(result.output.split())  # the console wraps long lines anywhere
    assert "table=uplift_scores" in said
    assert "addsanexpected" in said
    table = read_source(DbSource("duckdb", str(path), "uplift_scores"))
    assert list(table.columns) == list(file_scores.columns)
    pd.testing.assert_frame_equal(table, file_scores, check_dtype=False)
    # every customer was scored: no rejects file beside the file, an empty rejects table beside the table
    assert not (world["tmp"] / "scores.rejects.csv").exists()
    assert read_source(DbSource("duckdb", str(path), "uplift_scores_rejects")).empty


@pytest.mark.parametrize("option", [["--partitions", "2"], ["--engine", "dask"]])
def test_partitioned_engines_are_refused_with_the_uplift_model(world, trained, option):
    result = _score(world, trained["result"].model_path, str(world["tmp"] / "never.csv"), *option)
    assert result.exit_code == 2
    assert "--uplift-model scores in memory on the local engine: leave out --engine dask and --partitions" in " ".join(
        result.output.split())
    assert not (world["tmp"] / "never.csv").exists()


def _json_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON values: timestamps in ISO format, missing values None."""
    dates = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    out = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [row | {c: row[c].isoformat() for c in dates if row[c] is not None} for row in out]


def _customers(demo, ids: list[str]) -> list[dict]:
    """The request entries of ``ids``: every transaction, ticket and event row of theirs, their customers row."""
    def rows(frame: pd.DataFrame) -> dict[str, list[dict]]:
        grouped: dict[str, list[dict]] = {}
        for row in _json_rows(frame[frame["customer_id"].isin(ids)]):
            grouped.setdefault(row.pop("customer_id"), []).append(row)
        return grouped

    tx, tk, ev, attrs = rows(demo.transactions), rows(demo.tickets), rows(demo.events), rows(demo.customers)
    return [{"customer_id": cid, "transactions": tx.get(cid, []), "tickets": tk.get(cid, []),
             "events": ev.get(cid, []), "attributes": attrs.get(cid, [{}])[0]} for cid in ids]


def test_predict_with_uplift_model_matches_score_with_uplift_model(file_scores, world, trained):
    model = str(trained["result"].model_path)
    batch = file_scores.set_index("customer_id")
    ids = sorted(np.random.default_rng(0).choice(batch.index.to_numpy(), size=60, replace=False).tolist())
    body = {"as_of": world["as_of"], "customers": [*_customers(world["demo"], ids), {"customer_id": "nobody"}]}
    with serve(["--model", model, "--uplift-model", str(world["uplift"])], world["tmp"]) as (base, _):
        answer = httpx.post(f"{base}/predict", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == [{"customer_id": "nobody",
                                          "reason": f"no activity on or before as_of {world['as_of']}"}]
    served = pd.DataFrame(answer.json()["scores"]).set_index("customer_id").loc[ids, COMPARED]
    numbers = ["uplift", "incremental_value", "churn_probability"]
    served[numbers] = served[numbers].astype("float64")  # None (no uplift, no probability) as NaN
    pd.testing.assert_frame_equal(served, batch.loc[ids, COMPARED], check_dtype=False, rtol=1e-9, atol=1e-9)
    # the comparison covers what the rules decide: both actions, gains and losses, selected or not
    assert served["action"].nunique() >= 2
    assert (served["uplift"] > 0).any()
    assert (served["uplift"] < 0).any()
    assert served["selected"].any()
    assert not served["selected"].all()
    assert (served.loc[served["selected"], "uplift"] > 0).all()


def test_serve_refuses_a_file_that_is_no_uplift_model(trained, tmp_path):
    bad = tmp_path / "uplift.zip"
    bad.write_bytes(b"not a zip")
    result = runner.invoke(app, ["serve", "--model", str(trained["result"].model_path), "--uplift-model", str(bad)])
    assert result.exit_code == 2
    assert "not a churnguard uplift model" in " ".join(result.output.split())
