"""Recompute a report from its stored crops with the model version it records.

A report is tied to one model version (the analysis job pinned it); classifying the job's
stored cell crops again with that version must give the same classes, hence the same counts.
This is how a lab (or an auditor) checks that a signed report can be reproduced.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import DictPool
from marrowscope.core.errors import FailedPrecondition
from marrowscope.core.model_registry import get_model_version
from marrowscope.core.taxonomy import Taxonomy
from marrowscope.v1 import common_pb2, inference_pb2

from .pipeline import CLASSIFY_CHUNK, call_peer
from .report import ClassifiedCell, Thresholds, build_differential
from .repository import LisRepository


def _counts(body: dict[str, Any]) -> dict[str, int]:
    rows = [*body["differential"], *body["excluded_from_differential"]]
    return {r["code"]: int(r["count"]) for r in rows}


async def recheck_report(
    lis: LisRepository,
    pool: DictPool,
    clients: ServiceClients,
    specimen_id: str,
    report: dict[str, Any],
    taxonomy: Taxonomy,
    thresholds: Thresholds,
    deadline_s: float,
) -> dict[str, Any]:
    """Reclassify the report's cells with its recorded version; compare the counts."""
    job_id = report["analysis_job_id"]
    pinned = await asyncio.to_thread(lis.job_model, job_id)
    if pinned is None:
        raise FailedPrecondition(
            "this report predates model pinning: its version cannot be re-run exactly"
        )
    model = await asyncio.to_thread(get_model_version, pool, pinned)
    # The corrections this report version was built from, not those made since.
    stored = await asyncio.to_thread(
        lis.classified_cells, specimen_id, job_id, report["created_at"]
    )
    rows = await asyncio.to_thread(lis.job_cells, job_id)
    keys = {str(r["cell_id"]): r["object_key"] for r in rows}
    readable = [c for c in stored if c.class_code is not None]
    again: dict[str, common_pb2.Prediction] = {}
    for start in range(0, len(readable), CLASSIFY_CHUNK):
        chunk = readable[start : start + CLASSIFY_CHUNK]
        reply = await call_peer(
            "inference",
            clients.inference.Classify(
                inference_pb2.ClassifyRequest(
                    cells=[
                        common_pb2.CellRef(cell_id=c.cell_id, object_key=keys[c.cell_id])
                        for c in chunk
                    ],
                    model_version=model.id,
                ),
                timeout=deadline_s,
            ),
        )
        again.update({p.cell_id: p for p in reply.predictions})
    recomputed: list[ClassifiedCell] = []
    changed = 0
    for cell in stored:
        prediction = again.get(cell.cell_id)
        if prediction is None or prediction.error or cell.corrected_by:
            recomputed.append(cell)  # unreadable before, or an expert's class: kept
            continue
        changed += prediction.top1_class != cell.class_code
        recomputed.append(
            replace(
                cell,
                class_code=prediction.top1_class,
                probability=prediction.top1_probability,
                margin=prediction.margin,
            )
        )
    before = _counts(build_differential(stored, taxonomy, thresholds))
    after = _counts(build_differential(recomputed, taxonomy, thresholds))
    reported = _counts(report["body"])
    differences = {
        code: {"reported": reported.get(code, 0), "recomputed": after.get(code, 0)}
        for code in sorted(set(reported) | set(after))
        if reported.get(code, 0) != after.get(code, 0)
    }
    return {
        "report_version": report["version"],
        "model_version": model.name,
        "model_artifact_sha256": model.artifact_sha256,
        "cells_reclassified": len(again),
        "cells_changed": changed,
        "counts_identical": not differences and before == after,
        "differences": differences,
    }
