"""Decisions on tasks, acknowledged one by one, and their undo."""

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from marrowscope.core.errors import MarrowscopeError

from ..service import DecisionInput
from .context import Context, CurrentUser, in_thread

router = APIRouter(prefix="/api/v1", tags=["decisions"])


class DecisionIn(BaseModel):
    client_decision_id: str = Field(min_length=8, max_length=80)
    task_id: str = Field(min_length=1, max_length=64)
    action: Literal["confirm", "correct", "label", "too_difficult"]
    class_code: str = Field("", max_length=16)


class DecisionsIn(BaseModel):
    decisions: list[DecisionIn] = Field(min_length=1, max_length=500)


class UndoIn(BaseModel):
    reason: str = Field("", max_length=500)


@router.post("/decisions")
async def decide(body: DecisionsIn, user: CurrentUser, context: Context) -> dict[str, Any]:
    """Each decision is stored (and acknowledged) on its own; a retry with the same
    client_decision_id returns the stored decision instead of a second one."""
    results = []
    for item in body.decisions:
        decision_input = DecisionInput(
            item.client_decision_id, item.task_id, item.action, item.class_code
        )
        try:
            [decision] = await in_thread(context.curation.submit, user, [decision_input])
        except MarrowscopeError as exc:
            # One refused decision must not hide the others' acknowledgements.
            results.append(
                {
                    "client_decision_id": item.client_decision_id,
                    "ok": False,
                    "status": exc.http_status,
                    "detail": str(exc),
                }
            )
            continue
        results.append(
            {
                "client_decision_id": item.client_decision_id,
                "ok": True,
                "decision_id": decision.id,
                "class_code": decision.class_code,
                "decided_at": decision.decided_at.isoformat(),
            }
        )
    return {"results": results}


@router.post("/decisions/{client_decision_id}/undo")
async def undo(
    client_decision_id: str, body: UndoIn, user: CurrentUser, context: Context
) -> dict[str, Any]:
    decision = await in_thread(context.curation.undo, user, client_decision_id, body.reason)
    return {
        "client_decision_id": client_decision_id,
        "undone": decision.undone,
        "task_id": decision.task_id,
    }
