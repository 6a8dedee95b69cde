"""Review queues and their tasks: the queues an expert works, a queue's progress, taxonomies
with the UI's hot-keys, claiming a page of tasks and releasing tasks.

URLs say 'campaigns' (the first and main requester's name for a queue); a queue's id is its
requester's campaign id, or the LIS API's review queue id.
"""

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from marrowscope.core.taxonomy import load_taxonomy

from ..service import ProgressRow, Task
from ..workbench import QueueSummary
from .context import Context, CurrentUser, in_thread

router = APIRouter(prefix="/api/v1", tags=["queues"])
# Class hot-keys: digits first, then letters that are not the UI's own keys
# (h j k l and arrows move, u undo, 0 and x too difficult, Enter confirms the page,
# a s d pick the AL page's top-3 guesses, ? help).
HOTKEYS = "123456789qwertyiopfgvbnm"


def hotkeys(codes: list[str]) -> dict[str, str]:
    """The hot-key of each class code, in taxonomy order (classes past the keys get none)."""
    return dict(zip(codes, HOTKEYS, strict=False))


class ClaimIn(BaseModel):
    kind: Literal["CST", "AL"]
    proposed_class: str = Field("", max_length=16)
    limit: int = Field(50, ge=1, le=200)


class ReleaseIn(BaseModel):
    task_ids: list[str] = Field(max_length=500)


def queue_out(queue: QueueSummary) -> dict[str, Any]:
    return {
        "id": queue.id,
        "name": queue.name,
        "method": queue.kind,
        "taxonomy": queue.taxonomy,
        "state": queue.state,
        "open_cst": queue.open_cst,
        "open_al": queue.open_al,
        "decided": queue.decided,
        "assigned": queue.assigned,
    }


def progress_out(row: ProgressRow) -> dict[str, Any]:
    return {
        "round_id": row.batch_id,
        "kind": row.kind,
        "class_code": row.class_code,
        "open": row.open,
        "claimed": row.claimed,
        "decided": row.decided,
    }


def task_out(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "campaign_id": task.queue_id,
        "round_number": task.round_number,
        "cell_id": task.cell_id,
        "kind": task.kind,
        "proposed_class": task.proposed_class,
        "top_classes": [{"class_code": c, "probability": round(p, 4)} for c, p in task.top_classes],
        "image_url": f"/api/v1/tasks/{task.id}/image",
    }


@router.get("/campaigns")
async def campaigns(user: CurrentUser, context: Context) -> dict[str, Any]:
    """The queues this expert works (all for admins), with open CST / AL tasks."""
    return {"campaigns": [queue_out(q) for q in await in_thread(context.workbench.queues, user)]}


@router.get("/taxonomies/{name}")
async def taxonomy(name: str, user: CurrentUser) -> dict[str, Any]:
    tax = load_taxonomy(name)
    keys = hotkeys(tax.codes)
    return {
        "name": tax.name,
        "classes": [
            {"code": c.code, "name": c.name, "lineage": c.lineage, "hotkey": keys.get(c.code, "")}
            for c in tax.classes
        ],
    }


@router.get("/campaigns/{campaign_id}/progress")
async def progress(campaign_id: str, user: CurrentUser, context: Context) -> dict[str, Any]:
    await in_thread(context.workbench.check_visible, user, campaign_id)
    rows = await in_thread(context.curation.progress, user, campaign_id)
    return {"rows": [progress_out(r) for r in rows]}


@router.post("/campaigns/{campaign_id}/claims")
async def claim(
    campaign_id: str, body: ClaimIn, user: CurrentUser, context: Context
) -> dict[str, Any]:
    """Tasks to work on: those this user already holds first, then newly claimed ones.
    For CST without a class, the class with the most open tasks is chosen."""
    page = await in_thread(
        context.workbench.next_page, user, campaign_id, body.kind, body.proposed_class, body.limit
    )
    return {
        "taxonomy": page.taxonomy,
        "proposed_class": page.proposed_class,
        "tasks": [task_out(t) for t in page.tasks],
    }


@router.post("/claims/release")
async def release(body: ReleaseIn, user: CurrentUser, context: Context) -> dict[str, int]:
    return {"released": await in_thread(context.curation.release, user, body.task_ids)}
