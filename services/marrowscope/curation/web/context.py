"""What every route of the curation HTTP API shares: the app's context (the domain objects
and settings, one per app, no globals) and authentication as FastAPI dependencies.

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from marrowscope.core.clients import ServiceClients
from marrowscope.core.objectstore import ObjectStore

from ..service import CurationService, User
from ..settings import CurationSettings
from ..workbench import Workbench

COOKIE = "ms_session"
T = TypeVar("T")


@dataclass(frozen=True)
class WebContext:
    """The domain and settings behind one app (kept on ``app.state.context``)."""

    curation: CurationService
    workbench: Workbench
    store: ObjectStore
    clients: ServiceClients
    settings: CurationSettings


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking domain code (database, object store, images) off the event loop."""
    return await asyncio.to_thread(fn, *args)


def web_context(request: Request) -> WebContext:
    context = request.app.state.context
    assert isinstance(context, WebContext)
    return context


Context = Annotated[WebContext, Depends(web_context)]


async def current_user(request: Request, context: Context) -> User:
    """The caller: ``Authorization: Bearer <token>`` (UI clients) or the session cookie
    (browsers), which holds a server-side session id and never a token. Unauthenticated
    (401) without a known token or a live session."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if token:
        return await in_thread(context.curation.authenticate, token)
    return await in_thread(
        context.curation.session_user,
        request.cookies.get(COOKIE, ""),
        context.settings.session_idle_seconds,
    )


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser, context: Context) -> User:
    """The caller, who must be an admin (PermissionDenied, 403, otherwise)."""
    context.curation.require(user, "admin")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
