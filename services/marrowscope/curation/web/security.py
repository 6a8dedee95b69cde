"""Browser hardening of the curation web app, as one ASGI middleware.

- Every response carries a Content-Security-Policy (only this origin's scripts, styles,
  images and API; no inline script; no framing), ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: no-referrer``.
- A state-changing request (POST, PUT, PATCH, DELETE) that a browser says comes from another
  origin is refused with 403 before any route runs: an ``Origin`` header that is not this
  app's own origin, or a ``Sec-Fetch-Site`` header other than ``same-origin`` / ``none``.
  The SameSite=Strict cookie already keeps other sites' requests unauthenticated; this is
  the second lock, and it also covers a sibling subdomain (same *site*, other origin).
  Clients that are not browsers send neither header and are not affected.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The workbench loads only /ui/app.js, /ui/app.css, images and JSON from its own origin, and
# has no inline script or style element (it sets styles through the CSSOM only).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# FastAPI's /docs and /redoc pages (only when the api_docs setting is on) load their scripts
# and styles from a CDN and start them with an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; img-src 'self' data: https:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",  # frame-ancestors for browsers that predate it
}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})  # 'none': typed or bookmarked


def security_headers(path: str, docs: bool = False) -> list[tuple[bytes, bytes]]:
    """The headers every response of the app gets (the CSP depends on the page, and on
    whether the API docs are served)."""
    csp = DOCS_CSP if docs and path in DOCS_PATHS else CSP
    pairs = [("content-security-policy", csp), *HEADERS.items()]
    return [(k.encode(), v.encode()) for k, v in pairs]


def normal_origin(origin: str) -> str:
    """An origin compared as browsers write it: lower case, no default port, no slash."""
    value = origin.strip().rstrip("/").lower()
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if value.startswith(scheme):
            value = value.removesuffix(port)
    return value


def own_origins(scope: Scope, secure: bool, public_origin: str) -> set[str]:
    """The origins this app answers as: its scheme and Host header, the https one as well
    behind a TLS-terminating proxy (``secure``), and the configured public origin."""
    headers = dict(scope.get("headers") or ())
    host = headers.get(b"host", b"").decode("latin-1")
    scheme = str(scope.get("scheme", "http"))
    origins = {f"{scheme}://{host}"} if host else set()
    if secure and host:
        origins.add(f"https://{host}")
    if public_origin:
        origins.add(public_origin)
    return {normal_origin(o) for o in origins}


def cross_origin_reason(scope: Scope, secure: bool, public_origin: str) -> str:
    """Why a state-changing request comes from another origin ('' when it does not)."""
    if scope.get("method", "GET") not in UNSAFE_METHODS:
        return ""
    headers = dict(scope.get("headers") or ())
    origin = headers.get(b"origin")
    if origin is not None:
        value = normal_origin(origin.decode("latin-1"))
        # 'null' (sandboxed frames, some redirects) is never this site.
        if value not in own_origins(scope, secure, public_origin):
            return f"origin {value!r} is not this site's"
    site = headers.get(b"sec-fetch-site")
    if site is not None and site.decode("latin-1").lower() not in ALLOWED_FETCH_SITES:
        return f"Sec-Fetch-Site {site.decode('latin-1')!r}"
    return ""


def problem(status: int, title: str, detail: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An RFC 9457 problem document, and its content type (``detail`` as in our other errors)."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    return body.encode(), [(b"content-type", b"application/problem+json")]


class BrowserGuard:
    """The ASGI middleware: refuses cross-origin state changes, adds the security headers."""

    def __init__(
        self, app: ASGIApp, *, secure: bool = False, public_origin: str = "", docs: bool = False
    ) -> None:
        self.app = app
        self.secure = secure
        self.public_origin = public_origin
        self.docs = docs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(str(scope.get("path", "")), self.docs)
        reason = cross_origin_reason(scope, self.secure, self.public_origin)
        if reason:
            body, headers = problem(403, "Forbidden", f"cross-origin request refused: {reason}")
            await send_whole(send, 403, [*headers, *extra], body)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = merged(message.get("headers", ()), extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def merged(
    headers: Iterable[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The response's headers with ``extra`` added (replacing any of the same name)."""
    names = {name for name, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra


async def send_whole(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    """Send a complete response with ``body``."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
