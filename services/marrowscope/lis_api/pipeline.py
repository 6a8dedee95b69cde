"""Segment one stored field image and classify its cells: the pipeline that both the analysis
worker (every image of a specimen) and ``/v1/classify`` (one uploaded field) run.

A peer's failure is mapped once, here: down or overloaded is ``PeerUnavailable`` (wait and
retry; the API answers 503 naming the service), a refused input is ``PeerRejected`` (422).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import DictPool
from marrowscope.core.errors import NotFound
from marrowscope.core.model_registry import ModelVersionRecord, resolve
from marrowscope.v1 import common_pb2, inference_pb2, segmentation_pb2

# Cells per Classify call: a crowded field stays within the inference service's batch limits.
CLASSIFY_CHUNK = 256


class PeerUnavailable(Exception):
    """A peer is down, slow or overloaded: retrying later may help."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service} service unavailable: {detail}")
        self.service = service


class PeerRejected(Exception):
    """The peer refused the input (INVALID_ARGUMENT / NOT_FOUND): retrying will not help."""


async def call_peer(service: str, call: Any) -> Any:
    """Await a gRPC call; map its failure to 'wait and retry' or 'this input is bad'."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ):
            raise PeerUnavailable(service, f"{code.name} ({exc.details()})") from None
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
            raise PeerRejected(f"{service}: {exc.details()}") from None
        raise PeerUnavailable(service, f"{code.name}") from None


def production_model(pool: DictPool) -> ModelVersionRecord:
    """The version 'production' names now: what patient reports are classified with. Without
    one the LIS waits (503 / a waiting job) with what to do."""
    try:
        with pool.connection() as conn:
            return resolve(conn, "production")
    except NotFound as exc:
        raise PeerUnavailable("model registry", str(exc)) from None


@dataclass(frozen=True)
class Deadlines:
    """How long one call to each peer may take, in seconds."""

    segmentation_s: float
    inference_s: float


@dataclass(frozen=True)
class CellPrediction:
    """One cell's prediction and the model version that made it (each chunk of cells is a
    separate call, so a model swapped mid-field shows in its cells)."""

    prediction: common_pb2.Prediction
    model_version: str


@dataclass(frozen=True)
class ClassifiedField:
    """A field image segmented into cells, every cell classified (unreadable ones included,
    with ``prediction.error`` set)."""

    segmented: segmentation_pb2.SegmentResponse
    cells: list[CellPrediction]

    @property
    def model_version(self) -> str:
        """The model that classified the field's cells ('' when it has none)."""
        return next((c.model_version for c in self.cells if c.model_version), "")


async def segment_and_classify(
    clients: ServiceClients,
    field_image_key: str,
    deadlines: Deadlines,
    model_version: str,
    um_per_px: float | None = None,
    um_per_px_source: str = "upload",
) -> ClassifiedField:
    """Segment the stored field image ``field_image_key``, then classify its cells in chunks
    with ``model_version`` (an id: every chunk gets the same version, whatever is promoted
    meanwhile). ``um_per_px``: the field's pixel size when the lab gave it (else the
    segmenter measures it on the red cells), and where it came from.

    Raises PeerUnavailable or PeerRejected when a peer fails.
    """
    segmented = await call_peer(
        "segmentation",
        clients.segmentation.Segment(
            segmentation_pb2.SegmentRequest(
                field_image_key=field_image_key,
                um_per_px=um_per_px or 0.0,
                um_per_px_source=um_per_px_source if um_per_px else "",
            ),
            timeout=deadlines.segmentation_s,
        ),
    )
    cells: list[CellPrediction] = []
    for start in range(0, len(segmented.cells), CLASSIFY_CHUNK):
        chunk = segmented.cells[start : start + CLASSIFY_CHUNK]
        response = await call_peer(
            "inference",
            clients.inference.Classify(
                inference_pb2.ClassifyRequest(
                    cells=[
                        common_pb2.CellRef(cell_id=c.cell_id, object_key=c.crop.key) for c in chunk
                    ],
                    model_version=model_version,
                ),
                timeout=deadlines.inference_s,
            ),
        )
        cells.extend(CellPrediction(p, response.model_version) for p in response.predictions)
    return ClassifiedField(segmented, cells)
