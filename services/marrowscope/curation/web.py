"""HTTP transport of the curation API, and the experts' web UI that uses only this API.

The same domain (``CurationService``, ``Workbench``) as the gRPC servicer; nothing here
writes to the database on its own. Browsers sign in with their token once and then carry it
in an HttpOnly, SameSite=Strict cookie (so <img> tags can load thumbnails); other UI clients
send ``Authorization: Bearer <token>``. Admin pages read and steer campaigns through the
orchestrator's gRPC API.

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio
import io
import logging
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any, Literal

import grpc
import matplotlib
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from google.protobuf.json_format import MessageToDict
from PIL import Image
from pydantic import BaseModel, Field

from marrowscope.core.clients import ServiceClients
from marrowscope.core.errors import MarrowscopeError
from marrowscope.core.http_errors import add_error_handlers
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.v1 import orchestrator_pb2

from .service import CurationService, DecisionInput, Task, User
from .workbench import Workbench

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)
COOKIE = "ms_session"
UI_DIR = resources.files("marrowscope.curation") / "ui"
# Class hot-keys: digits first, then letters that are not the UI's own keys
# (h j k l and arrows move, u undo, 0 and x too difficult, Enter confirms the page,
# a s d pick the AL page's top-3 guesses, ? help).
HOTKEYS = "123456789qwertyiopfgvbnm"


def hotkeys(codes: list[str]) -> dict[str, str]:
    return dict(zip(codes, HOTKEYS, strict=False))


class SignIn(BaseModel):
    token: str = Field(min_length=8, max_length=200)


class ClaimIn(BaseModel):
    kind: Literal["CST", "AL"]
    proposed_class: str = Field("", max_length=16)
    limit: int = Field(50, ge=1, le=200)


class DecisionIn(BaseModel):
    client_decision_id: str = Field(min_length=8, max_length=80)
    task_id: str = Field(min_length=1, max_length=64)
    action: Literal["confirm", "correct", "label", "too_difficult"]
    class_code: str = Field("", max_length=16)


class DecisionsIn(BaseModel):
    decisions: list[DecisionIn] = Field(min_length=1, max_length=500)


class UndoIn(BaseModel):
    reason: str = Field("", max_length=500)


class ReleaseIn(BaseModel):
    task_ids: list[str] = Field(max_length=500)


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Literal["expert", "admin"]


class AssignIn(BaseModel):
    user: str = Field(min_length=1, max_length=80)
    assigned: bool = True


def task_out(task: Task, taxonomy_codes: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": task.id,
        "campaign_id": task.campaign_id,
        "round_number": task.round_number,
        "cell_id": task.cell_id,
        "kind": task.kind,
        "proposed_class": task.proposed_class,
        "top_classes": [{"class_code": c, "probability": round(p, 4)} for c, p in task.top_classes],
        "image_url": f"/api/v1/tasks/{task.id}/image",
    }


def thumbnail(data: bytes, size: int) -> bytes:
    """A square PNG thumbnail of ``size`` pixels (crops are 282x282 black-background)."""
    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False)
    return out.getvalue()


def campaign_plot(campaign: dict[str, Any]) -> bytes:
    """Test accuracy and labelled cells per round (the experiment report's two main panels)."""
    # Every round that has been evaluated (test metrics come right after its training).
    rounds = [r for r in campaign.get("rounds", []) if r.get("modelVersion")]
    numbers = [int(r.get("number", 0)) for r in rounds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3), dpi=100)
    left.plot(
        numbers, [float(r.get("testAccuracy", 0)) for r in rounds], marker="o", label="accuracy"
    )
    left.plot(
        numbers,
        [float(r.get("testMeanRecall", 0)) for r in rounds],
        marker="s",
        label="mean recall",
    )
    left.set(xlabel="round", ylabel="test", ylim=(0, 1), title="test metrics")
    left.legend(loc="lower right")
    right.bar(numbers, [int(r.get("teacherCount", 0)) for r in rounds], color="#4c72b0")
    right.set(xlabel="round", ylabel="labelled cells", title="teacher set")
    for axis in (left, right):
        axis.set_xticks(numbers or [1])
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def create_web_app(
    curation: CurationService,
    workbench: Workbench,
    store: ObjectStore,
    clients: ServiceClients,
    secure_cookies: bool = False,
) -> FastAPI:
    app = FastAPI(
        title="Marrowscope curation API",
        version="1",
        description="Review tasks for hematology experts (CST confirm/correct, AL label).",
    )
    add_error_handlers(app, log)

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def current_user(request: Request) -> User:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        return await run(curation.authenticate, token or request.cookies.get(COOKIE, ""))

    CurrentUser = Annotated[User, Depends(current_user)]

    async def orchestrator_call(call: Any) -> Any:
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

    # --- the UI -------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    @app.get("/ui/", include_in_schema=False)
    async def ui_index() -> FileResponse:
        return FileResponse(str(UI_DIR / "index.html"), headers={"Cache-Control": "no-cache"})

    @app.get("/ui/{name}", include_in_schema=False)
    async def ui_file(name: Literal["app.js", "app.css"]) -> FileResponse:
        return FileResponse(str(UI_DIR / name), headers={"Cache-Control": "no-cache"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # --- session --------------------------------------------------------------------------
    @app.post("/api/v1/session", tags=["session"])
    async def sign_in(body: SignIn, response: Response) -> dict[str, Any]:
        """Exchange a user token for a browser session cookie."""
        user = await run(curation.authenticate, body.token)
        if user.role == "service":
            raise HTTPException(403, "service accounts cannot sign in to the workbench")
        response.set_cookie(
            COOKIE,
            body.token,
            httponly=True,
            samesite="strict",
            secure=secure_cookies,
            max_age=12 * 3600,
            path="/",
        )
        return {"name": user.name, "role": user.role}

    @app.delete("/api/v1/session", tags=["session"])
    async def sign_out(response: Response) -> dict[str, str]:
        response.delete_cookie(COOKIE, path="/")
        return {"status": "signed out"}

    @app.get("/api/v1/me", tags=["session"])
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"name": user.name, "role": user.role, "pace": await run(workbench.pace, user)}

    # --- queues and tasks ---------------------------------------------------------------
    @app.get("/api/v1/campaigns", tags=["queues"])
    async def campaigns(user: CurrentUser) -> dict[str, Any]:
        """The campaigns this expert works (all for admins), with open CST / AL tasks."""
        return {"campaigns": [vars(q) for q in await run(workbench.queues, user)]}

    @app.get("/api/v1/taxonomies/{name}", tags=["queues"])
    async def taxonomy(name: str, user: CurrentUser) -> dict[str, Any]:
        tax = load_taxonomy(name)
        keys = hotkeys(tax.codes)
        return {
            "name": tax.name,
            "classes": [
                {
                    "code": c.code,
                    "name": c.name,
                    "lineage": c.lineage,
                    "hotkey": keys.get(c.code, ""),
                }
                for c in tax.classes
            ],
        }

    @app.get("/api/v1/campaigns/{campaign_id}/progress", tags=["queues"])
    async def progress(campaign_id: str, user: CurrentUser) -> dict[str, Any]:
        await run(workbench.check_visible, user, campaign_id)
        rows = await run(curation.progress, user, campaign_id)
        return {"rows": [vars(r) for r in rows]}

    @app.post("/api/v1/campaigns/{campaign_id}/claims", tags=["queues"])
    async def claim(campaign_id: str, body: ClaimIn, user: CurrentUser) -> dict[str, Any]:
        """Tasks to work on: those this user already holds first, then newly claimed ones.
        For CST without a class, the class with the most open tasks is chosen."""
        campaign = await run(workbench.check_visible, user, campaign_id)
        proposed = body.proposed_class
        if body.kind == "CST" and not proposed:
            # The page a reload left off first; else the class with the most open tasks.
            held_any = await run(workbench.held, user, campaign_id, "CST")
            if held_any:
                proposed = held_any[0].proposed_class
            else:
                open_by_class: dict[str, int] = {}
                for r in await run(curation.progress, user, campaign_id):
                    if r.kind == "CST":
                        open_by_class[r.class_code] = open_by_class.get(r.class_code, 0) + r.open
                if open_by_class and max(open_by_class.values()) > 0:
                    proposed = max(open_by_class, key=lambda c: open_by_class[c])
            tasks = [t for t in held_any if t.proposed_class == proposed]
        else:
            tasks = await run(workbench.held, user, campaign_id, body.kind, proposed)
        if len(tasks) < body.limit:
            tasks += await run(
                curation.claim, user, campaign_id, body.kind, proposed, body.limit - len(tasks)
            )
        return {
            "taxonomy": campaign["taxonomy"],
            "proposed_class": proposed,
            "tasks": [task_out(t) for t in tasks],
        }

    @app.post("/api/v1/claims/release", tags=["queues"])
    async def release(body: ReleaseIn, user: CurrentUser) -> dict[str, int]:
        return {"released": await run(curation.release, user, body.task_ids)}

    async def image_response(key: str, size: int) -> Response:
        data = await run(thumbnail, await run(store.get, key), size)
        return Response(
            data, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"}
        )

    @app.get(
        "/api/v1/tasks/{task_id}/image",
        tags=["images"],
        responses={200: {"content": {"image/png": {}}}},
    )
    async def task_image(
        task_id: str, user: CurrentUser, size: Annotated[int, Query(ge=32, le=512)] = 160
    ) -> Response:
        return await image_response(await run(workbench.task_image_key, user, task_id), size)

    @app.get(
        "/api/v1/cells/{cell_id}/image",
        tags=["images"],
        responses={200: {"content": {"image/png": {}}}},
    )
    async def cell_image(
        cell_id: str, user: CurrentUser, size: Annotated[int, Query(ge=32, le=512)] = 96
    ) -> Response:
        return await image_response(await run(workbench.cell_image_key, user, cell_id), size)

    @app.get("/api/v1/campaigns/{campaign_id}/references", tags=["images"])
    async def references(
        campaign_id: str, user: CurrentUser, classes: Annotated[str, Query(max_length=200)] = ""
    ) -> dict[str, Any]:
        """Confirmed example cells of each class (for the AL page's comparison strip)."""
        codes = [c for c in classes.split(",") if c][:5]
        found = await run(workbench.reference_cells, user, campaign_id, codes)
        return {
            "references": {c: [f"/api/v1/cells/{i}/image" for i in ids] for c, ids in found.items()}
        }

    # --- decisions ----------------------------------------------------------------------
    @app.post("/api/v1/decisions", tags=["decisions"])
    async def decide(body: DecisionsIn, user: CurrentUser) -> dict[str, Any]:
        """Each decision is stored (and acknowledged) on its own; a retry with the same
        client_decision_id returns the stored decision instead of a second one."""
        results = []
        for item in body.decisions:
            try:
                [decision] = await run(
                    curation.submit,
                    user,
                    [
                        DecisionInput(
                            item.client_decision_id, item.task_id, item.action, item.class_code
                        )
                    ],
                )
                results.append(
                    {
                        "client_decision_id": item.client_decision_id,
                        "ok": True,
                        "decision_id": decision.id,
                        "class_code": decision.class_code,
                        "decided_at": decision.decided_at.isoformat(),
                    }
                )
            except MarrowscopeError as exc:
                results.append(
                    {
                        "client_decision_id": item.client_decision_id,
                        "ok": False,
                        "status": exc.http_status,
                        "detail": str(exc),
                    }
                )
        return {"results": results}

    @app.post("/api/v1/decisions/{client_decision_id}/undo", tags=["decisions"])
    async def undo(client_decision_id: str, body: UndoIn, user: CurrentUser) -> dict[str, Any]:
        decision = await run(curation.undo, user, client_decision_id, body.reason)
        return {
            "client_decision_id": client_decision_id,
            "undone": decision.undone,
            "task_id": decision.task_id,
        }

    # --- admin --------------------------------------------------------------------------
    def admin_only(user: User) -> None:
        curation.require(user, "admin")

    @app.get("/api/v1/admin/campaigns", tags=["admin"])
    async def admin_campaigns(user: CurrentUser) -> dict[str, Any]:
        admin_only(user)
        reply = await orchestrator_call(
            clients.orchestrator.ListCampaigns(orchestrator_pb2.ListCampaignsRequest())
        )
        queues = {q.id: q for q in await run(workbench.queues, user)}
        out = []
        for message in reply.campaigns:
            campaign = MessageToDict(message, always_print_fields_with_no_presence=True)
            campaign["assigned"] = queues[message.id].assigned if message.id in queues else []
            out.append(campaign)
        return {"campaigns": out}

    @app.get(
        "/api/v1/admin/campaigns/{campaign_id}/plot.png",
        tags=["admin"],
        responses={200: {"content": {"image/png": {}}}},
    )
    async def admin_plot(campaign_id: str, user: CurrentUser) -> Response:
        admin_only(user)
        message = await orchestrator_call(
            clients.orchestrator.GetCampaign(
                orchestrator_pb2.CampaignIdRequest(campaign_id=campaign_id)
            )
        )
        png = await run(campaign_plot, MessageToDict(message))
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})

    @app.post("/api/v1/admin/campaigns/{campaign_id}/assignments", tags=["admin"])
    async def admin_assign(campaign_id: str, body: AssignIn, user: CurrentUser) -> dict[str, Any]:
        return {
            "assigned": await run(workbench.assign, user, campaign_id, body.user, body.assigned)
        }

    @app.post("/api/v1/admin/campaigns/{campaign_id}/{action}", tags=["admin"])
    async def admin_steer(
        campaign_id: str, action: Literal["start", "pause"], user: CurrentUser
    ) -> dict[str, Any]:
        admin_only(user)
        call = (
            clients.orchestrator.StartCampaign
            if action == "start"
            else clients.orchestrator.PauseCampaign
        )
        message = await orchestrator_call(
            call(orchestrator_pb2.CampaignIdRequest(campaign_id=campaign_id))
        )
        return {"id": message.id, "state": orchestrator_pb2.CampaignState.Name(message.state)}

    @app.post("/api/v1/admin/users", status_code=201, tags=["admin"])
    async def admin_user(body: UserIn, user: CurrentUser) -> dict[str, Any]:
        created, token = await run(curation.create_user, user, body.name, body.role)
        return {"name": created.name, "role": created.role, "token": token}

    return app
