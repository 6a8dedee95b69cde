"""Thumbnails of cell crops, sized by the server (the workbench asks for the size it shows)."""

from __future__ import annotations

import io

from PIL import Image


def thumbnail(data: bytes, size: int) -> bytes:
    """A square PNG thumbnail of ``size`` pixels (crops are 282x282 black-background)."""
    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=False)
    return out.getvalue()
