"""LIS API admin routes for the model behind patient reports: the versions, and promotion and
rollback of the `production` alias through the training service's gate. The actor recorded
in the audit trail is the authenticated API client, not what the request says.

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

from collections.abc import Awaitable
from typing import Any, Literal, TypeVar

import grpc
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from marrowscope.v1 import training_pb2

from .deps import AdminClient, Context

router = APIRouter(tags=["models"])
T = TypeVar("T")
GATE_DEADLINE_S = 900.0  # the gate classifies the locked evaluation set with two versions
STATUS = {
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
}


class PromoteIn(BaseModel):
    alias: Literal["production", "candidate"] = "production"
    reason: str = Field(min_length=1, max_length=2000)
    force: bool = False  # past a refusal of the gate (recorded as forced)


class RollbackIn(BaseModel):
    alias: Literal["production", "candidate"] = "production"
    reason: str = Field(min_length=1, max_length=2000)


async def _training(call: Awaitable[T]) -> T:
    """A training-service call; its refusals become HTTP errors that say why."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        status = STATUS.get(exc.code(), 503)
        detail = exc.details() or exc.code().name
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            # The change may still have been made after the deadline: say so, not "failed".
            status, detail = (
                504,
                (
                    "the training service did not answer in time; the change may still have been "
                    "made: check GET /v1/admin/models before trying again"
                ),
            )
        elif status == 503:
            detail = f"training service unavailable: {exc.code().name}; try again"
        raise HTTPException(status, detail) from None


def _change_out(change: training_pb2.AliasChange) -> dict[str, Any]:
    return {
        "alias": change.alias,
        "version": change.model.name,
        "previous_version": change.previous_version,
        "action": change.action,
        "actor": change.actor,
        "reason": change.reason,
        "forced": change.forced,
        "demo": change.model.demo,
        "comparison": change.comparison,
    }


@router.get("/v1/admin/models")
async def list_models(client: AdminClient, ctx: Context) -> dict[str, Any]:
    """Registered versions, newest first, with the aliases naming them."""
    versions = await _training(
        ctx.clients.training.ListModelVersions(training_pb2.ListModelVersionsRequest(limit=100))
    )
    aliases = await _training(
        ctx.clients.training.ListModelAliases(training_pb2.ListModelAliasesRequest())
    )
    named: dict[str, list[str]] = {}
    for change in aliases.current:
        named.setdefault(change.model.id, []).append(change.alias)
    return {
        "versions": [
            {
                "name": m.name,
                "taxonomy": m.taxonomy,
                "aliases": named.get(m.id, []),
                "demo": m.demo,
                "artifact_sha256": m.artifact.sha256,
            }
            for m in versions.model_versions
        ]
    }


@router.post("/v1/admin/models/{version}/promote")
async def promote(
    version: str, body: PromoteIn, client: AdminClient, ctx: Context
) -> dict[str, Any]:
    """Point an alias at a version; to production only through the gate (409 with the
    comparison table when it refuses, unless forced with a reason)."""
    change = await _training(
        ctx.clients.training.PromoteModel(
            training_pb2.PromoteModelRequest(
                model_version=version,
                alias=body.alias,
                actor=client.principal,
                reason=body.reason,
                force=body.force,
            ),
            timeout=GATE_DEADLINE_S,
        )
    )
    return _change_out(change)


@router.post("/v1/admin/models/rollback")
async def rollback(body: RollbackIn, client: AdminClient, ctx: Context) -> dict[str, Any]:
    """Point an alias back at the version it named before its latest change."""
    change = await _training(
        ctx.clients.training.RollbackModel(
            training_pb2.RollbackModelRequest(
                alias=body.alias, actor=client.principal, reason=body.reason
            )
        )
    )
    return _change_out(change)
