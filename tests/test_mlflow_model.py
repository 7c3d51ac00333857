"""The registered MLflow model on a machine without churnguard: loaded with ``mlflow.pyfunc`` and served with
``mlflow models serve``, in processes where ``import churnguard`` fails and no signing key exists. Its
probabilities must be ChurnModel.predict_proba's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from churnguard.features import build_features
from churnguard.model import ChurnModel
from churnguard.scoring import model_population
from churnguard.training.tracking import _pyfunc_input

pytestmark = [pytest.mark.slow, pytest.mark.floors]  # make test-floors runs these too

MODEL_URI = "models:/churnguard@champion"

# sitecustomize.py for the subprocesses: churnguard cannot be imported, as on a machine without it.
_NO_CHURNGUARD = '''
import sys


class _NoChurnguard:
    def find_spec(self, name, path=None, target=None):
        if name == "churnguard" or name.startswith("churnguard."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _NoChurnguard())
'''

_LOAD_AND_PREDICT = '''
import json, sys

try:
    import churnguard  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("churnguard is importable")

import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
example = model.input_example
rows = pd.read_pickle(sys.argv[2])
example.to_pickle(sys.argv[3])
out = {"example": [float(p) for p in model.predict(example)],
       "rows": [float(p) for p in model.predict(rows)],
       "churnguard_loaded": any(m == "churnguard" or m.startswith("churnguard.") for m in sys.modules)}
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def rows(trained) -> pd.DataFrame:
    """Model inputs as a caller sends them (categoricals as strings): real customers plus unseen, missing and
    textual values."""
    model = trained["result"].model
    feats = build_features(trained["tables"], "2025-06-30", trained["cfg"].features, model_population(model))
    x = _pyfunc_input(model, feats[feats["n_orders"] > 0].head(12))
    cat = next(iter(model.categories_))
    num = next(c for c in model.feature_names_ if c not in model.categories_)
    edge = x.head(3).copy()
    edge.loc[0, cat] = "a level never seen in training"
    edge.loc[1, cat] = None
    edge.loc[2, num] = np.nan
    return pd.concat([x, edge], ignore_index=True)


@pytest.fixture(scope="module")
def isolated_env(trained, tmp_path_factory) -> dict[str, str]:
    """Environment for a subprocess without churnguard or a model key, pointed at the test MLflow store."""
    site = tmp_path_factory.mktemp("no_churnguard")
    (site / "sitecustomize.py").write_text(_NO_CHURNGUARD)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURNGUARD_", "MLFLOW_"))}
    env.update(PYTHONPATH=str(site), MLFLOW_TRACKING_URI=trained["uri"],
               CHURNGUARD_KEY_FILE=str(site / "no-such.key"),
               # mlflow models serve starts `uvicorn` from PATH: this interpreter's scripts first.
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    return env


def test_logged_model_is_the_model_file_without_churnguard(trained):
    import mlflow
    from mlflow.artifacts import download_artifacts

    mlflow.set_tracking_uri(trained["uri"])
    path = download_artifacts(MODEL_URI, tracking_uri=trained["uri"])
    model = trained["result"].model
    files = {os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs}
    assert "artifacts/churn_model.zip" in files
    assert "code/_modelcore.py" in files
    assert not any(f.endswith(".joblib") for f in files)
    logged = ChurnModel.load(Path(path, "artifacts", "churn_model.zip"))  # with the manifest's checks
    assert logged.feature_names_ == model.feature_names_
    assert logged.categories_ == model.categories_
    assert logged.calibrator_ == model.calibrator_
    assert logged.info == model.info
    reqs = Path(path, "requirements.txt").read_text().split()
    assert sorted(r.split("==")[0] for r in reqs) == ["lightgbm", "mlflow", "numpy", "pandas"]
    assert all("==" in r for r in reqs)


def test_loads_and_predicts_without_churnguard_or_key(trained, rows, isolated_env, tmp_path):
    model = trained["result"].model
    rows.to_pickle(tmp_path / "rows.pkl")
    out = subprocess.run([sys.executable, "-c", _LOAD_AND_PREDICT, MODEL_URI, str(tmp_path / "rows.pkl"),
                          str(tmp_path / "example.pkl")],
                         env=isolated_env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert not got["churnguard_loaded"]
    example = pd.read_pickle(tmp_path / "example.pkl")
    assert len(example) == 5
    np.testing.assert_allclose(got["example"], model.predict_proba(example), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["rows"], model.predict_proba(rows), rtol=0, atol=1e-12)
    assert len(set(got["rows"])) > 2  # probabilities, not class labels


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server, started in its own session, with the worker processes it spawned."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:  # workers that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_mlflow_models_serve_without_churnguard(trained, rows, isolated_env, tmp_path):
    model = trained["result"].model
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL_URI, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=isolated_env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow models serve did not answer /ping within 120 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        data = rows.astype(object).where(rows.notna(), None)
        body = {"dataframe_split": {"columns": list(rows.columns), "data": data.to_numpy().tolist()}}
        r = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=30)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["predictions"], model.predict_proba(rows), rtol=0, atol=1e-12)
    finally:
        _stop(proc)
        log.close()
