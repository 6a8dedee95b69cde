"""Cell images as server-sized PNG thumbnails, and reference cells of a class."""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from marrowscope.core.objectstore import in_store_thread

from ..thumbnails import thumbnail
from .context import Context, CurrentUser, WebContext, in_thread

router = APIRouter(prefix="/api/v1", tags=["images"])
PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}}}


async def png_thumbnail(context: WebContext, key: str, size: int) -> Response:
    data = await in_thread(
        thumbnail, await in_store_thread(context.store, context.store.get, key), size
    )
    return Response(
        data, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get("/tasks/{task_id}/image", responses=PNG)
async def task_image(
    task_id: str,
    user: CurrentUser,
    context: Context,
    size: Annotated[int, Query(ge=32, le=512)] = 160,
) -> Response:
    key = await in_thread(context.workbench.task_image_key, user, task_id)
    return await png_thumbnail(context, key, size)


@router.get("/cells/{cell_id}/image", responses=PNG)
async def cell_image(
    cell_id: str,
    user: CurrentUser,
    context: Context,
    size: Annotated[int, Query(ge=32, le=512)] = 96,
) -> Response:
    key = await in_thread(context.workbench.cell_image_key, user, cell_id)
    return await png_thumbnail(context, key, size)


@router.get("/campaigns/{campaign_id}/references")
async def references(
    campaign_id: str,
    user: CurrentUser,
    context: Context,
    classes: Annotated[str, Query(max_length=200)] = "",
) -> dict[str, Any]:
    """Confirmed example cells of each class (for the AL page's comparison strip)."""
    codes = [c for c in classes.split(",") if c][:5]
    found = await in_thread(context.workbench.reference_cells, user, campaign_id, codes)
    return {
        "references": {c: [f"/api/v1/cells/{i}/image" for i in ids] for c, ids in found.items()}
    }
