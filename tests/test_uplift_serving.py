"""``POST /predict`` with an uplift model, on the real server on 127.0.0.1: the same uplift, action, incremental
value and selection as ``score --uplift-model`` gives the same customers."""

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
from churnguard.uplift import train_uplift
from tests.live_server import serve

pytestmark = pytest.mark.slow

# What the uplift model decides per customer, and what it leaves as the churn model scored it.
COMPARED = ["action", "action_cost", "expected_value", "uplift", "incremental_value", "selected", "control_group",
            "churn_probability", "risk_band", "lifecycle_stage", "value_tier", "clv"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A demo world with its two campaigns written as CSV files, and the uplift model learned from them."""
    tmp = tmp_path_factory.mktemp("uplift_serving")
    cfg = load_config()
    demo = generate_demo_data(2000, seed=5, campaign=True)
    files = write_demo_data(demo, tmp / "data")
    tables = validate_tables(demo.transactions, demo.tickets, demo.customers, config=cfg.data)
    campaigns = validate_campaigns(demo.campaigns, config=cfg.data)
    result = train_uplift(tables, campaigns, cfg, model_out=tmp / "uplift.zip", min_customers=100, track=False)
    return {"tmp": tmp, "demo": demo, "files": files, "uplift": result.model_path,
            "as_of": str(tables.last_date().date())}


def _json_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON values: timestamps in ISO format, missing values None."""
    dates = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    out = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [row | {c: row[c].isoformat() for c in dates if row[c] is not None} for row in out]


def _customers(demo, ids: list[str]) -> list[dict]:
    """The request entries of ``ids``: every transaction and ticket row of theirs, their customers row."""
    def rows(frame: pd.DataFrame) -> dict[str, list[dict]]:
        picked = frame[frame["customer_id"].isin(ids)]
        grouped: dict[str, list[dict]] = {}
        for row in _json_rows(picked):
            grouped.setdefault(row.pop("customer_id"), []).append(row)
        return grouped

    tx, tk, attrs = rows(demo.transactions), rows(demo.tickets), rows(demo.customers)
    return [{"customer_id": cid, "transactions": tx.get(cid, []), "tickets": tk.get(cid, []),
             "attributes": attrs.get(cid, [{}])[0]} for cid in ids]


def test_predict_with_uplift_model_matches_score_with_uplift_model(world, trained):
    model = str(trained["result"].model_path)
    files = world["files"]
    out = world["tmp"] / "scores.parquet"
    args = ["score", "--model", model, "--uplift-model", str(world["uplift"]), "-t", str(files["transactions"]),
            "--tickets", str(files["tickets"]), "--customers", str(files["customers"]), "--as-of", world["as_of"],
            "--control-fraction", "0", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    batch = pd.read_parquet(out).set_index("customer_id")
    rng = np.random.default_rng(0)
    ids = sorted(rng.choice(batch.index.to_numpy(), size=120, replace=False).tolist())
    body = {"as_of": world["as_of"], "customers": [*_customers(world["demo"], ids), {"customer_id": "nobody"}]}
    with serve(["--model", model, "--uplift-model", str(world["uplift"])], world["tmp"]) as (base, _):
        answer = httpx.post(f"{base}/predict", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rejected"] == [{"customer_id": "nobody",
                                          "reason": f"no activity on or before as_of {world['as_of']}"}]
    served = pd.DataFrame(answer.json()["scores"]).set_index("customer_id").loc[ids, COMPARED]
    served[["uplift", "incremental_value", "churn_probability"]] = served[
        ["uplift", "incremental_value", "churn_probability"]].astype("float64")
    expected = batch.loc[ids, COMPARED]
    pd.testing.assert_frame_equal(served, expected, check_dtype=False, check_exact=False, rtol=1e-9, atol=1e-9)
    # the comparison covers what the rules decide: both actions, gains and losses, selected or not
    assert served["action"].nunique() >= 2
    assert (served["uplift"] > 0).any() and (served["uplift"] < 0).any()
    assert served["selected"].any() and not served["selected"].all()
    assert (served.loc[served["selected"], "uplift"] > 0).all()


def test_serve_refuses_a_file_that_is_no_uplift_model(trained, tmp_path):
    bad = tmp_path / "uplift.zip"
    bad.write_bytes(b"not a zip")
    result = CliRunner().invoke(app, ["serve", "--model", str(trained["result"].model_path), "--uplift-model",
                                      str(bad)])
    assert result.exit_code == 2
    assert "not a churnguard uplift model" in " ".join(result.output.split())
