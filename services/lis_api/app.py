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
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import (
    Depends,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument, MarrowscopeError, NotFound
from marrowscope.core.images import ImageLimits, decode_image
from marrowscope.core.logs import new_request_id, request_id_var
from marrowscope.core.objectstore import ObjectStore, put_content_addressed
from marrowscope.core.rpc import check_health
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.v1 import common_pb2, inference_pb2, segmentation_pb2

from .auth import Authenticator, AuthError, Client, RateLimiter
from .formats import to_fhir, to_hl7
from .report import Thresholds
from .review import CurationReview, revise_report
from .settings import LisApiSettings
from .store import Conflict, LisStore
from .worker import AnalysisWorker, PeerRejected, PeerUnavailable, WorkerSettings, call_peer

log = logging.getLogger(__name__)
UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}
ACCESSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"


class SpecimenIn(BaseModel):
    accession_number: str = Field(
        pattern=ACCESSION_PATTERN, description="the LIS's accession number"
    )
    specimen_type: Literal["bone-marrow-aspirate", "peripheral-blood"] = "bone-marrow-aspirate"


class ClientIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["submit", "read", "review", "admin"]] = Field(min_length=1)


class Correction(BaseModel):
    cell_id: uuid.UUID
    class_code: str = Field(min_length=1, max_length=16)


class ReviewIn(BaseModel):
    reviewer: str = Field(
        min_length=1, max_length=100, description="who reviewed (signs the report)"
    )
    corrections: list[Correction] = Field(default=[], max_length=5000)
    sign_out: bool = Field(
        False, description="make this version final (or corrected if a final exists)"
    )


def specimen_out(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "accession_number": row["accession_number"],
            "specimen_type": row["specimen_type"], "created_at": row["created_at"].isoformat()}  # fmt: skip


def image_out(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(row["id"]), "state": row["state"], "content_type": row["content_type"],
            "width": row["width"], "height": row["height"], "size_bytes": row["size_bytes"],
            "created_at": row["created_at"].isoformat()}  # fmt: skip


def job_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]), "specimen_id": str(row["specimen_id"]), "state": row["state"],
        "progress": {"images_total": row["images_total"], "images_done": row["images_done"],
                     "cells_found": row["cells_found"]},
        "waiting_reason": row["waiting_reason"], "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"].isoformat() if row["state"] == "waiting" else None,
        "error": row["error"],
        "report_url": f"/v1/specimens/{row['specimen_id']}/report" if row["report_id"] else None,
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }  # fmt: skip


def report_out(row: dict[str, Any], accession: str) -> dict[str, Any]:
    return {"id": str(row["id"]), "specimen_id": str(row["specimen_id"]),
            "accession_number": accession, "version": row["version"], "status": row["status"],
            "created_at": row["created_at"].isoformat(), "body": row["body"]}  # fmt: skip


def create_app(
    settings: LisApiSettings, store: ObjectStore, clients: ServiceClients, pool: DictPool,
    run_worker: bool = True,
) -> FastAPI:  # fmt: skip
    lis = LisStore(pool)
    auth = Authenticator(pool, settings.jwt_secret.get_secret_value(), settings.token_ttl_s)
    limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    limits = ImageLimits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_field_pixels)
    thresholds = Thresholds(
        blast_high_pct=settings.blast_high_pct, blast_elevated_pct=settings.blast_elevated_pct,
        target_cells=settings.target_cells, minimum_cells=settings.minimum_cells,
        low_confidence_probability=settings.low_confidence_probability,
        low_confidence_margin=settings.low_confidence_margin,
    )  # fmt: skip
    taxonomy = load_taxonomy("paper17")
    curation_token = settings.curation_token.get_secret_value()
    review = (
        CurationReview(lis, clients, curation_token, taxonomy, thresholds)
        if curation_token
        else None
    )
    worker = AnalysisWorker(lis, clients, WorkerSettings(
        settings.segmentation_deadline_s, settings.inference_deadline_s), thresholds, review)  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(auth.bootstrap, list(settings.api_key_hashes))
        log.info("low-confidence cells are reviewed %s",
                 "in the curation service and here" if review else "here only (no curation token)")  # fmt: skip
        task = asyncio.create_task(worker.run()) if run_worker else None
        yield
        worker.stop()
        if task is not None:
            await task

    app = FastAPI(
        title="Marrowscope LIS API", version="1", lifespan=lifespan,
        description=(
            "Bone marrow differentials for laboratory information systems. Authenticate with an "
            "API key (`Authorization: Bearer <key>` or `X-API-Key`) or an OAuth2 client-"
            "credentials token from `/v1/oauth/token`. Scopes: submit, read, review, admin."
        ),
    )  # fmt: skip

    @app.middleware("http")
    async def request_id(request: Request, call_next):  # type: ignore[no-untyped-def]
        token = request_id_var.set(request.headers.get("x-request-id", "")[:64] or new_request_id())
        try:
            response = await call_next(request)
            response.headers["x-request-id"] = request_id_var.get()
            return response
        finally:
            request_id_var.reset(token)

    @app.exception_handler(MarrowscopeError)
    async def domain_error(request: Request, exc: MarrowscopeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(Conflict)
    async def conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(PeerUnavailable)
    async def peer_down(request: Request, exc: PeerUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"{exc}; retry later", "service": exc.service},
                            status_code=503, headers={"Retry-After": "5"})  # fmt: skip

    @app.exception_handler(PeerRejected)
    async def peer_rejected(request: Request, exc: PeerRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path,
                  exc_info=exc)  # fmt: skip
        return JSONResponse({"detail": "internal error", "request_id": request_id_var.get()},
                            status_code=500)  # fmt: skip

    def client_for(request: Request) -> Client:
        header = request.headers.get("authorization", "")
        credential = header[7:].strip() if header.lower().startswith("bearer ") else ""
        credential = credential or request.headers.get("x-api-key", "")
        if not credential:
            raise HTTPException(401, "missing credentials: send 'Authorization: Bearer <API key or token>'",
                                headers=UNAUTHENTICATED)  # fmt: skip
        try:
            client = auth.authenticate(credential)
        except AuthError as exc:
            raise HTTPException(401, str(exc), headers=UNAUTHENTICATED) from None
        wait = limiter.retry_after(client.id)
        if wait:
            raise HTTPException(429, f"rate limit: {settings.rate_limit_per_s:g} requests/s per client",
                                headers={"Retry-After": str(max(1, round(wait)))})  # fmt: skip
        return client

    def scope(name: str) -> Callable[[Request], Awaitable[Client]]:
        async def check(request: Request) -> Client:
            client = await asyncio.to_thread(client_for, request)
            if name not in client.scopes:
                raise HTTPException(403, f"this client lacks the '{name}' scope")
            return client

        return check

    Submit = Annotated[Client, Depends(scope("submit"))]
    Read = Annotated[Client, Depends(scope("read"))]
    Review = Annotated[Client, Depends(scope("review"))]
    Admin = Annotated[Client, Depends(scope("admin"))]

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # --- service endpoints ----------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        names = ("segmentation", "inference")
        states = dict(zip(names, await asyncio.gather(
            *(check_health(clients.address(s), tls_ca=clients.peers.tls_ca()) for s in names)),
            strict=True))  # fmt: skip
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

    # --- specimens and images -------------------------------------------------------------
    @app.post("/v1/specimens", status_code=201, tags=["specimens"])
    async def create_specimen(
        body: SpecimenIn, client: Submit, response: Response
    ) -> dict[str, Any]:
        """Create a specimen for an accession number (the same number again returns it, 200)."""
        row, created = await run(
            lis.create_specimen, client.id, body.accession_number, body.specimen_type
        )
        if not created:
            response.status_code = 200
        response.headers["Location"] = f"/v1/specimens/{row['id']}"
        return specimen_out(row)

    @app.get("/v1/specimens", tags=["specimens"])
    async def list_specimens(
        client: Read, limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> dict[str, Any]:  # fmt: skip
        rows = await run(lis.specimens, client.id, limit, offset)
        return {"items": [specimen_out(r) for r in rows], "limit": limit, "offset": offset}

    @app.get("/v1/specimens/{specimen_id}", tags=["specimens"])
    async def get_specimen(specimen_id: uuid.UUID, client: Read) -> dict[str, Any]:
        row = await run(lis.specimen, client.id, str(specimen_id))
        images = await run(lis.images, row["id"])
        reports = await run(lis.reports, row["id"])
        return {**specimen_out(row), "images": [image_out(i) for i in images],
                "report_versions": [{"version": r["version"], "status": r["status"]} for r in reports]}  # fmt: skip

    @app.post("/v1/specimens/{specimen_id}/images", status_code=201, tags=["images"])
    async def upload_images(
        specimen_id: uuid.UUID, client: Submit,
        files: Annotated[list[UploadFile], File(description="field images (JPEG, PNG, TIFF, BMP)")],
    ) -> dict[str, Any]:  # fmt: skip
        """Upload field images. All are checked (magic bytes, size, pixels) before any is kept."""
        specimen = await run(lis.specimen, client.id, str(specimen_id))
        if len(files) > settings.max_files_per_request:
            raise HTTPException(413, f"at most {settings.max_files_per_request} files per request")
        checked = []
        for upload in files:
            data = await upload.read(settings.max_upload_bytes + 1)
            try:
                image = await run(decode_image, data, limits)
            except MarrowscopeError as exc:
                raise HTTPException(
                    exc.http_status, f"{upload.filename or 'file'}: {exc}"
                ) from None
            checked.append((data, image))
        rows = []
        for data, image in checked:
            suffix = "." + image.format.lower().replace("jpeg", "jpg")
            stored = await run(
                put_content_addressed, store, "fields", data, image.content_type, suffix
            )
            meta = {"content_type": image.content_type, "width": image.width,
                    "height": image.height, "size_bytes": len(data)}  # fmt: skip
            rows.append(await asyncio.to_thread(lis.add_image, specimen["id"], stored.key, **meta))
        return {"images": [image_out(r) for r in rows]}

    @app.post("/v1/specimens/{specimen_id}/images/presigned", status_code=201, tags=["images"])
    async def presign_image(specimen_id: uuid.UUID, client: Submit) -> dict[str, Any]:
        """A URL to PUT one image straight into the object store; then call .../complete."""
        specimen = await run(lis.specimen, client.id, str(specimen_id))
        key = f"uploads/{uuid.uuid4()}"
        url = await run(store.presign_put, key, timedelta(minutes=15))
        row = await run(lambda: lis.add_image(specimen["id"], key, state="pending_upload"))
        return {"image": image_out(row), "upload_url": url, "method": "PUT",
                "headers": {"Content-Type": "application/octet-stream"}, "expires_in": 900,
                "complete_url": f"/v1/specimens/{specimen_id}/images/{row['id']}/complete"}  # fmt: skip

    @app.post("/v1/specimens/{specimen_id}/images/{image_id}/complete", tags=["images"])
    async def complete_image(
        specimen_id: uuid.UUID, image_id: uuid.UUID, client: Submit
    ) -> dict[str, Any]:
        """Check a presigned upload; a bad file is deleted and refused (422/413/415)."""
        specimen = await run(lis.specimen, client.id, str(specimen_id))
        row = await run(lis.image, specimen["id"], str(image_id))
        if row["state"] == "stored":
            return image_out(row)
        try:
            data = await run(lambda: store.get(row["object_key"], verify=False))
        except NotFound:
            raise HTTPException(409, "nothing was uploaded to the presigned URL yet") from None
        if len(data) > settings.max_upload_bytes:
            await run(store.delete, row["object_key"])
            raise HTTPException(413, f"the upload exceeds {settings.max_upload_bytes} bytes")
        try:
            image = await run(decode_image, data, limits)
        except MarrowscopeError:
            await run(store.delete, row["object_key"])
            raise
        done = await run(lambda: lis.complete_image(row["id"], content_type=image.content_type,
                         width=image.width, height=image.height, size_bytes=len(data)))  # fmt: skip
        return image_out(done)

    # --- analysis jobs --------------------------------------------------------------------
    @app.post("/v1/specimens/{specimen_id}/analyses", status_code=202, tags=["analyses"])
    async def start_analysis(
        specimen_id: uuid.UUID, client: Submit, response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Segment and classify every stored image, then write a preliminary report."""
        specimen = await run(lis.specimen, client.id, str(specimen_id))
        row, _ = await run(lis.create_job, client.id, specimen["id"], idempotency_key)
        response.headers["Location"] = f"/v1/analyses/{row['id']}"
        return job_out(row)

    @app.get("/v1/analyses/{job_id}", tags=["analyses"])
    async def get_analysis(job_id: uuid.UUID, client: Read) -> dict[str, Any]:
        return job_out(await run(lis.job, client.id, str(job_id)))

    # --- reports --------------------------------------------------------------------------
    async def report_row(
        client: Client, specimen_id: uuid.UUID, version: int | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        specimen = await run(lis.specimen, client.id, str(specimen_id))
        reports = await run(lis.reports, specimen["id"])
        if not reports:
            raise NotFound("no report yet: start an analysis and wait for it to succeed")
        if version is None:
            return specimen, reports[-1]
        for row in reports:
            if row["version"] == version:
                return specimen, row
        raise NotFound(f"report version {version} not found (latest is {reports[-1]['version']})")

    @app.get("/v1/specimens/{specimen_id}/report", tags=["reports"],
             responses={200: {"content": {"application/fhir+json": {}, "x-application/hl7-v2+er7": {}}}})  # fmt: skip
    async def get_report(
        specimen_id: uuid.UUID, client: Read,
        format: Annotated[Literal["json", "fhir", "hl7"], Query()] = "json",
        version: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    ) -> Response:  # fmt: skip
        """The differential (latest version unless asked): JSON, FHIR R4 or HL7 v2.5.1 ORU^R01."""
        specimen, row = await report_row(client, specimen_id, version)
        report = report_out(row, specimen["accession_number"])
        if format == "fhir":
            return JSONResponse(await run(to_fhir, report), media_type="application/fhir+json")
        if format == "hl7":
            return PlainTextResponse(
                await run(to_hl7, report), media_type="x-application/hl7-v2+er7"
            )
        return JSONResponse(report)

    @app.get("/v1/specimens/{specimen_id}/reports", tags=["reports"])
    async def list_reports(specimen_id: uuid.UUID, client: Read) -> dict[str, Any]:
        specimen = await run(lis.specimen, client.id, str(specimen_id))
        rows = await run(lis.reports, specimen["id"])
        return {"versions": [{"version": r["version"], "status": r["status"],
                              "created_at": r["created_at"].isoformat()} for r in rows]}  # fmt: skip

    @app.get("/v1/specimens/{specimen_id}/review", tags=["review"])
    async def review_queue(specimen_id: uuid.UUID, client: Review) -> dict[str, Any]:
        """The latest report's low-confidence cells, with the model's top guesses."""
        specimen, row = await report_row(client, specimen_id, None)
        wanted = set(row["body"]["low_confidence_cell_ids"])
        cells = await run(lis.job_cells, row["analysis_job_id"])
        return {"report_version": row["version"], "cells": [
            {"cell_id": str(c["cell_id"]), "predicted_class": c["class_code"],
             "probability": c["probability"], "margin": c["margin"], "top_classes": c["top_classes"],
             "image_url": f"/v1/specimens/{specimen_id}/cells/{c['cell_id']}/image"}
            for c in cells if str(c["cell_id"]) in wanted]}  # fmt: skip

    @app.get("/v1/specimens/{specimen_id}/cells/{cell_id}/image", tags=["review"],
             responses={200: {"content": {"image/png": {}}}})  # fmt: skip
    async def cell_image(specimen_id: uuid.UUID, cell_id: uuid.UUID, client: Review) -> Response:
        specimen, row = await report_row(client, specimen_id, None)
        cells = await run(lis.job_cells, row["analysis_job_id"])
        match = next((c for c in cells if c["cell_id"] == cell_id), None)
        if match is None:
            raise NotFound(f"cell {cell_id} is not part of this specimen's analysis")
        return Response(await run(store.get, match["object_key"]), media_type="image/png")

    @app.post("/v1/specimens/{specimen_id}/review", status_code=201, tags=["review"])
    async def submit_review(
        specimen_id: uuid.UUID, body: ReviewIn, client: Review
    ) -> dict[str, Any]:
        """Apply expert corrections and/or sign out: always a new report version."""
        specimen, latest = await report_row(client, specimen_id, None)
        known = {str(c["cell_id"]) for c in await run(lis.job_cells, latest["analysis_job_id"])}
        for c in body.corrections:
            taxonomy.check(c.class_code)
            if str(c.cell_id) not in known:
                raise InvalidArgument(f"cell {c.cell_id} is not part of this specimen's analysis")
        if not body.corrections and not body.sign_out:
            raise InvalidArgument("nothing to do: send corrections, sign_out, or both")
        await run(lis.add_corrections, specimen["id"], body.reviewer,
                  [(str(c.cell_id), c.class_code) for c in body.corrections])  # fmt: skip
        row = await run(revise_report, lis, specimen["id"], latest, taxonomy, thresholds,
                        body.reviewer, body.sign_out)  # fmt: skip
        return report_out(row, specimen["accession_number"])

    # --- one field, synchronously (the walking skeleton's endpoint, kept for middleware) --
    @app.post("/v1/classify", tags=["classify"])
    async def classify_field(
        client: Submit,
        file: Annotated[UploadFile, File(description="a field image (JPEG, PNG, TIFF or BMP)")],
    ) -> dict[str, Any]:
        """Segment one field image into cells and classify them: per-class counts (no specimen)."""
        data = await file.read(settings.max_upload_bytes + 1)
        image = await run(decode_image, data, limits)  # validate before storing anything
        stored = await run(put_content_addressed, store, "fields", data, image.content_type,
                           "." + image.format.lower().replace("jpeg", "jpg"))  # fmt: skip
        segmented = await call_peer("segmentation", clients.segmentation.Segment(
            segmentation_pb2.SegmentRequest(field_image_key=stored.key),
            timeout=settings.segmentation_deadline_s))  # fmt: skip
        predictions: list[common_pb2.Prediction] = []
        model_version = ""
        if segmented.cells:
            response = await call_peer("inference", clients.inference.Classify(
                inference_pb2.ClassifyRequest(cells=[
                    common_pb2.CellRef(cell_id=c.cell_id, object_key=c.crop.key) for c in segmented.cells]),
                timeout=settings.inference_deadline_s))  # fmt: skip
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
                {"cell_id": p.cell_id, "class": p.top1_class,
                 "probability": round(p.top1_probability, 4), "margin": round(p.margin, 4),
                 "box": {"x": boxes[p.cell_id].x, "y": boxes[p.cell_id].y,
                         "width": boxes[p.cell_id].width, "height": boxes[p.cell_id].height}}
                for p in predictions
            ],
        }  # fmt: skip

    return app
