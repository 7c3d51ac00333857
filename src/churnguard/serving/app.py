"""HTTP serving of a loaded model file: ``create_app(model_path)``.

The app factory loads the model and the playbook once, in the lifespan hook. ``POST /predict`` scores each
customer through the same feature kernel and scoring rules as batch scoring (``churnguard.features.records``
-> ``churnguard.scoring.score_records``); with an uplift model, through
``churnguard.uplift.score.score_records_with_uplift`` (each score also has ``uplift`` and ``incremental_value``, and
the action and selection by incremental value, as ``score --uplift-model``). Routes only translate JSON; the rules
live in ``churnguard.scoring`` and ``churnguard.uplift.score``, never in a route.
Request bodies are pydantic models (422 with the bad field's name; for ``/predict``, a body that is not JSON
is a 422 too), bodies over ``max_body_bytes`` get 413, no route accepts a file path, and unexpected errors
answer 500 without a stack trace. ``POST /predict`` is answered ahead of FastAPI's middleware and router
(see ``_App``), with the same checks.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import logging
import math
import os
import weakref
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, NotRequired

import pandas as pd
import pydantic_core
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
    with_config,
)
from starlette.requests import ClientDisconnect
from starlette.routing import Route
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from churnguard import __version__
from churnguard.config import Playbook, load_playbook
from churnguard.dataset import MAX_MAGNITUDE, NULL_IDS, clean_id_list, latest_plausible_date
from churnguard.features.records import CustomerRecords
from churnguard.model import ChurnModel
from churnguard.model.explain import row_tables
from churnguard.scoring import (
    model_population,
    output_columns,
    score_features,
    score_records,
    select_customers,
)
from churnguard.serving.page_data import PAGE_FILES, PageSources

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

MAX_CUSTOMERS = 1000
MAX_EVENTS = 10_000
MAX_QUEUED = 20 * MAX_CUSTOMERS  # customers waiting to be scored in one worker process
# A batch of at most this many customers is scored on the event loop itself (a few milliseconds): handing it to
# the worker thread would cost more than it holds the loop. Larger batches go to the thread.
INLINE_CUSTOMERS = 32
# A batch with fewer requests than the last one waits this long, once, for the clients just answered to send
# again: a scoring call costs about 1 ms of CPU whatever its size, so one call for all of a worker's clients
# serves them with less CPU than two (see _Batcher).
BATCH_WAIT = 0.001  # seconds


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Events are validated into plain dicts (pydantic TypedDicts: the same checks as models, no model object per
# event). Optional keys left out of the JSON stay out of the dict; the scorer reads them with .get().
def _utc_naive(value: datetime) -> datetime:
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01 or 9999-12-31 moved out of datetime's range
            raise ValueError(_OUT_OF_RANGE) from None
    if not _FIRST_TIME <= value < _AFTER_LAST_DAY:  # its day within _FIRST_DAY.._LAST_DAY (called per timestamp)
        raise ValueError(_OUT_OF_RANGE)
    return value


_FIRST_DAY, _LAST_DAY = date(1678, 1, 1), date(2261, 12, 31)  # the range of the model's timestamps
_FIRST_TIME, _AFTER_LAST_DAY = (datetime.combine(_FIRST_DAY, time()),
                                datetime.combine(_LAST_DAY + timedelta(days=1), time()))
_OUT_OF_RANGE = "dates must lie within the years 1678-2261"


class _UtcNaive:
    """Timestamps as the data contract stores them: naive UTC, checked and converted by :func:`_utc_naive`. A
    naive timestamp within its range (every one of most requests) is what ``_utc_naive`` returns unchanged: it
    is accepted by pydantic-core's own datetime check with the same bounds, without a Python call per
    timestamp; any other (zone-aware, or out of range) goes to ``_utc_naive``, whose error is the answer's."""

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> pydantic_core.CoreSchema:
        cs = pydantic_core.core_schema
        either = cs.union_schema(
            [cs.datetime_schema(strict=True, tz_constraint="naive", ge=_FIRST_TIME, lt=_AFTER_LAST_DAY),
             cs.no_info_plain_validator_function(_utc_naive)], mode="left_to_right")
        # _utc_naive's only error, said as its ValueError would be (not as the union's two branches' errors)
        return cs.chain_schema([handler(source), cs.custom_error_schema(
            either, "value_error", custom_error_context={"error": _OUT_OF_RANGE})])


UtcDatetime = Annotated[datetime, _UtcNaive()]
# Money and counts as validation accepts them in files: finite, within +-MAX_MAGNITUDE.
Number = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]


@with_config(ConfigDict(extra="forbid"))
class TransactionIn(TypedDict):
    timestamp: UtcDatetime
    amount: Number
    order_id: NotRequired[str | None]
    quantity: NotRequired[Number | None]
    category: NotRequired[str | None]
    channel: NotRequired[str | None]
    discount: NotRequired[Number | None]


@with_config(ConfigDict(extra="forbid"))
class TicketIn(TypedDict):
    opened_at: UtcDatetime
    first_response_at: NotRequired[UtcDatetime | None]
    resolved_at: NotRequired[UtcDatetime | None]
    channel: NotRequired[str | None]
    csat: NotRequired[Annotated[float, Field(ge=1, le=5)] | None]
    ticket_id: NotRequired[str | None]


@with_config(ConfigDict(extra="forbid"))
class EventIn(TypedDict):
    timestamp: UtcDatetime
    event_type: Annotated[str, Field(min_length=1, max_length=100)]
    duration_seconds: NotRequired[Annotated[float, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)] | None]
    channel: NotRequired[str | None]
    session_id: NotRequired[str | None]


def _in_order(ticket: TicketIn) -> TicketIn:
    for name in ("first_response_at", "resolved_at"):
        value = ticket.get(name)
        if value is not None and value < ticket["opened_at"]:
            raise ValueError(f"{name} is earlier than opened_at")
    return ticket


class CustomerIn(_Body):
    customer_id: Annotated[str, Field(min_length=1, max_length=200)]  # read as a file's: PredictRequest
    transactions: Annotated[list[TransactionIn], Field(max_length=MAX_EVENTS)] = []
    tickets: Annotated[list[Annotated[TicketIn, AfterValidator(_in_order)]],
                       Field(max_length=MAX_EVENTS)] = []
    attributes: Annotated[dict[str, str | float | bool | None], Field(max_length=100)] = Field(
        default_factory=dict, description="customers-table columns: signup_date, loyalty_member, nps, ...")
    events: Annotated[list[EventIn] | None, Field(max_length=MAX_EVENTS, description=(
        "visits, sessions and emails (the events table); left out: no engagement data, as when a model's "
        "scoring has no events table"))] = None

    @model_validator(mode="after")
    def _known_attributes(self) -> CustomerIn:
        nps = self.attributes.get("nps")
        if nps is not None and (isinstance(nps, bool) or not isinstance(nps, int | float) or not 0 <= nps <= 10):
            raise ValueError("attributes.nps must be a number from 0 to 10")
        for name, value in self.attributes.items():
            if isinstance(value, float) and not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # NaN fails too
                raise ValueError(f"attributes.{name} must be a finite number within +-{MAX_MAGNITUDE:,.0f}")
        points = self.attributes.get("loyalty_points")
        if points is not None and (isinstance(points, bool) or not isinstance(points, int | float)):
            raise ValueError("attributes.loyalty_points must be a number")
        return self


class PredictRequest(_Body):
    as_of: date | None = Field(default=None, description="cut-off day; default: the last day of the model's "
                               "training data, with a warning in the answer")
    customers: Annotated[list[CustomerIn], Field(min_length=1, max_length=MAX_CUSTOMERS)]

    @model_validator(mode="after")
    def _one_entry_per_customer(self) -> PredictRequest:
        if self.as_of is not None and not _FIRST_DAY <= self.as_of < latest_plausible_date():
            raise ValueError(f"as_of {self.as_of} is after today or before 1678; scoring needs a day whose "
                             "history is known")
        ids = clean_id_list([c.customer_id for c in self.customers])  # as a file's ids are read
        for customer, clean in zip(self.customers, ids, strict=True):
            if clean is None:  # an empty id, as in a file (a bad row there)
                raise ValueError(f"customer_id is blank or a null marker ({', '.join(NULL_IDS)}): "
                                 f"{customer.customer_id!r}")
            customer.customer_id = clean
        if len(set(ids)) < len(ids):
            twice = sorted(k for k, n in Counter(ids).items() if n > 1)
            raise ValueError("each customer_id may appear once per request; sent more than once: "
                             + ", ".join(twice[:5]))
        return self


class FeaturesRequest(_Body):
    rows: Annotated[list[dict[str, str | float | None]], Field(min_length=1, max_length=MAX_CUSTOMERS)]


class Score(BaseModel):
    model_config = ConfigDict(extra="allow")  # a model with a churn curve adds churn_probability_<h>d columns

    customer_id: str
    as_of: date
    lifecycle_stage: str
    churn_probability: float | None
    risk_band: str
    value_tier: str
    clv: float
    reason_1: str
    reason_2: str
    reason_3: str
    action: str
    action_cost: float
    expected_value: float
    selected: bool
    control_group: bool
    model_version: str


class Rejected(BaseModel):
    customer_id: str
    reason: str


class PredictResponse(BaseModel):
    scores: list[Score]
    rejected: list[Rejected] = []
    warnings: list[str] = Field(default=[], description="e.g. the day used when the request gave no as_of")


def _document_predict_body(app: FastAPI) -> None:
    """Declare ``POST /predict`` in the OpenAPI schema, with ``PredictRequest`` as its body and ``PredictResponse``
    as its answer: FastAPI does not see the route, a plain Starlette one that validates its body itself."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()  # caches itself in app.openapi_schema
            components = schema["components"]["schemas"]
            for model, mode in ((PredictRequest, "validation"), (PredictResponse, "serialization")):
                body = model.model_json_schema(ref_template="#/components/schemas/{model}", mode=mode)
                components.update({**body.pop("$defs", {}), model.__name__: body})

            def ref(name: str) -> dict[str, Any]:
                return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}

            schema["paths"]["/predict"] = {"post": {
                "summary": "Predict", "operationId": "predict_predict_post",
                "requestBody": {"required": True, "content": ref("PredictRequest")},
                "responses": {"200": {"description": "Successful Response", "content": ref("PredictResponse")},
                              "422": {"description": "Validation Error", "content": ref("HTTPValidationError")}},
            }}
        return app.openapi_schema

    app.openapi = openapi


def _invalid(exc: ValidationError) -> bytes:
    """The 422 body in FastAPI's own format (``detail``: one entry per error, ``loc`` starting at ``body``); a
    body that is not JSON at all is one ``json_invalid`` error saying where parsing stopped."""
    detail = [{"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]}
              for e in exc.errors(include_url=False, include_input=False, include_context=False)]
    return pydantic_core.to_json({"detail": detail})


class _Batcher:
    """Scores the customers of queued requests together, one batch at a time, in a worker thread.

    The event loop only queues requests and hands out answers, so it stays free to read bodies and answer
    ``/health`` while a batch is scored; the requests that queue meanwhile make up the next batch. A batch of at
    most ``INLINE_CUSTOMERS`` customers is scored on the loop itself, which holds it for a few milliseconds only. A batch is
    one :func:`churnguard.scoring.score_records` call per ``as_of``, each request handed its own rows. Each
    customer is scored on its own data, so an answer never depends on which requests shared its batch. Should a
    batch fail, each of its requests is scored alone, so only a failing one fails. A request that queues while a
    batch is scored in the thread (it may wait long) is watched for its client leaving, and dropped before its
    batch starts if it has (its future cancelled); one that queues otherwise is scored within a loop round or
    two, so watching it would cost more than it saves. After a batch, its answers go out before the next batch
    starts; when fewer requests are waiting than the last batch held, the batch waits ``BATCH_WAIT`` once for
    the clients just answered, whose next requests are usually on their way, and is scored as soon as as many
    requests wait as the last batch held (a lone client never waits: its last batch held one request). At most
    ``max_queued`` customers wait: a request beyond that is refused (``score`` returns None) and the client is
    asked to retry.
    """

    def __init__(self, state: Any, executor: Any, max_queued: int) -> None:
        self.state, self.executor, self.max_queued, self.inline = state, executor, max_queued, INLINE_CUSTOMERS
        self.pending: list[tuple[list[CustomerRecords], date, asyncio.Future]] = []
        self.queued = 0
        self.busy = False
        self.threaded = False  # a batch is being scored in the worker thread
        self.expected = 0  # requests in the last batch: their clients are likely to send the next ones
        self.waited = False  # the pending requests have waited BATCH_WAIT for them
        self.wait: asyncio.TimerHandle | None = None  # the wait under way, cut short when all have come

    async def score(self, customers: list[CustomerRecords], as_of: date, receive=None) -> list[dict] | None:
        """The result rows of ``customers``, or None when the queue is full. With the request's ASGI
        ``receive``, the work is dropped when the client disconnects while it waits behind a batch scored in
        the thread (CancelledError)."""
        if self.queued + len(customers) > self.max_queued:
            return None
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((customers, as_of, future))
        self.queued += len(customers)
        if not self.busy:
            self.busy = True
            loop.call_soon(self._flush, loop)  # after the bodies read in this round
        elif self.wait is not None and len(self.pending) >= self.expected:  # all the clients waited for are in
            self.wait.cancel()
            self.wait = None
            loop.call_soon(self._flush, loop)
        watcher = asyncio.ensure_future(receive()) if receive is not None and self.threaded else None
        if watcher is not None:
            watcher.add_done_callback(lambda w: w.cancelled() or w.exception() is not None
                                      or w.result()["type"] != "http.disconnect" or future.cancel())
        try:
            return await future
        finally:
            if watcher is not None:
                watcher.cancel()

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if 0 < len(self.pending) < self.expected and not self.waited:
            self.waited = True
            self.wait = loop.call_later(BATCH_WAIT, self._flush, loop)
            return
        self.waited, self.wait = False, None
        batch, self.pending, self.queued = [p for p in self.pending if not p[2].done()], [], 0
        if not batch:
            self.busy = False
            return
        self.expected = len(batch)
        jobs = [(c, d) for c, d, _ in batch]
        if sum(len(c) for c, _ in jobs) <= self.inline:
            work = loop.create_future()
            work.set_result(self._score_batch(jobs))
            loop.call_soon(self._finish, loop, batch, work)  # answers go out, then the next batch forms
            return
        self.threaded = True
        work = loop.run_in_executor(self.executor, self._score_batch, jobs)
        work.add_done_callback(lambda done: self._finish(loop, batch, done))

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list, done: asyncio.Future) -> None:
        self.threaded = False
        results = done.result() if done.exception() is None else [done.exception()] * len(batch)
        for (_, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                (future.set_exception if isinstance(result, BaseException) else future.set_result)(result)
        loop.call_soon(self._flush, loop)  # after the answers go out: the requests queued meanwhile

    def _run(self, customers: list[CustomerRecords], as_of: date) -> list[dict]:
        if getattr(self.state, "uplift", None) is not None:
            from churnguard.uplift.score import score_records_with_uplift

            return score_records_with_uplift(self.state.model, self.state.uplift, customers, as_of,
                                             self.state.playbook, self.state.population)
        return score_records(self.state.model, customers, as_of, self.state.playbook, self.state.population)

    def _score_batch(self, batch: list[tuple[list[CustomerRecords], date]]) -> list[list[dict] | Exception]:
        """In the worker thread: each request's rows, or the exception that scoring it raised."""
        results: list[list[dict] | Exception] = [[] for _ in batch]
        for as_of in {day for _, day in batch}:
            group = [i for i, (_, day) in enumerate(batch) if day == as_of]
            rows = _attempt(self._run, [c for i in group for c in batch[i][0]], as_of)
            start = 0
            for i in group:
                if isinstance(rows, Exception):  # each request alone, so only a failing one fails
                    results[i] = rows if len(group) == 1 else _attempt(self._run, batch[i][0], as_of)
                else:
                    results[i], start = rows[start : start + len(batch[i][0])], start + len(batch[i][0])
        return results


def _attempt(fn, *args) -> Any:
    """``fn(*args)``, or the exception it raised: handed to the waiting request, which answers 500."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        return exc


async def _predict(app_state: Any, body: bytes, receive=None) -> tuple[int, bytes] | None:
    """Status and JSON body answering ``POST /predict`` with ``body`` (None: the client has gone): the
    customers are scored by :func:`churnguard.scoring.score_records` (the kernel and rules of batch scoring)
    through :class:`_Batcher`. Without ``as_of`` the model's own day is used, and the answer says so."""
    try:
        req = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        return 422, _invalid(exc)
    as_of, warnings = (req.as_of, []) if req.as_of is not None else _default_day(app_state.model)
    customers = [CustomerRecords(c.customer_id, c.transactions, c.tickets, c.attributes, c.events)
                 for c in req.customers]
    try:
        results = await app_state.batcher.score(customers, as_of, receive)
    except asyncio.CancelledError:
        return None
    if results is None:
        return 503, b'{"detail":"too many customers waiting to be scored; retry shortly"}'
    scores = [r for r in results if "reason" not in r]
    rejected = [r for r in results if "reason" in r]
    # The rows hold Score's fields as plain str / float / bool / date values: pydantic's serializer writes them
    # as PredictResponse would, without building the models first.
    answer = {"scores": scores, "rejected": rejected}
    return 200, pydantic_core.to_json({**answer, "warnings": warnings} if warnings else answer)


def _default_day(model: ChurnModel) -> tuple[date, list[str]]:
    """The day to score on when a request names none: the last day of the model's training data, with the
    warning that says so."""
    day = date.fromisoformat(model.require_info().training_window["as_of"][:10])
    return day, [(f"as_of not given: scored as of {day}, the last day of the model's training data; send "
                  "as_of (the day the histories run to) to score another day")]


def _records(scores: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    out = scores[columns].copy()
    out["as_of"] = pd.to_datetime(out["as_of"]).dt.date
    for c in (c for c in columns if c.startswith("churn_probability")):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.to_dict("records")


async def _read_body(receive, declared: bytes | None, max_bytes: int) -> bytes | None:
    """The whole request body, or None when its declared length, or as soon as its length, passes ``max_bytes``
    (raises ``ClientDisconnect`` when the client goes away first)."""
    if declared is not None and int(declared) > max_bytes:
        return None
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > max_bytes:
            return None
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive):
    """An ASGI ``receive`` handing over ``body``, read already, as the whole request body, then waiting on the
    client's ``receive`` (for its disconnect, which a streaming response listens for)."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _closing(send):
    """``send`` adding ``Connection: close`` to the response it sends (see ``_App.reconnect_every``)."""

    async def closing(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return closing


class _Deadlines:
    """Deadlines for awaited work (the request bodies) on one event loop, with one timer, not one per request:
    each waiting task is listed with its deadline, and the timer, set for the earliest one listed, cancels the
    tasks past theirs (which then raise TimeoutError, as under ``asyncio.timeout``) and is set again for the
    next. A task leaves the list when its work is done, so a request whose body is there at once sets no timer
    (``asyncio.timeout`` sets and cancels one per request: 4-5 us on uvloop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: dict[asyncio.Task, float] = {}  # task -> its deadline (the loop's clock)
        self.expired: set[asyncio.Task] = set()  # cancelled by the timer, to raise TimeoutError
        self.timer: asyncio.TimerHandle | None = None
        self.due = math.inf  # when the timer fires

    async def within(self, seconds: float, work: Any) -> Any:
        """``await work``, or TimeoutError when it takes longer than ``seconds``."""
        task = asyncio.current_task()
        self.waiting[task] = deadline = self.loop.time() + seconds
        if deadline < self.due:
            self._arm(deadline)
        try:
            return await work
        except asyncio.CancelledError:
            if task not in self.expired:
                raise
            self.expired.discard(task)
            task.uncancel()
            raise TimeoutError from None
        finally:
            self.waiting.pop(task, None)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.due, self.timer = when, self.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        self.timer, self.due = None, math.inf
        now = self.loop.time() + 0.001  # the loop may run a timer up to its clock's resolution early
        for task, deadline in list(self.waiting.items()):
            if deadline <= now:
                del self.waiting[task]
                self.expired.add(task)
                task.cancel()
        if self.waiting:
            self._arm(min(self.waiting.values()))


class _App(FastAPI):
    """The FastAPI app, with the request checks and ``POST /predict`` handled ahead of its middleware and router.

    Every request is checked here first: with a ``token`` set, every path but ``/health`` needs the header
    ``Authorization: Bearer <token>`` (compared in constant time; 401 otherwise); a POST must be
    ``application/json`` (415), so a web page cannot post a form or text to the API; a body over
    ``max_body_bytes`` gets 413, whether its length is declared or it is streamed; a body not complete within
    ``body_timeout`` seconds gets 408. ``/predict`` is answered here by ``_predict``, as its route does,
    without FastAPI's layers (they cost more CPU than validating the body), and its work is dropped when the
    client disconnects while it waits (see ``_Batcher``); an unexpected error gets the app's 500. Every other request, and the lifespan,
    goes through FastAPI. With a ``board`` (``churnguard.serving.spread``: the server runs several workers), a
    worker holding more than its share of the connections asks one client at a time to reconnect (``Connection:
    close``), so kept-alive connections spread evenly over the workers. Without one but with
    ``reconnect_every`` set, every that many responses of this process one asks its client to reconnect.
    """

    max_body_bytes = 2_000_000
    body_timeout = 30.0
    token: bytes | None = None
    reconnect_every: int | None = None
    board: Any = None  # this worker's churnguard.serving.spread.Board, when it serves with others
    guard: Any = None  # the pages' PageGuard (churnguard.serving.pages), when the app serves pages
    responses = 0

    @functools.cached_property
    def _deadlines(self) -> weakref.WeakKeyDictionary:
        return weakref.WeakKeyDictionary()  # per event loop serving this app (tests run several one after another)

    def deadlines(self) -> _Deadlines:
        """The running event loop's :class:`_Deadlines`."""
        loop = asyncio.get_running_loop()
        found = self._deadlines.get(loop)
        return found if found is not None else self._deadlines.setdefault(loop, _Deadlines(loop))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        if self.board is not None:
            send = _closing(send) if self.board.crowded() else send
        elif self.reconnect_every is not None:
            self.responses += 1
            send = send if self.responses % self.reconnect_every else _closing(send)
        headers = dict(scope["headers"])
        if self.guard is not None and self.guard.owns(scope["path"]):  # a page: its own door (sign-in, forms)
            refusal = self.guard.refusal(scope, headers)
        else:
            refused = self._refusal(scope, headers)
            refusal = None if refused is None else _json(*refused)
        if refusal is not None:
            return await refusal(scope, receive, send)
        predict = scope["path"] == "/predict" and scope["method"] == "POST"
        try:
            body = await self.deadlines().within(self.body_timeout, _read_body(receive, headers.get(b"content-length"),
                                                                               self.max_body_bytes))
        except ClientDisconnect:  # nobody to answer; a FastAPI route sees the disconnect itself
            return None if predict else await super().__call__(scope, receive, send)
        except TimeoutError:
            return await _json(408, f"the request body did not arrive within {self.body_timeout:g} s",
                               close=True)(scope, receive, send)
        if body is None:
            return await _json(413, f"request body over {self.max_body_bytes} bytes")(scope, receive, send)
        if not predict:
            return await super().__call__(scope, _replay(body, receive), send)
        try:
            answered = await _predict(self.state, body, receive)
        except Exception:
            logger.exception("error while serving %s", scope["path"])
            answered = 500, b'{"detail":"internal error"}'
        if answered is not None:
            status, answer = answered
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(answer)).encode())]})
            await send({"type": "http.response.body", "body": answer})

    def _refusal(self, scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """The status and message refusing a request before its body is read, or None to go on."""
        if self.token is not None and scope["path"] != "/health":
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.token):
                return 401, "missing or wrong token: send the header 'Authorization: Bearer <token>'"
        if scope["method"] == "POST":
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if kind != b"application/json":
                return 415, "send the request body as JSON, with the header 'Content-Type: application/json'"
        return None


def _json(status: int, detail: str, *, close: bool = False) -> Response:
    headers = {"connection": "close"} if close else {}
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return Response(pydantic_core.to_json({"detail": detail}), status, headers=headers, media_type="application/json")


def create_app(model_path: str | Path, *, playbook_path: str | Path | None = None, token: str | None = None,
               max_body_bytes: int = 2_000_000, reconnect_every: int | None = None, board: Any = None,
               pages: PageSources | None = None, uplift_path: str | Path | None = None) -> FastAPI:
    """A FastAPI app serving the model file at ``model_path`` (loaded once at start-up).

    Args:
        model_path: the model file written by ``churnguard train``.
        playbook_path: the playbook YAML (default: the built-in one).
        token: when given, every request but ``/health`` must send ``Authorization: Bearer <token>``.
        max_body_bytes: larger request bodies get 413.
        reconnect_every: when set, every this many responses of a worker process, one asks its client to
            reconnect (``Connection: close``), as nginx's ``keepalive_requests`` does; see :class:`_App`.
        board: this worker's ``churnguard.serving.spread.Board`` when it serves with others: a worker over its
            share of the connections asks one client at a time to reconnect (in place of ``reconnect_every``).
        pages: the files of the retention team's pages (``churnguard.serving.pages``, at ``/``); none without.
        uplift_path: an uplift model of ``churnguard train-uplift``: ``POST /predict`` chooses actions and
            selects by incremental value (``churnguard.uplift.score``).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # the model, playbook and population, loaded before the first request
        app.state.model = ChurnModel.load(model_path)
        app.state.playbook = load_playbook(playbook_path)
        app.state.population = model_population(app.state.model)
        app.state.uplift = None
        if uplift_path is not None:
            from churnguard.uplift import UpliftModel

            app.state.uplift = UpliftModel.load(uplift_path)
        if pages is not None:
            from churnguard.serving.pages import load_pages

            app.state.pages = load_pages(pages, app.state.model, app.state.playbook, token=token is not None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="churnguard-scoring") as executor:
            app.state.batcher = _Batcher(app.state, executor, max_queued=MAX_QUEUED)
            row_tables(app.state.model)  # built (and checked against LightGBM) before the first request
            info = app.state.model.require_info()
            logger.info("serving model %s (version %s, trained as of %s, horizon %d days)", model_path,
                        info.model_version, info.training_window["as_of"], info.population.horizon_days)
            # Everything loaded so far lives as long as the server: keep it out of the garbage collector's
            # scans, or each full collection pauses a worker for tens of milliseconds in the middle of requests.
            gc.collect()
            gc.freeze()
            yield
            gc.unfreeze()

    app = _App(title="churnguard", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.max_body_bytes = max_body_bytes
    app.reconnect_every, app.board = reconnect_every, board
    app.token = token.encode() if token else None
    _add_routes(app)
    if pages is not None:
        from churnguard.serving.pages import PageGuard, mount_pages

        app.guard = PageGuard(app.token)
        mount_pages(app)
    _document_predict_body(app)
    return app


def _model_facts(m: ChurnModel, playbook: Playbook) -> dict[str, Any]:
    """``GET /model``: the model's version, features, training window, horizon, bands, scorecards, verdict
    and the playbook's actions."""
    info = m.require_info()
    return {
        "package_version": info.package_version,
        "features": m.feature_names_,
        "training_window": dict(info.training_window),
        "horizon_days": info.population.horizon_days,
        "risk_bands": info.risk_bands,
        "scorecard": {k: dict(v) for k, v in info.scorecards.items()},
        "verdict": info.verdict,
        "actions": [a.name for a in playbook.actions],
    }


def _add_routes(app: FastAPI) -> None:
    """The error handler and the routes: health, model facts, ``/predict`` and ``/predict/features``."""

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        logger.exception("error while serving %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    def model_info(request: Request) -> dict[str, Any]:
        return _model_facts(request.app.state.model, request.app.state.playbook)

    async def predict(request: Request) -> Response:
        # Reached only when _App does not take the request itself (under a root path, say). A plain Starlette
        # route (no FastAPI dependency solving), documented in the OpenAPI schema by _document_predict_body.
        status, body = await _predict(request.app.state, await request.body())  # type: ignore[misc]
        return Response(body, status, media_type="application/json")

    app.router.routes.append(Route("/predict", predict, methods=["POST"]))

    @app.post("/predict/features")
    def predict_features(req: FeaturesRequest, request: Request) -> PredictResponse:
        m: ChurnModel = request.app.state.model
        errors = _feature_row_errors(req.rows, m)
        if errors:
            return JSONResponse({"detail": errors}, status_code=422)
        rows = pd.DataFrame(req.rows)
        if "customer_id" not in rows:
            rows["customer_id"] = [f"row{i}" for i in range(len(rows))]
        warnings: list[str] = []
        if "as_of" not in rows or rows["as_of"].isna().any():
            day, warnings = _default_day(m)
            rows["as_of"] = rows["as_of"].fillna(day.isoformat()) if "as_of" in rows else day.isoformat()
        rows["as_of"] = pd.to_datetime(rows["as_of"])
        try:
            scored = score_features(m, rows, request.app.state.playbook)
        except ValueError as exc:  # a feature the rules read is missing
            return JSONResponse({"detail": str(exc)}, status_code=422)
        scores = select_customers(scored, control_fraction=0.0)
        scores["model_version"] = m.require_info().model_version
        return PredictResponse(scores=_records(scores, output_columns(m)), warnings=warnings)

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        return Response(_docs_page(request.app), media_type="text/html")


def _feature_row_errors(rows: list[dict[str, Any]], model: ChurnModel) -> list[dict[str, Any]]:
    """422 details for feature rows with values the model cannot read: an ``as_of`` that is not an ISO date
    within 1678 to today, text where the model reads a number (its numeric features), a number that is not finite
    or is too large."""
    errors = []
    numeric = set(model.feature_names_) - set(model.categories_)

    def bad(i: int, name: str, msg: str) -> None:
        errors.append({"type": "value_error", "loc": ["body", "rows", i, name], "msg": msg})

    for i, row in enumerate(rows):
        for name, value in row.items():
            if value is None or name == "customer_id" or name in model.categories_:
                continue
            if name == "as_of":
                try:
                    day = date.fromisoformat(str(value))
                except ValueError:
                    bad(i, name, f"as_of must be an ISO date (YYYY-MM-DD), got {str(value)[:40]!r}")
                    continue
                if not _FIRST_DAY <= day < latest_plausible_date():
                    bad(i, name, f"as_of {day} is after today or before 1678")
            elif isinstance(value, str):
                if name in numeric:  # other text columns (value_tier, ...) are the rules' business
                    bad(i, name, f"{name} must be a number, got {value[:40]!r}")
            elif not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:  # NaN fails too
                bad(i, name, f"{name} must be a finite number within +-{MAX_MAGNITUDE:,.0f}")
    return errors


def _docs_page(app: FastAPI) -> str:
    """A plain page listing the API's routes, with a link to the OpenAPI schema: no script or asset from
    outside, so it shows without internet."""
    from html import escape

    items = "".join(
        f"<li><code>{escape(method.upper())} {escape(path)}</code> {escape(op.get('summary', ''))}</li>"
        for path, ops in app.openapi()["paths"].items() for method, op in ops.items())
    return (f"<!doctype html><html lang=en><meta charset=utf-8><title>churnguard API</title>"
            f"<body style='font-family:sans-serif;max-width:40em;margin:2em auto'><h1>churnguard API "
            f"{escape(__version__)}</h1><ul>{items}</ul><p>The full description (request and answer fields): "
            f"<a href='/openapi.json'>/openapi.json</a>, readable by any OpenAPI viewer.</p></body></html>")


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several workers: the model path, playbook and token come from
    the environment (``CHURNGUARD_SERVE_MODEL``, ``CHURNGUARD_SERVE_PLAYBOOK``, ``CHURNGUARD_API_TOKEN``), the
    uplift model from ``CHURNGUARD_SERVE_UPLIFT`` (none without it), and the pages' files from
    ``CHURNGUARD_SERVE_SCORES`` (no pages without it), ``..._PREVIOUS``, ``..._READOUT``, ``..._TRANSACTIONS``
    and ``..._TICKETS``. With ``CHURNGUARD_SERVE_SPREAD`` (``churnguard serve --workers N``), the workers
    spread their connections evenly (``churnguard.serving.spread``); without it, one response in a hundred
    asks its client to reconnect."""
    from churnguard.serving import spread

    files = {name: os.environ.get(f"CHURNGUARD_SERVE_{name.upper()}") or None for name in PAGE_FILES}
    pages = PageSources.parse(files) if files["scores"] else None
    board = spread.from_env()
    return create_app(os.environ["CHURNGUARD_SERVE_MODEL"], playbook_path=os.environ.get("CHURNGUARD_SERVE_PLAYBOOK"),
                      token=os.environ.get("CHURNGUARD_API_TOKEN") or None,
                      reconnect_every=None if board is not None else 100, board=board, pages=pages,
                      uplift_path=os.environ.get("CHURNGUARD_SERVE_UPLIFT") or None)

