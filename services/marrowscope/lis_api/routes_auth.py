"""LIS API routes for credentials: OAuth2 client-credentials tokens, and the administration
of API clients (register, list, disable, rotate a key; each change audited with the admin
client that made it).

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Path
from pydantic import BaseModel, Field

from .auth import AuthError, ClientRecord
from .deps import UNAUTHENTICATED, AdminClient, Context

router = APIRouter(tags=["auth"])
CLIENT_ID = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="the client's id (not its key)")
]


class ClientIn(BaseModel):
    """A new API client: its name and the scopes it gets."""

    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["submit", "read", "review", "admin"]] = Field(min_length=1)


class ClientChangeIn(BaseModel):
    """Why a client is disabled or its key rotated (kept in the audit trail)."""

    reason: str = Field(default="", max_length=2000)


def client_out(record: ClientRecord) -> dict[str, Any]:
    """A client as the admin routes show it (never its key or the key's digest)."""
    return {
        "id": record.id,
        "name": record.name,
        "scopes": record.scopes,
        "origin": record.origin,
        "disabled": record.disabled,
        "disabled_at": record.disabled_at.isoformat() if record.disabled_at else None,
        "disabled_by": record.disabled_by,
        "key_generation": record.key_generation,
        "key_rotated_at": record.key_rotated_at.isoformat() if record.key_rotated_at else None,
        "created_at": record.created_at.isoformat(),
    }


@router.post("/v1/oauth/token")
async def token(
    grant_type: Annotated[Literal["client_credentials"], Form()],
    client_id: Annotated[str, Form(max_length=64)],
    client_secret: Annotated[str, Form(max_length=200)],
    ctx: Context,
    scope: Annotated[str, Form(max_length=200)] = "",
) -> dict[str, Any]:
    """OAuth2 client credentials: a short-lived JWT for a registered, enabled client."""
    try:
        return await asyncio.to_thread(ctx.auth.issue_token, client_id, client_secret, scope)
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers=UNAUTHENTICATED) from None
    except PermissionError as exc:
        raise HTTPException(403, str(exc)) from None


@router.post("/v1/admin/clients", status_code=201)
async def create_client(body: ClientIn, client: AdminClient, ctx: Context) -> dict[str, Any]:
    """Register an API client; its key is shown once (only its digest is stored)."""
    new, key = await asyncio.to_thread(
        ctx.auth.create_client, body.name, sorted(set(body.scopes)), client.principal
    )
    return {"id": new.id, "name": new.name, "scopes": sorted(new.scopes), "api_key": key}


@router.get("/v1/admin/clients")
async def list_clients(client: AdminClient, ctx: Context) -> dict[str, Any]:
    """Every API client, enabled or not (ids, names, scopes; never keys)."""
    return {"items": [client_out(r) for r in await asyncio.to_thread(ctx.auth.clients)]}


@router.post("/v1/admin/clients/{client_id}/disable")
async def disable_client(
    client_id: CLIENT_ID,
    client: AdminClient,
    ctx: Context,
    body: ClientChangeIn | None = None,
) -> dict[str, Any]:
    """Disable a client (audited): its key and the tokens it was issued are refused from the
    next request on. A client cannot disable itself (use another admin client)."""
    if client_id == client.id:
        raise HTTPException(
            409, "a client cannot disable itself: disable it with another admin client"
        )
    record = await asyncio.to_thread(
        ctx.auth.disable_client, client_id, client.principal, body.reason if body else ""
    )
    return client_out(record)


@router.post("/v1/admin/clients/{client_id}/rotate-key")
async def rotate_key(
    client_id: CLIENT_ID,
    client: AdminClient,
    ctx: Context,
    body: ClientChangeIn | None = None,
) -> dict[str, Any]:
    """A new key for the client, shown once (audited): the old key and the tokens issued
    with it are refused from the next request on. A key from the settings is rotated there."""
    record, key = await asyncio.to_thread(
        ctx.auth.rotate_key, client_id, client.principal, body.reason if body else ""
    )
    return {**client_out(record), "api_key": key}
