"""Signing in and out of the workbench, and who the caller is."""

from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field

from .context import COOKIE, Context, CurrentUser, in_thread

router = APIRouter(prefix="/api/v1", tags=["session"])


class SignIn(BaseModel):
    token: str = Field(min_length=8, max_length=200)


@router.post("/session")
async def sign_in(body: SignIn, response: Response, context: Context) -> dict[str, Any]:
    """Exchange a user token for a browser session cookie."""
    user = await in_thread(context.curation.authenticate, body.token)
    if user.role == "service":
        raise HTTPException(403, "service accounts cannot sign in to the workbench")
    # HttpOnly and SameSite=Strict: scripts cannot read it and other sites cannot send it,
    # while <img> tags of this site can load thumbnails with it.
    response.set_cookie(
        COOKIE,
        body.token,
        httponly=True,
        samesite="strict",
        secure=context.secure_cookies,
        max_age=12 * 3600,
        path="/",
    )
    return {"name": user.name, "role": user.role}


@router.delete("/session")
async def sign_out(response: Response) -> dict[str, str]:
    response.delete_cookie(COOKIE, path="/")
    return {"status": "signed out"}


@router.get("/me")
async def me(user: CurrentUser, context: Context) -> dict[str, Any]:
    """The caller's name, role and own pace."""
    return {
        "name": user.name,
        "role": user.role,
        "pace": await in_thread(context.workbench.pace, user),
    }
