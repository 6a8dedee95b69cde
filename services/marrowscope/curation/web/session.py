"""Signing in and out of the workbench, and who the caller is.

Signing in exchanges a user token for a server-side session: the cookie carries only the
session's opaque id, the token never leaves the sign-in request. Signing out revokes the
session on the server, so a copied cookie stops working too.
"""

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from .context import COOKIE, Context, CurrentUser, in_thread

router = APIRouter(prefix="/api/v1", tags=["session"])


class SignIn(BaseModel):
    token: str = Field(min_length=8, max_length=200)


@router.post("/session")
async def sign_in(
    body: SignIn, request: Request, response: Response, context: Context
) -> dict[str, Any]:
    """Exchange a user token for a browser session cookie (service accounts: 403)."""
    settings = context.settings
    user, session_id = await in_thread(
        context.curation.start_session,
        body.token,
        settings.session_absolute_seconds,
        request.cookies.get(COOKIE, ""),  # a session the browser had before is revoked
    )
    # HttpOnly and SameSite=Strict: scripts cannot read it and other sites cannot send it,
    # while <img> tags of this site can load thumbnails with it.
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
        max_age=settings.session_absolute_seconds,
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    return {"name": user.name, "role": user.role}


@router.delete("/session")
async def sign_out(request: Request, response: Response, context: Context) -> dict[str, str]:
    """Revoke the browser's session on the server and drop its cookie."""
    session_id = request.cookies.get(COOKIE, "")
    if session_id:
        await in_thread(context.curation.end_session, session_id)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=context.settings.secure_cookies
    )
    return {"status": "signed out"}


@router.get("/me")
async def me(user: CurrentUser, context: Context) -> dict[str, Any]:
    """The caller's name, role and own pace."""
    return {
        "name": user.name,
        "role": user.role,
        "pace": await in_thread(context.workbench.pace, user),
    }
