"""Batch scoring end to end, the Python API, and the real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
from datetime import date

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from churnguard.cli import app
from churnguard.config import load_playbook
from churnguard.demo import write_demo_data
from churnguard.model import ChurnModel
from churnguard.scoring import SCORES_COLUMNS, score_frames, score_tables
from churnguard.serving import create_app
from tests.live_server import serve

pytestmark = [pytest.mark.slow, pytest.mark.floors]  # make test-floors runs these too


@pytest.fixture
def model(trained):
    return ChurnModel.load(trained["result"].model_path)


def test_every_customer_is_scored_or_rejected(trained, model):
    result = score_tables(model, trained["tables"], "2025-06-30", load_playbook(), budget=500, seed=1)
    s = result.scores
    assert list(s.columns) == SCORES_COLUMNS
    known = set(trained["tables"].customer_ids())
    assert set(s["customer_id"]) | set(result.rejects["customer_id"]) == known
    assert not set(s["customer_id"]) & set(result.rejects["customer_id"])
    assert result.counts() == {"in": len(known), "scored": len(s), "rejected": len(known) - len(s)}
    assert set(result.rejects["reason"]) == {"no activity on or before as_of 2025-06-30"}
    assert s.loc[s["selected"] & ~s["control_group"], "action_cost"].sum() <= 500
    inside = ~s["lifecycle_stage"].isin(["lost", "never_bought"])
    assert s.loc[inside, "churn_probability"].between(0, 1).all()
    assert s.loc[~inside, "churn_probability"].isna().all()
    assert (s.loc[~inside, "risk_band"] == s.loc[~inside, "lifecycle_stage"]).all()


def test_reasons_agree_in_sign_with_the_contributions(trained, model):
    from churnguard.features import build_features
    from churnguard.scoring import model_population, score_features
    from churnguard.scoring.reasons import common_values, pick_reasons, uninformative
    from churnguard.scoring.score import frame_columns

    feats = build_features(trained["tables"], "2025-06-30", trained["cfg"].features, model_population(model))
    inside = feats["recency_days"] < trained["cfg"].labels.lookback_days  # the customers given a probability
    feats = feats[inside].head(200).reset_index(drop=True)
    scored = score_features(model, feats, load_playbook())
    contrib = model.contributions(feats).to_numpy()
    names = list(model.feature_names_)
    cols, levels = frame_columns(feats)
    hidden = uninformative(names, cols, levels, common_values(model.require_info().drift_profiles),
                           np.arange(len(feats)))
    picks = pick_reasons(contrib, names, hidden)
    rows = np.arange(len(feats))
    texts = scored[["reason_1", "reason_2", "reason_3"]].to_numpy()
    for k in range(3):
        named = picks[:, k] >= 0
        assert (contrib[rows[named], picks[named, k]] > 0).all()  # a named reason always raises the risk
        assert not hidden[rows[named], picks[named, k]].any()  # and is not a value most customers share
    assert ((texts != "").sum(axis=1) <= (picks >= 0).sum(axis=1)).all()
    first = picks[:, 0] >= 0
    assert (texts[first, 0] != "").all()
    assert (texts[~first] == "").all()
    shown = np.where(hidden, -np.inf, contrib)
    assert (picks[first, 0] == shown[first].argmax(axis=1)).all()


def test_python_api(trained, model):
    demo = trained["demo"]
    result = score_frames(model, transactions=demo.transactions, tickets=demo.tickets, customers=demo.customers,
                          as_of="2025-06-30", control_fraction=0.2, seed=5)
    s = result.scores
    assert s["control_group"].sum() == round(0.2 * s["selected"].sum())


def test_score_cli_writes_atomically_and_reports_counts(trained, tmp_path):
    paths = write_demo_data(trained["demo"], tmp_path / "data", fmt="parquet")
    out = tmp_path / "scores.parquet"
    args = ["score", "--model", str(trained["result"].model_path), "-t", str(paths["transactions"]),
            "--tickets", str(paths["tickets"]), "--customers", str(paths["customers"]), "--as-of", "2025-06-30",
            "--out", str(out), "--budget", "300"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    rejects = pd.read_csv(tmp_path / "scores.rejects.csv")
    assert len(scores) + len(rejects) == trained["demo"].customers["customer_id"].nunique()
    assert f"{len(scores):,} scored" in result.output
    # A failing run leaves no partial output behind.
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,timestamp,amount\nx,2025-01-01,abc\n")
    out2 = tmp_path / "never.csv"
    result = CliRunner().invoke(app, ["score", "--model", str(trained["result"].model_path), "-t", str(bad),
                                      "--out", str(out2)])
    assert result.exit_code == 2
    assert "'abc'" in result.output
    assert not out2.exists()
    assert not list(tmp_path.glob(".never.csv*"))


def test_old_format_model_is_refused_by_score(tmp_path):
    old = tmp_path / "churn_model.zip"
    old.write_bytes(b"CHURNGUARD-MODEL\n{}\n")  # the first bytes of the old pickle-based format
    result = CliRunner().invoke(app, ["score", "--model", str(old), "-t", "x.csv", "--out", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "old pickle-based format" in result.output
    assert "churnguard convert-model" in result.output


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    with serve(["--model", str(trained["result"].model_path)], tmp_path_factory.mktemp("server")) as (base, _):
        yield base


def _customer(cid="x1"):
    return {
        "customer_id": cid,
        "transactions": [{"timestamp": f"2025-0{m}-03T10:00:00", "amount": 30.0 + m} for m in range(1, 6)],
        "tickets": [{"opened_at": "2025-06-01T09:00:00", "first_response_at": "2025-06-03T09:00:00", "csat": 1,
                     "resolved_at": "2025-06-04T09:00:00"}],
        "attributes": {"loyalty_member": False, "nps": 4},
    }


def test_server_health_and_model(server):
    assert httpx.get(f"{server}/health").json() == {"status": "ok"}
    info = httpx.get(f"{server}/model").json()
    assert "recency_days" in info["features"]
    assert info["risk_bands"] == {"high": 0.6, "medium": 0.3}
    assert "roc_auc" in info["scorecard"]["model"]


def test_server_predict_matches_batch_scoring(server, trained, model):
    listed = {"customer_id": "listed", "attributes": {"signup_date": "2025-05-01", "loyalty_member": True}}
    body = {"as_of": "2025-06-30", "customers": [_customer("x1"), listed, {"customer_id": "nothing"}]}
    r = httpx.post(f"{server}/predict", json=body)
    assert r.status_code == 200, r.text
    scores = {s["customer_id"]: s for s in r.json()["scores"]}
    assert set(scores) == {"x1", "listed"}  # as in a customers table: known, without a purchase
    assert scores["listed"]["risk_band"] == scores["listed"]["lifecycle_stage"] == "never_bought"
    assert scores["listed"]["churn_probability"] is None
    # known from nothing at all: a reject, as the batch command reports customers with no activity
    assert r.json()["rejected"] == [{"customer_id": "nothing", "reason": "no activity on or before as_of 2025-06-30"}]
    c = _customer("x1")
    tx = pd.DataFrame([{"customer_id": "x1", **t} for t in c["transactions"]])
    tk = pd.DataFrame([{"customer_id": "x1", **t} for t in c["tickets"]])
    cu = pd.DataFrame([{"customer_id": "x1", **c["attributes"]}])
    batch = score_frames(model, transactions=tx, tickets=tk, customers=cu, as_of="2025-06-30", control_fraction=0)
    row = batch.scores.iloc[0]
    assert scores["x1"]["churn_probability"] == pytest.approx(row["churn_probability"])
    assert scores["x1"]["action"] == row["action"]
    assert scores["x1"]["reason_1"] == row["reason_1"]


def test_server_predict_features(server, trained, model):
    from churnguard.features import build_features
    from churnguard.scoring import model_population

    feats = build_features(trained["tables"], "2025-06-30", trained["cfg"].features, model_population(model))
    inside = feats["recency_days"] < trained["cfg"].labels.lookback_days
    row = pd.concat([feats[inside].iloc[:2], feats[~inside & (feats["n_orders"] > 0)].iloc[:1]])
    payload = row.drop(columns=["as_of"]).astype(object).where(row.drop(columns=["as_of"]).notna(), None)
    rows = [{k: (v if not isinstance(v, (np.floating, np.integer)) else float(v)) for k, v in r.items()}
            for r in payload.to_dict("records")]
    r = httpx.post(f"{server}/predict/features", json={"rows": rows})
    assert r.status_code == 200, r.text
    got = [s["churn_probability"] for s in r.json()["scores"]]
    assert got[:2] == pytest.approx(model.predict_proba(row.iloc[:2]).tolist())
    assert got[2] is None  # bought, but not within the lookback: no probability
    assert r.json()["scores"][2]["risk_band"] == "lost"
    del rows[0]["recency_days"]
    r = httpx.post(f"{server}/predict/features", json={"rows": rows[:1]})
    assert r.status_code == 422
    assert "recency_days" in r.text


def test_server_rejects_bad_requests(server):
    r = httpx.post(f"{server}/predict", json={"customers": [{"customer_id": "x", "transactions": [
        {"timestamp": "not a date", "amount": 3}]}]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][-1] == "timestamp"
    r = httpx.post(f"{server}/predict", json={"customers": [{"customer_id": "x", "path": "/etc/passwd"}]})
    assert r.status_code == 422  # unknown fields, such as a file path, are refused
    r = httpx.post(f"{server}/predict", json={"customers": []})
    assert r.status_code == 422
    big = {"customers": [_customer(f"c{i}") for i in range(5000)]}
    r = httpx.post(f"{server}/predict", json=big)
    assert r.status_code == 413
    payload = httpx.Request("POST", "/", json=big).content

    def chunks():  # no Content-Length: the limit must hold for streamed bodies too
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    r = httpx.post(f"{server}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = httpx.post(f"{server}/predict", json={"as_of": "2025-06-30", "customers": [
        {"customer_id": "x", "tickets": [{"opened_at": "2025-06-01T00:00:00", "first_response_at": "2025-05-01T00:00:00"}]}]})
    assert r.status_code == 422
    assert "first_response_at is earlier than opened_at" in r.json()["detail"][0]["msg"]
    assert "Traceback" not in r.text
    r = httpx.post(f"{server}/predict", json={"customers": [{"customer_id": "x", "attributes": {"nps": 11}}]})
    assert r.status_code == 422
    assert "nps must be a number from 0 to 10" in r.json()["detail"][0]["msg"]



@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c["transactions"][0].update(amount="Infinity"), "amount"),
    (lambda c: c["transactions"][0].update(amount="-Infinity"), "amount"),
    (lambda c: c["transactions"][0].update(amount="NaN"), "amount"),
    (lambda c: c["transactions"][0].update(amount=1e308), "amount"),
    (lambda c: c["transactions"][0].update(quantity=1e300), "quantity"),
    (lambda c: c["transactions"][0].update(timestamp="3000-01-01T00:00:00"), "timestamp"),
    (lambda c: c["transactions"][0].update(timestamp="0001-01-01T00:00:00+00:01"), "timestamp"),  # UTC: year 0
    (lambda c: c["attributes"].update(loyalty_points="Infinity"), "loyalty_points"),
])
def test_server_refuses_numbers_and_dates_no_file_would_pass(server, change, field):
    """Non-finite or huge numbers and dates out of range get 422 naming the field, never 200 with an infinite
    value (not valid JSON) or a 500. Infinity and NaN are sent as JSON's common extension, as a client might."""
    customer = _customer()
    change(customer)
    body = json.dumps({"as_of": "2025-06-30", "customers": [customer]}).replace('"Infinity"', "Infinity") \
        .replace('"-Infinity"', "-Infinity").replace('"NaN"', "NaN")
    r = httpx.post(f"{server}/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert any(field in part for part in (*map(str, detail["loc"]), detail["msg"])), detail


@pytest.mark.parametrize("as_of", ["9999-12-31", "2999-01-01", "1500-01-01"])
def test_server_refuses_an_as_of_outside_known_history(server, as_of):
    r = httpx.post(f"{server}/predict", json={"as_of": as_of, "customers": [_customer()]})
    assert r.status_code == 422, r.text
    assert "as_of" in r.json()["detail"][0]["msg"]


def test_server_answers_bodies_that_are_not_json_with_422(server):
    for content, msg in [(b"{not json", "Invalid JSON: key must be a string at line 1 column 2"),
                         (b"", "Invalid JSON: EOF while parsing a value at line 1 column 0"),
                         (b'{"customers": [{"customer_id": "x"}]', "Invalid JSON: EOF while parsing an object at line 1 column 36")]:
        r = httpx.post(f"{server}/predict", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 422, content
        assert r.json() == {"detail": [{"type": "json_invalid", "loc": ["body"], "msg": msg}]}
        assert "Traceback" not in r.text


def test_server_asks_one_client_in_a_hundred_to_reconnect(server):
    """Every 100th response of a worker closes its keep-alive connection (so connections opened together can
    spread over the workers); the client reconnects and every request succeeds."""
    with httpx.Client() as client:
        responses = [client.get(f"{server}/health") for _ in range(1000)]
    assert all(r.status_code == 200 for r in responses)
    assert sum(r.headers.get("connection") == "close" for r in responses) == 10

def test_openapi_documents_the_predict_body(server):
    spec = httpx.get(f"{server}/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    schemas = spec["components"]["schemas"]
    assert {"as_of", "customers"} <= set(schemas["PredictRequest"]["properties"])
    assert {"timestamp", "amount"} <= set(schemas["TransactionIn"]["properties"])
    ok = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/PredictResponse"}

def test_server_reports_customers_it_cannot_score(server):
    body = {"as_of": "2025-06-30", "customers": [
        _customer("x1"),
        {"customer_id": "later", "transactions": [{"timestamp": "2025-08-01T10:00:00", "amount": 5.0}],
         "attributes": {"signup_date": "2025-07-15"}},
    ]}
    r = httpx.post(f"{server}/predict", json=body)
    assert r.status_code == 200
    assert [s["customer_id"] for s in r.json()["scores"]] == ["x1"]
    assert r.json()["rejected"] == [{"customer_id": "later", "reason": "no activity on or before as_of 2025-06-30"}]


def test_partitioned_scoring_equals_single_pass(trained, tmp_path):
    from churnguard.config import DataConfig
    from churnguard.engines.local import score_files

    model = ChurnModel.load(trained["result"].model_path)
    paths = write_demo_data(trained["demo"], tmp_path / "data", fmt="csv")
    outs = {}
    for n in (1, 4):
        out = tmp_path / f"scores-{n}.parquet"
        res = score_files(model, transactions=paths["transactions"], tickets=paths["tickets"],
                          customers=paths["customers"], out=out, playbook=load_playbook(), data_config=DataConfig(),
                          as_of="2025-06-30", budget=300, seed=2, partitions=n)
        outs[n] = pd.read_parquet(out).sort_values("customer_id", ignore_index=True)
        assert res.counts()["scored"] == len(outs[n])
    pd.testing.assert_frame_equal(outs[1], outs[4])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_partitioned_rejects_keep_file_row_numbers(trained, tmp_path):
    from churnguard.config import DataConfig
    from churnguard.engines.local import score_files

    model = ChurnModel.load(trained["result"].model_path)
    tx = trained["demo"].transactions.head(400).copy()
    tx["amount"] = tx["amount"].astype(object)
    tx.loc[123, "amount"] = "n/a"
    p = tmp_path / "tx.csv"
    tx.to_csv(p, index=False)
    res = score_files(model, transactions=p, tickets=None, customers=None, out=tmp_path / "s.csv",
                      playbook=load_playbook(), data_config=DataConfig(on_bad_rows="reject"), partitions=3)
    assert res.rejects.loc[res.rejects["reason"] == "are not numeric", "row"].tolist() == [124]



async def _call(asgi_app, method: str, path: str, body: bytes = b"", root_path: str = ""
                ) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight to the ASGI app, in process: status, headers and body of the answer."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "path": root_path + path, "raw_path": (root_path + path).encode(), "root_path": root_path,
             "scheme": "http", "query_string": b"",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    await asgi_app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def test_predict_answers_unexpected_errors_with_500_and_logs_them(trained, caplog):
    """/predict is served ahead of FastAPI's middleware (server._App): under a root path FastAPI's route
    answers the same, and an error in scoring still gets the app's 500, without a stack trace, logged."""
    import asyncio
    import json

    from churnguard.serving.app import create_app

    class Broken:
        def require_info(self):
            raise RuntimeError("scoring failed")

    api = create_app(trained["result"].model_path)
    body = json.dumps({"as_of": "2025-06-30", "customers": [_customer("x1")]}).encode()

    async def requests():
        async with api.router.lifespan_context(api):
            good = await _call(api, "POST", "/predict", body)
            routed = await _call(api, "POST", "/predict", body, root_path="/churn")
            api.state.model = Broken()
            return good, routed, await _call(api, "POST", "/predict", body)

    (status, headers, answer), routed, (bad_status, _, bad_answer) = asyncio.run(requests())
    assert (routed[0], routed[2]) == (status, answer)
    assert status == 200
    assert headers[b"content-type"] == b"application/json"
    assert [s["customer_id"] for s in json.loads(answer)["scores"]] == ["x1"]
    assert (bad_status, json.loads(bad_answer)) == (500, {"detail": "internal error"})
    assert any("error while serving /predict" in r.getMessage() and r.exc_info for r in caplog.records)


def test_requests_arriving_together_are_scored_together_with_their_own_answers(trained, monkeypatch):
    """Concurrent requests share one call of the scoring chain, and each gets exactly the answer it gets
    alone; a request whose customers make scoring fail gets a 500 without failing the others."""
    import asyncio
    import json

    from churnguard.serving import app as serving

    api = create_app(trained["result"].model_path)
    customers = [_customer(f"c{i}") for i in range(5)]
    customers[2]["transactions"] = customers[2]["transactions"][:1]  # different histories, different answers
    customers[3]["tickets"] = []
    bodies = [json.dumps({"as_of": "2025-06-30", "customers": [c]}).encode() for c in customers]
    bodies.append(json.dumps({"as_of": "2025-05-31", "customers": [customers[0]]}).encode())  # another day
    calls = []
    real = serving._Batcher._run

    def counting(self, records, as_of):
        calls.append((len(records), as_of))
        if any(r.customer_id == "boom" for r in records):
            raise RuntimeError("scoring failed")
        return real(self, records, as_of)

    monkeypatch.setattr(serving._Batcher, "_run", counting)

    async def scenario():
        async with api.router.lifespan_context(api):
            alone = [await _call(api, "POST", "/predict", b) for b in bodies]
            calls.clear()
            together = await asyncio.gather(*(_call(api, "POST", "/predict", b) for b in bodies))
            batched = list(calls)
            boom = json.dumps({"as_of": "2025-06-30", "customers": [_customer("boom")]}).encode()
            mixed = await asyncio.gather(_call(api, "POST", "/predict", bodies[0]), _call(api, "POST", "/predict", boom))
            return alone, together, batched, mixed

    alone, together, batched, mixed = asyncio.run(scenario())
    assert [(s, b) for s, _, b in together] == [(s, b) for s, _, b in alone]
    assert len({b for _, _, b in alone[:5]}) == 5  # the five customers' answers differ
    assert sorted(batched, key=str) == sorted([(5, date(2025, 6, 30)), (1, date(2025, 5, 31))], key=str)
    assert mixed[0][0] == 200
    assert mixed[0][2] == alone[0][2]
    assert mixed[1][0] == 500


def test_a_blank_customer_id_gets_422_as_an_empty_one_is_a_bad_row_in_a_file():
    """A customer_id of blanks only is empty once read (a bad row in a file); it used to be scored."""
    from pydantic import ValidationError

    from churnguard.serving.app import PredictRequest

    for blank in ("   ", "\t", "NULL", " n/a ", "NaN", "None", "#N/A"):  # null markers are missing ids, as in a file
        with pytest.raises(ValidationError, match="customer_id is blank or a null marker"):
            PredictRequest.model_validate({"customers": [{"customer_id": blank}]})
    # read as a file's ids are (dataset.clean_ids): blanks around trimmed, 12.0 the integer 12
    read = PredictRequest.model_validate({"customers": [{"customer_id": " c1 "}, {"customer_id": "12.0"},
                                                        {"customer_id": "Nonesuch"}]})
    assert [c.customer_id for c in read.customers] == ["c1", "12", "Nonesuch"]
    with pytest.raises(ValidationError, match="sent more than once: c1"):
        PredictRequest.model_validate({"customers": [{"customer_id": " c1 "}, {"customer_id": "c1"}]})


@pytest.mark.parametrize(("sent", "kept"), [
    ("1678-01-01T00:00:00", "1678-01-01T00:00:00"),  # the range's first and last instants, naive and aware
    ("1677-12-31T23:59:59.999999", None),
    ("2261-12-31T23:59:59.999999", "2261-12-31T23:59:59.999999"),
    ("2262-01-01T00:00:00", None),
    ("1678-01-01T00:30:00+00:30", "1678-01-01T00:00:00"),
    ("1678-01-01T00:29:59+00:30", None),
    ("2261-12-31T23:00:00-00:59", "2261-12-31T23:59:00"),
    ("2261-12-31T23:00:00-01:00", None),
    ("2025-06-01T12:00:00Z", "2025-06-01T12:00:00"),
    ("2025-06-01T12:00:00+14:00", "2025-05-31T22:00:00"),
    ("0001-01-01T00:00:00+00:01", None),  # converted to UTC: before year 1
    ("9999-12-31T23:59:59-00:01", None),  # after year 9999
    (1_700_000_000, "2023-11-14T22:13:20"),  # Unix seconds: UTC
])
def test_timestamps_are_kept_as_naive_utc_within_the_years_1678_to_2261(sent, kept):
    """Every timestamp of a body (transactions, tickets, events) is converted to naive UTC and refused outside
    the model's range with one message, at its own place, whether it was sent naive or with an offset, and
    beside the body's other errors."""
    from pydantic import ValidationError

    from churnguard.serving.app import PredictRequest, _invalid

    body = {"customers": [{"customer_id": "a", "transactions": [{"timestamp": sent, "amount": "x"}],
                           "tickets": [{"opened_at": sent, "resolved_at": sent}],
                           "events": [{"timestamp": sent, "event_type": "visit"}]}]}
    with pytest.raises(ValidationError) as refused:  # the amount is never a number
        PredictRequest.model_validate_json(json.dumps(body))
    detail = json.loads(_invalid(refused.value))["detail"]
    where = [["body", "customers", 0, *p] for p in
             (["transactions", 0, "timestamp"], ["tickets", 0, "opened_at"], ["tickets", 0, "resolved_at"],
              ["events", 0, "timestamp"])]
    amount = {"type": "float_parsing", "loc": ["body", "customers", 0, "transactions", 0, "amount"],
              "msg": "Input should be a valid number, unable to parse string as a number"}
    if kept is None:
        out_of_range = {"type": "value_error", "msg": "Value error, dates must lie within the years 1678-2261"}
        assert detail == [{**out_of_range, "loc": where[0]}, amount, *({**out_of_range, "loc": w} for w in where[1:])]
        return
    assert detail == [amount]
    body["customers"][0]["transactions"][0]["amount"] = 1
    req = PredictRequest.model_validate_json(json.dumps(body))
    customer = req.customers[0]
    for value in (customer.transactions[0]["timestamp"], customer.tickets[0]["opened_at"],
                  customer.tickets[0]["resolved_at"], customer.events[0]["timestamp"]):
        assert value.tzinfo is None
        assert value.isoformat() == kept
