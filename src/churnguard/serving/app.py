"""HTTP serving of a loaded model file: ``create_app(model_path)``.

The app factory loads the model and the playbook once, in the lifespan hook. ``POST /predict`` scores each
customer through the same feature kernel and scoring rules as batch scoring (``churnguard.features.records``
-> ``churnguard.scoring.score_records``). Routes only translate JSON; the rules live in ``churnguard.scoring``,
never in a route.
Request bodies are pydantic models (422 with the bad field's name; for ``/predict``, a body that is not JSON
is a 422 too), bodies over ``max_body_bytes`` get 413, no route accepts a file path, and unexpected errors
answer 500 without a stack trace. ``POST /predict`` is answered ahead of FastAPI's middleware and router
(see ``_App``), with the same checks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections import Counter
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
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
from churnguard.config import load_playbook
from churnguard.dataset import MAX_MAGNITUDE, latest_plausible_day
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

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

MAX_CUSTOMERS = 1000
MAX_EVENTS = 10_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Events are validated into plain dicts (pydantic TypedDicts: the same checks as models, no model object per
# event). Optional keys left out of the JSON stay out of the dict; the scorer reads them with .get().
def _utc_naive(value: datetime) -> datetime:
    value = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    if not _FIRST_DAY <= value.date() <= _LAST_DAY:
        raise ValueError("dates must lie within the years 1678-2261")
    return value


_FIRST_DAY, _LAST_DAY = date(1678, 1, 1), date(2261, 12, 31)  # the range of the model's timestamps
# Timestamps as the data contract stores them: naive UTC (zone-aware ones are converted).
UtcDatetime = Annotated[datetime, AfterValidator(_utc_naive)]
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


def _in_order(ticket: TicketIn) -> TicketIn:
    for name in ("first_response_at", "resolved_at"):
        value = ticket.get(name)
        if value is not None and value < ticket["opened_at"]:
            raise ValueError(f"{name} is earlier than opened_at")
    return ticket


class CustomerIn(_Body):
    customer_id: Annotated[str, Field(min_length=1, max_length=200)]
    transactions: Annotated[list[TransactionIn], Field(max_length=MAX_EVENTS)] = []
    tickets: Annotated[list[Annotated[TicketIn, AfterValidator(_in_order)]],
                       Field(max_length=MAX_EVENTS)] = []
    attributes: Annotated[dict[str, str | float | bool | None], Field(max_length=100)] = Field(
        default_factory=dict, description="customers-table columns: signup_date, loyalty_member, nps, ...")

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
    as_of: date | None = Field(default=None, description="cut-off day; default: today (UTC)")
    customers: Annotated[list[CustomerIn], Field(min_length=1, max_length=MAX_CUSTOMERS)]

    @model_validator(mode="after")
    def _one_entry_per_customer(self) -> PredictRequest:
        if self.as_of is not None and not _FIRST_DAY <= self.as_of < latest_plausible_day().date():
            raise ValueError(f"as_of {self.as_of} is after today or before 1678; scoring needs a day whose "
                             "history is known")
        twice = sorted(k for k, n in Counter(c.customer_id for c in self.customers).items() if n > 1)
        if twice:
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
    """Scores the customers of the requests that arrive together in one call of the scoring chain.

    Requests queued in one event-loop round, or the round after, are flushed together: one
    :func:`churnguard.scoring.score_records` call per ``as_of``, each request handed its own rows. Each customer
    is scored on its own data, so an answer never depends on which requests shared its batch. Should a batch
    fail, each of its requests is scored alone, so only a failing one fails.
    """

    def __init__(self, state: Any) -> None:
        self.state = state
        self.pending: list[tuple[list[CustomerRecords], date, asyncio.Future]] = []

    async def score(self, customers: list[CustomerRecords], as_of: date) -> list[dict]:
        loop = asyncio.get_running_loop()
        if not self.pending:
            loop.call_soon(loop.call_soon, self._flush)  # after the round that reads the next bodies too
        future = loop.create_future()
        self.pending.append((customers, as_of, future))
        return await future

    def _run(self, customers: list[CustomerRecords], as_of: date) -> list[dict]:
        return score_records(self.state.model, customers, as_of, self.state.playbook, self.state.population)

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        for as_of in {day for _, day, _ in pending}:
            group = [(customers, future) for customers, day, future in pending if day == as_of]
            rows = _attempt(self._run, [c for customers, _ in group for c in customers], as_of)
            start = 0
            for customers, future in group:
                if isinstance(rows, Exception):  # each request alone, so only a failing one fails
                    result = rows if len(group) == 1 else _attempt(self._run, customers, as_of)
                else:
                    result, start = rows[start : start + len(customers)], start + len(customers)
                (future.set_exception if isinstance(result, Exception) else future.set_result)(result)


def _attempt(fn, *args) -> Any:
    """``fn(*args)``, or the exception it raised: handed to the waiting request, which answers 500."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        return exc


async def _predict(app_state: Any, body: bytes) -> tuple[int, bytes]:
    """Status and JSON body answering ``POST /predict`` with ``body``: the customers are scored by
    :func:`churnguard.scoring.score_records` (the kernel and rules of batch scoring) through :class:`_Batcher`."""
    try:
        req = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        return 422, _invalid(exc)
    as_of = req.as_of or datetime.now(tz=UTC).date()  # the edge decides what "today" is
    customers = [CustomerRecords(c.customer_id, c.transactions, c.tickets, c.attributes) for c in req.customers]
    results = await app_state.batcher.score(customers, as_of)
    scores = [r for r in results if "reason" not in r]
    rejected = [r for r in results if "reason" in r]
    # The rows hold Score's fields as plain str / float / bool / date values: pydantic's serializer writes them
    # as PredictResponse would, without building the models first.
    return 200, pydantic_core.to_json({"scores": scores, "rejected": rejected})


def _records(scores: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    out = scores[columns].copy()
    out["as_of"] = pd.to_datetime(out["as_of"]).dt.date
    for c in (c for c in columns if c.startswith("churn_probability")):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out.to_dict("records")


async def _read_body(scope, receive, max_bytes: int) -> bytes | None:
    """The whole request body, or None when its declared length, or as soon as its length, passes ``max_bytes``
    (raises ``ClientDisconnect`` when the client goes away first)."""
    declared = dict(scope["headers"]).get(b"content-length")
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


def _replay(body: bytes):
    """An ASGI ``receive`` handing over ``body``, read already, as the whole request body."""

    async def receive():
        nonlocal body
        message, body = {"type": "http.request", "body": body, "more_body": False}, b""
        return message

    return receive


def _closing(send):
    """``send`` adding ``Connection: close`` to the response it sends (see ``_App.reconnect_every``)."""

    async def closing(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return closing


class _App(FastAPI):
    """The FastAPI app, with the body-size limit and ``POST /predict`` handled ahead of its middleware and router.

    A body over ``max_body_bytes`` gets 413, whether its length is declared or it is streamed (then it is read,
    at most that much, before routing). ``/predict`` is answered here by ``_predict``, as its route does, without
    FastAPI's layers (they cost more CPU than validating the body); an unexpected error gets the app's 500.
    Every other request, and the lifespan, goes through FastAPI. With ``reconnect_every`` set, every that many
    responses of this process one asks its client to reconnect (``Connection: close``): worker processes share
    one listening socket, so keep-alive connections opened together often land on one worker, and a client
    that reconnects is taken by whichever worker polls first.
    """

    max_body_bytes = 2_000_000
    reconnect_every: int | None = None
    responses = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        if self.reconnect_every is not None:
            self.responses += 1
            send = send if self.responses % self.reconnect_every else _closing(send)
        predict = scope["path"] == "/predict" and scope["method"] == "POST"
        try:
            body = await _read_body(scope, receive, self.max_body_bytes)
        except ClientDisconnect:  # nobody to answer; a FastAPI route sees the disconnect itself
            return None if predict else await super().__call__(scope, receive, send)
        if body is None:
            detail = pydantic_core.to_json({"detail": f"request body over {self.max_body_bytes} bytes"})
            return await Response(detail, 413, media_type="application/json")(scope, receive, send)
        if not predict:
            return await super().__call__(scope, _replay(body), send)
        try:
            status, answer = await _predict(self.state, body)
        except Exception:
            logger.exception("error while serving %s", scope["path"])
            status, answer = 500, b'{"detail":"internal error"}'
        await Response(answer, status, media_type="application/json")(scope, receive, send)


def create_app(model_path: str | Path, *, playbook_path: str | Path | None = None,
               max_body_bytes: int = 2_000_000, reconnect_every: int | None = None) -> FastAPI:
    """A FastAPI app serving the model file at ``model_path`` (loaded once at start-up).

    Args:
        model_path: the model file written by ``churnguard train``.
        playbook_path: the playbook YAML (default: the built-in one).
        max_body_bytes: larger request bodies get 413.
        reconnect_every: when set, every this many responses of a worker process, one asks its client to
            reconnect (``Connection: close``), as nginx's ``keepalive_requests`` does; see :class:`_App`.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # the model, playbook and population, loaded before the first request
        app.state.model = ChurnModel.load(model_path)
        app.state.playbook = load_playbook(playbook_path)
        app.state.population = model_population(app.state.model)
        app.state.batcher = _Batcher(app.state)
        row_tables(app.state.model)  # built (and checked against LightGBM) before the first request
        logger.info("loaded model %s", model_path)
        # Everything loaded so far lives as long as the server: keep it out of the garbage collector's scans,
        # or each full collection pauses a worker for tens of milliseconds in the middle of requests.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()

    app = _App(title="churnguard", version=__version__, lifespan=lifespan)
    app.max_body_bytes = max_body_bytes
    app.reconnect_every = reconnect_every
    _add_routes(app)
    _document_predict_body(app)
    return app


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
        m: ChurnModel = request.app.state.model
        info = m.require_info()
        return {
            "package_version": info.package_version,
            "features": m.feature_names_,
            "training_window": dict(info.training_window),
            "horizon_days": info.population.horizon_days,
            "risk_bands": info.risk_bands,
            "scorecard": {k: dict(v) for k, v in info.scorecards.items()},
            "verdict": info.verdict,
            "actions": [a.name for a in request.app.state.playbook.actions],
        }

    async def predict(request: Request) -> Response:
        # Reached only when _App does not take the request itself (under a root path, say). A plain Starlette
        # route (no FastAPI dependency solving), documented in the OpenAPI schema by _document_predict_body.
        status, body = await _predict(request.app.state, await request.body())
        return Response(body, status, media_type="application/json")

    app.router.routes.append(Route("/predict", predict, methods=["POST"]))

    @app.post("/predict/features")
    def predict_features(req: FeaturesRequest, request: Request) -> PredictResponse:
        m: ChurnModel = request.app.state.model
        rows = pd.DataFrame(req.rows)
        if "customer_id" not in rows:
            rows["customer_id"] = [f"row{i}" for i in range(len(rows))]
        rows["as_of"] = pd.to_datetime(rows["as_of"]) if "as_of" in rows else pd.Timestamp.now().normalize()
        try:
            scored = score_features(m, rows, request.app.state.playbook)
        except ValueError as exc:  # a feature the rules read is missing
            return JSONResponse({"detail": str(exc)}, status_code=422)
        scores = select_customers(scored, control_fraction=0.0)
        scores["model_version"] = m.require_info().model_version
        return PredictResponse(scores=_records(scores, output_columns(m)))


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several workers: the model path comes from the environment."""
    return create_app(os.environ["CHURNGUARD_SERVE_MODEL"], playbook_path=os.environ.get("CHURNGUARD_SERVE_PLAYBOOK"),
                      reconnect_every=1000)

