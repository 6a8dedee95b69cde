"""LIS API routes for instrument profiles: the lab's microscopes and their pixel sizes.

(No ``from __future__ import annotations``: FastAPI must see the Annotated dependencies.)
"""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from marrowscope.core.pixel_size import MAX_UM_PER_PX, MIN_UM_PER_PX

from .deps import AdminClient, Context, ReadClient
from .instruments import InstrumentProfile, list_profiles, set_profile

router = APIRouter(tags=["instruments"])
PROFILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ProfileIn(BaseModel):
    um_per_px: float = Field(
        gt=MIN_UM_PER_PX,
        le=MAX_UM_PER_PX,
        description="the camera's pixel size at the sample in micrometres (from a calibration "
        "slide; about 0.1 at 100x)",
    )
    description: str = Field(default="", max_length=500)


def profile_out(profile: InstrumentProfile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "um_per_px": profile.um_per_px,
        "description": profile.description,
        "updated_at": profile.updated_at.isoformat(),
        "updated_by": profile.updated_by,
    }


@router.get("/v1/instrument-profiles")
async def list_instrument_profiles(client: ReadClient, ctx: Context) -> dict[str, Any]:
    """The lab's instrument profiles (name a profile per specimen or per upload)."""
    profiles = await asyncio.to_thread(list_profiles, ctx.lis.pool)
    return {"items": [profile_out(p) for p in profiles]}


@router.put("/v1/admin/instrument-profiles/{name}")
async def put_instrument_profile(
    name: Annotated[str, Path(pattern=PROFILE_NAME)],
    body: ProfileIn,
    client: AdminClient,
    ctx: Context,
) -> dict[str, Any]:
    """Create or change a profile (audited). Images already uploaded keep the pixel size they
    were stored with."""
    profile = await asyncio.to_thread(
        set_profile,
        ctx.lis.pool,
        name,
        body.um_per_px,
        body.description,
        client.principal,
    )
    return profile_out(profile)
