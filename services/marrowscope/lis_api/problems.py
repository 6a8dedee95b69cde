"""The LIS API's errors, one way: RFC 9457 problem details (``application/problem+json``).

Each error is ``{"type", "title", "status", "detail"}`` where ``detail`` says what went wrong
and what to do; a request that does not match the schema adds ``errors`` (where and what), a
peer that is down adds ``service``, and an internal error adds ``request_id`` (its trace goes
to the log, never to the client).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from marrowscope.core.errors import MarrowscopeError, Unavailable
from marrowscope.core.http_errors import log_unhandled
from marrowscope.core.logs import request_id_var

from .pipeline import PeerRejected, PeerUnavailable
from .repository import Conflict

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int, detail: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response: ``detail`` should say what to do about it."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def validation_summary(errors: list[dict[str, Any]]) -> str:
    """One line naming where the request does not match the schema."""
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"the request does not match the API's schema (see /openapi.json): {where}{more}"


def add_problem_handlers(app: FastAPI, log: logging.Logger) -> None:
    """Every error the LIS API answers as problem+json: HTTP errors (401, 403, 404, 413,
    429, ...), domain errors with their status, 422 for a request that does not match the
    schema, 409 for a state conflict, 503 (Retry-After, naming the peer) for a peer that is
    down, 422 for an input a peer refused, and 500 for anything else."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return problem(exc.status_code, detail, exc.headers)

    @app.exception_handler(MarrowscopeError)
    async def domain_error(request: Request, exc: MarrowscopeError) -> JSONResponse:
        if isinstance(exc, Unavailable):
            headers = {"Retry-After": "5"}
            named = {"service": exc.service} if exc.service else {}
            return problem(503, f"{exc}; retry later", headers, **named)
        return problem(exc.http_status, str(exc))

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg_pool.PoolTimeout)
    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        # The server is down, restarting or unreachable; the pool gives up after its timeout.
        log.warning("database unavailable on %s: %s", request.url.path, exc)
        if isinstance(exc, psycopg.errors.QueryCanceled):  # the statement timeout, not an outage
            detail = "a database query took too long (statement timeout); retry later"
        else:
            detail = f"database unavailable ({type(exc).__name__}); retry later"
        return problem(503, detail, {"Retry-After": "5"}, service="database")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return problem(422, validation_summary(errors), errors=errors)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return problem(409, str(exc))

    @app.exception_handler(PeerUnavailable)
    async def peer_down(request: Request, exc: PeerUnavailable) -> JSONResponse:
        return problem(503, f"{exc}; retry later", {"Retry-After": "5"}, service=exc.service)

    @app.exception_handler(PeerRejected)
    async def peer_rejected(request: Request, exc: PeerRejected) -> JSONResponse:
        return problem(422, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log_unhandled(log, request, exc)
        # The server closes the connection after an unhandled error: say so, so that no
        # client sends its next request on it.
        return problem(
            500,
            "internal error: retry later, and quote the request id if it persists",
            {"connection": "close"},
            request_id=request_id_var.get(),
        )
