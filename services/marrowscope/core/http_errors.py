"""JSON errors for the HTTP services (the LIS API and the curation HTTP API), one way.

Domain errors answer with their own status and message; a request that does not match the
schema is a 422 saying where and what; anything else is a 500 that says "internal error" and
the request id, never a stack trace (the trace goes to the log).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .errors import MarrowscopeError
from .logs import request_id_var


def add_error_handlers(app: FastAPI, log: logging.Logger) -> None:
    @app.exception_handler(MarrowscopeError)
    async def domain_error(request: Request, exc: MarrowscopeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log_unhandled(log, request, exc)
        return JSONResponse(
            {"detail": "internal error", "request_id": request_id_var.get()}, status_code=500
        )


def log_unhandled(log: logging.Logger, request: Request, exc: Exception) -> None:
    """An error no handler answered, with its traceback (the client gets only a request id)."""
    log.error(
        "unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc
    )
