"""HTTP transport of the curation API, and the experts' web UI that uses only this API.

The same domain (``CurationService``, ``Workbench``) as the gRPC servicer; nothing here
writes to the database on its own. Browsers sign in with their token once and then carry it
in an HttpOnly, SameSite=Strict cookie (so <img> tags can load thumbnails); other UI clients
send ``Authorization: Bearer <token>``. Admin pages read and steer campaigns through the
orchestrator's gRPC API.

One router per resource (``ui``, ``session``, ``queues``, ``images``, ``decisions``,
``admin``); what they share, the domain objects and the caller, comes as dependencies from
``context``.
"""

import logging

from fastapi import FastAPI

from marrowscope.core.clients import ServiceClients
from marrowscope.core.http_errors import add_error_handlers
from marrowscope.core.objectstore import ObjectStore

from ..service import CurationService
from ..workbench import Workbench
from . import admin, decisions, images, queues, session, ui
from .context import WebContext

log = logging.getLogger(__name__)


def create_web_app(
    curation: CurationService,
    workbench: Workbench,
    store: ObjectStore,
    clients: ServiceClients,
    secure_cookies: bool = False,
) -> FastAPI:
    """The curation HTTP API and web UI over the given domain objects."""
    app = FastAPI(
        title="Marrowscope curation API",
        version="1",
        description="Review tasks for hematology experts (CST confirm/correct, AL label).",
    )
    app.state.context = WebContext(curation, workbench, store, clients, secure_cookies)
    add_error_handlers(app, log)
    for module in (ui, session, queues, images, decisions, admin):
        app.include_router(module.router)
    return app
