"""FastAPI app for the laboratory information system (LIS).

Specimens in (accession number -> opaque UUID), field images uploaded (multipart or presigned),
analysis jobs run in the background (202 + job URL, Idempotency-Key), and the differential
report out as JSON, FHIR R4 or HL7 v2.5.1, versioned preliminary -> final -> corrected.
Errors are problem+json (``problems``) with the right status and never a stack trace; every
response carries the security headers, and request bodies over their limit are refused
before they are read (``middleware``). The interactive docs are served only when
``docs_enabled``.

``create_app`` only wires things: the context (``deps.LisContext``, on ``app.state``), the
middleware and error mapping, and one router per resource (``routes_*``); authentication is a
dependency of each route (``deps``) and the analysis pipeline lives in ``pipeline``.

(``deps`` and the ``routes_*`` modules do without ``from __future__ import annotations``:
FastAPI must see their Annotated dependencies as objects, not as strings.)
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint
from starlette.types import ASGIApp

from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import DictPool
from marrowscope.core.images import ImageLimits, PixelBudget
from marrowscope.core.logs import new_request_id, request_id_var
from marrowscope.core.metrics import count_http, registry_of
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.taxonomy import load_taxonomy

from . import (
    routes_auth,
    routes_classify,
    routes_instruments,
    routes_models,
    routes_reports,
    routes_service,
    routes_specimens,
)
from .auth import Authenticator, RateLimiter
from .deps import LisContext, context_of
from .middleware import BodyLimit, SecurityHeaders, lis_body_limit
from .problems import add_problem_handlers
from .qc import QcPolicy
from .report import Thresholds
from .repository import LisRepository, metric_gauges
from .review import CurationReview
from .settings import LisApiSettings
from .worker import AnalysisWorker, WorkerSettings

log = logging.getLogger(__name__)
# The taxonomy reports and reviews are written in (the curation queue is told its name).
TAXONOMY = "paper17"


class LisApp(FastAPI):
    """The LIS API's FastAPI app: its middleware stack wrapped in :class:`SecurityHeaders`,
    outside even the error middleware, so that every response (a 500 too) has them."""

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack inside the security headers (the docs pages get their CSP)."""
        docs = {self.docs_url, self.redoc_url}
        if self.docs_url and self.swagger_ui_oauth2_redirect_url:
            docs.add(self.swagger_ui_oauth2_redirect_url)
        return SecurityHeaders(super().build_middleware_stack(), frozenset(p for p in docs if p))


def create_app(
    settings: LisApiSettings,
    store: ObjectStore,
    clients: ServiceClients,
    pool: DictPool,
    run_worker: bool = True,
) -> FastAPI:
    """The LIS API on these settings, object store, peers and database; ``run_worker=False``
    leaves analysis jobs queued (nothing in this process runs them)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = context_of(app)
        await asyncio.to_thread(ctx.auth.bootstrap, list(settings.api_key_hashes))
        log.info(
            "low-confidence cells are reviewed %s",
            "in the curation service and here" if ctx.review else "here only (no curation token)",
        )
        task = asyncio.create_task(ctx.worker.run()) if run_worker else None
        yield
        ctx.worker.stop()
        if task is not None:
            await task

    app = LisApp(
        title="Marrowscope LIS API",
        version="1",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
        description=(
            "Bone marrow differentials for laboratory information systems. Authenticate with an "
            "API key (`Authorization: Bearer <key>` or `X-API-Key`) or an OAuth2 client-"
            "credentials token from `/v1/oauth/token`. Scopes: submit, read, review, admin."
        ),
    )
    app.state.lis = build_context(settings, store, clients, pool)  # see deps.context_of
    app.state.metrics = registry_of(metric_gauges(pool))  # served at /metrics
    add_problem_handlers(app, log)
    # Inner first: the body limit runs inside the request id (its 413 carries the id).
    app.add_middleware(
        BodyLimit,
        limit_for=lis_body_limit(
            settings.max_body_bytes,
            settings.max_upload_request_bytes,
            settings.max_upload_bytes + settings.multipart_overhead_bytes,
        ),
    )
    app.middleware("http")(request_id)
    app.middleware("http")(count_http)
    for module in (
        routes_service,
        routes_auth,
        routes_specimens,
        routes_reports,
        routes_classify,
        routes_models,
        routes_instruments,
    ):
        app.include_router(module.router)
    return app


def build_context(
    settings: LisApiSettings, store: ObjectStore, clients: ServiceClients, pool: DictPool
) -> LisContext:
    """The stores, peers, report thresholds and the analysis worker of one app."""
    lis = LisRepository(pool)
    thresholds = Thresholds(
        blast_high_pct=settings.blast_high_pct,
        blast_elevated_pct=settings.blast_elevated_pct,
        target_cells=settings.target_cells,
        minimum_cells=settings.minimum_cells,
        low_confidence_probability=settings.low_confidence_probability,
        low_confidence_margin=settings.low_confidence_margin,
    )
    taxonomy = load_taxonomy(TAXONOMY)
    curation_token = settings.curation_token.get_secret_value()
    review = (
        CurationReview(lis, clients, curation_token, taxonomy, thresholds)
        if curation_token
        else None
    )
    worker = AnalysisWorker(
        lis,
        clients,
        WorkerSettings(
            segmentation_deadline_s=settings.segmentation_deadline_s,
            inference_deadline_s=settings.inference_deadline_s,
            taxonomy=TAXONOMY,
            qc=QcPolicy(
                exclude_flags=tuple(settings.qc_exclude_flags),
                max_region_share=settings.qc_max_region_share,
                min_red_cells=settings.qc_min_red_cells,
            ),
            ood_max_share_outside=settings.ood_max_share_outside,
        ),
        thresholds,
        review,
    )
    return LisContext(
        settings=settings,
        lis=lis,
        store=store,
        clients=clients,
        auth=Authenticator(pool, settings.jwt_secret.get_secret_value(), settings.token_ttl_s),
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        limits=ImageLimits(
            max_bytes=settings.max_upload_bytes, max_pixels=settings.max_field_pixels
        ),
        decode_budget=PixelBudget(settings.decode_pixel_budget),
        thresholds=thresholds,
        taxonomy=taxonomy,
        worker=worker,
        review=review,
    )


async def request_id(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Middleware: the caller's X-Request-Id (or a new one) in the logs and the response."""
    token = request_id_var.set(request.headers.get("x-request-id", "")[:64] or new_request_id())
    try:
        response = await call_next(request)
        response.headers["x-request-id"] = request_id_var.get()
        return response
    finally:
        request_id_var.reset(token)
