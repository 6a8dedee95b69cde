"""Admin pages: campaigns read and steered through the orchestrator's gRPC API, their plot,
expert assignments to queues, and users (new, disabled, enabled, new tokens). Every route
needs an admin."""

from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

import grpc
from fastapi import APIRouter, HTTPException, Path, Response
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel, Field

from marrowscope.v1 import orchestrator_pb2

from ..plots import campaign_plot
from .context import AdminUser, Context, in_thread

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
M = TypeVar("M")
USER_NAME = r"^[A-Za-z0-9._@-]+$"
UserName = Annotated[str, Path(min_length=1, max_length=80, pattern=USER_NAME)]


class AssignIn(BaseModel):
    user: str = Field(min_length=1, max_length=80)
    assigned: bool = True


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=80, pattern=USER_NAME)
    role: Literal["expert", "admin"]


class ReasonIn(BaseModel):
    reason: str = Field("", max_length=500)


async def orchestrator_call(call: Awaitable[M]) -> M:
    """Await an orchestrator call; its refusals become 404 / 409, its absence a 503."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
        ):
            raise HTTPException(
                409 if exc.code() == grpc.StatusCode.FAILED_PRECONDITION else 404,
                exc.details() or exc.code().name,
            ) from None
        raise HTTPException(
            503, f"orchestrator unavailable ({exc.code().name}); try again"
        ) from None


@router.get("/campaigns")
async def admin_campaigns(user: AdminUser, context: Context) -> dict[str, Any]:
    """Every campaign as the orchestrator reports it, with the experts assigned to it."""
    reply = await orchestrator_call(
        context.clients.orchestrator.ListCampaigns(orchestrator_pb2.ListCampaignsRequest())
    )
    assigned = await in_thread(context.workbench.assignments, user)
    out = []
    for message in reply.campaigns:
        campaign = MessageToDict(message, always_print_fields_with_no_presence=True)
        campaign["assigned"] = assigned.get(message.id, [])
        out.append(campaign)
    return {"campaigns": out}


@router.get("/campaigns/{campaign_id}/plot.png", responses={200: {"content": {"image/png": {}}}})
async def admin_plot(campaign_id: str, user: AdminUser, context: Context) -> Response:
    message = await orchestrator_call(
        context.clients.orchestrator.GetCampaign(
            orchestrator_pb2.CampaignIdRequest(campaign_id=campaign_id)
        )
    )
    png = await in_thread(campaign_plot, MessageToDict(message))
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})


# Declared before the steering route: its path would match 'assignments' as an action.
@router.post("/campaigns/{campaign_id}/assignments")
async def admin_assign(
    campaign_id: str, body: AssignIn, user: AdminUser, context: Context
) -> dict[str, Any]:
    """Assign an expert to (or unassign from) a campaign's review queue."""
    assigned = await in_thread(
        context.workbench.assign, user, campaign_id, body.user, body.assigned
    )
    return {"assigned": assigned}


@router.post("/campaigns/{campaign_id}/{action}")
async def admin_steer(
    campaign_id: str, action: Literal["start", "pause"], user: AdminUser, context: Context
) -> dict[str, Any]:
    orchestrator = context.clients.orchestrator
    call = orchestrator.StartCampaign if action == "start" else orchestrator.PauseCampaign
    message = await orchestrator_call(
        call(orchestrator_pb2.CampaignIdRequest(campaign_id=campaign_id))
    )
    return {"id": message.id, "state": orchestrator_pb2.CampaignState.Name(message.state)}


@router.post("/users", status_code=201)
async def admin_user(
    body: UserIn, user: AdminUser, context: Context, response: Response
) -> dict[str, Any]:
    """Create an expert or admin; the token is shown once, here."""
    created, token = await in_thread(context.curation.create_user, user, body.name, body.role)
    response.headers["Cache-Control"] = "no-store"
    return {"name": created.name, "role": created.role, "token": token}


# Declared before the enable / disable route: its path would match 'rotate-token' as an action.
@router.post("/users/{name}/rotate-token")
async def admin_rotate_token(
    name: UserName,
    user: AdminUser,
    context: Context,
    response: Response,
    body: ReasonIn | None = None,
) -> dict[str, Any]:
    """A new token for a user, shown once, here; the old one is refused from now on and the
    user's sessions are revoked."""
    token = await in_thread(context.curation.rotate_token, user, name, body.reason if body else "")
    response.headers["Cache-Control"] = "no-store"
    return {"name": name, "token": token}


@router.post("/users/{name}/{action}")
async def admin_user_state(
    name: UserName,
    action: Literal["disable", "enable"],
    user: AdminUser,
    context: Context,
    body: ReasonIn | None = None,
) -> dict[str, Any]:
    """Disable a user (their token and every session are refused at once, the sessions are
    revoked) or enable them again (their token works again; sessions stay revoked)."""
    changed = await in_thread(
        context.curation.set_disabled, user, name, action == "disable", body.reason if body else ""
    )
    return {"name": name, "disabled": action == "disable", "changed": changed}
