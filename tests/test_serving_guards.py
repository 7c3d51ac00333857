"""The server's guards: token, content type, body timeout, the scoring queue off the event loop, work dropped
for clients that left, the default day, checked feature rows and the offline API page."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from typer.testing import CliRunner

from churnguard.cli import app as cli
from churnguard.serving import app as serving
from churnguard.serving import create_app

TOKEN = "s3cret-token-of-some-length"


def _customer(cid: str = "x1") -> dict:
    return {"customer_id": cid,
            "transactions": [{"timestamp": f"2025-0{m}-1{m}T10:00:00", "amount": 20.0 + m} for m in range(1, 6)],
            "tickets": [], "attributes": {}}


def _body(as_of: str | None = "2025-06-30", *ids: str) -> bytes:
    body = {"customers": [_customer(c) for c in ids or ("x1",)]}
    return json.dumps(body if as_of is None else {"as_of": as_of, **body}).encode()


async def _call(asgi_app, method: str, path: str, body: bytes = b"", *, headers: dict[str, str] | None = None,
                receive=None) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request straight to the ASGI app: status, headers and body of the answer (status 0: no answer)."""
    sent: list[dict] = []
    given = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}

    async def whole_body():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "root_path": "", "scheme": "http", "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in given.items() if v is not None],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    await asgi_app(scope, receive or whole_body, send)
    if not sent:
        return 0, {}, b""
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def _run(api, scenario):
    async def main():
        async with api.router.lifespan_context(api):
            return await scenario()

    return asyncio.run(main())


@pytest.fixture
def api(trained):
    return create_app(trained["result"].model_path)


def test_a_token_is_needed_for_everything_but_health(trained):
    api = create_app(trained["result"].model_path, token=TOKEN)

    async def scenario():
        return [await _call(api, "POST", "/predict", _body()),
                await _call(api, "POST", "/predict", _body(), headers={"authorization": "Bearer wrong"}),
                await _call(api, "GET", "/model"),
                await _call(api, "POST", "/predict", _body(), headers={"authorization": f"Bearer {TOKEN}"}),
                await _call(api, "GET", "/health")]

    no_token, wrong, model, right, health = _run(api, scenario)
    assert (no_token[0], wrong[0], model[0]) == (401, 401, 401)
    assert no_token[1][b"www-authenticate"] == b"Bearer"
    assert "Authorization: Bearer" in json.loads(no_token[2])["detail"]
    assert right[0] == 200
    assert json.loads(right[2])["scores"][0]["customer_id"] == "x1"
    assert health[0] == 200


@pytest.mark.parametrize("kind", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_posts_must_be_json(api, kind):
    """A web page can post text or a form to any address without asking: such bodies are never run."""
    async def scenario():
        return [await _call(api, "POST", path, _body(), headers={"content-type": kind})
                for path in ("/predict", "/predict/features")]

    for status, _, answer in _run(api, scenario):
        assert status == 415
        assert "Content-Type: application/json" in json.loads(answer)["detail"]


def test_a_body_that_stalls_gets_408(api):
    api.body_timeout = 0.2

    async def stalling():
        if not hasattr(stalling, "sent"):
            stalling.sent = True
            return {"type": "http.request", "body": b'{"as_of": ', "more_body": True}
        await asyncio.sleep(60)

    status, headers, _ = _run(api, lambda: _call(api, "POST", "/predict", b"", headers={"content-length": None},
                                                 receive=stalling))
    assert status == 408
    assert headers[b"connection"] == b"close"


def test_one_timer_keeps_each_waiting_task_to_its_own_deadline():
    """The bodies' deadlines share one timer: each task past its own deadline gets TimeoutError, the others go on,
    a cancellation from elsewhere stays a cancellation, and a task that came in time sets the timer for no one."""
    async def scenario():
        deadlines = serving._Deadlines(asyncio.get_running_loop())

        async def slow(seconds, value):
            await asyncio.sleep(seconds)
            return value

        async def guarded(limit, seconds, value):
            try:
                return await deadlines.within(limit, slow(seconds, value))
            except TimeoutError:
                return "late"

        quick = await deadlines.within(5.0, slow(0, "quick"))
        results = await asyncio.gather(guarded(0.05, 1.0, "a"), guarded(1.0, 0.1, "b"), guarded(0.1, 1.0, "c"),
                                       guarded(2.0, 0.01, "d"))
        stopped = asyncio.ensure_future(deadlines.within(5.0, slow(5.0, "e")))
        await asyncio.sleep(0.01)
        stopped.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopped
        return quick, results, dict(deadlines.waiting), set(deadlines.expired)

    quick, results, waiting, expired = asyncio.run(scenario())
    assert quick == "quick"
    assert results == ["late", "b", "late", "d"]
    assert waiting == {}
    assert expired == set()


def test_small_batches_are_scored_on_the_loop_and_large_ones_in_the_worker_thread(api, monkeypatch):
    threads, real = {}, serving._Batcher._run

    def recording(self, customers, as_of):
        threads[len(customers)] = threading.get_ident()
        return real(self, customers, as_of)

    monkeypatch.setattr(serving._Batcher, "_run", recording)
    many = [f"c{i}" for i in range(serving.INLINE_CUSTOMERS + 1)]

    async def scenario():
        loop_thread = threading.get_ident()
        small = await _call(api, "POST", "/predict", _body("2025-06-30", "one"))
        large = await _call(api, "POST", "/predict", _body("2025-06-30", *many))
        return loop_thread, small, large

    loop_thread, small, large = _run(api, scenario)
    assert small[0] == 200
    assert large[0] == 200
    assert len(json.loads(large[2])["scores"]) == len(many)
    assert threads[1] == loop_thread
    assert threads[len(many)] != loop_thread


def test_a_smaller_batch_waits_once_for_the_clients_just_answered_and_a_lone_client_never_waits(api, monkeypatch):
    batches, real = [], serving._Batcher._run

    def recording(self, customers, as_of):
        batches.append(sorted(c.customer_id for c in customers))
        return real(self, customers, as_of)

    monkeypatch.setattr(serving._Batcher, "_run", recording)
    monkeypatch.setattr(serving, "BATCH_WAIT", 0.5)  # long enough that the second request surely comes within it

    async def post(cid: str) -> int:
        return (await _call(api, "POST", "/predict", _body("2025-06-30", cid)))[0]

    async def scenario():
        batcher = api.state.batcher
        first = await asyncio.gather(*(post(c) for c in ("a", "b", "c")))  # one batch of three requests
        alone = asyncio.create_task(post("d"))
        for _ in range(2000):  # until d's batch waits for the two other clients of the last batch
            if batcher.waited or alone.done():
                break
            await asyncio.sleep(0.001)
        joined = await asyncio.gather(alone, post("e"))
        lone = []
        for cid in ("f", "g", "h"):  # f waits once (the last batch held two), then one request a batch
            start = asyncio.get_running_loop().time()
            lone.append((await post(cid), asyncio.get_running_loop().time() - start))
        return first, joined, lone

    first, joined, lone = _run(api, scenario)
    assert [*first, *joined, *(status for status, _ in lone)] == [200] * 8
    assert batches == [["a", "b", "c"], ["d", "e"], ["f"], ["g"], ["h"]]
    assert lone[0][1] >= 0.5
    assert lone[1][1] < 0.25
    assert lone[2][1] < 0.25


def test_scoring_runs_off_the_event_loop_and_drops_work_of_clients_that_left(api, monkeypatch):
    """While a batch is scored, /health answers; a request whose client disconnects while it waits is never
    scored; requests over the queue's bound get 503."""
    release, started, scored = threading.Event(), threading.Event(), []
    real = serving._Batcher._run

    def blocking(self, customers, as_of):
        scored.extend(c.customer_id for c in customers)
        started.set()
        assert release.wait(30), "the first batch was never released"
        return real(self, customers, as_of)

    monkeypatch.setattr(serving._Batcher, "_run", blocking)
    monkeypatch.setattr(serving, "INLINE_CUSTOMERS", 0)  # a one-customer batch goes to the thread too

    async def scenario():
        first = asyncio.create_task(_call(api, "POST", "/predict", _body("2025-06-30", "first")))
        while not started.is_set():
            await asyncio.sleep(0.01)
        health = await asyncio.wait_for(_call(api, "GET", "/health"), 5)  # the loop is free meanwhile
        gone = asyncio.Event()

        async def leaving():  # the body, then the client disconnects
            if not gone.is_set():
                gone.set()
                return {"type": "http.request", "body": _body("2025-06-30", "left"), "more_body": False}
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

        left = asyncio.create_task(_call(api, "POST", "/predict", b"", receive=leaving,
                                         headers={"content-length": None}))
        await asyncio.sleep(0.3)
        api.state.batcher.max_queued = 1
        over = await _call(api, "POST", "/predict", _body("2025-06-30", "a", "b"))
        api.state.batcher.max_queued = 1000
        release.set()
        return health, await left, over, await first

    health, left, over, first = _run(api, scenario)
    assert health[0] == 200
    assert left[0] == 0  # no answer: nobody to answer to
    assert over[0] == 503
    assert "retry" in json.loads(over[2])["detail"]
    assert first[0] == 200
    assert scored == ["first"]


def test_without_as_of_the_models_day_is_used_and_said(api, trained):
    day = trained["result"].model.require_info().training_window["as_of"][:10]

    async def scenario():
        return (await _call(api, "POST", "/predict", _body(None)),
                await _call(api, "POST", "/predict", _body("2025-06-30")))

    (status, _, answer), (_, _, dated) = _run(api, scenario)
    answer = json.loads(answer)
    assert status == 200
    assert answer["scores"][0]["as_of"] == day
    assert day in answer["warnings"][0]
    assert "as_of" in answer["warnings"][0]
    assert "warnings" not in json.loads(dated)


@pytest.mark.parametrize(("row", "field", "words"), [
    ({"as_of": "notadate"}, "as_of", "ISO date"),
    ({"as_of": "9999-12-31"}, "as_of", "after today"),
    ({"n_orders": "lots"}, "n_orders", "must be a number"),
])
def test_feature_rows_with_unreadable_values_get_422_naming_the_field(api, row, field, words):
    body = json.dumps({"rows": [{"customer_id": "c1", "recency_days": 10.0, **row}]}).encode()
    status, _, answer = _run(api, lambda: _call(api, "POST", "/predict/features", body))
    assert status == 422
    (error,) = json.loads(answer)["detail"]
    assert error["loc"] == ["body", "rows", 0, field]
    assert words in error["msg"]


def test_the_api_page_needs_no_internet(api):
    status, headers, page = _run(api, lambda: _call(api, "GET", "/docs"))
    text = page.decode()
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/html")
    assert "/openapi.json" in text
    assert "POST /predict" in text
    assert "http://" not in text
    assert "https://" not in text
    assert "<script" not in text


@pytest.mark.parametrize(("args", "words"), [
    (["--host", "0.0.0.0"], "--token"),
    (["--host", "0.0.0.0", "--token", "short"], "shorter than 16"),
])
def test_serve_refuses_an_open_address_without_a_real_token(trained, args, words, monkeypatch):
    monkeypatch.delenv("CHURNGUARD_API_TOKEN", raising=False)
    res = CliRunner().invoke(cli, ["serve", "--model", str(trained["result"].model_path), *args])
    assert res.exit_code != 0
    assert words in res.output


def _strict_json(text: str):
    """JSON as RFC 8259 has it: NaN and Infinity are refused."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings

from tests.test_serving import server  # noqa: F401  (the real server on 127.0.0.1)


@pytest.fixture(scope="module")
def api_schema(server):  # noqa: F811
    return schemathesis.openapi.from_url(f"{server}/openapi.json")


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_requests_never_get_a_500_or_invalid_json(api_schema, mode):
    """Requests generated from /openapi.json (valid ones, and ones that break the schema) against the real
    server: never a 5xx, and every JSON answer is strict JSON."""
    from hypothesis import given

    generation = schemathesis.GenerationMode(mode)
    for operation in api_schema.get_all_operations():
        operation = operation.ok()
        if mode == "negative" and operation.method.upper() == "GET":  # no input to break
            continue

        @given(case=operation.as_strategy(generation_mode=generation))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(timeout=30)
            assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
            if "application/json" in str(response.headers.get("content-type")):
                _strict_json(response.text)

        check()


def test_a_waiting_batch_is_scored_as_soon_as_the_clients_waited_for_are_in(api, monkeypatch):
    """The last batch held three requests; the next one's first request waits, and when the other two come
    the batch is scored at once, well before ``BATCH_WAIT`` is over."""
    batches, real = [], serving._Batcher._run

    def recording(self, customers, as_of):
        batches.append(sorted(c.customer_id for c in customers))
        return real(self, customers, as_of)

    monkeypatch.setattr(serving._Batcher, "_run", recording)
    monkeypatch.setattr(serving, "BATCH_WAIT", 5.0)

    async def post(cid: str) -> int:
        return (await _call(api, "POST", "/predict", _body("2025-06-30", cid)))[0]

    async def scenario():
        batcher = api.state.batcher
        first = await asyncio.gather(*(post(c) for c in ("a", "b", "c")))
        loop = asyncio.get_running_loop()
        start = loop.time()
        alone = asyncio.create_task(post("d"))
        for _ in range(2000):  # until d's batch waits for the two other clients of the last batch
            if batcher.waited or alone.done():
                break
            await asyncio.sleep(0.001)
        waited = batcher.waited
        rest = await asyncio.gather(alone, post("e"), post("f"))
        return first, waited, rest, loop.time() - start

    first, waited, rest, took = _run(api, scenario)
    assert [*first, *rest] == [200] * 6
    assert waited
    assert batches == [["a", "b", "c"], ["d", "e", "f"]]
    assert took < 2.5
