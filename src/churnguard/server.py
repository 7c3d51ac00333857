"""HTTP serving of a loaded model file: ``create_app(model_path)``.

The app factory loads the model and the playbook once, in the lifespan hook. Routes only translate between
JSON and DataFrames; every scoring rule lives in ``churnguard.scoring``, shared with the batch command.
Request bodies are pydantic models (422 with the bad field's name), bodies over ``max_body_bytes`` get 413,
no route accepts a file path, and unexpected errors answer 500 without a stack trace.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from churnguard.config import DataConfig, load_playbook
from churnguard.dataset import DataError, validate_tables
from churnguard.model import ChurnModel
from churnguard.scoring import OUTPUT_COLUMNS, score_features, score_tables, select_customers

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

MAX_CUSTOMERS = 1000
MAX_EVENTS = 10_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TransactionIn(_Body):
    timestamp: datetime
    amount: float
    order_id: str | None = None
    quantity: float | None = None
    category: str | None = None
    channel: str | None = None
    discount: float | None = None


class TicketIn(_Body):
    opened_at: datetime
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    channel: str | None = None
    csat: Annotated[float, Field(ge=1, le=5)] | None = None
    ticket_id: str | None = None


class CustomerIn(_Body):
    customer_id: Annotated[str, Field(min_length=1, max_length=200)]
    transactions: Annotated[list[TransactionIn], Field(max_length=MAX_EVENTS)] = []
    tickets: Annotated[list[TicketIn], Field(max_length=MAX_EVENTS)] = []
    attributes: dict[str, str | float | bool | None] = Field(
        default_factory=dict, description="customers-table columns: signup_date, loyalty_member, nps, ..."
    )


class PredictRequest(_Body):
    as_of: date | None = Field(default=None, description="cut-off day; default: today (UTC)")
    customers: Annotated[list[CustomerIn], Field(min_length=1, max_length=MAX_CUSTOMERS)]


class FeaturesRequest(_Body):
    rows: Annotated[list[dict[str, str | float | None]], Field(min_length=1, max_length=MAX_CUSTOMERS)]


class Score(BaseModel):
    customer_id: str
    as_of: date
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


class PredictResponse(BaseModel):
    scores: list[Score]


def _records(scores: pd.DataFrame) -> list[dict[str, Any]]:
    out = scores[OUTPUT_COLUMNS].copy()
    out["as_of"] = pd.to_datetime(out["as_of"]).dt.date
    out["churn_probability"] = out["churn_probability"].astype(object).where(out["churn_probability"].notna(), None)
    return out.to_dict("records")


def _frames(req: PredictRequest) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    tx = [{"customer_id": c.customer_id, **t.model_dump()} for c in req.customers for t in c.transactions]
    tk = [{"customer_id": c.customer_id, **t.model_dump()} for c in req.customers for t in c.tickets]
    attrs = [{"customer_id": c.customer_id, **c.attributes} for c in req.customers]
    transactions = pd.DataFrame(tx, columns=["customer_id", *TransactionIn.model_fields])
    transactions = transactions.dropna(axis=1, how="all")
    tickets = pd.DataFrame(tk).dropna(axis=1, how="all") if tk else None
    customers = pd.DataFrame(attrs)
    return transactions, tickets, customers


def create_app(model_path: str | Path, *, playbook_path: str | Path | None = None,
               max_body_bytes: int = 2_000_000) -> FastAPI:
    """A FastAPI app serving the model file at ``model_path`` (loaded once at start-up)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.model = ChurnModel.load(model_path)
        app.state.playbook = load_playbook(playbook_path)
        logger.info("loaded model %s", model_path)
        yield

    app = FastAPI(title="churnguard", version=_version(), lifespan=lifespan)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and int(length) > max_body_bytes:
            return JSONResponse({"detail": f"request body over {max_body_bytes} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        logger.exception("error while serving %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    def model_info(request: Request) -> dict[str, Any]:
        m: ChurnModel = request.app.state.model
        meta = m.metadata
        return {
            "package_version": meta["package_version"],
            "features": m.feature_names_,
            "training_window": meta["training_window"],
            "horizon_days": meta["horizon_days"],
            "risk_bands": meta["risk_bands"],
            "scorecard": meta["scorecards"],
            "verdict": meta["verdict"],
            "actions": [a.name for a in request.app.state.playbook.actions],
        }

    @app.post("/predict")
    def predict(req: PredictRequest, request: Request) -> PredictResponse:
        m: ChurnModel = request.app.state.model
        transactions, tickets, customers = _frames(req)
        if transactions.empty:
            transactions = pd.DataFrame({"customer_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="datetime64[ns]"),
                                         "amount": pd.Series(dtype=float)})
        try:
            tables = validate_tables(transactions, tickets, customers,
                                     config=DataConfig(on_bad_rows="raise"), sources=_SOURCES, allow_empty=True)
        except DataError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        as_of = req.as_of or datetime.now(tz=None).date()  # noqa: DTZ005 - the edge decides "today"
        result = score_tables(m, tables, pd.Timestamp(as_of), request.app.state.playbook, control_fraction=0.0)
        return PredictResponse(scores=_records(result.scores))

    @app.post("/predict/features")
    def predict_features(req: FeaturesRequest, request: Request) -> PredictResponse:
        m: ChurnModel = request.app.state.model
        rows = pd.DataFrame(req.rows)
        if "customer_id" not in rows:
            rows["customer_id"] = [f"row{i}" for i in range(len(rows))]
        rows["as_of"] = pd.to_datetime(rows["as_of"]) if "as_of" in rows else pd.Timestamp.now().normalize()
        for c in ("n_orders", "cltv"):
            if c not in rows:
                return JSONResponse({"detail": f"feature row needs {c!r}"}, status_code=422)
        scores = select_customers(score_features(m, rows, request.app.state.playbook), control_fraction=0.0)
        scores["model_version"] = m.metadata.get("model_version", m.metadata["package_version"])
        return PredictResponse(scores=_records(scores))

    return app


_SOURCES = {"transactions": "request transactions", "tickets": "request tickets", "customers": "request attributes"}


def _version() -> str:
    from churnguard import __version__

    return __version__


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` with several workers: the model path comes from the environment."""
    return create_app(os.environ["CHURNGUARD_SERVE_MODEL"], playbook_path=os.environ.get("CHURNGUARD_SERVE_PLAYBOOK"))

