"""The command line, run on tiny data."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from tests.conftest import tiny_raw

runner = CliRunner()


def _write_tiny(tmp_path):
    paths = {}
    for name, df in tiny_raw().items():
        paths[name] = tmp_path / f"{name}.csv"
        df.to_csv(paths[name], index=False)
    return paths


def _said(output: str) -> str:
    """The output as one line of words, without the frame typer draws around a usage error."""
    return " ".join(output.replace("\u2502", " ").split())


def test_help_lists_commands_without_heavy_imports():
    code = (
        "import sys; from churnguard.cli import app; "
        "heavy = [m for m in ('pandas', 'lightgbm', 'mlflow', 'sklearn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "features" in result.output
    assert "demo-data" in result.output


def test_each_commands_help_flows_as_the_terminal_wraps_it():
    """A command's description is printed paragraph by paragraph, each wrapped at the terminal's width, not at
    the line ends of its docstring (which broke lines mid-sentence at 80 columns)."""
    import inspect

    wide = CliRunner(env={"COLUMNS": "1000"})
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        result = wide.invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        for paragraph in inspect.cleandoc(info.callback.__doc__).split("\n\n"):
            assert " ".join(paragraph.split()) in result.output, (name, paragraph)


def test_features_command(tmp_path):
    p = _write_tiny(tmp_path)
    out = tmp_path / "feats.parquet"
    result = runner.invoke(
        app,
        ["features", "--transactions", str(p["transactions"]), "--tickets", str(p["tickets"]),
         "--customers", str(p["customers"]), "--as-of", "2024-01-31", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    feats = pd.read_parquet(out)
    assert feats["customer_id"].tolist() == ["a", "b", "c", "d"]
    assert "4 customers" in result.output


def test_features_reports_customers_first_seen_after_as_of_as_score_does(tmp_path):
    """Without the customers file, c (a purchase on 02-01 only) has no activity by as_of 2024-01-31: left out
    of the features, listed in the rejects with score's sentence, and counted in the summary."""
    from churnguard.scoring import no_activity_reason

    p = _write_tiny(tmp_path)
    out = tmp_path / "feats.parquet"
    result = runner.invoke(app, ["features", "-t", str(p["transactions"]), "--as-of", "2024-01-31", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["customer_id"].tolist() == ["a", "b"]
    rejects = pd.read_csv(tmp_path / "feats.rejects.csv", dtype=str, keep_default_na=False)
    assert rejects[["table", "customer_id", "reason"]].to_numpy().tolist() == [
        ["all", "c", "no activity on or before as_of 2024-01-31"]]
    assert no_activity_reason(pd.Timestamp("2024-01-31")) == "no activity on or before as_of 2024-01-31"
    said = _said(result.output)
    assert "features: 2 customers" in said
    assert "1 customer left out: no activity on or before as_of (see the rejects)" in said
    assert "rejected rows: 1 (all: 1 no activity on or before as_of 2024-01-31)" in said


def test_features_command_reports_bad_input(tmp_path):
    p = _write_tiny(tmp_path)
    tx = pd.read_csv(p["transactions"], dtype=str)
    tx.loc[1, "amount"] = "lots"
    tx.to_csv(p["transactions"], index=False)
    out = tmp_path / "feats.csv"
    args = ["features", "--transactions", str(p["transactions"]), "--as-of", "2024-01-31", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "transactions.csv" in result.output
    assert "'amount'" in result.output
    assert "'lots'" in result.output
    assert not out.exists()
    # With on_bad_rows: reject, the row is set aside in a rejects file and the run goes on.
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  on_bad_rows: reject\n")
    result = runner.invoke(app, [*args, "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    rejects = pd.read_csv(tmp_path / "feats.rejects.csv")
    assert rejects["table"].tolist() == ["transactions", "all"]  # then c, first seen after as_of
    assert rejects["row"].tolist()[:1] == [2]
    assert rejects["value"].tolist()[:1] == ["lots"]
    assert "rejected rows" in result.output


def test_rejects_csv_quotes_cells_a_spreadsheet_would_run(tmp_path):
    """A rejected amount written as a formula comes back quoted in a CSV rejects file (as score's and train's do)
    and as it was in a Parquet one."""
    p = _write_tiny(tmp_path)
    tx = pd.read_csv(p["transactions"], dtype=str)
    tx.loc[1, "amount"] = "=1+1"
    tx.to_csv(p["transactions"], index=False)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  on_bad_rows: reject\n")
    for name, read, want in (("r.csv", pd.read_csv, "'=1+1"), ("r.parquet", pd.read_parquet, "=1+1")):
        args = ["features", "-t", str(p["transactions"]), "--as-of", "2024-01-31", "-o", str(tmp_path / "f.csv"),
                "--rejects", str(tmp_path / name), "--config", str(cfg), "--if-exists", "replace"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert read(tmp_path / name)["value"].tolist()[:1] == [want]


def test_bad_config_key_is_named(tmp_path):
    p = _write_tiny(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("features:\n  windows_dayz: [30]\n")
    result = runner.invoke(
        app, ["features", "-t", str(p["transactions"]), "--as-of", "2024-01-31", "-o", str(tmp_path / "f.csv"),
              "-c", str(cfg)],
    )
    assert result.exit_code == 2
    assert "features.windows_dayz" in result.output


def test_bad_as_of(tmp_path):
    p = _write_tiny(tmp_path)
    result = runner.invoke(
        app, ["features", "-t", str(p["transactions"]), "--as-of", "someday", "-o", str(tmp_path / "f.csv")]
    )
    assert result.exit_code == 2
    assert "'someday' is not a day written YYYY-MM-DD" in _said(result.output)


@pytest.mark.parametrize("as_of", ["01/02/2025", "2025", "now", "2025-1-2", "20250102", "2025-W01-1", "2025-02-30"])
@pytest.mark.parametrize("command", ["features", "score", "train", "evaluate"])
def test_as_of_is_an_iso_day_or_refused_with_the_expected_form(tmp_path, command, as_of):
    p = _write_tiny(tmp_path)
    args = {"features": ["-o", str(tmp_path / "f.csv")], "score": ["-m", "m.zip", "-o", str(tmp_path / "s.csv")],
            "train": [], "evaluate": ["-m", "m.zip"]}[command]
    result = runner.invoke(app, [command, "-t", str(p["transactions"]), "--as-of", as_of, *args])
    assert result.exit_code == 2
    assert f"'{as_of}' is not a day written YYYY-MM-DD, e.g. 2025-01-02" in _said(result.output)


@pytest.mark.parametrize("command", ["features", "score", "train", "evaluate"])
def test_an_as_of_after_today_is_refused_as_the_server_refuses_it(tmp_path, command):
    """A day after today has no history (9999-12-31 overflowed to "no activity" for everyone; 2030 scored every
    customer lost): refused before any work, as POST /predict refuses it. Today is accepted."""
    from datetime import timedelta

    from churnguard.dataset import latest_plausible_date

    p = _write_tiny(tmp_path)
    args = {"features": ["-o", str(tmp_path / "f.csv")], "score": ["-m", "m.zip", "-o", str(tmp_path / "s.csv")],
            "train": [], "evaluate": ["-m", "m.zip"]}[command]
    today = latest_plausible_date() - timedelta(days=1)
    for day in (today + timedelta(days=1), "9999-12-31"):
        result = CliRunner(env={"COLUMNS": "1000"}).invoke(
            app, [command, "-t", str(p["transactions"]), "--as-of", str(day), *args])
        assert result.exit_code == 2
        assert f"{day} is after today ({today}, UTC); as_of is a day whose history is in the data" in _said(
            result.output)
    if command == "features":
        result = runner.invoke(app, [command, "-t", str(p["transactions"]), "--as-of", str(today), *args])
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ["x.xlsx", "scores.txt", "scores.csv.gz", "scores"])
def test_output_suffixes_other_than_csv_or_parquet_are_refused_by_name(tmp_path, name):
    p = _write_tiny(tmp_path)
    out = tmp_path / name
    for args in (["score", "-m", "m.zip", "-o", str(out)],
                 ["features", "--as-of", "2024-01-31", "-o", str(out)],
                 ["features", "--as-of", "2024-01-31", "-o", str(tmp_path / "f.csv"), "--rejects", str(out)]):
        result = runner.invoke(app, [*args, "-t", str(p["transactions"])])
        assert result.exit_code == 2, result.output
        assert f"unsupported file type '{out.suffix or '(none)'}'; use .csv or .parquet" in _said(result.output)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["customers.csv", "tickets.csv", "transactions.csv"]


@pytest.mark.parametrize("partitions", ["1", "3"])
def test_score_without_as_of_on_unusable_dates_or_no_rows_says_why(trained, tmp_path, partitions):
    model = str(trained["result"].model_path)
    cases = {"excel.csv": ("customer_id,timestamp,amount\na,45123,5\nb,45200,7\n",
                           "column 'timestamp': its first value '45123' is a date in no known style"),
             "header.csv": ("customer_id,timestamp,amount\n", "the transactions file has no rows"),
             "empty.csv": ("", "the transactions file is empty"),
             "utf16.csv": (None, "cannot read transactions file: the file is not UTF-8 text")}
    for name, (text, message) in cases.items():
        path = tmp_path / name
        if text is None:
            path.write_bytes("customer_id,timestamp,amount\na,2024-01-01,5\n".encode("utf-16"))
        else:
            path.write_text(text)
        result = runner.invoke(app, ["score", "-m", model, "-t", str(path), "-o", str(tmp_path / "s.csv"),
                                     "--partitions", partitions, "--reject-bad-rows"])
        output = " ".join(result.output.split())
        assert result.exit_code == 2, output
        assert f"{path}: " in output, output
        assert message in output, output
        assert "Traceback" not in output


def test_score_takes_the_playbook_with_playbook_and_the_config_with_c(trained, tmp_path):
    """-c/--config is the config file of train in every command (its data section reads the files, e.g. a
    renamed column); the playbook is --playbook, and a playbook passed to -c is named as one."""
    from pathlib import Path

    tx = trained["demo"].transactions.rename(columns={"amount": "total"})
    tx.to_csv(tmp_path / "tx.csv", index=False)
    cfg = tmp_path / "train.yaml"
    cfg.write_text("data:\n  columns:\n    transactions:\n      amount: total\n")
    model = str(trained["result"].model_path)
    playbook = Path(__file__).resolve().parents[1] / "configs" / "actions.yaml"
    base = ["score", "-m", model, "-t", str(tmp_path / "tx.csv"), "--as-of", "2025-06-30"]
    ok = runner.invoke(app, [*base, "-c", str(cfg), "--playbook", str(playbook), "-o", str(tmp_path / "s.csv")])
    assert ok.exit_code == 0, ok.output
    assert len(pd.read_csv(tmp_path / "s.csv")) > 0
    unmapped = runner.invoke(app, [*base, "-o", str(tmp_path / "u.csv")])
    assert unmapped.exit_code == 2
    assert "amount" in unmapped.output
    mixed_up = runner.invoke(app, [*base, "-c", str(playbook), "-o", str(tmp_path / "m.csv")])
    assert mixed_up.exit_code == 2
    assert "is a playbook (it lists actions): pass it with --playbook" in mixed_up.output


def test_score_without_the_tables_the_model_was_trained_with_warns_first(trained, tmp_path):
    """The session's model learned from tickets and customers: scoring it on transactions alone says so before
    anything else, naming both tables and what it does to the scores; with every table, nothing is said."""
    demo, model = trained["demo"], str(trained["result"].model_path)
    for name in ("transactions", "tickets", "customers"):
        getattr(demo, name).to_csv(tmp_path / f"{name}.csv", index=False)
    base = ["score", "-m", model, "-t", str(tmp_path / "transactions.csv"), "--as-of", "2025-06-30"]
    alone = runner.invoke(app, [*base, "-o", str(tmp_path / "a.csv")])
    assert alone.exit_code == 0, alone.output
    assert _said(alone.output).startswith(
        "warning: this model was trained with tickets and customers but is scored without: every customer's "
        "support history (tickets, response times, CSAT) and attributes (loyalty, NPS, signup date, ...) "
        "counts as unknown, so the risks rest on purchases alone and are not the ones the model was evaluated on. "
        "Give --tickets FILE --customers FILE to score as trained.")
    full = runner.invoke(app, [*base, "--tickets", str(tmp_path / "tickets.csv"), "--customers",
                               str(tmp_path / "customers.csv"), "-o", str(tmp_path / "f.csv")])
    assert full.exit_code == 0, full.output
    assert "trained with" not in full.output


def test_an_output_that_is_an_input_file_is_refused_before_any_work(tmp_path):
    """An output path naming an input file (``score -t tx.csv -o tx.csv``, a rejects file on the tickets, a model
    file on the transactions) stops at once, naming both options, and the input is left as it was: it used to
    be replaced by the output at the end of the run."""
    p = _write_tiny(tmp_path)
    tx, tickets = str(p["transactions"]), str(p["tickets"])
    before = {name: path.read_bytes() for name, path in p.items()}
    cases = {
        ("features", "-t", tx, "--as-of", "2024-01-31", "-o", tx): "--out {tx} is the --transactions file",
        ("features", "-t", tx, "--tickets", tickets, "--as-of", "2024-01-31", "-o", str(tmp_path / "f.csv"),
         "--rejects", tickets): "--rejects {tickets} is the --tickets file",
        ("score", "-m", "m.zip", "-t", tx, "-o", tx): "--out {tx} is the --transactions file",
        ("train", "-t", tx, "--model-out", tx): "--model-out {tx} is the --transactions file",
        ("campaign-readout", "-s", tickets, "-t", tx, "-o", tx): "--out {tx} is the --transactions file",
        ("compare", tickets, tx, "-o", tx): "--out {tx} is the NEW_SCORES file",
    }
    for args, message in cases.items():
        result = runner.invoke(app, list(args))
        assert result.exit_code == 2, result.output
        assert f"error: {message.format(tx=tx, tickets=tickets)}: writing it would replace that input; choose " \
               "another output path" in _said(result.output), result.output
        assert {name: path.read_bytes() for name, path in p.items()} == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["customers.csv", "tickets.csv", "transactions.csv"]


def test_two_outputs_on_one_path_are_refused_before_any_work(tmp_path):
    """``--rejects`` naming the ``--out`` file (or score's drift file) wrote the rejects over the features or
    scores it had just reported as written; now nothing is written and the options are named."""
    p = _write_tiny(tmp_path)
    out = tmp_path / "f.csv"
    cases = {("features", "--as-of", "2024-01-31", "-o", str(out), "--rejects", str(out)):
             f"--rejects {out} is also --out",
             ("score", "-m", "m.zip", "-o", str(out), "--rejects", str(tmp_path / "f.drift.csv")):
             f"the drift file {tmp_path / 'f.drift.csv'} is also --rejects"}
    for args, message in cases.items():
        result = CliRunner(env={"COLUMNS": "1000"}).invoke(app, [*args, "-t", str(p["transactions"])])
        assert result.exit_code == 2, result.output
        assert f"error: {message}: each output needs a path of its own" in _said(result.output)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["customers.csv", "tickets.csv", "transactions.csv"]


def test_an_output_file_that_is_a_directory_is_refused_by_name(tmp_path):
    """``--out scores.csv`` naming a directory stops before any work; it used to fail with a traceback when the
    finished output was moved into place."""
    p = _write_tiny(tmp_path)
    folder = tmp_path / "scores.csv"
    folder.mkdir()
    wide = CliRunner(env={"COLUMNS": "1000"})  # the path whole in typer's frame
    for args in (["features", "--as-of", "2024-01-31", "-o", str(folder)], ["score", "-m", "m.zip", "-o", str(folder)]):
        result = wide.invoke(app, [*args, "-t", str(p["transactions"])])
        assert result.exit_code == 2, result.output
        assert f"{folder} is a directory; name a file" in _said(result.output)
        assert list(folder.iterdir()) == []


def test_report_writes_the_rows_it_set_aside_beside_the_report(tmp_path):
    """With ``on_bad_rows: reject`` the report's rows set aside go to ``rejects.csv`` in the report's directory
    and are counted (they were only logged, "see rejects", with no rejects anywhere); a later run without any
    removes it, as score does. A ``--out`` that is a file stops with a message, not a traceback."""
    p = _write_tiny(tmp_path)
    tx = pd.read_csv(p["transactions"], dtype=str)
    tx.loc[1, "amount"] = "lots"
    tx.to_csv(tmp_path / "bad.csv", index=False)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  on_bad_rows: reject\n")
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", "-t", str(tmp_path / "bad.csv"), "-c", str(cfg), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"rejected rows: 1 (transactions: 1 are not numeric) -> {out / 'rejects.csv'}" in _said(result.output)
    rejects = pd.read_csv(out / "rejects.csv", dtype=str)
    assert rejects[["row", "customer_id", "column", "value"]].to_numpy().tolist() == [["2", "a", "amount", "lots"]]
    result = runner.invoke(app, ["report", "-t", str(p["transactions"]), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "rejects.csv").exists()
    assert "rejected" not in result.output
    result = runner.invoke(app, ["report", "-t", str(p["transactions"]), "-o", str(p["customers"])])
    assert result.exit_code == 2, result.output
    assert f"--out {p['customers']} is a file: the report is a directory of files" in _said(result.output)
    assert "Traceback" not in result.output


def test_evaluate_counts_the_rows_it_set_aside_and_writes_them_with_rejects(tmp_path, monkeypatch):
    """Read with the model's ``on_bad_rows: reject``, evaluate's rows set aside are counted with their reasons
    (they were only logged, "see rejects", with no rejects anywhere) and ``--rejects FILE`` writes them. The
    model and the evaluation are stand-ins: this checks what the command does around them."""
    from types import SimpleNamespace

    import churnguard.model
    import churnguard.training.run
    from churnguard.config import load_config

    data = load_config().data.model_copy(update={"on_bad_rows": "reject"})
    stand_in = SimpleNamespace(require_info=lambda: SimpleNamespace(config=SimpleNamespace(data=data)))
    monkeypatch.setattr(churnguard.model.ChurnModel, "load", staticmethod(lambda path: stand_in))
    monkeypatch.setattr(churnguard.training.run, "run_evaluation", lambda *a, **k: SimpleNamespace(
        note="evaluated", as_of=pd.Timestamp("2024-01-31"), kind="model", scorecards={}))
    monkeypatch.setattr("churnguard.cli._print_scorecards", lambda *a: None)
    p = _write_tiny(tmp_path)
    tx = pd.read_csv(p["transactions"], dtype=str)
    tx.loc[1, "amount"] = "lots"
    tx.to_csv(tmp_path / "bad.csv", index=False)
    args = ["evaluate", "-m", "m.zip", "-t", str(tmp_path / "bad.csv"), "--as-of", "2024-01-31", "--no-log"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert ("rejected rows: 1 (transactions: 1 are not numeric); --rejects FILE writes them"
            in _said(result.output)), result.output
    result = runner.invoke(app, [*args, "--rejects", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    assert f"rejected rows: 1 (transactions: 1 are not numeric) -> {tmp_path / 'r.csv'}" in _said(result.output)
    assert pd.read_csv(tmp_path / "r.csv", dtype=str)["value"].tolist() == ["lots"]


@pytest.mark.parametrize("command", ["compare", "campaign-readout"])
def test_an_empty_scores_file_is_named_not_a_traceback(tmp_path, command):
    p = _write_tiny(tmp_path)
    empty = tmp_path / "scores.csv"
    empty.write_text("")
    args = {"compare": [str(empty), str(empty)], "campaign-readout": ["-s", str(empty), "-t", str(p["transactions"])]}
    result = runner.invoke(app, [command, *args[command]])
    assert result.exit_code == 2, result.output
    assert f"error: {empty}: the scores file is empty" in _said(result.output)
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("option", "message"), [
    (["--budget", "inf"], "budget must be a finite amount >= 0, got inf"),
    (["--seed", "-1"], "the control group's seed must be a whole number >= 0, got -1"),
])
def test_score_refuses_an_infinite_budget_or_a_negative_seed_before_any_work(tmp_path, option, message):
    """Checked by the selection's own rule before the model is even read (m.zip does not exist): an infinite
    budget was printed as "within a budget of inf", a negative seed ended in numpy's "expected non-negative
    integer" after the whole run."""
    p = _write_tiny(tmp_path)
    result = runner.invoke(app, ["score", "-m", "m.zip", "-t", str(p["transactions"]), "-o",
                                 str(tmp_path / "s.csv"), *option])
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in _said(result.output)
    assert not (tmp_path / "s.csv").exists()


def test_an_output_below_a_file_is_refused_by_name(tmp_path):
    """An output path whose folder is a file (``-o tx.csv/scores.csv``) ended in mkdir's FileExistsError
    traceback, after the work; now every command names it before any work, and the file is left as it was."""
    p = _write_tiny(tmp_path)
    tx = str(p["transactions"])
    below = f"{tx}/sub"
    before = p["transactions"].read_bytes()
    for args in (["score", "-m", "m.zip", "-t", tx, "-o", f"{below}/s.csv"],
                 ["features", "-t", tx, "--as-of", "2024-01-31", "-o", f"{below}/f.csv"],
                 ["train", "-t", tx, "--model-out", f"{below}/m.zip"],
                 ["compare", tx, tx, "-o", f"{below}/c.csv"],
                 ["report", "-t", tx, "-o", f"{below}/report"],
                 ["demo-data", "--out", below, "--customers", "10"]):
        result = CliRunner(env={"COLUMNS": "1000"}).invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert f"error: cannot write in {below}" in _said(result.output), result.output
        assert f": {tx} is a file, not a directory; choose another output path" in _said(result.output)
    assert p["transactions"].read_bytes() == before


def test_demo_data_refuses_a_negative_seed_by_name(tmp_path):
    result = runner.invoke(app, ["demo-data", "--out", str(tmp_path / "d"), "--customers", "10", "--seed", "-1"])
    assert result.exit_code == 2, result.output
    assert "error: the seed must be a whole number >= 0, got -1" in _said(result.output)
    assert not (tmp_path / "d").exists()
