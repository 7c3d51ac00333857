"""The command line, run on tiny data."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
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
    assert rejects["row"].tolist() == [2]
    assert rejects["value"].tolist() == ["lots"]
    assert "rejected rows" in result.output


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
    assert "as_of must be a date" in result.output
