"""The monitoring commands on real scoring runs: report, compare, campaign-readout, and drift in score."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.demo import write_demo_data

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def runs(trained, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitor")
    paths = write_demo_data(trained["demo"], tmp / "data")
    model = str(trained["result"].model_path)
    base = ["-t", str(paths["transactions"]), "--tickets", str(paths["tickets"]), "--customers", str(paths["customers"])]
    for day in ("2025-06-30", "2025-09-30"):
        r = runner.invoke(app, ["score", "-m", model, *base, "--as-of", day, "-o", str(tmp / f"s-{day}.csv"),
                                "--budget", "400", "--control-fraction", "0.3"])
        assert r.exit_code == 0, r.output
    return {"tmp": tmp, "paths": paths, "model": model, "base": base, "score_output": r.output}


def test_score_writes_a_drift_table(runs):
    drift = pd.read_csv(runs["tmp"] / "s-2025-09-30.drift.csv")
    assert {"feature", "psi", "level"} <= set(drift.columns)
    assert "churn_probability" in set(drift["feature"])
    assert "as_of_month" not in set(drift["feature"])  # calendar features differ by design
    assert "drift" in runs["score_output"]


def test_compare(runs):
    tmp = runs["tmp"]
    r = runner.invoke(app, ["compare", str(tmp / "s-2025-06-30.csv"), str(tmp / "s-2025-09-30.csv")])
    assert r.exit_code == 0, r.output
    assert "newly high risk" in r.output
    changes = pd.read_csv(tmp / "s-2025-09-30.changes.csv")
    old = pd.read_csv(tmp / "s-2025-06-30.csv")
    new = pd.read_csv(tmp / "s-2025-09-30.csv")
    assert set(changes["customer_id"]) == set(old["customer_id"]) | set(new["customer_id"])
    assert (tmp / "s-2025-09-30.changes.transitions.png").read_bytes()[:4] == b"\x89PNG"


def test_campaign_readout(runs):
    tmp = runs["tmp"]
    r = runner.invoke(app, ["campaign-readout", "-s", str(tmp / "s-2025-06-30.csv"),
                            "-t", str(runs["paths"]["transactions"])])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp / "s-2025-06-30.readout.csv")
    scores = pd.read_csv(tmp / "s-2025-06-30.csv")
    overall = table[table["action"] == "(all)"].iloc[0]
    assert overall["n_contacted"] == (scores["selected"] & ~scores["control_group"]).sum()
    assert overall["n_control"] == scores["control_group"].sum()
    assert bool(overall["window_complete"])


@pytest.mark.parametrize("columns", [80, 200])
def test_campaign_readout_never_cuts_a_number(runs, columns):
    tmp = runs["tmp"]
    r = runner.invoke(app, ["campaign-readout", "-s", str(tmp / "s-2025-06-30.csv"), "-t",
                            str(runs["paths"]["transactions"]), "-o", str(tmp / f"w{columns}.csv")],
                      env={"COLUMNS": str(columns)})
    assert r.exit_code == 0, r.output
    assert max(map(len, r.output.splitlines())) <= columns
    for row in pd.read_csv(tmp / f"w{columns}.csv").itertuples():
        assert f"{row.n_contacted:,}" in r.output
        assert f"{row.retention_contacted:.1%}" in r.output
        assert ("-" if pd.isna(row.uplift) else f"{row.uplift:+.1%}") in r.output
        assert row.action in r.output


def test_campaign_readout_before_the_window_starts_writes_nothing(runs):
    tmp = runs["tmp"]
    tx = pd.read_csv(runs["paths"]["transactions"])
    early = tmp / "tx-early.csv"
    tx[tx["timestamp"] < "2025-07-01"].to_csv(early, index=False)
    r = runner.invoke(app, ["campaign-readout", "-s", str(tmp / "s-2025-06-30.csv"), "-t", str(early),
                            "-o", str(tmp / "early.readout.csv")])
    assert r.exit_code == 2
    assert "the outcome window has not started" in r.output
    assert "2025-09-28" in r.output
    assert not (tmp / "early.readout.csv").exists()
    assert not (tmp / "early.readout.png").exists()


def test_report_with_drift_section(runs):
    tmp = runs["tmp"]
    r = runner.invoke(app, ["report", *runs["base"], "--period", "quarter", "-o", str(tmp / "rep"), "-m",
                            runs["model"]])
    assert r.exit_code == 0, r.output
    html = (tmp / "rep" / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert "Data drift against the model" in html
    kpis = pd.read_csv(tmp / "rep" / "kpis.csv")
    assert kpis["period"].iloc[0].endswith("Q1")


def test_bad_period_and_missing_files(runs, tmp_path):
    r = runner.invoke(app, ["report", "-t", str(runs["paths"]["transactions"]), "--period", "week"])
    assert r.exit_code == 2
    assert "month or quarter" in r.output
    r = runner.invoke(app, ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert r.exit_code == 2
    assert "scores file not found" in r.output
