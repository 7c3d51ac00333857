"""The walkthrough notebook runs head to tail on small data, so it never rots."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def test_walkthrough_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURNGUARD_NOTEBOOK_CUSTOMERS", "1200")
    monkeypatch.setenv("CHURNGUARD_NOTEBOOK_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert (tmp_path / "run" / "churn_model.zip").is_file()
    assert (tmp_path / "run" / "uplift_model.zip").is_file()  # the campaigns section learned from them
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the charts were drawn
