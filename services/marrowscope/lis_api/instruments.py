"""Instrument profiles: one per microscope / camera, with its pixel size (owns the
``instrument_profiles`` table). A specimen or an upload names a profile; its pixel size is
copied onto each image at upload, so a later edit of the profile does not change how images
already stored are read (the edit is in the audit trail)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from marrowscope.core.audit import append_event
from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument
from marrowscope.core.pixel_size import check_um_per_px


@dataclass(frozen=True, kw_only=True)
class InstrumentProfile:
    name: str
    um_per_px: float
    description: str
    updated_at: datetime
    updated_by: str

    @property
    def source(self) -> str:
        """What a field read at this profile's scale names as its scale's source."""
        return f"instrument_profile:{self.name}"


def _profile(row: dict) -> InstrumentProfile:
    return InstrumentProfile(
        name=row["name"],
        um_per_px=float(row["um_per_px"]),
        description=row["description"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


def list_profiles(pool: DictPool) -> list[InstrumentProfile]:
    with pool.connection() as conn:
        rows = conn.execute("SELECT * FROM instrument_profiles ORDER BY name").fetchall()
    return [_profile(r) for r in rows]


def get_profile(pool: DictPool, name: str) -> InstrumentProfile:
    """The profile, or InvalidArgument naming the ones there are."""
    with pool.connection() as conn:
        row = conn.execute("SELECT * FROM instrument_profiles WHERE name = %s", (name,)).fetchone()
    if row is None:
        known = ", ".join(p.name for p in list_profiles(pool)) or "none yet"
        raise InvalidArgument(
            f"unknown instrument profile {name!r} (known: {known}); an admin creates it with "
            "PUT /v1/admin/instrument-profiles/{name}"
        )
    return _profile(row)


def set_profile(
    pool: DictPool, name: str, um_per_px: float, description: str, actor: str
) -> InstrumentProfile:
    """Create or change a profile, recorded in the audit trail with its previous value."""
    check_um_per_px(um_per_px)
    with pool.connection() as conn, conn.transaction():
        before = conn.execute(
            "SELECT um_per_px, description FROM instrument_profiles WHERE name = %s FOR UPDATE",
            (name,),
        ).fetchone()
        row = conn.execute(
            """INSERT INTO instrument_profiles (name, um_per_px, description, updated_by)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (name) DO UPDATE SET um_per_px = EXCLUDED.um_per_px,
                   description = EXCLUDED.description, updated_at = now(),
                   updated_by = EXCLUDED.updated_by
               RETURNING *""",
            (name, um_per_px, description, actor),
        ).fetchone()
        assert row is not None
        append_event(
            conn,
            actor=actor,
            action="instrument_profile.set",
            entity="instrument_profile",
            entity_id=name,
            previous=dict(before) if before else None,
            current={"um_per_px": um_per_px, "description": description},
            reason=None,
        )
    return _profile(row)
