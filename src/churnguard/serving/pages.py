"""Pages for the retention team, served next to the API: the at-risk list, one customer, the campaign read-out.

Server-rendered HTML (Jinja2 templates in ``templates/``, CSS and a small script in ``assets/``, all served
from the package: the pages work offline). ``mount_pages`` adds the routes; the data is loaded once, in the
app's lifespan, by :func:`load_pages`. :class:`PageGuard` is the pages' door, checked by the app before a
request is read: with a token set, a browser signs in once through ``/login``, which sets an HttpOnly,
SameSite=Strict cookie (a keyed digest of the token, compared in constant time); a script may send the API's
``Authorization: Bearer`` header instead. Every page answer forbids outside scripts, styles, framing and
referrers; an error shows a plain page, never a stack trace.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
import pandas as pd
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import cookie_parser

from churnguard.serving import charts
from churnguard.serving.page_data import (
    FILTERS,
    GROUPS,
    CustomerHistory,
    PageSources,
    ScoresRun,
    csv_chunks,
    curve_columns,
    load_history,
    load_readout,
    load_run,
    movement,
    page_rows,
    parse_query,
)

if TYPE_CHECKING:
    from churnguard.config import ActionRule, Playbook
    from churnguard.model import ChurnModel

__all__ = ["PageGuard", "PageState", "load_pages", "mount_pages"]

logger = logging.getLogger(__name__)

COOKIE = "churnguard_session"
_ASSETS = {"page.css": "text/css", "page.js": "text/javascript"}
_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "referrer-policy": "no-referrer", "x-content-type-options": "nosniff", "cache-control": "no-store",
}
_FORM = b"application/x-www-form-urlencoded"
_LABELS = {"risk_band": "Risk band", "lifecycle_stage": "Lifecycle stage", "value_tier": "Value tier",
           "action": "Action", "churn_probability": "Churn probability", "expected_value": "Expected value",
           "clv": "CLTV", "customer_id": "Customer"}


@dataclass(frozen=True)
class PageState:
    """What the pages show, loaded once: the run, the customers' history, the read-out and the playbook."""

    run: ScoresRun
    history: CustomerHistory
    readout: pd.DataFrame | None
    playbook: Playbook
    signed_in: bool  # pages need a sign-in (the server has a token)
    horizon_days: int  # the model's churn horizon


def load_pages(sources: PageSources, model: ChurnModel, playbook: Playbook, *, token: bool) -> PageState:
    """Read every file the pages show (see :mod:`churnguard.serving.page_data`)."""
    run = load_run(sources.scores, sources.previous)
    history = load_history(sources.transactions, sources.tickets, model.require_info().config.data, run.ids)
    logger.info("pages: %d customers scored as of %s from %s", len(run.frame), run.as_of.date(), sources.scores)
    return PageState(run, history, load_readout(sources.readout), playbook, token,
                     model.require_info().population.horizon_days)


def session_value(token: bytes) -> str:
    """The cookie's value for ``token``: a keyed digest, so the cookie is not the API token itself."""
    return hmac.new(token, b"churnguard page session", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class PageGuard:
    """The pages' door: which paths are pages, and whether a request may open one."""

    token: bytes | None

    @staticmethod
    def owns(path: str) -> bool:
        """True for the pages' paths (the API keeps its own)."""
        return path in ("/", "/export.csv", "/campaign", "/login", "/logout") or path.startswith(
            ("/customers/", "/assets/"))

    def refusal(self, scope: dict, headers: dict[bytes, bytes]) -> Response | None:
        """The answer refusing the request (a redirect to sign in, or 415 for a POST that is not a form), or
        None to serve it."""
        path = scope["path"]
        if scope["method"] == "POST":
            if headers.get(b"content-type", b"").split(b";")[0].strip().lower() != _FORM:
                return _page(415, "error.html", title="Not a form", message="Send the sign-in form from the page.",
                             state=None)
            return None
        if path.startswith("/assets/") or path == "/login" or self.token is None:
            return None
        if self.signed_in(headers):
            return None
        return Response(status_code=303, headers={"location": "/login", **_HEADERS})

    def signed_in(self, headers: dict[bytes, bytes]) -> bool:
        """The request carries the sign-in cookie or the API's bearer header (constant-time comparisons)."""
        if self.token is None:
            return True
        cookie = cookie_parser(headers.get(b"cookie", b"").decode("latin-1")).get(COOKIE, "")
        by_cookie = hmac.compare_digest(cookie.encode("latin-1", "replace"), session_value(self.token).encode())
        by_header = hmac.compare_digest(headers.get(b"authorization", b""), b"Bearer " + self.token)
        return by_cookie or by_header


@functools.cache
def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("churnguard.serving", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters |= {"pct": _pct, "money": _money, "customer_url": lambda cid: "/customers/" + quote(str(cid), safe=""),
                    "label": lambda name: _LABELS.get(name, name.replace("_", " ").capitalize())}
    return env


def _pct(value: Any, sign: str = "") -> str:
    return "–" if value is None or pd.isna(value) else f"{value:{sign}.1%}"


def _money(value: Any) -> str:
    return "–" if value is None or pd.isna(value) else f"{value:,.2f}"


def _page(status: int, template: str, **context: Any) -> Response:
    html = _templates().get_template(template).render(**context)
    return Response(html, status, media_type="text/html; charset=utf-8", headers=_HEADERS)


def _safe(route):
    """Render the error page instead of a stack trace when a page fails."""

    @functools.wraps(route)
    async def wrapper(*args, **kwargs):
        try:
            return await route(*args, **kwargs)
        except Exception:
            logger.exception("error while rendering a page")
            return _page(500, "error.html", title="Something went wrong",
                         message="This page could not be shown. The server's log says why.", state=None)

    return wrapper


def mount_pages(app: FastAPI) -> None:
    """Add the pages' routes to ``app``; they read ``app.state.pages`` (a :class:`PageState`)."""
    router = APIRouter(include_in_schema=False)
    router.add_api_route("/", _list_page, methods=["GET"])
    router.add_api_route("/export.csv", _export, methods=["GET"])
    router.add_api_route("/customers/{customer_id:path}", _customer_page, methods=["GET"])
    router.add_api_route("/campaign", _campaign_page, methods=["GET"])
    router.add_api_route("/assets/{name}", _asset, methods=["GET"])
    router.add_api_route("/login", _login_form, methods=["GET"])
    router.add_api_route("/login", _login, methods=["POST"])
    router.add_api_route("/logout", _logout, methods=["POST"])
    app.include_router(router)


def _state(request: Request) -> PageState:
    return request.app.state.pages


@_safe
async def _list_page(request: Request) -> Response:
    return await run_in_threadpool(_render_list, _state(request), dict(request.query_params))


def _render_list(state: PageState, params: dict[str, str]) -> Response:
    run = state.run
    query = parse_query(params)
    rows, matched, pages = page_rows(run, query)
    page = min(query.page, pages)
    context = {
        "state": state, "run": run, "counts": run.counts(), "query": query, "matched": matched, "pages": pages,
        "page": page, "rows": rows.to_dict("records"), "filters": {c: run.choices(c) for c in FILTERS},
        "groups": GROUPS, "link": lambda **change: "/?" + urlencode(query.params(**change)),
        "csv_link": "/export.csv?" + urlencode(query.params(page="")),
    }
    return _page(200, "list.html", **context)


@_safe
async def _export(request: Request) -> Response:
    run, query = _state(request).run, parse_query(dict(request.query_params))
    name = f"at-risk-{run.as_of.date()}.csv"
    return StreamingResponse(csv_chunks(run, query), media_type="text/csv; charset=utf-8",
                             headers={**_HEADERS, "content-disposition": f'attachment; filename="{name}"'})


@_safe
async def _customer_page(request: Request, customer_id: str) -> Response:
    return await run_in_threadpool(_render_customer, _state(request), customer_id)


def _render_customer(state: PageState, customer_id: str) -> Response:
    run = state.run
    where = run.ids.get_indexer([customer_id])[0]
    if where < 0:
        return _page(404, "error.html", title="Customer not found", state=state,
                     message=f"No customer with this id was scored in the run of {run.as_of.date()}.")
    row = run.frame.iloc[where].to_dict()
    purchases, tickets = state.history.of(customer_id)
    months = None if purchases is None else charts.monthly_purchases(purchases, run.as_of)
    curve = [(d, float(row[c]) if pd.notna(row[c]) else float("nan")) for d, c in curve_columns(run.frame)]
    rule = next((a for a in state.playbook.actions if a.name == str(row["action"])), None)
    context = {
        "state": state, "run": run, "row": row, "move": movement(run, row),
        "reasons": [r for k in (1, 2, 3) if isinstance(r := row.get(f"reason_{k}"), str) and r],
        "rule": rule, "why": _why(rule, state.playbook), "curve": curve,
        "curve_svg": charts.curve_chart(curve) if len(curve) > 1 else None,
        "months": months, "chart": None if months is None or months.empty else charts.purchases_chart(
            months, run.as_of),
        "purchases": purchases, "tickets": None if tickets is None else tickets.sort_values(
            "opened_at", ascending=False).head(20).to_dict("records"),
    }
    return _page(200, "customer.html", **context)


def _why(rule: ActionRule | None, playbook: Playbook) -> str:
    """Why the playbook chose this action, in words: the conditions of the first rule that matched."""
    if rule is None:
        return "This action is not in the server's playbook: the scores were made with another one."
    when = rule.when
    parts = [f"{label} {' or '.join(values)}" for label, values in (
        ("risk band", when.band), ("lifecycle stage", when.stage), ("value tier", when.value_tier)) if values]
    parts += [f"signal {s.replace('_', ' ')}" for s in when.signals]
    parts += [f"no signal {s.replace('_', ' ')}" for s in when.not_signals]
    position = [a.name for a in playbook.actions].index(rule.name) + 1
    if not parts:
        return (f"No earlier rule of the playbook matched, so the last rule (rule {position} of "
                f"{len(playbook.actions)}) applies.")
    return (f"The first rule of the playbook that matches this customer (rule {position} of "
            f"{len(playbook.actions)}): {', '.join(parts)}.")


@_safe
async def _campaign_page(request: Request) -> Response:
    state = _state(request)
    table = state.readout
    if table is None:
        return _page(404, "error.html", title="No campaign read-out", state=state,
                     message="The server was started without --readout: there is no campaign to show.")
    svg = charts.uplift_chart([str(a) for a in table["action"]], table["uplift"].to_numpy("float64"),
                              table["ci_low"].to_numpy("float64"), table["ci_high"].to_numpy("float64"),
                              "confidence")
    return _page(200, "campaign.html", state=state, run=state.run, rows=table.to_dict("records"), chart=svg)


async def _asset(name: str) -> Response:
    if name not in _ASSETS:
        return Response("not found", 404, media_type="text/plain")
    body = resources.files("churnguard.serving").joinpath("assets", name).read_bytes()
    return Response(body, media_type=_ASSETS[name], headers={"cache-control": "max-age=3600",
                                                             "x-content-type-options": "nosniff"})


@_safe
async def _login_form(request: Request) -> Response:
    if not _state(request).signed_in:
        return Response(status_code=303, headers={"location": "/"})
    return _page(200, "login.html", state=None, failed=False)


@_safe
async def _login(request: Request) -> Response:
    token: bytes | None = request.app.token
    given = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [""])[0].strip()
    if token is None:
        return Response(status_code=303, headers={"location": "/"})
    if not hmac.compare_digest(given.encode(), token):
        return _page(401, "login.html", state=None, failed=True)
    response = Response(status_code=303, headers={"location": "/", **_HEADERS})
    response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


async def _logout(request: Request) -> Response:
    response = Response(status_code=303, headers={"location": "/login", **_HEADERS})
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
