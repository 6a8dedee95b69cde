"""ASGI middleware of the LIS API: security headers on every response, and request bodies
refused (413) over their limit before they are read.

Both are plain ASGI (no ``BaseHTTPMiddleware``), so they see every response, the body limit
acts before routing and parsing, and a body streamed without Content-Length is counted as it
arrives.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import problem

# JSON, FHIR, HL7 and PNG need nothing from a page: nothing may load, nothing may frame.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The interactive docs (only when enabled): FastAPI's Swagger UI and ReDoc pages load their
# scripts and styles from jsDelivr, run one inline script, ReDoc its fonts from Google and a
# worker from a blob; both fetch /openapi.json from here.
DOCS_CSP = (
    "default-src 'none'; "
    "script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src blob:; "
    "connect-src 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}


class SecurityHeaders:
    """Adds nosniff, a Content-Security-Policy (``API_CSP``; ``DOCS_CSP`` on the docs pages),
    frame and referrer denial to every response, and ``Cache-Control: no-store`` where the
    route set no caching of its own (reports are patient data)."""

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"] in self.docs_paths else API_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                headers["content-security-policy"] = csp
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    """413: the request body streamed in past its limit (raised from ``receive``; FastAPI
    passes it on as it is, and :class:`BodyLimit` answers it if nothing else did)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


def too_large(limit: int) -> str:
    return (
        f"the request body exceeds this endpoint's limit of {limit} bytes: send fewer or "
        "smaller images per request, or use a presigned upload"
    )


class BodyLimit:
    """Refuses a request body over its limit with 413 problem+json: by its Content-Length
    before anything is read (and before the route runs), or, for a body without one
    (chunked), as soon as the bytes received pass the limit. ``limit_for(method, path)``
    gives each request's limit."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await problem(400, "the Content-Length header is not a number")(
                    scope, receive, send
                )
                return
            if int(declared) > limit:
                await problem(413, too_large(limit), {"connection": "close"})(scope, receive, send)
                return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            if received > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if started:
                raise
            await problem(413, too_large(limit), {"connection": "close"})(scope, receive, send)


UPLOAD_PATH = re.compile(r"^/v1/specimens/[^/]+/images/?$")
CLASSIFY_PATH = re.compile(r"^/v1/classify/?$")


def lis_body_limit(
    max_body_bytes: int, max_upload_request_bytes: int, max_single_image_request_bytes: int
) -> Callable[[str, str], int]:
    """The LIS API's limits: multipart uploads of field images get room for every file at
    its size limit, ``/v1/classify`` for its one image; every other request
    ``max_body_bytes``."""

    def limit_for(method: str, path: str) -> int:
        if method == "POST" and UPLOAD_PATH.match(path):
            return max_upload_request_bytes
        if method == "POST" and CLASSIFY_PATH.match(path):
            return max_single_image_request_bytes
        return max_body_bytes

    return limit_for
