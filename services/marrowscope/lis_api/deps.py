"""What the LIS API's route modules share: the app's context (stores, peers, settings; one
object on ``app.state``, made by ``create_app``) and authentication as FastAPI dependencies.

A route asks for what it needs in its signature: ``ctx: Context`` for the context and one of
``SubmitClient``, ``ReadClient``, ``ReviewClient``, ``AdminClient`` for the calling client,
which answers 401 without valid credentials, 429 over the client's rate limit and 403 without
the scope.

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies as
objects, not as strings.)
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request

from marrowscope.core.clients import ServiceClients
from marrowscope.core.images import ImageLimits, PixelBudget
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.taxonomy import Taxonomy

from .auth import SCOPES, Authenticator, AuthError, Client, RateLimiter
from .pipeline import Deadlines
from .report import Thresholds
from .repository import LisRepository
from .review import CurationReview
from .settings import LisApiSettings
from .worker import AnalysisWorker

UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, kw_only=True)
class LisContext:
    """Everything a request may need, made once per app (``app.state.lis``)."""

    settings: LisApiSettings
    lis: LisRepository
    store: ObjectStore
    clients: ServiceClients
    auth: Authenticator
    limiter: RateLimiter
    limits: ImageLimits
    # Pixels decoded at once across the API's requests (uploads are checked by decoding).
    decode_budget: PixelBudget
    thresholds: Thresholds
    taxonomy: Taxonomy
    worker: AnalysisWorker
    review: CurationReview | None  # None: no curation token, review through this API only

    @property
    def deadlines(self) -> Deadlines:
        """The peers' deadlines for one field (segmentation, then inference)."""
        return Deadlines(self.settings.segmentation_deadline_s, self.settings.inference_deadline_s)


def context_of(app: FastAPI) -> LisContext:
    """The context ``create_app`` put on the app (``app.state.lis``)."""
    ctx = app.state.lis
    assert isinstance(ctx, LisContext), "create_app puts the context on app.state"
    return ctx


def get_context(request: Request) -> LisContext:
    """The app's context (a dependency)."""
    return context_of(request.app)


Context = Annotated[LisContext, Depends(get_context)]


def authenticate(ctx: LisContext, request: Request) -> Client:
    """The calling client from its API key or token, within its rate limit (blocking: it may
    read the database)."""
    header = request.headers.get("authorization", "")
    credential = header[7:].strip() if header.lower().startswith("bearer ") else ""
    credential = credential or request.headers.get("x-api-key", "")
    if not credential:
        raise HTTPException(
            401,
            "missing credentials: send 'Authorization: Bearer <API key or token>'",
            headers=UNAUTHENTICATED,
        )
    try:
        client = ctx.auth.authenticate(credential)
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers=UNAUTHENTICATED) from None
    wait = ctx.limiter.retry_after(client.id)
    if wait:
        raise HTTPException(
            429,
            f"rate limit: {ctx.settings.rate_limit_per_s:g} requests/s per client",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    return client


def require_scope(name: str) -> Callable[[Request, LisContext], Awaitable[Client]]:
    """A dependency: the authenticated client if it has the scope ``name`` (403 else)."""
    if name not in SCOPES:
        raise ValueError(f"unknown scope {name!r}")

    async def check(request: Request, ctx: Context) -> Client:
        client = await asyncio.to_thread(authenticate, ctx, request)
        if name not in client.scopes:
            raise HTTPException(403, f"this client lacks the '{name}' scope")
        return client

    return check


SubmitClient = Annotated[Client, Depends(require_scope("submit"))]
ReadClient = Annotated[Client, Depends(require_scope("read"))]
ReviewClient = Annotated[Client, Depends(require_scope("review"))]
AdminClient = Annotated[Client, Depends(require_scope("admin"))]
