"""LIS API routes for credentials: OAuth2 client-credentials tokens and API client
registration.

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException
from pydantic import BaseModel, Field

from .auth import AuthError
from .deps import UNAUTHENTICATED, AdminClient, Context

router = APIRouter(tags=["auth"])


class ClientIn(BaseModel):
    """A new API client: its name and the scopes it gets."""

    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["submit", "read", "review", "admin"]] = Field(min_length=1)


@router.post("/v1/oauth/token")
async def token(
    grant_type: Annotated[Literal["client_credentials"], Form()],
    client_id: Annotated[str, Form(max_length=64)],
    client_secret: Annotated[str, Form(max_length=200)],
    ctx: Context,
    scope: Annotated[str, Form(max_length=200)] = "",
) -> dict[str, Any]:
    """OAuth2 client credentials: a short-lived JWT for a registered client."""
    try:
        return await asyncio.to_thread(ctx.auth.issue_token, client_id, client_secret, scope)
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers=UNAUTHENTICATED) from None
    except PermissionError as exc:
        raise HTTPException(403, str(exc)) from None


@router.post("/v1/admin/clients", status_code=201)
async def create_client(body: ClientIn, client: AdminClient, ctx: Context) -> dict[str, Any]:
    """Register an API client; its key is shown once (only its digest is stored)."""
    new, key = await asyncio.to_thread(ctx.auth.create_client, body.name, sorted(set(body.scopes)))
    return {"id": new.id, "name": new.name, "scopes": sorted(new.scopes), "api_key": key}
