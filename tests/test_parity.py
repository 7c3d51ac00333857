"""Parity: the same customers get the same answers whichever engine scores them.

One battery (as scikit-learn's ``check_estimator`` runs one battery on every estimator) feeds the same input
files through every engine and compares everything they output, per customer:

- ``churnguard score --partitions 1``: the reference;
- ``churnguard score --partitions 3``;
- ``churnguard score --engine dask`` on a real LocalCluster of 2 worker processes;
- ``POST /predict`` on the real server (127.0.0.1), each customer sent with their full raw history.

Compared: lifecycle_stage, churn_probability (to 1e-12), risk_band, value_tier, clv, the three reasons, action,
action_cost, expected_value, model_version and as_of of every scored customer (those outside the model's
population, lost or never bought, included: no probability, their stage as band), and the rejected customers
with the reason given. The engines write their scores as Parquet, which keeps every digit; one more test checks
that the CSV for people holds the same scores rounded (probabilities to 4 decimals, money to cents).
``churnguard features`` is compared between the local and the dask engine (identical files).

The input cases are small CSV files cut from the demo customers the session's model was trained on, plus
hand-made customers:

- ``iso-as-of``: ISO dates, an explicit ``--as-of``;
- ``iso-last-day``: ISO dates, no ``--as-of``: "today" is the last day with a transaction;
- ``day-first-last-day``: dates written ``%d/%m/%Y %H:%M``, read with ``data.date_format`` (``score`` takes
  the data settings from the model's training config, so this case trains its own small model with that
  config), no ``--as-of``;
- ``iso-curve``: as ``iso-as-of``, scored with the session's model trained with a churn curve
  (``labels.horizons`` 30, 60, 90, 180): its ``churn_probability_<h>d`` columns are compared too (to 1e-12);
- ``iso-beyond``: as ``iso-curve``, with that model given the purchases' seasonal model for the customers
  silent longer than 100 days (``BeyondSupport``, as training adds it for a history too short for a backtest):
  their probabilities and curves come from it;
- ``after-as-of``: as ``iso-as-of``, plus customers whose only activity (a purchase, a ticket, or both) is
  after as_of, one with a purchase on as_of and another the minute after, and three at the lookback's edge
  (lost, lapsing, never bought).

Also: ``POST /predict`` refuses a request that sends one customer_id twice, and a property test scores
random one-customer histories alone over HTTP and among other customers in a ``churnguard score`` file.
Two more inputs check what only whole files can decide, on ``score --partitions 4`` and ``score --engine dask``:
transactions with day-first dates and no ``data.date_format`` (the style is the file's, not each
partition's), and bad rows in several partitions under ``on_bad_rows: raise`` (the error counts the file's).

Only public surfaces are used: the CLI (typer's CliRunner), the files it writes, the server's JSON answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from churnguard.cli import app

pytestmark = pytest.mark.slow

runner = CliRunner()

NAMES = ("transactions", "tickets", "customers")
AS_OF = "2025-06-30"
N_CUSTOMERS = 200
DAY_FIRST = "%d/%m/%Y %H:%M"
DAY_FIRST_END = pd.Timestamp("2025-06-21")  # the day-first files stop on 2025-06-20
MODEL_KEY = "test-key"  # the key the session's model was signed with (tests/conftest.py)

COMPARED = ["as_of", "lifecycle_stage", "churn_probability", "risk_band", "value_tier", "clv", "reason_1", "reason_2",
            "reason_3", "action", "action_cost", "expected_value", "model_version"]
NUMERIC = ("churn_probability", "clv", "action_cost", "expected_value")
PROBABILITY_ATOL = 1e-12

REFERENCE = "local-1"
ENGINES = ("local-3", "dask", "http")  # each compared with the reference
LABELS = {"local-1": "score --partitions 1", "local-3": "score --partitions 3", "dask": "score --engine dask",
          "http": "POST /predict"}
CASES = ("iso-as-of", "iso-last-day", "day-first-last-day", "after-as-of", "iso-curve", "iso-beyond")
BEYOND_DAYS = 100  # the support of the iso-beyond case's model
CURVE = "churn_probability_"  # the prefix of the churn curve's columns (a model trained with labels.horizons)

# Input columns as the HTTP body types them (every other column is text).
DATE_COLUMNS = {"timestamp", "opened_at", "first_response_at", "resolved_at", "signup_date"}
NUMBER_COLUMNS = {"amount", "quantity", "discount", "csat", "nps", "loyalty_points"}
FLAG_COLUMNS = {"loyalty_member"}


@dataclass(frozen=True)
class Case:
    """One input: CSV files, the ``--as-of`` given (None: the engines pick "today"), the files' date format
    (None: ISO) and the YAML config that reads it."""

    name: str
    files: dict[str, Path]
    as_of: str | None
    last_day: str  # the last day with a transaction, worked out from the rows before they were written
    date_format: str | None = None
    config: Path | None = None
    curve: bool = False  # scored with the session's model with a churn curve
    beyond: bool = False  # ... and the purchases' seasonal model beyond a support of BEYOND_DAYS


@dataclass(frozen=True)
class Outcome:
    """What one engine answered: the scored customers (index customer_id, the COMPARED columns) and the
    rejected ones (customer_id -> reason)."""

    scores: pd.DataFrame
    rejected: dict[str, str]


# ---------------------------------------------------------------------------------------------------------
# Input files


def _demo_slice(demo) -> dict[str, pd.DataFrame]:
    keep = demo.customers["customer_id"].iloc[:N_CUSTOMERS]
    return {n: getattr(demo, n)[getattr(demo, n)["customer_id"].isin(keep)].reset_index(drop=True) for n in NAMES}


def _late_customers(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``frames`` plus hand-made customers around as_of 2025-06-30:

    - late-purchase: one purchase on 2025-07-05, after as_of: nothing on or before it;
    - late-ticket: one ticket opened 2025-07-10, after as_of, and no purchase; listed in the customers file
      (a ticket of a customer in neither transactions nor customers is a bad row), signed up 2025-07-09;
    - late-both: a purchase on 2025-08-01 and a ticket on 2025-08-02;
    - boundary: a purchase at 23:59 on as_of (counts) and one at 00:00 the day after (does not);
    - lost-365: one purchase on 2024-06-30, 365 days before as_of (outside the 365-day lookback), and a ticket
      on 2025-06-01 (activity inside it);
    - lapsing-364: one purchase on 2024-07-01, 364 days before as_of (inside the lookback);
    - never-bought: listed in the customers file (signup 2025-06-01), no purchase.
    """
    ts = pd.Timestamp
    tx = pd.DataFrame({
        "customer_id": ["late-purchase", "late-both", "boundary", "boundary", "lost-365", "lapsing-364"],
        "timestamp": [ts("2025-07-05 10:00:00"), ts("2025-08-01 12:00:00"), ts("2025-06-30 23:59:00"),
                      ts("2025-07-01 00:00:00"), ts("2024-06-30 12:00:00"), ts("2024-07-01 09:00:00")],
        "amount": [40.0, 25.5, 60.0, 15.0, 80.0, 35.0],
        "order_id": ["H1", "H2", "H3", "H4", "H5", "H6"],
        "quantity": [1, 1, 2, 1, 1, 1],
        "category": ["home", "toys", "grocery", "grocery", "home", "toys"],
        "channel": ["web", "app", "store", "store", "web", "web"],
        "discount": [0.0, 0.1, 0.0, 0.0, 0.0, 0.0],
    })
    tk = pd.DataFrame({
        "ticket_id": ["HT1", "HT2", "HT3"],
        "customer_id": ["late-ticket", "late-both", "lost-365"],
        "opened_at": [ts("2025-07-10 09:00:00"), ts("2025-08-02 09:00:00"), ts("2025-06-01 09:00:00")],
        "first_response_at": [ts("2025-07-10 12:00:00"), ts("2025-08-02 10:00:00"), ts("2025-06-01 11:00:00")],
        "resolved_at": [ts("2025-07-11 09:00:00"), pd.NaT, ts("2025-06-02 09:00:00")],
        "channel": ["email", "chat", "email"],
        "csat": [2.0, np.nan, 4.0],
    })
    cu = pd.DataFrame({"customer_id": ["late-ticket", "never-bought"],
                       "signup_date": [ts("2025-07-09"), ts("2025-06-01")], "loyalty_member": [False, True],
                       "loyalty_points": [0, 0], "nps": [np.nan, np.nan], "region": ["east", "west"]})
    return {"transactions": pd.concat([frames["transactions"], tx], ignore_index=True),
            "tickets": pd.concat([frames["tickets"], tk], ignore_index=True),
            "customers": pd.concat([frames["customers"], cu], ignore_index=True)}


def _write(frames: dict[str, pd.DataFrame], directory: Path, date_format: str | None = None) -> dict[str, Path]:
    directory.mkdir(parents=True)
    paths = {}
    for name, frame in frames.items():
        out = frame.copy()
        if date_format is not None:
            for col in DATE_COLUMNS & set(out.columns):
                out[col] = out[col].dt.strftime(date_format)
        paths[name] = directory / f"{name}.csv"
        out.to_csv(paths[name], index=False)
    return paths


def _last_day(frames: dict[str, pd.DataFrame]) -> str:
    return frames["transactions"]["timestamp"].max().date().isoformat()


def _inputs(files: dict[str, Path]) -> list[str]:
    return ["-t", str(files["transactions"]), "--tickets", str(files["tickets"]),
            "--customers", str(files["customers"])]


def _invoke(args: list[str]) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, f"churnguard {' '.join(map(str, args))} failed:\n{result.output}"


# ---------------------------------------------------------------------------------------------------------
# What the engines answered, as comparable frames


def _frame(records: list[dict]) -> pd.DataFrame:
    """Scores (CSV text or JSON values) as a frame: index customer_id, COMPARED columns and the churn curve's
    columns when there are any; numbers as floats (missing: NaN), as_of as an ISO day, text as text."""
    curve = sorted({k for r in records for k in r if k.startswith(CURVE)})
    raw = pd.DataFrame.from_records(records, columns=["customer_id", *COMPARED, *curve])
    out = pd.DataFrame(index=pd.Index([str(c) for c in raw["customer_id"]], name="customer_id"))
    for col in [*COMPARED, *curve]:
        values = raw[col].tolist()
        if col in NUMERIC or col.startswith(CURVE):
            out[col] = [np.nan if v is None or v == "" else float(v) for v in values]
        elif col == "as_of":
            out[col] = [pd.Timestamp(v).date().isoformat() for v in values]
        else:
            out[col] = ["" if v is None else str(v) for v in values]
    return out


def _read_scores(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return _frame(pd.read_parquet(path).to_dict("records"))
    return _frame(pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records"))


def _read_rejects(path: Path) -> dict[str, str]:
    if not path.exists():  # written only when something was rejected
        return {}
    rejects = pd.read_csv(path, dtype=str, keep_default_na=False)
    return {cid: "; ".join(sorted(group["reason"])) for cid, group in rejects.groupby("customer_id")}


def _differing(want: pd.Series, got: pd.Series, col: str) -> pd.Series:
    both_missing = want.isna() & got.isna()
    if col == "churn_probability" or col.startswith(CURVE):
        return ~(((want - got).abs() <= PROBABILITY_ATOL) | both_missing)
    if col in NUMERIC:
        return ~((want == got) | both_missing)
    return want != got


def _show(value) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _scores_diff(want: pd.DataFrame, got: pd.DataFrame, want_name: str, got_name: str, show: int = 3) -> str:
    """A readable account of how two engines' scores differ ('' when they do not): the customers only one of
    them scored, then per column how many customers differ and the first few values side by side."""
    lines = []
    for a, b, name in ((want, got, want_name), (got, want, got_name)):
        only = sorted(set(a.index) - set(b.index))
        if only:
            shown = ", ".join(f"{c} ({a.loc[c, 'risk_band']}, {a.loc[c, 'action']})" for c in only[:show])
            lines.append(f"{len(only)} customer(s) scored by {name} only, e.g. {shown}")
    shared = want.index.intersection(got.index)
    w, g = want.loc[shared], got.loc[shared]
    if list(w.columns) != list(g.columns):
        lines.append(f"columns differ: {list(w.columns)} ({want_name}) vs {list(g.columns)} ({got_name})")
    for col in [c for c in w.columns if c in g.columns]:
        bad = shared[_differing(w[col], g[col], col).to_numpy()]
        if len(bad):
            shown = "; ".join(f"{c}: {_show(w.loc[c, col])} vs {_show(g.loc[c, col])}" for c in bad[:show])
            lines.append(f"{col}: {len(bad)} of {len(shared)} customers differ ({want_name} vs {got_name}), "
                         f"e.g. {shown}")
    return "\n".join(lines)


def _rejects_diff(want: dict[str, str], got: dict[str, str], want_name: str, got_name: str, show: int = 3) -> str:
    lines = []
    for a, b, name in ((want, got, want_name), (got, want, got_name)):
        only = sorted(set(a) - set(b))
        if only:
            lines.append(f"{len(only)} customer(s) rejected by {name} only, e.g. "
                         + "; ".join(f"{c}: {a[c]!r}" for c in only[:show]))
    changed = sorted(c for c in set(want) & set(got) if want[c] != got[c])
    if changed:
        lines.append(f"reason: {len(changed)} of {len(set(want) & set(got))} rejected customers differ "
                     f"({want_name} vs {got_name}), e.g. "
                     + "; ".join(f"{c}: {want[c]!r} vs {got[c]!r}" for c in changed[:show]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# The HTTP body: each customer's whole raw history, as a client would send it


def _typed(column: str, values: pd.Series, date_format: str | None) -> list:
    """A column of CSV text as the JSON values of the request body (blank: None)."""
    blank = values == ""
    if column in DATE_COLUMNS:
        parsed = pd.to_datetime(values.mask(blank), format=date_format or "ISO8601")
        return [None if b else t.isoformat() for b, t in zip(blank, parsed, strict=True)]
    if column in NUMBER_COLUMNS:
        return [None if b else float(v) for b, v in zip(blank, values, strict=True)]
    if column in FLAG_COLUMNS:
        return [None if b else {"True": True, "False": False}.get(v, v) for b, v in zip(blank, values, strict=True)]
    return [None if b else v for b, v in zip(blank, values, strict=True)]


def _records(path: Path, date_format: str | None) -> list[dict]:
    text = pd.read_csv(path, dtype=str, keep_default_na=False)
    columns = {c: _typed(c, text[c], date_format) for c in text.columns if c != "customer_id"}
    return [{"customer_id": cid, **{c: v[i] for c, v in columns.items()}}
            for i, cid in enumerate(text["customer_id"])]


def _request_customers(files: dict[str, Path], date_format: str | None) -> list[dict]:
    """One entry per customer in any of the files (in order of first appearance), with every transaction and
    ticket row of theirs and their customers-file columns as attributes."""
    customers: dict[str, dict] = {}

    def entry(cid: str) -> dict:
        return customers.setdefault(cid, {"customer_id": cid, "transactions": [], "tickets": [], "attributes": {}})

    for name, key in (("transactions", "transactions"), ("tickets", "tickets")):
        for row in _records(files[name], date_format):
            entry(row.pop("customer_id"))[key].append(row)
    for row in _records(files["customers"], date_format):
        entry(row.pop("customer_id"))["attributes"] = row
    return list(customers.values())


def _outcome_from_answer(answer: dict) -> Outcome:
    return Outcome(_frame(answer["scores"]), {r["customer_id"]: r["reason"] for r in answer["rejected"]})


# ---------------------------------------------------------------------------------------------------------
# The battery: input files written once, the server and the cluster started once, every run made once


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Battery:
    """The cases' files, and each (case, engine) outcome, computed when a test first asks for it. The day-first
    model, the servers and the Dask cluster are started on first use and stopped with the module."""

    def __init__(self, trained: dict, curve_model: Path, root: Path, stack: ExitStack) -> None:
        self.trained, self.curve_model, self.root, self.stack = trained, curve_model, root, stack
        self.servers: dict[Path, tuple[subprocess.Popen, str, object]] = {}
        self.outcomes: dict[tuple[str, str], Outcome] = {}
        self.address: str | None = None
        self.day_first_model: Path | None = None
        self.cases = self._write_cases()

    def _write_cases(self) -> dict[str, Case]:
        demo = _demo_slice(self.trained["demo"])
        iso = _write(demo, self.root / "iso")
        day_first = {
            "transactions": demo["transactions"][demo["transactions"]["timestamp"] < DAY_FIRST_END],
            "tickets": demo["tickets"][demo["tickets"]["opened_at"] < DAY_FIRST_END],
            "customers": demo["customers"],
        }
        config = self.root / "day-first.yaml"
        config.write_text(
            "data:\n"
            f'  date_format: "{DAY_FIRST}"\n'
            "snapshots:\n"
            "  max_snapshots: 8  # the small files hold too little history for the default split\n"
            "model:\n"
            "  num_boost_round: 20\n"
        )
        late = _late_customers(demo)
        return {
            "iso-as-of": Case("iso-as-of", iso, AS_OF, _last_day(demo)),
            "iso-last-day": Case("iso-last-day", iso, None, _last_day(demo)),
            "day-first-last-day": Case("day-first-last-day", _write(day_first, self.root / "day-first", DAY_FIRST),
                                       None, _last_day(day_first), DAY_FIRST, config),
            "after-as-of": Case("after-as-of", _write(late, self.root / "after-as-of"), AS_OF, _last_day(late)),
            "iso-curve": Case("iso-curve", iso, AS_OF, _last_day(demo), curve=True),
            "iso-beyond": Case("iso-beyond", iso, AS_OF, _last_day(demo), curve=True, beyond=True),
        }

    def model(self, case: Case) -> Path:
        """The session's model; for a case with its own date format, a small model trained with the case's
        config on the case's files (``score`` reads the files with the model's data settings); for the curve
        case, the session's model with a churn curve."""
        if case.beyond:
            return self._beyond_model()
        if case.curve:
            return self.curve_model
        if case.config is None:
            return Path(self.trained["result"].model_path)
        if self.day_first_model is None:
            out = self.root / "day-first-model" / "model.joblib"
            with pytest.MonkeyPatch.context() as mp:
                mp.chdir(self.root)  # MLflow's artifacts go to the working directory
                _invoke(["train", "--config", case.config, *_inputs(case.files), "-o", out,
                         "--tracking-uri", f"sqlite:///{self.root / 'mlflow.db'}"])
            self.day_first_model = out
        return self.day_first_model

    def _beyond_model(self) -> Path:
        path = self.root / "beyond-model" / "model.zip"
        if not path.exists():
            from dataclasses import replace

            from churnguard.model import ChurnModel
            from churnguard.model._modelcore import BeyondSupport, SeasonalParetoNBD

            model = ChurnModel.load(self.curve_model)
            season = (0.8, 0.8, 0.9, 1.0, 1.0, 0.9, 0.8, 0.9, 1.0, 1.1, 1.3, 1.5)
            purchases = SeasonalParetoNBD(1.2, 3.0, 0.8, 25.0, tuple(np.array(season) / np.mean(season)))
            model.beyond_ = BeyondSupport(BEYOND_DAYS, model.info.config.labels.horizon_days, AS_OF, purchases)
            model.info = replace(model.info, summary={**model.info.summary, "support_days": BEYOND_DAYS})
            path.parent.mkdir()
            model.save(path)
        return path

    def scheduler(self) -> str:
        if self.address is None:
            pytest.importorskip("distributed")
            from tests.dask_cluster import local_cluster

            self.address = self.stack.enter_context(local_cluster()).scheduler_address
        return self.address

    def launch(self, model: Path) -> None:
        """Start a server for ``model`` without waiting for it (it loads while other runs go on)."""
        if model not in self.servers:
            self.servers[model] = self._start_server(model)

    def server(self, model: Path) -> str:
        """The base URL of the server of ``model``, once it answers."""
        self.launch(model)
        proc, base, log = self.servers[model]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    return base
            except httpx.TransportError:
                time.sleep(0.2)
        log.seek(0)
        raise RuntimeError(f"server did not start: {log.read()}")

    def _start_server(self, model: Path) -> tuple[subprocess.Popen, str, object]:
        port = _free_port()
        log = self.stack.enter_context((self.root / f"server-{port}.log").open("w+"))
        proc = subprocess.Popen(
            [sys.executable, "-c", "from churnguard.cli import main; main()", "serve", "--model", str(model),
             "--port", str(port)],
            env={**os.environ, "CHURNGUARD_MODEL_KEY": MODEL_KEY}, stdout=subprocess.DEVNULL, stderr=log,
        )

        def stop() -> None:
            proc.terminate()
            proc.wait(timeout=10)

        self.stack.callback(stop)
        return proc, f"http://127.0.0.1:{port}", log

    def outcome(self, case_name: str, engine: str) -> Outcome:
        key = (case_name, engine)
        if key not in self.outcomes:
            case = self.cases[case_name]
            self.outcomes[key] = self._http(case) if engine == "http" else self._cli(case, engine)
        return self.outcomes[key]

    def _cli(self, case: Case, engine: str) -> Outcome:
        out = self.root / "runs" / f"{case.name}-{engine}" / "scores.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        args = ["score", "-m", self.model(case), *_inputs(case.files), "-o", out]
        if case.as_of is not None:
            args += ["--as-of", case.as_of]
        if engine == "dask":
            args += ["--engine", "dask", "--scheduler", self.scheduler()]
        else:
            args += ["--partitions", engine.removeprefix("local-")]
        _invoke(args)
        return Outcome(_read_scores(out), _read_rejects(out.with_name("scores.rejects.csv")))

    def reported_day(self, case: Case) -> str:
        """The day the reference run scored a case without ``--as-of`` as; it must be the last transaction
        day."""
        days = sorted(set(self.outcome(case.name, REFERENCE).scores["as_of"]))
        assert days == [case.last_day], (
            f"`churnguard {LABELS[REFERENCE]}` without --as-of scored as of {days}, but the last day with a "
            f"transaction in {case.files['transactions'].name} is {case.last_day}"
            + (f" (dates written {case.date_format!r}, read with data.date_format)" if case.date_format else "")
        )
        return days[0]

    def _http(self, case: Case) -> Outcome:
        as_of = case.as_of or self.reported_day(case)
        body = {"as_of": as_of, "customers": _request_customers(case.files, case.date_format)}
        answer = httpx.post(f"{self.server(self.model(case))}/predict", json=body, timeout=60)
        assert answer.status_code == 200, answer.text[:2000]
        return _outcome_from_answer(answer.json())


@pytest.fixture(scope="module")
def battery(trained, trained_curve, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp, ExitStack() as stack:
        mp.setenv("CHURNGUARD_MODEL_KEY", MODEL_KEY)
        battery = Battery(trained, Path(trained_curve["result"].model_path), tmp_path_factory.mktemp("parity"), stack)
        battery.launch(Path(trained["result"].model_path))
        yield battery


# ---------------------------------------------------------------------------------------------------------
# The battery's tests


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES)
def test_scores_equal_the_single_partition_run(battery, case, engine):
    want = battery.outcome(case, REFERENCE).scores
    got = battery.outcome(case, engine).scores
    assert len(want) > 100
    curve = [c for c in want.columns if c.startswith(CURVE)]
    assert len(curve) == (4 if battery.cases[case].curve else 0), list(want.columns)
    diff = _scores_diff(want, got, LABELS[REFERENCE], LABELS[engine])
    assert not diff, f"case {case}: {LABELS[engine]} does not score as {LABELS[REFERENCE]} does:\n{diff}"


def test_customers_beyond_the_support_get_the_purchases_model_s_probability(battery):
    from churnguard.scoring import reasons

    plain, beyond = battery.outcome("iso-curve", REFERENCE).scores, battery.outcome("iso-beyond", REFERENCE).scores
    said = reasons.beyond_support_text(BEYOND_DAYS, rhythm=True)
    told = beyond[["reason_1", "reason_2", "reason_3"]].eq(said).any(axis=1)
    curve = [c for c in beyond.columns if c.startswith(CURVE)]
    changed = (plain[["churn_probability", *curve]] - beyond[["churn_probability", *curve]]).abs().max(axis=1) > 0
    assert told.sum() > 5
    assert (~told & beyond["churn_probability"].notna()).sum() > 5
    assert (changed == told).all()  # exactly the customers told so get other probabilities


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES)
def test_rejected_customers_equal_the_single_partition_run(battery, case, engine):
    want = battery.outcome(case, REFERENCE).rejected
    got = battery.outcome(case, engine).rejected
    diff = _rejects_diff(want, got, LABELS[REFERENCE], LABELS[engine])
    assert not diff, f"case {case}: {LABELS[engine]} does not reject as {LABELS[REFERENCE]} does:\n{diff}"


@pytest.mark.parametrize("engine", ["local-3", "dask"])
def test_the_csv_for_people_is_the_parquet_rounded(battery, engine):
    """``-o scores.csv`` holds every engine's Parquet scores rounded (probabilities to 4 decimals, money to
    cents), the other columns as they are; both engines' CSV files are the same text."""
    case = battery.cases["iso-as-of"]
    battery.outcome(case.name, REFERENCE)  # the reference run (already made when an earlier test asked for it)
    exact = pd.read_parquet(battery.root / "runs" / f"{case.name}-{REFERENCE}" / "scores.parquet")
    texts = {}
    for e in (REFERENCE, engine):
        out = battery.root / "runs" / f"csv-{e}" / "scores.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        extra = ["--engine", "dask", "--scheduler", battery.scheduler()] if e == "dask" else [
            "--partitions", e.removeprefix("local-")]
        _invoke(["score", "-m", battery.model(case), *_inputs(case.files), "--as-of", case.as_of, "-o", out, *extra])
        texts[e] = pd.read_csv(out, dtype=str, keep_default_na=False).sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(texts[engine], texts[REFERENCE])
    got = pd.read_csv(battery.root / "runs" / f"csv-{REFERENCE}" / "scores.csv").set_index("customer_id")
    want = exact.set_index("customer_id").loc[got.index]
    assert list(got.columns) == list(want.columns)
    assert np.allclose(got["churn_probability"], want["churn_probability"].round(4), rtol=0, atol=1e-12, equal_nan=True)
    assert (got["churn_probability"].dropna().map(lambda p: len(repr(p).partition(".")[2])) <= 4).all()
    for col in ("clv", "action_cost", "expected_value", "spend_last_year"):
        assert np.allclose(got[col], want[col].round(2), rtol=0, atol=1e-9, equal_nan=True), col
    for col in ("risk_band", "action", "reason_1", "reason_2", "reason_3", "selected", "value_rank"):
        assert got[col].fillna("").astype(str).tolist() == want[col].fillna("").astype(str).tolist(), col


@pytest.mark.parametrize("engine", ["local-1", "local-3", "dask"])
@pytest.mark.parametrize("case", [c for c in CASES if "last-day" in c])
def test_without_as_of_every_engine_scores_as_of_the_last_transaction_day(battery, case, engine):
    c = battery.cases[case]
    days = sorted(set(battery.outcome(case, engine).scores["as_of"]))
    assert days == [c.last_day], (
        f"case {case}: `churnguard {LABELS[engine]}` without --as-of scored as of {days}; the last day with a "
        f"transaction in {c.files['transactions'].name} is {c.last_day}"
        + (f" (dates written {c.date_format!r}, read with data.date_format)" if c.date_format else "")
    )


@pytest.mark.parametrize("engine", [REFERENCE, *ENGINES])
def test_customers_active_only_after_as_of_are_rejected_by_every_engine(battery, engine):
    """late-purchase, late-ticket and late-both did nothing on or before as_of 2025-06-30: every engine
    rejects them with the same sentence; boundary bought at 23:59 on as_of and is scored."""
    got = battery.outcome("after-as-of", engine)
    reason = "no activity on or before as_of 2025-06-30"
    late = ["late-both", "late-purchase", "late-ticket"]
    assert {c: got.rejected.get(c) for c in late} == dict.fromkeys(late, reason), (
        f"{LABELS[engine]}: rejected {({c: got.rejected.get(c) for c in late})}; scored "
        f"{got.scores.loc[got.scores.index.intersection(late), ['risk_band', 'action']].to_dict('index')}"
    )
    assert "boundary" in got.scores.index, f"{LABELS[engine]}: boundary not scored ({got.rejected.get('boundary')})"
    assert got.scores.loc["boundary", "lifecycle_stage"] == "new"
    assert 0 <= got.scores.loc["boundary", "churn_probability"] <= 1


@pytest.mark.parametrize("engine", [REFERENCE, *ENGINES])
def test_customers_outside_the_lookback_get_their_stage_instead_of_a_probability(battery, engine):
    """lost-365 bought 365 days before as_of (outside the 365-day lookback the model learns from),
    lapsing-364 a day later (inside), never-bought never: every engine gives the stage, band, action and
    reason worked out here."""
    got = battery.outcome("after-as-of", engine).scores
    who = ["lost-365", "lapsing-364", "never-bought"]
    missing = sorted(set(who) - set(got.index))
    assert not missing, f"{LABELS[engine]}: {missing} not scored"
    rows = got.loc[who, ["lifecycle_stage", "risk_band", "action", "reason_1"]].to_dict("index")
    assert rows["lost-365"] == {
        "lifecycle_stage": "lost", "risk_band": "lost", "action": "win_back_lost",
        "reason_1": "no churn probability: last purchase 365 days ago, and the model scores customers who bought "
                    "in the last 365 days"}, f"{LABELS[engine]}: {rows['lost-365']}"
    assert rows["never-bought"] == {
        "lifecycle_stage": "never_bought", "risk_band": "never_bought", "action": "first_purchase_nudge",
        "reason_1": "no churn probability: no purchase yet"}, f"{LABELS[engine]}: {rows['never-bought']}"
    assert got.loc[["lost-365", "never-bought"], "churn_probability"].isna().all()
    assert rows["lapsing-364"]["lifecycle_stage"] == "lapsing"
    assert rows["lapsing-364"]["risk_band"] in ("high", "medium", "low")
    assert 0 <= got.loc["lapsing-364", "churn_probability"] <= 1


@pytest.mark.parametrize("case", [c for c in CASES if c != "iso-curve"])  # features do not depend on the model
def test_feature_files_on_dask_equal_the_local_engine(battery, case, tmp_path):
    c = battery.cases[case]
    args = ["features", *_inputs(c.files), "--as-of", c.as_of or c.last_day]
    if c.config is not None:
        args += ["--config", c.config]
    _invoke([*args, "-o", tmp_path / "local.parquet"])
    _invoke([*args, "-o", tmp_path / "dask.parquet", "--engine", "dask", "--scheduler", battery.scheduler()])
    want, got = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "dask.parquet")
    assert len(want) > 100
    assert sorted(set(want["customer_id"]) ^ set(got["customer_id"])) == []
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    rejects = [_read_rejects(tmp_path / f"{name}.rejects.csv") for name in ("local", "dask")]
    assert rejects[1] == rejects[0]
    if case == "after-as-of":  # left out of the features, and said so as score says it
        late = ["late-both", "late-purchase", "late-ticket"]
        assert {c: rejects[0].get(c) for c in late} == dict.fromkeys(late, "no activity on or before as_of 2025-06-30")
        assert not set(late) & set(want["customer_id"])
        assert rejects[0] == battery.outcome(case, REFERENCE).rejected


def _day_first_inferred(battery) -> dict[str, Path]:
    """The ISO case's files with the transactions' timestamps written ``%d/%m/%Y %H:%M`` (no
    ``data.date_format``: the style is guessed from the file's first value, whose day is past 12, so day-first).
    Several partitions of 4 start with a day of 12 or less: guessed on its own, their style is month-first."""
    files = battery.cases["iso-as-of"].files
    out = battery.root / "day-first-inferred"
    if not out.exists():
        tx = pd.read_csv(files["transactions"], dtype=str, keep_default_na=False)
        stamps = pd.to_datetime(tx["timestamp"])
        first = int(np.flatnonzero(stamps.dt.day.to_numpy() > 12)[0])
        order = [first, *(i for i in range(len(tx)) if i != first)]
        tx = tx.iloc[order].assign(timestamp=stamps.iloc[order].dt.strftime(DAY_FIRST))
        out.mkdir()
        tx.to_csv(out / "transactions.csv", index=False)
    return {**files, "transactions": out / "transactions.csv"}


def _score_run(battery, files: dict[str, Path], name: str, engine: str, *extra: str) -> tuple[int, str, Path]:
    out = battery.root / "runs" / name / engine / "scores.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["score", "-m", battery.model(battery.cases["iso-as-of"]), *_inputs(files), "-o", out, *extra]
    args += ["--engine", "dask", "--scheduler", battery.scheduler()] if engine == "dask" else [
        "--partitions", engine.removeprefix("local-")]
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split()), out


@pytest.mark.parametrize("engine", ["local-4", "dask"])
def test_day_first_dates_are_read_in_the_style_of_the_whole_file(battery, engine):
    files = _day_first_inferred(battery)
    runs = {e: _score_run(battery, files, "day-first-inferred", e) for e in (REFERENCE, engine)}
    for e, (code, output, _) in runs.items():
        assert code == 0, f"{LABELS.get(e, e)} failed on day-first dates without data.date_format: {output}"
    want, got = (Outcome(_read_scores(out), _read_rejects(out.with_name("scores.rejects.csv")))
                 for _, _, out in runs.values())
    last = pd.to_datetime(pd.read_csv(files["transactions"])["timestamp"], format=DAY_FIRST).max().date()
    assert sorted(set(want.scores["as_of"])) == [last.isoformat()]
    diff = _scores_diff(want.scores, got.scores, LABELS[REFERENCE], engine) + _rejects_diff(
        want.rejected, got.rejected, LABELS[REFERENCE], engine)
    assert not diff, f"day-first dates: score {engine} differs from {LABELS[REFERENCE]}:\n{diff}"


@pytest.mark.parametrize("engine", ["local-4", "dask"])
def test_a_raise_on_bad_rows_counts_the_whole_file(battery, engine):
    """Six bad amounts, in more than one of 4 partitions: the error states 6 of the file's rows, as the
    single-partition run does, not the rows of the first partition it met."""
    from churnguard.engines.partitions import customer_partition

    files = battery.cases["iso-as-of"].files
    tx = pd.read_csv(files["transactions"], dtype=str, keep_default_na=False)
    bad = np.linspace(10, len(tx) - 10, 6).astype(int)
    assert len(set(customer_partition(tx["customer_id"].iloc[bad], 4))) > 1
    tx.loc[bad, "amount"] = ["n/a", "ten", "n/a", "?", "n/a", "x"]
    path = battery.root / f"bad-amounts-{engine}" / "transactions.csv"
    path.parent.mkdir()
    tx.to_csv(path, index=False)
    runs = {e: _score_run(battery, {**files, "transactions": path}, "bad-amounts", e) for e in (REFERENCE, engine)}
    (want_code, want, _), (got_code, got, out) = runs.values()
    assert want_code == got_code == 2
    assert f"6 of {len(tx):,} transactions row(s) cannot be used" in want
    assert want in got, got  # the dask engine says where it runs first
    assert not out.exists()


@pytest.mark.parametrize("engine", ["local-4", "dask"])
def test_impossible_values_are_set_aside_alike_and_do_not_move_today(battery, engine):
    """An infinite and an overflowing amount, a date after today and a year out of range: set aside with their
    reasons by every engine, and "today" (no --as-of) is the last day of the rows kept, not 2099."""
    files = battery.cases["iso-as-of"].files
    tx = pd.read_csv(files["transactions"], dtype=str, keep_default_na=False)
    last = pd.to_datetime(tx["timestamp"]).max().date()
    bad = np.linspace(10, len(tx) - 10, 4).astype(int)
    tx.loc[bad[:2], "amount"] = ["inf", "1e308"]
    tx.loc[bad[2:], "timestamp"] = ["2099-06-01 10:00:00", "3000-01-01 00:00:00"]
    path = battery.root / f"impossible-{engine}" / "transactions.csv"
    path.parent.mkdir()
    tx.to_csv(path, index=False)
    runs = {e: _score_run(battery, {**files, "transactions": path}, "impossible", e, "--reject-bad-rows")
            for e in (REFERENCE, engine)}
    for e, (code, output, _) in runs.items():
        assert code == 0, f"{LABELS.get(e, e)} failed: {output}"
    want, got = (Outcome(_read_scores(out), _read_rejects(out.with_name("scores.rejects.csv")))
                 for _, _, out in runs.values())
    assert sorted(set(want.scores["as_of"])) == [last.isoformat()]
    reasons = pd.read_csv(runs[REFERENCE][2].with_name("scores.rejects.csv"))["reason"]
    for reason in ("are not finite numbers", "lie outside", "are dated after today", "outside the years 1678-2261"):
        assert reasons.str.contains(reason, regex=False).any(), (reason, reasons.tolist())
    diff = _scores_diff(want.scores, got.scores, LABELS[REFERENCE], engine) + _rejects_diff(
        want.rejected, got.rejected, LABELS[REFERENCE], engine)
    assert not diff, f"impossible values: score {engine} differs from {LABELS[REFERENCE]}:\n{diff}"


def _cut_runs(battery, engine: str, name: str, files: dict[str, Path], *extra: str) -> dict:
    return {e: _score_run(battery, files, f"{name}-{engine}", e, *extra) for e in (REFERENCE, engine)}


@pytest.mark.parametrize("engine", ["local-4", "dask"])
def test_rows_longer_than_the_header_are_bad_rows_alike(battery, engine):
    """An unquoted 1,234.50 in the first row and in middle rows (some with the last field empty): refused with
    the file's count by every engine, or set aside alike with --reject-bad-rows; no amount of 1 is kept."""
    files = battery.cases["iso-as-of"].files
    lines = files["transactions"].read_text().splitlines()
    bad = [1, *np.linspace(10, len(lines) - 10, 3).astype(int)]
    for k, i in enumerate(bad):
        fields = lines[i].split(",")
        fields[2] = "1,234.50"  # amount
        fields[3] = "" if k % 2 else fields[3]  # order_id
        lines[i] = ",".join(fields)
    path = battery.root / f"long-rows-{engine}" / "transactions.csv"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    inputs = {**files, "transactions": path}
    (want_code, want, _), (got_code, got, _out) = _cut_runs(battery, engine, "long-rows", inputs).values()
    assert want_code == got_code == 2
    assert f"4 of {len(lines) - 1:,} transactions row(s) cannot be used: column '(whole row)': 4 row(s) have more " \
           "fields than the header" in want
    assert want in got, got
    runs = _cut_runs(battery, engine, "long-rows-rejected", inputs, "--reject-bad-rows")
    for e, (code, output, _) in runs.items():
        assert code == 0, f"{LABELS.get(e, e)} failed: {output}"
    (_, _, want_out), (_, _, got_out) = runs.values()
    rejects = pd.read_csv(want_out.with_name("scores.rejects.csv"), dtype=str)
    assert sorted(rejects.loc[rejects["column"] == "(whole row)", "row"].astype(int)) == bad
    want, got = (Outcome(_read_scores(o), _read_rejects(o.with_name("scores.rejects.csv"))) for o in (want_out, got_out))
    diff = _scores_diff(want.scores, got.scores, LABELS[REFERENCE], engine) + _rejects_diff(
        want.rejected, got.rejected, LABELS[REFERENCE], engine)
    assert not diff, f"rows longer than the header: score {engine} differs from {LABELS[REFERENCE]}:\n{diff}"


def _partial_history_files(battery, directory: Path) -> tuple[dict[str, Path], str, str, int]:
    """The ISO case's files with 2 bad amounts among the first customer's transactions before as_of (of 3 or
    more) and every transaction row of the first customer of the customers file (signed up by as_of) with
    another customer's rows bad: the first keeps a partial history, the second none."""
    files = battery.cases["iso-as-of"].files
    tx = pd.read_csv(files["transactions"], dtype=str, keep_default_na=False)
    cu = pd.read_csv(files["customers"], dtype=str, keep_default_na=False)
    before = tx[pd.to_datetime(tx["timestamp"]) <= pd.Timestamp(AS_OF)]
    counts = before["customer_id"].value_counts()
    partial = min(counts.index[counts >= 3])
    emptied = min(set(cu.loc[pd.to_datetime(cu["signup_date"]) <= pd.Timestamp(AS_OF), "customer_id"])
                  & set(tx["customer_id"]) - {partial})
    tx.loc[before.index[before["customer_id"] == partial][:2], "amount"] = "n/a"
    tx.loc[tx["customer_id"] == emptied, "amount"] = "n/a"
    directory.mkdir()
    tx.to_csv(directory / "transactions.csv", index=False)
    return {**files, "transactions": directory / "transactions.csv"}, partial, emptied, int(
        (tx["customer_id"] == emptied).sum())


@pytest.mark.parametrize("engine", ["local-3", "dask"])
def test_customers_scored_on_partial_history_are_marked_alike(battery, engine):
    """With --reject-bad-rows, 2 of one customer's transaction rows and every row of another (listed in the
    customers file) set aside: every engine counts them in rejected_rows (0 for everyone else), tells the
    second customer's no-purchase apart from a new customer's in reason_1, and the summary counts both."""
    files, partial, emptied, n_emptied = _partial_history_files(battery, battery.root / f"partial-{engine}")
    runs = _cut_runs(battery, engine, "partial-history", files, "--reject-bad-rows")
    for e, (code, output, _) in runs.items():
        assert code == 0, f"{LABELS.get(e, e)} failed: {output}"
        assert ("partial history: 2 customers scored with transaction rows set aside (column rejected_rows), 1 of "
                "them with no purchase left (no probability)") in output, output
    (_, _, want_out), (_, _, got_out) = runs.values()
    frames = [pd.read_parquet(o).set_index("customer_id") for o in (want_out, got_out)]
    for label, frame in zip((LABELS[REFERENCE], engine), frames, strict=True):
        marked = frame.loc[frame["rejected_rows"] > 0, "rejected_rows"].to_dict()
        assert marked == {partial: 2, emptied: n_emptied}, f"{label}: {marked}"
        assert frame.loc[emptied, "lifecycle_stage"] == "never_bought"
        assert frame.loc[emptied, "reason_1"] == (
            f"no churn probability: no purchase on record, but {n_emptied} transaction rows of theirs were set aside "
            "as bad (see the rejects file)"), label
        assert frame.loc[partial, "lifecycle_stage"] != "never_bought"
        assert list(frame.columns[frame.columns.get_loc("n_orders"):][:2]) == ["n_orders", "rejected_rows"]
    pd.testing.assert_series_equal(frames[1]["rejected_rows"].sort_index(), frames[0]["rejected_rows"].sort_index())
    want, got = (Outcome(_read_scores(o), _read_rejects(o.with_name("scores.rejects.csv"))) for o in (want_out, got_out))
    diff = _scores_diff(want.scores, got.scores, LABELS[REFERENCE], engine) + _rejects_diff(
        want.rejected, got.rejected, LABELS[REFERENCE], engine)
    assert not diff, f"partial history: score {engine} differs from {LABELS[REFERENCE]}:\n{diff}"


def _numbered(files: dict[str, Path], directory: Path, tx_suffix: str) -> dict[str, Path]:
    """The files with every customer id a number: 1234 in tickets and customers, 1234.0 in the transactions
    (text in CSV, a float column in Parquet)."""
    directory.mkdir()
    out = {}
    for name, path in files.items():
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        number = frame["customer_id"].str.lstrip("C").astype(int)
        frame["customer_id"] = number.astype(str)
        if name == "transactions":
            frame["customer_id"] = number.astype(float)
            if tx_suffix == ".csv":
                frame["customer_id"] = frame["customer_id"].map("{:.1f}".format)
        out[name] = directory / f"{name}{tx_suffix if name == 'transactions' else '.csv'}"
        frame.to_parquet(out[name]) if out[name].suffix == ".parquet" else frame.to_csv(out[name], index=False)
    return out


@pytest.mark.parametrize("engine", ["local-4", "dask"])
@pytest.mark.parametrize("tx_suffix", [".csv", ".parquet"])
def test_float_ids_join_the_same_integer_ids_in_every_engine(battery, engine, tx_suffix):
    """Transactions' 1234.0 (text or Parquet floats) are the customers' and tickets' 1234: the same scores as
    with integer ids everywhere, no customer without history invented."""
    files = battery.cases["iso-as-of"].files
    name = f"float-ids{tx_suffix.replace('.', '-')}"
    floats = _numbered(files, battery.root / f"{name}-{engine}", tx_suffix)
    ints = {n: floats[n] for n in ("tickets", "customers")}
    ints["transactions"] = battery.root / f"{name}-{engine}" / "transactions-int.csv"
    tx = pd.read_csv(files["transactions"], dtype=str, keep_default_na=False)
    tx.assign(customer_id=tx["customer_id"].str.lstrip("C").astype(int).astype(str)).to_csv(
        ints["transactions"], index=False)
    runs = [_score_run(battery, ints, f"{name}-ints", REFERENCE, "--as-of", AS_OF),
            *(_score_run(battery, floats, f"{name}-{e}", e, "--as-of", AS_OF) for e in (REFERENCE, engine))]
    for code, output, _ in runs:
        assert code == 0, output
    want, *got = (Outcome(_read_scores(o), _read_rejects(o.with_name("scores.rejects.csv"))) for _, _, o in runs)
    assert len(set(want.scores.index) | set(want.rejected)) == N_CUSTOMERS
    for label, outcome in zip(("float ids", f"float ids on {engine}"), got, strict=True):
        diff = _scores_diff(want.scores, outcome.scores, "integer ids", label) + _rejects_diff(
            want.rejected, outcome.rejected, "integer ids", label)
        assert not diff, diff


@pytest.mark.parametrize("engine", ["local-4", "dask"])
def test_tables_sharing_almost_no_ids_are_refused_by_every_engine(battery, engine):
    files = battery.cases["iso-as-of"].files
    customers = pd.read_csv(files["customers"], dtype=str, keep_default_na=False)
    path = battery.root / f"crm-ids-{engine}" / "customers.csv"
    path.parent.mkdir()
    customers.assign(customer_id=customers["customer_id"].str.lstrip("C0")).to_csv(path, index=False)
    runs = _cut_runs(battery, engine, "crm-ids", {**files, "customers": path})
    (want_code, want, _), (got_code, got, out) = runs.values()
    assert want_code == got_code == 2
    message = f"{files['transactions']} and {path} share 0 customer ids"
    assert message in want, want
    assert message in got, got
    assert "e.g. 'C0" in want
    assert "'1', '2', '3' only in" in want
    assert not out.exists()


def test_predict_refuses_a_customer_sent_twice(battery):
    """Two histories under one customer_id cannot both be that customer's, and no answer could say which score
    is whose: the request is refused (422) and the answer names the duplicate."""
    case = battery.cases["iso-as-of"]
    first, second = _request_customers(case.files, None)[:2]
    body = {"as_of": AS_OF, "customers": [first, {**second, "customer_id": first["customer_id"]}]}
    answer = httpx.post(f"{battery.server(battery.model(case))}/predict", json=body, timeout=60)
    summary = answer.text[:600]
    if answer.status_code == 200:
        scores = answer.json()["scores"]
        summary = "; ".join(f"{s['customer_id']}: churn_probability {s['churn_probability']}, {s['risk_band']}, "
                            f"{s['action']}" for s in scores)
    assert answer.status_code == 422, (
        f"POST /predict with customer_id {first['customer_id']!r} twice answered {answer.status_code}: {summary}"
    )
    assert first["customer_id"] in answer.text


def test_predict_reads_customer_ids_as_the_files_are_read(battery):
    """Blanks around an id are trimmed as a file's cell is (``dataset.clean_ids``): `` C1 `` over HTTP is the
    customer ``C1`` of the files, scored alike, and sent beside ``C1`` it is that customer twice (422); a null
    marker is a missing id (422), as it is a bad row in a file."""
    case = battery.cases["iso-as-of"]
    want = battery.outcome(case.name, REFERENCE).scores
    first, second = _request_customers(case.files, None)[:2]
    base = battery.server(battery.model(case))
    padded = {**first, "customer_id": f"  {first['customer_id']}\t"}
    answer = httpx.post(f"{base}/predict", json={"as_of": AS_OF, "customers": [padded, second]}, timeout=60)
    assert answer.status_code == 200, answer.text[:600]
    got = _outcome_from_answer(answer.json()).scores
    assert list(got.index) == [first["customer_id"], second["customer_id"]]
    diff = _scores_diff(want.loc[got.index], got, LABELS[REFERENCE], "POST /predict, ids with blanks")
    assert not diff, diff
    for customers in ([first, padded], [{**first, "customer_id": " NULL "}]):
        answer = httpx.post(f"{base}/predict", json={"as_of": AS_OF, "customers": customers}, timeout=60)
        assert answer.status_code == 422, answer.text[:600]
    assert "null marker" in answer.text


# ---------------------------------------------------------------------------------------------------------
# One customer alone over HTTP vs the same customer in a batch file with others


START = pd.Timestamp("2023-07-01")
_END_OF_AS_OF = int((pd.Timestamp(AS_OF) + pd.Timedelta(days=1) - START) / pd.Timedelta(minutes=1))
_LATEST = _END_OF_AS_OF + 60 * 24 * 60  # events up to 60 days after as_of
BACKGROUND = 30  # other customers in the batch


def _moment(minutes: int) -> st.SearchStrategy[pd.Timestamp]:
    """A time in the ``minutes`` after START, to the second."""
    return st.builds(lambda m, s: START + pd.Timedelta(minutes=m, seconds=s), st.integers(0, minutes - 1),
                     st.integers(0, 59))


def _transaction(until: int) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"timestamp": _moment(until),
         "amount": st.floats(-50, 500, allow_nan=False).map(lambda x: round(x, 2)).filter(bool)},
        optional={"order_id": st.sampled_from(["o1", "o2", "o3"]), "quantity": st.integers(1, 4).map(float),
                  "category": st.sampled_from(["grocery", "apparel", "home", "toys"]),
                  "channel": st.sampled_from(["store", "app", "web"]), "discount": st.sampled_from([0.0, 0.1, 0.15])},
    )


def _ticket(opened: pd.Timestamp, reply: int | None, resolve: int | None, csat: int | None, channel: str) -> dict:
    answered = None if reply is None else opened + pd.Timedelta(minutes=reply)
    resolved = None if resolve is None else (answered or opened) + pd.Timedelta(minutes=resolve)
    return {"opened_at": opened, "first_response_at": answered, "resolved_at": resolved, "channel": channel,
            "csat": None if csat is None else float(csat)}


_tickets = st.lists(
    st.builds(_ticket, _moment(_LATEST), st.none() | st.integers(0, 72 * 60), st.none() | st.integers(0, 240 * 60),
              st.none() | st.integers(1, 5), st.sampled_from(["email", "phone", "chat"])),
    max_size=5,
)
_attributes = st.none() | st.fixed_dictionaries({
    "signup_date": st.none() | st.integers(-600, 30).map(
        lambda d: (pd.Timestamp(AS_OF) + pd.Timedelta(days=d)).date().isoformat()),
    "loyalty_member": st.none() | st.booleans(),
    "loyalty_points": st.none() | st.integers(0, 3000).map(float),
    "nps": st.none() | st.integers(0, 10).map(float),
    "region": st.none() | st.sampled_from(["north", "east", "south", "west"]),
})
# At least one purchase or refund on or before as_of, so the customer is always scored (customers with no
# activity by as_of are the after-as-of case of the battery).
_history = st.fixed_dictionaries({
    "transactions": st.builds(lambda first, rest: [first, *rest], _transaction(_END_OF_AS_OF),
                              st.lists(_transaction(_LATEST), max_size=20)),
    "tickets": _tickets,
    "attributes": _attributes,
})


def _csv_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _json_value(value):
    return value.isoformat() if isinstance(value, pd.Timestamp) else value


@pytest.fixture(scope="module")
def background(battery) -> dict[str, pd.DataFrame]:
    """The first BACKGROUND customers of the ISO files, as raw text."""
    files = battery.cases["iso-as-of"].files
    frames = {n: pd.read_csv(files[n], dtype=str, keep_default_na=False) for n in NAMES}
    keep = set(frames["customers"]["customer_id"].iloc[:BACKGROUND])
    return {n: f[f["customer_id"].isin(keep)] for n, f in frames.items()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=_history)
def test_one_customer_over_http_equals_its_row_in_a_batch_file(battery, background, history):
    cid = "h"
    case = battery.cases["iso-as-of"]
    model = battery.model(case)
    rows = {
        "transactions": [{"customer_id": cid, **t} for t in history["transactions"]],
        "tickets": [{"customer_id": cid, **t} for t in history["tickets"]],
        "customers": [] if history["attributes"] is None else [{"customer_id": cid, **history["attributes"]}],
    }
    with tempfile.TemporaryDirectory(dir=battery.root) as tmp:
        files = {}
        for name in NAMES:
            columns = list(background[name].columns)
            added = [{c: _csv_text(r.get(c)) for c in columns} for r in rows[name]]
            files[name] = Path(tmp) / f"{name}.csv"
            pd.DataFrame([*background[name].to_dict("records"), *added], columns=columns).to_csv(
                files[name], index=False)
        out = Path(tmp) / "scores.parquet"
        _invoke(["score", "-m", model, *_inputs(files), "--as-of", AS_OF, "--partitions", "1", "-o", out])
        batch = Outcome(_read_scores(out), _read_rejects(out.with_name("scores.rejects.csv")))
    body = {"as_of": AS_OF, "customers": [{
        "customer_id": cid,
        "transactions": [{k: _json_value(v) for k, v in t.items()} for t in history["transactions"]],
        "tickets": [{k: _json_value(v) for k, v in t.items()} for t in history["tickets"]],
        "attributes": {k: _json_value(v) for k, v in (history["attributes"] or {}).items()},
    }]}
    answer = httpx.post(f"{battery.server(model)}/predict", json=body, timeout=60)
    assert answer.status_code == 200, answer.text[:2000]
    alone = _outcome_from_answer(answer.json())
    mine = batch.scores.loc[batch.scores.index == cid]
    diff = "\n".join(d for d in (
        _scores_diff(mine, alone.scores, "score (in a batch)", "POST /predict (alone)"),
        _rejects_diff({k: v for k, v in batch.rejected.items() if k == cid}, alone.rejected,
                      "score (in a batch)", "POST /predict (alone)"),
    ) if d)
    assert not diff, diff
    assert len(mine) == 1  # scored, not rejected: it bought on or before as_of
