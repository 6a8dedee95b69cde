"""Expert review of a specimen's report.

``revise_report`` writes the next report version from the analysed cells with every expert
correction applied (preliminary until signed out, then final, then corrected).
``CurationReview`` sends the low-confidence cells of a preliminary report to the curation
service as AL review tasks and turns the experts' labels there into corrections and a new
report version. The LIS API names its own review queue there (``REVIEW_QUEUE_ID``, described
in every request, so curation creates it on first use) and one review batch per analysis job
(the batch id is the job id); it reads no curation table.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from typing import Any

from marrowscope.core.clients import ServiceClients
from marrowscope.core.taxonomy import Taxonomy
from marrowscope.v1 import curation_pb2

from .pipeline import PeerUnavailable, call_peer
from .report import (
    Thresholds,
    build_differential,
    record_distance,
    record_fields,
    record_model,
)
from .repository import LisRepository

log = logging.getLogger(__name__)
# The curation queue that holds specimen reviews. Fixed, so every API replica names the same
# one; the value of the former stand-in 'LIS_REVIEW' campaign, whose tasks migration 0006 kept
# under this queue id.
REVIEW_QUEUE_ID = uuid.UUID("6c15e7a0-0000-4000-8000-000000000001")
REVIEW_QUEUE_NAME = "LIS specimen review"
REVIEW_QUEUE_KIND = "LIS_REVIEW"


def revise_report(
    lis: LisRepository,
    specimen_id: Any,
    latest: dict[str, Any],
    taxonomy: Taxonomy,
    thresholds: Thresholds,
    reviewed_by: str,
    sign_out: bool = False,
    *,
    actor: str,
    stated_reviewer: str | None = None,
) -> dict[str, Any]:
    """The next version of the report, rebuilt from the cells and every correction so far.

    ``reviewed_by`` is who is recorded as having reviewed (and, with ``sign_out``, signed
    out) the version: an authenticated principal, never what a request says; ``actor`` is
    who the audit trail names for the version and the sign-out. ``stated_reviewer``, the name
    a LIS client gave, is kept beside it for display only (``reviewer_stated``)."""
    history = lis.reports(specimen_id)
    signed = any(r["status"] in ("final", "corrected") for r in history)
    status = "corrected" if signed else ("final" if sign_out else "preliminary")
    cells = lis.classified_cells(specimen_id, latest["analysis_job_id"])
    body = build_differential(cells, taxonomy, thresholds)
    for key in ("algorithm_versions", "images_analysed"):
        body[key] = latest["body"].get(key)
    record_fields(body, latest["body"].get("fields", []))
    ood = latest["body"].get("ood", {})  # the analysis's threshold and policy, kept
    record_distance(body, cells, ood.get("threshold"), ood.get("max_share_outside", 0.5))
    record_model(
        body,
        name=latest["body"].get("model_version", ""),
        artifact_sha256=latest["body"].get("model_artifact_sha256", ""),
        demo=bool(latest["body"].get("model_demo", False)),
    )
    body["reviewed_by"] = reviewed_by
    if stated_reviewer:
        body["reviewer_stated"] = stated_reviewer  # as the client says; not verified
    if sign_out:
        body["signed_out_by"] = reviewed_by
    body["supersedes_version"] = latest["version"]
    return lis.add_report(
        specimen_id,
        latest["analysis_job_id"],
        status,
        body,
        actor=actor,
        signed_out=sign_out,
    )


class CurationReview:
    """Low-confidence cells out to the curation service's experts, their labels back in as
    report versions; driven by the analysis worker between jobs (``sync_once``)."""

    def __init__(
        self,
        lis: LisRepository,
        clients: ServiceClients,
        token: str,
        taxonomy: Taxonomy,
        thresholds: Thresholds,
        deadline_s: float = 10.0,
    ) -> None:
        self.lis, self.clients, self.taxonomy, self.thresholds = lis, clients, taxonomy, thresholds
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.deadline_s = deadline_s

    async def sync_once(self) -> None:
        """One pass over the jobs whose review is pending or running."""
        for job in await asyncio.to_thread(self.lis.jobs_in_review):
            try:
                if job["review_state"] == "pending":
                    await self._send(job)
                else:
                    await self._collect(job)
            except PeerUnavailable as exc:
                log.warning("review of analysis job %s waits: %s", job["id"], exc)
                return

    async def _send(self, job: dict[str, Any]) -> None:
        latest = await asyncio.to_thread(self.lis.report, job["specimen_id"])
        wanted = set(latest["body"]["low_confidence_cell_ids"]) if latest else set()
        if not wanted:
            await asyncio.to_thread(self.lis.set_review_state, job["id"], "done")
            return
        cells = [
            c
            for c in await asyncio.to_thread(self.lis.job_cells, job["id"])
            if str(c["cell_id"]) in wanted
        ]
        tasks = [
            curation_pb2.NewReviewTask(
                cell_id=str(c["cell_id"]),
                object_key=c["object_key"],
                kind=curation_pb2.TASK_KIND_AL,
                top_classes=[
                    curation_pb2.ClassScore(
                        class_code=t["class_code"], probability=t["probability"]
                    )
                    for t in c["top_classes"]
                ],
            )
            for c in cells
        ]
        await call_peer(
            "curation",
            self.clients.curation.CreateReviewTasks(
                curation_pb2.CreateReviewTasksRequest(
                    campaign_id=str(REVIEW_QUEUE_ID),
                    round_id=str(job["id"]),  # the job is the batch
                    tasks=tasks,
                    queue=curation_pb2.ReviewQueue(
                        name=REVIEW_QUEUE_NAME,
                        kind=REVIEW_QUEUE_KIND,
                        taxonomy=self.taxonomy.name,
                        dataset="",  # no reference cells: experts see the model's top classes
                    ),
                    requester=curation_pb2.BATCH_REQUESTER_ANALYSIS_JOB,
                    round_number=0,
                ),
                metadata=self.metadata,
                timeout=self.deadline_s,
            ),
        )
        await asyncio.to_thread(self.lis.set_review_state, job["id"], "sent")
        log.info("analysis job %s: %d low-confidence cells sent for review", job["id"], len(tasks))

    async def _collect(self, job: dict[str, Any]) -> None:
        # The batch exists since _send; its ids follow from the job.
        queue, batch = str(REVIEW_QUEUE_ID), str(job["id"])
        reply = await call_peer(
            "curation",
            self.clients.curation.ListDecisions(
                curation_pb2.ListDecisionsRequest(
                    campaign_id=queue, round_id=batch, include_undone=True
                ),
                metadata=self.metadata,
                timeout=self.deadline_s,
            ),
        )
        # Too difficult: the cell stays flagged. Undone in curation: its correction leaves the
        # report (a new version), whether or not it had reached one.
        labelled = [d for d in reply.decisions if d.class_code and not d.undone]
        undone = [d for d in reply.decisions if d.undone]
        added = 0
        for decision in labelled:
            added += await asyncio.to_thread(
                self.lis.add_corrections,
                job["specimen_id"],
                decision.user,
                [(decision.cell_id, decision.class_code)],
                [decision.id],
            )
        retracted = 0
        if undone:
            retracted = await asyncio.to_thread(
                self.lis.retract_corrections,
                job["specimen_id"],
                "curation:undo",
                [d.id for d in undone],
            )
        if added or retracted:
            latest = await asyncio.to_thread(self.lis.report, job["specimen_id"])
            assert latest is not None  # the job wrote version 1
            # The experts as the curation service authenticated them.
            # (Curation does not say who undid a decision: an undo alone is credited to it.)
            reviewers = ", ".join(sorted({d.user for d in labelled})) or "curation (undo)"
            row = await asyncio.to_thread(
                functools.partial(
                    revise_report,
                    self.lis,
                    job["specimen_id"],
                    latest,
                    self.taxonomy,
                    self.thresholds,
                    reviewers,
                    actor=f"curation:{reviewers}",
                )
            )
            log.info(
                "analysis job %s: %d review decisions, %d undone -> report v%d",
                job["id"],
                added,
                retracted,
                row["version"],
            )
        progress = await call_peer(
            "curation",
            self.clients.curation.GetProgress(
                curation_pb2.GetProgressRequest(campaign_id=queue, round_id=batch),
                metadata=self.metadata,
                timeout=self.deadline_s,
            ),
        )
        if progress.open + progress.claimed == 0:
            await asyncio.to_thread(self.lis.set_review_state, job["id"], "done")
