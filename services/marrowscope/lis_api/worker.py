"""Analysis jobs: segment every field image of a specimen, classify every cell, write the
preliminary report. Jobs live in PostgreSQL, so a restart of the API loses none: a job whose
worker died is picked up again when its lease runs out, and images already done are skipped.

Each image goes through ``pipeline.segment_and_classify`` (the one ``/v1/classify`` runs too).
A peer that is down or slow (UNAVAILABLE, DEADLINE_EXCEEDED) puts the job in ``waiting`` with
the reason and the next try (exponential backoff); the API shows both to the LIS.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
import psycopg_pool

from marrowscope.core.clients import ServiceClients
from marrowscope.core.errors import Unavailable
from marrowscope.core.model_registry import ModelVersionRecord, get_model_version
from marrowscope.core.taxonomy import load_taxonomy

from .pipeline import (
    Deadlines,
    PeerRejected,
    PeerUnavailable,
    production_model,
    segment_and_classify,
)
from .qc import FieldVerdict, QcPolicy, judge_field
from .report import (
    Thresholds,
    build_differential,
    record_distance,
    record_fields,
    record_model,
)
from .repository import LisRepository

log = logging.getLogger(__name__)
# Outages worth waiting for: a peer, the object store, the database.
TRANSIENT = (PeerUnavailable, Unavailable, psycopg.OperationalError, psycopg_pool.PoolTimeout)


def describe_outage(exc: BaseException) -> str:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "a database query took too long (statement timeout)"
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
        return f"database unavailable ({type(exc).__name__})"
    return str(exc)


# The audit trail's actor for a preliminary report: the analysis, for the client that asked.
ANALYSIS_ACTOR = "lis-analysis"


class ReviewSync(Protocol):
    """The curation round trip the worker drives between jobs (see review.CurationReview)."""

    async def sync_once(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    segmentation_deadline_s: float
    inference_deadline_s: float
    lease_s: float = 120.0
    poll_s: float = 0.5
    max_backoff_s: float = 60.0
    max_attempts: int = 50
    taxonomy: str = "paper17"
    review_poll_s: float = 3.0
    qc: QcPolicy = field(default_factory=QcPolicy)
    # More cells than this share beyond the model's distance threshold: MODEL_NOT_VALIDATED.
    ood_max_share_outside: float = 0.5


class AnalysisWorker:
    def __init__(
        self,
        lis: LisRepository,
        clients: ServiceClients,
        settings: WorkerSettings,
        thresholds: Thresholds,
        review: ReviewSync | None = None,
    ) -> None:
        self.lis, self.clients, self.settings = lis, clients, settings
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
                job = await asyncio.to_thread(self.lis.claim_due_job, self.settings.lease_s)
            except Exception:  # database restart: keep the loop alive
                log.exception("cannot claim analysis jobs")
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.settings.poll_s)
                continue
            try:
                await self.process(job)
            except Exception:  # the database went away while recording the outcome
                log.exception("analysis job %s left to its lease", job["id"])

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def process(self, job: dict[str, Any]) -> None:
        """Analyse one claimed job. A peer, the object store or the database being down is
        transient: the job waits and is tried again (if even the database cannot record
        that, its lease runs out and it is claimed again). Anything else fails the job."""
        job_id = job["id"]
        try:
            await self._analyse(job)
        except TRANSIENT as exc:
            if job["attempts"] + 1 >= self.settings.max_attempts:
                await asyncio.to_thread(self.lis.job_fail, job_id, f"gave up: {exc}")
                return
            delay = min(self.settings.max_backoff_s, 2.0 ** job["attempts"])
            reason = f"{describe_outage(exc)}; retry {job['attempts'] + 1} in {delay:.0f} s"
            log.warning("analysis job %s waiting: %s", job_id, reason)
            await asyncio.to_thread(self.lis.job_wait, job_id, reason, delay)
        except PeerRejected as exc:
            await asyncio.to_thread(self.lis.job_fail, job_id, str(exc))
        except Exception as exc:
            log.exception("analysis job %s failed", job_id)
            await asyncio.to_thread(
                self.lis.job_fail, job_id, f"internal error ({type(exc).__name__})"
            )

    async def _analyse(self, job: dict[str, Any]) -> None:
        job_id, specimen_id = job["id"], job["specimen_id"]
        model = await asyncio.to_thread(self._job_model, job)
        images = await asyncio.to_thread(self.lis.images, specimen_id, True)
        done = await asyncio.to_thread(self.lis.images_done, job_id)
        for image in images:
            if image["id"] in done:
                continue
            cells, verdict = await self._analyse_image(image, model)
            await asyncio.to_thread(self.lis.record_image, job_id, image["id"], cells, verdict)
            await asyncio.to_thread(self.lis.extend_lease, job_id, self.settings.lease_s)
        rows = await asyncio.to_thread(self.lis.job_cells, job_id)
        classified = await asyncio.to_thread(self.lis.classified_cells, specimen_id, job_id)
        body = build_differential(classified, self.taxonomy, self.thresholds)
        record_model(body, name=model.name, artifact_sha256=model.artifact_sha256, demo=model.demo)
        record_fields(body, await asyncio.to_thread(self.lis.job_fields, job_id))
        record_distance(
            body,
            classified,
            model.metrics.get("ood_threshold"),
            self.settings.ood_max_share_outside,
        )
        body["algorithm_versions"] = sorted(
            {r["algorithm_version"] for r in rows if r["algorithm_version"]}
        )
        body["images_analysed"] = len(images)
        # Low-confidence cells go to the curation service (in the same transaction as the
        # report, so a crash in between cannot lose the review).
        review = "pending" if self.review is not None and body["cells_low_confidence"] else "none"
        report = await asyncio.to_thread(
            functools.partial(
                self.lis.add_report,
                specimen_id,
                job_id,
                "preliminary",
                body,
                review,
                actor=f"{ANALYSIS_ACTOR}:{job['client_id']}",
            )
        )
        log.info(
            "analysis job %s done: report %s v%d, %d cells",
            job_id,
            report["id"],
            report["version"],
            body["cells_found"],
        )

    def _job_model(self, job: dict[str, Any]) -> ModelVersionRecord:
        """The version this job classifies with: production when the job first runs, pinned
        so that a retry, a restart or a promotion meanwhile never mixes versions in a job."""
        pinned = job.get("model_version_id")
        if pinned is None:
            pinned = self.lis.pin_model(job["id"], production_model(self.lis.pool).id)
        return get_model_version(self.lis.pool, str(pinned))

    async def _analyse_image(
        self, image: dict[str, Any], model: ModelVersionRecord
    ) -> tuple[list[dict[str, Any]], FieldVerdict]:
        """The image's cells as analysis_cells rows (unreadable cells kept, with the error;
        each with its QC flags and exclusion), and the field's QC verdict."""
        analysed = await segment_and_classify(
            self.clients,
            image["object_key"],
            Deadlines(self.settings.segmentation_deadline_s, self.settings.inference_deadline_s),
            model.id,
            image.get("um_per_px"),
            image.get("um_per_px_source") or "upload",
        )
        verdict = judge_field(analysed.segmented, image["width"], image["height"], self.settings.qc)
        if not verdict.analysable:
            log.warning("image %s not analysable: %s", image["id"], verdict.reason)
        cells: list[dict[str, Any]] = []
        for cell in analysed.cells:
            p = cell.prediction
            # The model's own class order (its probability vector follows it).
            scores = [] if p.error else zip(model.class_codes, p.probabilities, strict=True)
            top = sorted(scores, key=lambda t: -t[1])[:3]
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
                    "model_version": cell.model_version,
                    "algorithm_version": analysed.segmented.algorithm_version,
                    "quality_flags": verdict.cell_flags.get(p.cell_id, []),
                    "excluded": verdict.excluded.get(p.cell_id, ""),
                    "ood_score": p.ood_score if p.HasField("ood_score") else None,
                }
            )
        return cells, verdict
