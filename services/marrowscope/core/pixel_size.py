"""A microscope's pixel size at the sample, as a lab gives it (per upload, per instrument
profile, on the command line): one range for every place that accepts it."""

from __future__ import annotations

from .errors import InvalidArgument

# Exclusive below, inclusive above; about 0.1 um/px at 100x, 0.5 at 20x.
MIN_UM_PER_PX, MAX_UM_PER_PX = 0.01, 5.0


def check_um_per_px(um_per_px: float) -> float:
    """``um_per_px`` if it is a microscope's pixel size, else InvalidArgument saying so."""
    if not MIN_UM_PER_PX < um_per_px <= MAX_UM_PER_PX:
        raise InvalidArgument(
            f"um_per_px {um_per_px} is not a microscope's pixel size (expected more than "
            f"{MIN_UM_PER_PX} and at most {MAX_UM_PER_PX}; about 0.1 at 100x)"
        )
    return um_per_px
