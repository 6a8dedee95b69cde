"""LIS API routes: specimens and their field images (multipart or presigned uploads).

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio
import uuid
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile
from pydantic import BaseModel, Field

from marrowscope.core.errors import MarrowscopeError, NotFound
from marrowscope.core.objectstore import in_store_thread, put_content_addressed
from marrowscope.core.pixel_size import MAX_UM_PER_PX, MIN_UM_PER_PX

from .deps import Context, ReadClient, SubmitClient
from .instruments import get_profile

ACCESSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$"
router = APIRouter()


class SpecimenIn(BaseModel):
    accession_number: str = Field(
        pattern=ACCESSION_PATTERN, description="the LIS's accession number"
    )
    specimen_type: Literal["bone-marrow-aspirate", "peripheral-blood"] = "bone-marrow-aspirate"
    instrument_profile: str | None = Field(
        default=None,
        description="the microscope the specimen's images come from "
        "(GET /v1/instrument-profiles); its pixel size is used for every image uploaded "
        "without one of its own",
    )


UmPerPx = Annotated[
    float | None,
    Query(
        gt=MIN_UM_PER_PX,
        le=MAX_UM_PER_PX,
        description="the images' pixel size in micrometres, when the lab knows it from "
        "its microscope and camera (about 0.1 at 100x); without it (or a profile) the "
        "segmenter measures each field on its red cells",
    ),
]
ProfileName = Annotated[
    str | None,
    Query(description="the microscope the images come from (its profile's pixel size)"),
]


async def pixel_size(
    ctx: Any, specimen: dict[str, Any], um_per_px: float | None, instrument_profile: str | None
) -> tuple[float | None, str | None]:
    """The pixel size an upload's images are stored with, and its source: the upload's
    ``um_per_px``, else its profile, else the specimen's profile, else none (measured)."""
    if um_per_px is not None and instrument_profile is not None:
        raise HTTPException(422, "give um_per_px or instrument_profile, not both")
    if um_per_px is not None:
        return um_per_px, "upload"
    name = instrument_profile or specimen.get("instrument_profile")
    if not name:
        return None, None
    profile = await asyncio.to_thread(get_profile, ctx.lis.pool, name)
    return profile.um_per_px, profile.source


def too_big(size: int, limit: int) -> str:
    return (
        f"the uploaded image is {size} bytes, over the limit of {limit}: it was deleted; "
        "upload a smaller image (a new presigned URL)"
    )


def specimen_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "accession_number": row["accession_number"],
        "specimen_type": row["specimen_type"],
        "instrument_profile": row.get("instrument_profile"),
        "created_at": row["created_at"].isoformat(),
    }


def image_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "state": row["state"],
        "content_type": row["content_type"],
        "width": row["width"],
        "height": row["height"],
        "size_bytes": row["size_bytes"],
        "um_per_px": row.get("um_per_px"),
        "um_per_px_source": row.get("um_per_px_source"),
        "created_at": row["created_at"].isoformat(),
    }


@router.post("/v1/specimens", status_code=201, tags=["specimens"])
async def create_specimen(
    body: SpecimenIn, client: SubmitClient, response: Response, ctx: Context
) -> dict[str, Any]:
    """Create a specimen for an accession number (the same number again returns it, 200)."""
    if body.instrument_profile is not None:
        await asyncio.to_thread(get_profile, ctx.lis.pool, body.instrument_profile)
    row, created = await asyncio.to_thread(
        ctx.lis.create_specimen,
        client.id,
        body.accession_number,
        body.specimen_type,
        body.instrument_profile,
    )
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/specimens/{row['id']}"
    return specimen_out(row)


@router.get("/v1/specimens", tags=["specimens"])
async def list_specimens(
    client: ReadClient,
    ctx: Context,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """The client's specimens, newest first."""
    rows = await asyncio.to_thread(ctx.lis.specimens, client.id, limit, offset)
    return {"items": [specimen_out(r) for r in rows], "limit": limit, "offset": offset}


@router.get("/v1/specimens/{specimen_id}", tags=["specimens"])
async def get_specimen(specimen_id: uuid.UUID, client: ReadClient, ctx: Context) -> dict[str, Any]:
    """One specimen with its images and report versions."""
    row = await asyncio.to_thread(ctx.lis.specimen, client.id, str(specimen_id))
    images = await asyncio.to_thread(ctx.lis.images, row["id"])
    reports = await asyncio.to_thread(ctx.lis.reports, row["id"])
    return {
        **specimen_out(row),
        "images": [image_out(i) for i in images],
        "report_versions": [{"version": r["version"], "status": r["status"]} for r in reports],
    }


@router.post("/v1/specimens/{specimen_id}/images", status_code=201, tags=["images"])
async def upload_images(
    specimen_id: uuid.UUID,
    client: SubmitClient,
    files: Annotated[list[UploadFile], File(description="field images (JPEG, PNG, TIFF, BMP)")],
    ctx: Context,
    um_per_px: UmPerPx = None,
    instrument_profile: ProfileName = None,
) -> dict[str, Any]:
    """Upload field images. All are checked (magic bytes, size, pixels) before any is kept.
    Their pixel size: ``um_per_px``, else ``instrument_profile``, else the specimen's profile,
    else measured per field on its red cells."""
    specimen = await asyncio.to_thread(ctx.lis.specimen, client.id, str(specimen_id))
    um_per_px, source = await pixel_size(ctx, specimen, um_per_px, instrument_profile)
    if len(files) > ctx.settings.max_files_per_request:
        raise HTTPException(413, f"at most {ctx.settings.max_files_per_request} files per request")
    # Check every file first (one at a time, within the decode budget), keeping only its
    # format and size; then read each again from its spooled copy to store it. At most one
    # file's bytes and one decode are in memory per request.
    checked = []
    for upload in files:
        data = await upload.read(ctx.settings.max_upload_bytes + 1)
        try:
            image = await ctx.decode_budget.inspect(data, ctx.limits)
        except MarrowscopeError as exc:
            raise HTTPException(exc.http_status, f"{upload.filename or 'file'}: {exc}") from None
        checked.append((upload, image))
        del data
    rows = []
    for upload, image in checked:
        await upload.seek(0)
        data = await upload.read(ctx.settings.max_upload_bytes + 1)
        suffix = "." + image.format.lower().replace("jpeg", "jpg")
        stored = await in_store_thread(
            ctx.store, put_content_addressed, ctx.store, "fields", data, image.content_type, suffix
        )
        meta: dict[str, Any] = {
            "content_type": image.content_type,
            "width": image.width,
            "height": image.height,
            "size_bytes": len(data),
            "um_per_px": um_per_px,
            "um_per_px_source": source,
        }
        rows.append(await asyncio.to_thread(ctx.lis.add_image, specimen["id"], stored.key, **meta))
    return {"images": [image_out(r) for r in rows]}


@router.post("/v1/specimens/{specimen_id}/images/presigned", status_code=201, tags=["images"])
async def presign_image(
    specimen_id: uuid.UUID,
    client: SubmitClient,
    ctx: Context,
    um_per_px: UmPerPx = None,
    instrument_profile: ProfileName = None,
) -> dict[str, Any]:
    """A URL to PUT one image straight into the object store; then call .../complete. The
    image's pixel size is chosen now, as for a multipart upload."""
    specimen = await asyncio.to_thread(ctx.lis.specimen, client.id, str(specimen_id))
    um_per_px, source = await pixel_size(ctx, specimen, um_per_px, instrument_profile)
    key = f"uploads/{uuid.uuid4()}"
    url = await in_store_thread(ctx.store, ctx.store.presign_put, key, timedelta(minutes=15))
    row = await asyncio.to_thread(
        ctx.lis.add_image,
        specimen["id"],
        key,
        state="pending_upload",
        um_per_px=um_per_px,
        um_per_px_source=source,
    )
    return {
        "image": image_out(row),
        "upload_url": url,
        "method": "PUT",
        "headers": {"Content-Type": "application/octet-stream"},
        "expires_in": 900,
        "complete_url": f"/v1/specimens/{specimen_id}/images/{row['id']}/complete",
    }


@router.post("/v1/specimens/{specimen_id}/images/{image_id}/complete", tags=["images"])
async def complete_image(
    specimen_id: uuid.UUID, image_id: uuid.UUID, client: SubmitClient, ctx: Context
) -> dict[str, Any]:
    """Check a presigned upload; a bad file is deleted and refused (422/413/415). Its size
    is checked (from the object store's metadata) before it is read."""
    specimen = await asyncio.to_thread(ctx.lis.specimen, client.id, str(specimen_id))
    row = await asyncio.to_thread(ctx.lis.image, specimen["id"], str(image_id))
    if row["state"] == "stored":
        return image_out(row)
    limit = ctx.settings.max_upload_bytes
    try:
        # Its size first: an object over the limit is refused without being read.
        info = await in_store_thread(ctx.store, ctx.store.stat, row["object_key"])
        if info.size_bytes > limit:
            await in_store_thread(ctx.store, ctx.store.delete, row["object_key"])
            raise HTTPException(413, too_big(info.size_bytes, limit))
        data = await in_store_thread(ctx.store, ctx.store.get, row["object_key"], verify=False)
    except NotFound:
        raise HTTPException(
            409, "nothing was uploaded to the presigned URL yet: PUT the image there first"
        ) from None
    if len(data) > limit:  # replaced by a larger one since the stat
        await in_store_thread(ctx.store, ctx.store.delete, row["object_key"])
        raise HTTPException(413, too_big(len(data), limit))
    try:
        image = await ctx.decode_budget.inspect(data, ctx.limits)
    except MarrowscopeError:
        await in_store_thread(ctx.store, ctx.store.delete, row["object_key"])
        raise
    done = await asyncio.to_thread(
        ctx.lis.complete_image,
        row["id"],
        content_type=image.content_type,
        width=image.width,
        height=image.height,
        size_bytes=len(data),
    )
    return image_out(done)
