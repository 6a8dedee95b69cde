"""LIS API route for one field image, synchronously (the walking skeleton's endpoint, kept for
middleware): the analysis pipeline on one upload, per-class counts back, no specimen.

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile

from marrowscope.core.objectstore import in_store_thread, put_content_addressed

from .deps import Context, SubmitClient
from .pipeline import production_model, segment_and_classify

router = APIRouter(tags=["classify"])


@router.post("/v1/classify")
async def classify_field(
    client: SubmitClient,
    file: Annotated[UploadFile, File(description="a field image (JPEG, PNG, TIFF or BMP)")],
    ctx: Context,
) -> dict[str, Any]:
    """Segment one field image into cells and classify them: per-class counts (no specimen)."""
    data = await file.read(ctx.settings.max_upload_bytes + 1)
    image = await ctx.decode_budget.inspect(data, ctx.limits)  # validate before storing
    stored = await in_store_thread(
        ctx.store,
        put_content_addressed,
        ctx.store,
        "fields",
        data,
        image.content_type,
        "." + image.format.lower().replace("jpeg", "jpg"),
    )
    model = await asyncio.to_thread(production_model, ctx.lis.pool)
    field = await segment_and_classify(ctx.clients, stored.key, ctx.deadlines, model.id)
    predictions = [c.prediction for c in field.cells if not c.prediction.error]
    boxes = {c.cell_id: c.box for c in field.segmented.cells}
    return {
        "field_image_id": field.segmented.field_image_id,
        "algorithm_version": field.segmented.algorithm_version,
        "model_version": model.name,
        "model_artifact_sha256": model.artifact_sha256,
        "model_demo": model.demo,
        "cells_counted": len(predictions),
        "cells_unreadable": len(field.cells) - len(predictions),
        "counts": dict(sorted(Counter(p.top1_class for p in predictions).items())),
        "red_cell_count": field.segmented.red_cell_count,
        "platelet_count": field.segmented.platelet_count,
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
