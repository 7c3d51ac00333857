"""The monitoring commands on real scoring runs: report, compare, campaign-readout, and drift in score."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.demo import write_demo_data
from churnguard.model import ChurnModel

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


def test_score_takes_the_success_rates_a_readout_measured(runs):
    """``score --readout``: an action the read-out could judge gets its measured success rate in the expected
    value (P x value x rate - cost); one with too few customers, and the actions it did not use, keep the
    playbook's; the end of the output says which came from where."""
    tmp = runs["tmp"]
    readout = pd.DataFrame({
        "action": ["re_engagement", "service_recovery", "(all)"], "n_contacted": [200, 10, 210],
        "n_control": [100, 5, 105], "retention_contacted": [0.6, 0.5, 0.6], "retention_control": [0.5, 0.5, 0.5],
        "uplift": [0.1, 0.0, 0.1], "ci_low": [0.0, -0.4, 0.0], "ci_high": [0.2, 0.4, 0.2],
        "observed_success_rate": [0.2, 0.0, 0.2], "window_complete": [True, True, True],
        "small_group": [False, True, False], "note": ["", "too few customers to judge", ""]})
    readout.to_csv(tmp / "measured.csv", index=False)
    args = ["score", "-m", runs["model"], *runs["base"], "--as-of", "2025-09-30"]
    r = runner.invoke(app, [*args, "-o", str(tmp / "with.csv"), "--readout", str(tmp / "measured.csv")])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "success rates measured by" in said
    assert "re_engagement 20%" in said
    assert "service_recovery: the playbook's; too few customers to judge" in said
    with_rates = pd.read_csv(tmp / "with.csv").set_index("customer_id")
    playbook = pd.read_csv(tmp / "s-2025-09-30.csv").set_index("customer_id").loc[with_rates.index]
    assert (with_rates["action"] == playbook["action"]).all()  # the rule picks the action, not the rate
    at_stake = {name: frame["expected_value"] + frame["action_cost"] for name, frame in
                (("measured", with_rates), ("playbook", playbook))}  # P x value x rate
    re_engage = with_rates["action"] == "re_engagement"
    assert re_engage.sum() > 0
    gap = (at_stake["measured"] - 2 * at_stake["playbook"])[re_engage].abs()  # 0.20 measured, 0.10 assumed
    assert gap.max() <= 0.015  # the scores file rounds to cents
    assert with_rates.loc[~re_engage, "expected_value"].equals(playbook.loc[~re_engage, "expected_value"])


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
    day = ChurnModel.load(runs["model"]).require_info().training_window["as_of"]
    assert f"on its training day, {day}" in html  # the reference is named by its day
    kpis = pd.read_csv(tmp / "rep" / "kpis.csv")
    assert kpis["period"].iloc[0].endswith("Q1")


def test_bad_period_and_missing_files(runs, tmp_path):
    r = runner.invoke(app, ["report", "-t", str(runs["paths"]["transactions"]), "--period", "week"])
    assert r.exit_code == 2
    assert "month or quarter" in r.output
    r = runner.invoke(app, ["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert r.exit_code == 2
    assert "scores file not found" in r.output
