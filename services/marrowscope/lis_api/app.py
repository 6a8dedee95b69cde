"""FastAPI app for the laboratory information system (LIS).

Specimens in (accession number -> opaque UUID), field images uploaded (multipart or presigned),
analysis jobs run in the background (202 + job URL, Idempotency-Key), and the differential
report out as JSON, FHIR R4 or HL7 v2.5.1, versioned preliminary -> final -> corrected.
Errors are JSON ``{"detail": ...}`` with the right status and never a stack trace.

(No ``from __future__ import annotations`` here: FastAPI must see the Annotated scope
dependencies defined inside ``create_app`` as objects, not as strings.)
"""

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Request,
    UploadFile,
)
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import DictPool
from marrowscope.core.http_errors import add_error_handlers
from marrowscope.core.images import ImageLimits, decode_image
from marrowscope.core.logs import new_request_id, request_id_var
from marrowscope.core.objectstore import ObjectStore, put_content_addressed
from marrowscope.core.rpc import check_health
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.v1 import common_pb2, inference_pb2, segmentation_pb2

from .auth import Authenticator, AuthError, Client, RateLimiter
from .deps import LisContext
from .report import Thresholds
from .review import CurationReview
from .routes_reports import add_report_routes
from .routes_specimens import add_specimen_routes
from .settings import LisApiSettings
from .store import Conflict, LisStore
from .worker import AnalysisWorker, PeerRejected, PeerUnavailable, WorkerSettings, call_peer

log = logging.getLogger(__name__)
UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}


class ClientIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["submit", "read", "review", "admin"]] = Field(min_length=1)


def create_app(
    settings: LisApiSettings,
    store: ObjectStore,
    clients: ServiceClients,
    pool: DictPool,
    run_worker: bool = True,
) -> FastAPI:
    lis = LisStore(pool)
    auth = Authenticator(pool, settings.jwt_secret.get_secret_value(), settings.token_ttl_s)
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    limits = ImageLimits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_field_pixels)
    thresholds = Thresholds(
        blast_high_pct=settings.blast_high_pct,
        blast_elevated_pct=settings.blast_elevated_pct,
        target_cells=settings.target_cells,
        minimum_cells=settings.minimum_cells,
        low_confidence_probability=settings.low_confidence_probability,
        low_confidence_margin=settings.low_confidence_margin,
    )
    taxonomy = load_taxonomy("paper17")
    curation_token = settings.curation_token.get_secret_value()
    review = (
        CurationReview(lis, clients, curation_token, taxonomy, thresholds)
        if curation_token
        else None
    )
    worker = AnalysisWorker(
        lis,
        clients,
        WorkerSettings(settings.segmentation_deadline_s, settings.inference_deadline_s),
        thresholds,
        review,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(auth.bootstrap, list(settings.api_key_hashes))
        log.info(
            "low-confidence cells are reviewed %s",
            "in the curation service and here" if review else "here only (no curation token)",
        )
        task = asyncio.create_task(worker.run()) if run_worker else None
        yield
        worker.stop()
        if task is not None:
            await task

    app = FastAPI(
        title="Marrowscope LIS API",
        version="1",
        lifespan=lifespan,
        description=(
            "Bone marrow differentials for laboratory information systems. Authenticate with an "
            "API key (`Authorization: Bearer <key>` or `X-API-Key`) or an OAuth2 client-"
            "credentials token from `/v1/oauth/token`. Scopes: submit, read, review, admin."
        ),
    )

    add_error_handlers(app, log)

    @app.middleware("http")
    async def request_id(request: Request, call_next):  # type: ignore[no-untyped-def]
        token = request_id_var.set(request.headers.get("x-request-id", "")[:64] or new_request_id())
        try:
            response = await call_next(request)
            response.headers["x-request-id"] = request_id_var.get()
            return response
        finally:
            request_id_var.reset(token)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(PeerUnavailable)
    async def peer_down(request: Request, exc: PeerUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{exc}; retry later", "service": exc.service},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(PeerRejected)
    async def peer_rejected(request: Request, exc: PeerRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def client_for(request: Request) -> Client:
        header = request.headers.get("authorization", "")
        credential = header[7:].strip() if header.lower().startswith("bearer ") else ""
        credential = credential or request.headers.get("x-api-key", "")
        if not credential:
            raise HTTPException(
                401,
                "missing credentials: send 'Authorization: Bearer <API key or token>'",
                headers=UNAUTHENTICATED,
            )
        try:
            client = auth.authenticate(credential)
        except AuthError as exc:
            raise HTTPException(401, str(exc), headers=UNAUTHENTICATED) from None
        wait = limiter.retry_after(client.id)
        if wait:
            raise HTTPException(
                429,
                f"rate limit: {settings.rate_limit_per_s:g} requests/s per client",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        return client

    def scope(name: str) -> Callable[[Request], Awaitable[Client]]:
        async def check(request: Request) -> Client:
            client = await asyncio.to_thread(client_for, request)
            if name not in client.scopes:
                raise HTTPException(403, f"this client lacks the '{name}' scope")
            return client

        return check

    scopes = {name: scope(name) for name in ("submit", "read", "review", "admin")}
    Submit = Annotated[Client, Depends(scopes["submit"])]
    Admin = Annotated[Client, Depends(scopes["admin"])]

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # --- service endpoints ----------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        names = ("segmentation", "inference")
        states = dict(
            zip(
                names,
                await asyncio.gather(
                    *(
                        check_health(clients.address(s), tls_ca=clients.peers.tls_ca())
                        for s in names
                    )
                ),
                strict=True,
            )
        )
        ready = all(v == "SERVING" for v in states.values())
        return JSONResponse({"ready": ready, "services": states}, status_code=200 if ready else 503)

    @app.post("/v1/oauth/token", tags=["auth"])
    async def token(
        grant_type: Annotated[Literal["client_credentials"], Form()],
        client_id: Annotated[str, Form(max_length=64)],
        client_secret: Annotated[str, Form(max_length=200)],
        scope: Annotated[str, Form(max_length=200)] = "",
    ) -> dict[str, Any]:
        """OAuth2 client credentials: a short-lived JWT for a registered client."""
        try:
            return await run(auth.issue_token, client_id, client_secret, scope)
        except AuthError as exc:
            raise HTTPException(401, str(exc), headers=UNAUTHENTICATED) from None
        except PermissionError as exc:
            raise HTTPException(403, str(exc)) from None

    @app.post("/v1/admin/clients", status_code=201, tags=["auth"])
    async def create_client(body: ClientIn, client: Admin) -> dict[str, Any]:
        """Register an API client; its key is shown once (only its digest is stored)."""
        new, key = await run(auth.create_client, body.name, sorted(set(body.scopes)))
        return {"id": new.id, "name": new.name, "scopes": sorted(new.scopes), "api_key": key}

    ctx = LisContext(
        settings,
        lis,
        store,
        clients,
        limits,
        thresholds,
        taxonomy,
        scopes["submit"],
        scopes["read"],
        scopes["review"],
        scopes["admin"],
        run,
    )
    add_specimen_routes(app, ctx)
    add_report_routes(app, ctx)

    # --- one field, synchronously (the walking skeleton's endpoint, kept for middleware) --
    @app.post("/v1/classify", tags=["classify"])
    async def classify_field(
        client: Submit,
        file: Annotated[UploadFile, File(description="a field image (JPEG, PNG, TIFF or BMP)")],
    ) -> dict[str, Any]:
        """Segment one field image into cells and classify them: per-class counts (no specimen)."""
        data = await file.read(settings.max_upload_bytes + 1)
        image = await run(decode_image, data, limits)  # validate before storing anything
        stored = await run(
            put_content_addressed,
            store,
            "fields",
            data,
            image.content_type,
            "." + image.format.lower().replace("jpeg", "jpg"),
        )
        segmented = await call_peer(
            "segmentation",
            clients.segmentation.Segment(
                segmentation_pb2.SegmentRequest(field_image_key=stored.key),
                timeout=settings.segmentation_deadline_s,
            ),
        )
        predictions: list[common_pb2.Prediction] = []
        model_version = ""
        if segmented.cells:
            response = await call_peer(
                "inference",
                clients.inference.Classify(
                    inference_pb2.ClassifyRequest(
                        cells=[
                            common_pb2.CellRef(cell_id=c.cell_id, object_key=c.crop.key)
                            for c in segmented.cells
                        ]
                    ),
                    timeout=settings.inference_deadline_s,
                ),
            )
            predictions, model_version = list(response.predictions), response.model_version
        unreadable = sum(1 for p in predictions if p.error)
        predictions = [p for p in predictions if not p.error]
        boxes = {c.cell_id: c.box for c in segmented.cells}
        return {
            "field_image_id": segmented.field_image_id,
            "algorithm_version": segmented.algorithm_version,
            "model_version": model_version,
            "cells_counted": len(predictions),
            "cells_unreadable": unreadable,
            "counts": dict(sorted(Counter(p.top1_class for p in predictions).items())),
            "red_cell_count": segmented.red_cell_count,
            "platelet_count": segmented.platelet_count,
            "cells": [
                {
                    "cell_id": p.cell_id,
                    "class": p.top1_class,
                    "probability": round(p.top1_probability, 4),
                    "margin": round(p.margin, 4),
                    "box": {
                        "x": boxes[p.cell_id].x,
                        "y": boxes[p.cell_id].y,
                        "width": boxes[p.cell_id].width,
                        "height": boxes[p.cell_id].height,
                    },
                }
                for p in predictions
            ],
        }

    return app
