"""Identifiers: every row id is a UUID; callers get a clear error for anything else."""

from __future__ import annotations

import uuid

from .errors import InvalidArgument


def parse_uuid(value: str, what: str) -> str:
    """``value`` as a canonical UUID string, or InvalidArgument naming ``what`` it should be."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument(f"{what} {value!r} is not a UUID") from None


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
