"""LIS API routes: analysis jobs, the versioned report (JSON / FHIR / HL7) and expert review.

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio
import functools
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from marrowscope.core.errors import InvalidArgument, NotFound
from marrowscope.core.objectstore import in_store_thread

from .auth import Client
from .deps import Context, LisContext, ReadClient, ReviewClient, SubmitClient
from .formats import to_fhir, to_hl7
from .recheck import recheck_report
from .review import revise_report

router = APIRouter()


class Correction(BaseModel):
    cell_id: uuid.UUID
    class_code: str = Field(min_length=1, max_length=16)


class ReviewIn(BaseModel):
    reviewer: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="the reviewer's name as the LIS knows it, kept in the report for display "
        "only (reviewer_stated). Who reviewed and signed out is recorded as the authenticated "
        "client (reviewed_by, signed_out_by, the audit trail), never this name",
    )
    corrections: list[Correction] = Field(default=[], max_length=5000)
    sign_out: bool = Field(
        False, description="make this version final (or corrected if a final exists)"
    )


def job_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "specimen_id": str(row["specimen_id"]),
        "state": row["state"],
        "progress": {
            "images_total": row["images_total"],
            "images_done": row["images_done"],
            "cells_found": row["cells_found"],
        },
        "waiting_reason": row["waiting_reason"],
        "attempts": row["attempts"],
        "next_attempt_at": row["next_attempt_at"].isoformat()
        if row["state"] == "waiting"
        else None,
        "error": row["error"],
        "report_url": f"/v1/specimens/{row['specimen_id']}/report" if row["report_id"] else None,
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def report_out(row: dict[str, Any], accession: str) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "specimen_id": str(row["specimen_id"]),
        "accession_number": accession,
        "version": row["version"],
        "status": row["status"],
        "created_at": row["created_at"].isoformat(),
        "body": row["body"],
    }


@router.post("/v1/specimens/{specimen_id}/analyses", status_code=202, tags=["analyses"])
async def start_analysis(
    specimen_id: uuid.UUID,
    client: SubmitClient,
    response: Response,
    ctx: Context,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Segment and classify every stored image, then write a preliminary report."""
    specimen = await asyncio.to_thread(ctx.lis.specimen, client.id, str(specimen_id))
    row, _ = await asyncio.to_thread(ctx.lis.create_job, client.id, specimen["id"], idempotency_key)
    response.headers["Location"] = f"/v1/analyses/{row['id']}"
    return job_out(row)


@router.get("/v1/analyses/{job_id}", tags=["analyses"])
async def get_analysis(job_id: uuid.UUID, client: ReadClient, ctx: Context) -> dict[str, Any]:
    """An analysis job: its state, progress, why it waits, and its report once done."""
    return job_out(await asyncio.to_thread(ctx.lis.job, client.id, str(job_id)))


# --- reports --------------------------------------------------------------------------------
async def report_row(
    ctx: LisContext, client: Client, specimen_id: uuid.UUID, version: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The client's specimen and its report (``version``, or the latest); NotFound else."""
    specimen = await asyncio.to_thread(ctx.lis.specimen, client.id, str(specimen_id))
    row = await asyncio.to_thread(ctx.lis.report, specimen["id"], version)
    if row is not None:
        return specimen, row
    latest = (
        await asyncio.to_thread(ctx.lis.report, specimen["id"]) if version is not None else None
    )
    if latest is None:
        raise NotFound("no report yet: start an analysis and wait for it to succeed")
    raise NotFound(f"report version {version} not found (latest is {latest['version']})")


@router.get(
    "/v1/specimens/{specimen_id}/report",
    tags=["reports"],
    responses={200: {"content": {"application/fhir+json": {}, "x-application/hl7-v2+er7": {}}}},
)
async def get_report(
    specimen_id: uuid.UUID,
    client: ReadClient,
    ctx: Context,
    format: Annotated[Literal["json", "fhir", "hl7"], Query()] = "json",
    version: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> Response:
    """The differential (latest version unless asked): JSON, FHIR R4 or HL7 v2.5.1 ORU^R01."""
    specimen, row = await report_row(ctx, client, specimen_id, version)
    report = report_out(row, specimen["accession_number"])
    if format == "fhir":
        return JSONResponse(
            await asyncio.to_thread(to_fhir, report), media_type="application/fhir+json"
        )
    if format == "hl7":
        return PlainTextResponse(
            await asyncio.to_thread(to_hl7, report), media_type="x-application/hl7-v2+er7"
        )
    return JSONResponse(report)


@router.get("/v1/specimens/{specimen_id}/report/recheck", tags=["reports"])
async def recheck(
    specimen_id: uuid.UUID,
    client: ReadClient,
    ctx: Context,
    version: Annotated[int | None, Query(ge=1, le=100_000)] = None,
) -> dict[str, Any]:
    """Reclassify the report's stored cells with the model version it records and compare the
    counts: whether the report can be reproduced."""
    _, row = await report_row(ctx, client, specimen_id, version)
    return await recheck_report(
        ctx.lis,
        ctx.lis.pool,
        ctx.clients,
        str(specimen_id),
        dict(row),
        ctx.taxonomy,
        ctx.thresholds,
        ctx.settings.inference_deadline_s,
    )


@router.get("/v1/specimens/{specimen_id}/reports", tags=["reports"])
async def list_reports(specimen_id: uuid.UUID, client: ReadClient, ctx: Context) -> dict[str, Any]:
    """Every report version of the specimen, oldest first."""
    specimen = await asyncio.to_thread(ctx.lis.specimen, client.id, str(specimen_id))
    rows = await asyncio.to_thread(ctx.lis.reports, specimen["id"])
    return {
        "versions": [
            {
                "version": r["version"],
                "status": r["status"],
                "created_at": r["created_at"].isoformat(),
            }
            for r in rows
        ]
    }


@router.get("/v1/specimens/{specimen_id}/review", tags=["review"])
async def review_queue(
    specimen_id: uuid.UUID, client: ReviewClient, ctx: Context
) -> dict[str, Any]:
    """The latest report's low-confidence cells, with the model's top guesses."""
    specimen, row = await report_row(ctx, client, specimen_id, None)
    wanted = set(row["body"]["low_confidence_cell_ids"])
    cells = await asyncio.to_thread(ctx.lis.job_cells, row["analysis_job_id"])
    return {
        "report_version": row["version"],
        "cells": [
            {
                "cell_id": str(c["cell_id"]),
                "predicted_class": c["class_code"],
                "probability": c["probability"],
                "margin": c["margin"],
                "top_classes": c["top_classes"],
                "image_url": f"/v1/specimens/{specimen_id}/cells/{c['cell_id']}/image",
            }
            for c in cells
            if str(c["cell_id"]) in wanted
        ],
    }


@router.get(
    "/v1/specimens/{specimen_id}/cells/{cell_id}/image",
    tags=["review"],
    responses={200: {"content": {"image/png": {}}}},
)
async def cell_image(
    specimen_id: uuid.UUID, cell_id: uuid.UUID, client: ReviewClient, ctx: Context
) -> Response:
    """One analysed cell's crop (PNG)."""
    specimen, row = await report_row(ctx, client, specimen_id, None)
    match = await asyncio.to_thread(ctx.lis.job_cell, row["analysis_job_id"], cell_id)
    if match is None:
        raise NotFound(f"cell {cell_id} is not part of this specimen's analysis")
    return Response(
        await in_store_thread(ctx.store, ctx.store.get, match["object_key"]), media_type="image/png"
    )


@router.post("/v1/specimens/{specimen_id}/review", status_code=201, tags=["review"])
async def submit_review(
    specimen_id: uuid.UUID, body: ReviewIn, client: ReviewClient, ctx: Context
) -> dict[str, Any]:
    """Apply expert corrections and/or sign out: always a new report version, recorded (in
    the report and the audit trail) as reviewed, and signed out, by the calling client."""
    specimen, latest = await report_row(ctx, client, specimen_id, None)
    known = {
        str(c["cell_id"])
        for c in await asyncio.to_thread(ctx.lis.job_cells, latest["analysis_job_id"])
    }
    for c in body.corrections:
        ctx.taxonomy.check(c.class_code)
        if str(c.cell_id) not in known:
            raise InvalidArgument(f"cell {c.cell_id} is not part of this specimen's analysis")
    if not body.corrections and not body.sign_out:
        raise InvalidArgument("nothing to do: send corrections, sign_out, or both")
    # Who reviewed is the authenticated client, whatever the request body says.
    await asyncio.to_thread(
        ctx.lis.add_corrections,
        specimen["id"],
        client.principal,
        [(str(c.cell_id), c.class_code) for c in body.corrections],
    )
    row = await asyncio.to_thread(
        functools.partial(
            revise_report,
            ctx.lis,
            specimen["id"],
            latest,
            ctx.taxonomy,
            ctx.thresholds,
            client.principal,
            body.sign_out,
            actor=client.principal,
            stated_reviewer=body.reviewer,
        )
    )
    return report_out(row, specimen["accession_number"])
