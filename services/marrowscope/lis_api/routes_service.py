"""LIS API routes for the platform: liveness and readiness probes, metrics (not in the OpenAPI
schema).

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from marrowscope.core.metrics import metrics_response
from marrowscope.core.rpc import check_health

from .deps import Context

router = APIRouter(include_in_schema=False)
# The peers a request needs; readiness fails while one of them is not serving.
PEERS = ("segmentation", "inference")
# Reported but not required: without curation, expert review waits and analyses go on.
OPTIONAL_PEERS = ("curation",)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, peer calls, analysis jobs by state (no patient data)."""
    return metrics_response(request.app.state.metrics)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(ctx: Context) -> JSONResponse:
    """Readiness: 200 when every required peer is SERVING, 503 else; each peer's state
    either way (curation's too, when expert review through curation is configured)."""
    peers = (*PEERS, *(OPTIONAL_PEERS if ctx.review is not None else ()))
    health = await asyncio.gather(
        *(
            check_health(ctx.clients.address(s), tls=ctx.clients.tls, tls_server_name=s)
            for s in peers
        )
    )
    states = dict(zip(peers, health, strict=True))
    ready = all(states[s] == "SERVING" for s in PEERS)
    return JSONResponse({"ready": ready, "services": states}, status_code=200 if ready else 503)
