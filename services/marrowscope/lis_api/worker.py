"""Analysis jobs: segment every field image of a specimen, classify every cell, write the
preliminary report. Jobs live in PostgreSQL, so a restart of the API loses none: a job whose
worker died is picked up again when its lease runs out, and images already done are skipped.

A peer that is down or slow (UNAVAILABLE, DEADLINE_EXCEEDED) puts the job in ``waiting`` with
the reason and the next try (exponential backoff); the API shows both to the LIS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from marrowscope.core.clients import ServiceClients
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.v1 import common_pb2, inference_pb2, segmentation_pb2

from .report import Thresholds, build_differential
from .store import LisStore

log = logging.getLogger(__name__)
CLASSIFY_CHUNK = 256


class ReviewSync(Protocol):
    async def sync_once(self) -> None: ...


class PeerUnavailable(Exception):
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


@dataclass(frozen=True)
class WorkerSettings:
    segmentation_deadline_s: float
    inference_deadline_s: float
    lease_s: float = 120.0
    poll_s: float = 0.5
    max_backoff_s: float = 60.0
    max_attempts: int = 50
    taxonomy: str = "paper17"
    review_poll_s: float = 3.0


class AnalysisWorker:
    def __init__(
        self,
        store: LisStore,
        clients: ServiceClients,
        settings: WorkerSettings,
        thresholds: Thresholds,
        review: ReviewSync | None = None,
    ) -> None:
        self.store, self.clients, self.settings = store, clients, settings
        self.thresholds = thresholds
        self.taxonomy = load_taxonomy(settings.taxonomy)
        self.review = review  # None: low-confidence cells are reviewed through the LIS API only
        self._stop: asyncio.Event | None = None  # made in run(): bound to the server's loop

    async def run(self) -> None:
        self._stop = asyncio.Event()
        next_review = 0.0
        while not self._stop.is_set():
            if self.review is not None and time.monotonic() >= next_review:
                next_review = time.monotonic() + self.settings.review_poll_s
                try:
                    await self.review.sync_once()
                except Exception:  # a review pass never stops the analysis of new jobs
                    log.exception("review synchronisation failed")
            try:
                job = await asyncio.to_thread(self.store.claim_due_job, self.settings.lease_s)
            except Exception:  # database restart: keep the loop alive
                log.exception("cannot claim analysis jobs")
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.poll_s)
                continue
            await self.process(job)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def process(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        try:
            await self._analyse(job)
        except PeerUnavailable as exc:
            if job["attempts"] + 1 >= self.settings.max_attempts:
                await asyncio.to_thread(self.store.job_fail, job_id, f"gave up: {exc}")
                return
            delay = min(self.settings.max_backoff_s, 2.0 ** job["attempts"])
            reason = f"{exc}; retry {job['attempts'] + 1} in {delay:.0f} s"
            log.warning("analysis job %s waiting: %s", job_id, reason)
            await asyncio.to_thread(self.store.job_wait, job_id, reason, delay)
        except PeerRejected as exc:
            await asyncio.to_thread(self.store.job_fail, job_id, str(exc))
        except Exception as exc:
            log.exception("analysis job %s failed", job_id)
            await asyncio.to_thread(
                self.store.job_fail, job_id, f"internal error ({type(exc).__name__})"
            )

    async def _analyse(self, job: dict[str, Any]) -> None:
        job_id, specimen_id = job["id"], job["specimen_id"]
        images = await asyncio.to_thread(self.store.images, specimen_id, True)
        done = await asyncio.to_thread(self.store.images_done, job_id)
        for image in images:
            if image["id"] in done:
                continue
            cells = await self._analyse_image(image)
            await asyncio.to_thread(self.store.record_image, job_id, image["id"], cells)
            await asyncio.to_thread(self.store.extend_lease, job_id, self.settings.lease_s)
        rows = await asyncio.to_thread(self.store.job_cells, job_id)
        classified = await asyncio.to_thread(self.store.classified_cells, specimen_id, job_id)
        body = build_differential(classified, self.taxonomy, self.thresholds)
        body["model_version"] = next((r["model_version"] for r in rows if r["model_version"]), "")
        body["algorithm_versions"] = sorted(
            {r["algorithm_version"] for r in rows if r["algorithm_version"]}
        )
        body["images_analysed"] = len(images)
        # Low-confidence cells go to the curation service (in the same transaction as the
        # report, so a crash in between cannot lose the review).
        review = "pending" if self.review is not None and body["cells_low_confidence"] else "none"
        report = await asyncio.to_thread(
            self.store.add_report, specimen_id, job_id, "preliminary", body, review
        )
        log.info(
            "analysis job %s done: report %s v%d, %d cells",
            job_id,
            report["id"],
            report["version"],
            body["cells_found"],
        )

    async def _analyse_image(self, image: dict[str, Any]) -> list[dict[str, Any]]:
        segmented = await call_peer(
            "segmentation",
            self.clients.segmentation.Segment(
                segmentation_pb2.SegmentRequest(field_image_key=image["object_key"]),
                timeout=self.settings.segmentation_deadline_s,
            ),
        )
        cells: list[dict[str, Any]] = []
        for start in range(0, len(segmented.cells), CLASSIFY_CHUNK):
            chunk = segmented.cells[start : start + CLASSIFY_CHUNK]
            response = await call_peer(
                "inference",
                self.clients.inference.Classify(
                    inference_pb2.ClassifyRequest(
                        cells=[
                            common_pb2.CellRef(cell_id=c.cell_id, object_key=c.crop.key)
                            for c in chunk
                        ]
                    ),
                    timeout=self.settings.inference_deadline_s,
                ),
            )
            for p in response.predictions:
                top = sorted(
                    zip(self.taxonomy.codes, p.probabilities, strict=False), key=lambda t: -t[1]
                )[:3]
                cells.append(
                    {
                        "cell_id": p.cell_id,
                        "object_key": p.object_key,
                        "class_code": None if p.error else p.top1_class,
                        "probability": None if p.error else p.top1_probability,
                        "margin": None if p.error else p.margin,
                        "top_classes": [
                            {"class_code": c, "probability": round(float(q), 4)} for c, q in top
                        ],
                        "error": p.error or None,
                        "model_version": response.model_version,
                        "algorithm_version": segmented.algorithm_version,
                    }
                )
        return cells
