"""FastAPI app for the laboratory information system (LIS).

This first version classifies one field image synchronously and returns per-class counts; the
specimen / analysis-job / report resources build on it. Errors are JSON ``{"detail": ...}``
with the right status; a peer that is down is a 503 that names it, never a hang.
"""

import asyncio
import hashlib
import hmac
import logging
from collections import Counter
from typing import Annotated, Any

import grpc
from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

from marrowscope.core.clients import ServiceClients
from marrowscope.core.errors import MarrowscopeError
from marrowscope.core.images import ImageLimits, decode_image
from marrowscope.core.logs import new_request_id, request_id_var
from marrowscope.core.objectstore import ObjectStore, put_content_addressed
from marrowscope.core.rpc import check_health
from marrowscope.v1 import common_pb2, inference_pb2, segmentation_pb2

from .settings import LisApiSettings

log = logging.getLogger(__name__)


class PeerUnavailable(Exception):
    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service} service unavailable: {detail}")
        self.service = service


async def _call(service: str, call: Any) -> Any:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise PeerUnavailable(service, f"{code.name} ({exc.details()}); retry later") from None
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            raise PeerUnavailable(service, exc.details() or "not ready") from None
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
            raise HTTPException(422, f"{service}: {exc.details()}") from None
        log.error("%s failed: %s %s", service, code.name, exc.details())
        raise HTTPException(502, f"{service} service error ({code.name})") from None


def create_app(settings: LisApiSettings, store: ObjectStore, clients: ServiceClients) -> FastAPI:
    app = FastAPI(
        title="Marrowscope LIS API",
        version="1",
        description="Bone marrow cell classification for laboratory information systems.",
    )
    limits = ImageLimits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_field_pixels)
    key_hashes = {h.lower() for h in settings.api_key_hashes}

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

    @app.exception_handler(PeerUnavailable)
    async def peer_down(request: Request, exc: PeerUnavailable) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc), "service": exc.service}, status_code=503,
            headers={"Retry-After": "5"},
        )  # fmt: skip

    def authenticate(request: Request) -> str:
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header.lower().startswith("bearer ") else ""
        key = key or request.headers.get("x-api-key", "")
        if not key:
            raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        digest = hashlib.sha256(key.encode()).hexdigest()
        if not any(hmac.compare_digest(digest, h) for h in key_hashes):
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return digest[:12]  # a client id that is not the key

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        states = dict(
            zip(
                ["segmentation", "inference"],
                await asyncio.gather(
                    *(check_health(clients.address(s)) for s in ("segmentation", "inference"))
                ),  # fmt: skip
                strict=True,
            )
        )
        ready = all(v == "SERVING" for v in states.values())
        return JSONResponse({"ready": ready, "services": states}, status_code=200 if ready else 503)

    @app.post("/v1/classify")
    async def classify_field(
        client: Annotated[str, Depends(authenticate)],
        file: Annotated[UploadFile, File(description="a field image (JPEG, PNG, TIFF or BMP)")],
    ) -> dict[str, Any]:
        """Segment one field image into cells and classify them: per-class counts."""
        data = await file.read(settings.max_upload_bytes + 1)
        # Validate before storing anything: a bad upload leaves no trace.
        image = await asyncio.to_thread(decode_image, data, limits)
        stored = await asyncio.to_thread(
            put_content_addressed, store, "fields", data, image.content_type,
            "." + image.format.lower().replace("jpeg", "jpg"),
        )  # fmt: skip
        segmented = await _call(
            "segmentation",
            clients.segmentation.Segment(
                segmentation_pb2.SegmentRequest(field_image_key=stored.key),
                timeout=settings.segmentation_deadline_s,
            ),
        )
        predictions: list[common_pb2.Prediction] = []
        model_version = ""
        if segmented.cells:
            response = await _call(
                "inference",
                clients.inference.Classify(
                    inference_pb2.ClassifyRequest(
                        cells=[
                            common_pb2.CellRef(cell_id=c.cell_id, object_key=c.crop.key)
                            for c in segmented.cells
                        ]  # fmt: skip
                    ),
                    timeout=settings.inference_deadline_s,
                ),
            )
            predictions, model_version = list(response.predictions), response.model_version
        unreadable = sum(1 for p in predictions if p.error)
        predictions = [p for p in predictions if not p.error]
        counts = Counter(p.top1_class for p in predictions)
        boxes = {c.cell_id: c.box for c in segmented.cells}
        log.info("classified field %s: %d cells", segmented.field_image_id, len(predictions))
        return {
            "field_image_id": segmented.field_image_id,
            "algorithm_version": segmented.algorithm_version,
            "model_version": model_version,
            "cells_counted": len(predictions),
            "cells_unreadable": unreadable,
            "counts": dict(sorted(counts.items())),
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
                }  # fmt: skip
                for p in predictions
            ],
        }

    return app
