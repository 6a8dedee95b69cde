"""HTTP transport of the curation API, and the experts' web UI that uses only this API.

The same domain (``CurationService``, ``Workbench``) as the gRPC servicer; nothing here
writes to the database on its own. Browsers sign in with their token once and then carry a
server-side session's opaque id (never the token) in an HttpOnly, SameSite=Strict cookie (so
<img> tags can load thumbnails); the session expires when idle or at its absolute limit and
sign-out revokes it. Other UI clients send ``Authorization: Bearer <token>``. Admin pages
read and steer campaigns through the orchestrator's gRPC API, and disable users or give them
new tokens.

Browser hardening (``security``): a Content-Security-Policy and other security headers on
every response, cross-origin state changes refused, and the interactive API docs served only
when the ``api_docs`` setting asks for them.

One router per resource (``ui``, ``session``, ``queues``, ``images``, ``decisions``,
``admin``); what they share, the domain objects and the caller, comes as dependencies from
``context``.
"""

import inspect
import logging

from fastapi import FastAPI, Request
from starlette.responses import Response

from marrowscope.core.clients import ServiceClients
from marrowscope.core.http_errors import add_error_handlers
from marrowscope.core.metrics import count_http, metrics_response
from marrowscope.core.objectstore import ObjectStore

from ..service import CurationService
from ..settings import CurationSettings
from ..workbench import Workbench
from . import admin, decisions, images, queues, session, ui
from .context import WebContext
from .security import BrowserGuard, security_headers

log = logging.getLogger(__name__)


def create_web_app(
    curation: CurationService,
    workbench: Workbench,
    store: ObjectStore,
    clients: ServiceClients,
    settings: CurationSettings | None = None,
) -> FastAPI:
    """The curation HTTP API and web UI over the given domain objects; ``settings`` give the
    cookie, session and docs options (the defaults when None)."""
    settings = settings or CurationSettings()
    docs = settings.api_docs
    app = FastAPI(
        title="Marrowscope curation API",
        version="1",
        description="Review tasks for hematology experts (CST confirm/correct, AL label).",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.context = WebContext(curation, workbench, store, clients, settings)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of the whole curation process: gRPC, HTTP and (registered by
        the service's main) its review queues."""
        return metrics_response()

    add_error_handlers(app, log)
    # The 500 handler runs outside every middleware: give its answer the headers here.
    internal = app.exception_handlers[Exception]

    async def internal_error(request: Request, exc: Exception) -> Response:
        response = internal(request, exc)
        if inspect.isawaitable(response):
            response = await response
        for name, value in security_headers(request.url.path, docs):
            response.headers[name.decode()] = value.decode()
        return response

    app.add_exception_handler(Exception, internal_error)
    app.add_middleware(
        BrowserGuard,
        secure=settings.secure_cookies,
        public_origin=settings.public_origin,
        docs=docs,
    )
    app.middleware("http")(count_http)
    for module in (ui, session, queues, images, decisions, admin):
        app.include_router(module.router)
    return app
