"""Field quality control: whether a segmentation result is plausible for a smear field.

A field is *not analysable* (its cells must not be counted) when:

- ``region_too_large``: one region is larger than any cell can be at the field's scale (wider
  than ``max_cell_diameter`` red cells), or, where the scale is unknown, covers more than
  ``max_region_share`` of the field (as when a whole field from another microscope came back as
  one "cell"); such a region is dropped, so no whole-image crop is ever stored;
- ``no_red_cell_layer``: nothing on the image stands out from the background, or no red cells
  were found (a blank image, a uniform colour, a photo of something else);
- ``scale_out_of_range``: the pixel size is outside what a smear microscope gives;
- ``nucleated_count_implausible``: more nucleated cells than fit in the field at its scale, or
  nucleated regions covering most of it.

``scale_uncertain`` (the red cells gave an unsure pixel size) is reported but does not, on its
own, stop the field from being counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .algorithm import CellRegion
from .field_scale import RED_CELL_DIAMETER_UM

REGION_TOO_LARGE = "region_too_large"
NO_RED_CELL_LAYER = "no_red_cell_layer"
SCALE_OUT_OF_RANGE = "scale_out_of_range"
NUCLEATED_COUNT_IMPLAUSIBLE = "nucleated_count_implausible"
SCALE_UNCERTAIN = "scale_uncertain"
FIELD_FLAGS = (
    REGION_TOO_LARGE,
    NO_RED_CELL_LAYER,
    SCALE_OUT_OF_RANGE,
    NUCLEATED_COUNT_IMPLAUSIBLE,
    SCALE_UNCERTAIN,
)
BLOCKING = frozenset(FIELD_FLAGS) - {SCALE_UNCERTAIN}


@dataclass(frozen=True, kw_only=True)
class FieldQcPolicy:
    max_cell_diameter: float = 3.0  # red-cell diameters: wider than the largest white cell
    max_region_share: float = 0.5  # without a scale: one region above this share of the field
    min_um_per_px: float = 0.03  # finer than a 100x objective on any camera
    # coarser than this, red cells are under 11 px: below what the canonical scale may
    # upsample (2.5x to 28 px), so the algorithms would run outside what was measured
    max_um_per_px: float = 0.67
    min_scale_confidence: float = 0.25  # below: scale_uncertain
    # A nucleated cell is at least ~1 red-cell diameter across: at most this many per
    # red-cell area of field, and their regions at most this share of it.
    max_nucleated_per_red_cell_area: float = 0.8
    max_nucleated_share: float = 0.85


@dataclass(frozen=True)
class QcResult:
    cells: list[CellRegion]  # without regions too large to be a cell
    flags: list[str]
    reasons: list[str]

    @property
    def analysable(self) -> bool:
        return not any(flag in BLOCKING for flag in self.flags)


def judge_field(
    cells: list[CellRegion],
    shape: tuple[int, int],
    red_cell_diameter_px: float,
    scale_confidence: float,
    red_cell_count: int,
    policy: FieldQcPolicy,
    dropped_regions: int = 0,
) -> QcResult:
    """The field's flags and reasons. ``red_cell_diameter_px`` is 0 when no cell layer was
    found; ``scale_confidence`` is 1 for a given pixel size; ``dropped_regions``: regions the
    algorithm itself dropped as too large to be one cell at this scale."""
    height, width = shape
    area = float(height * width)
    flags: list[str] = []
    reasons: list[str] = []
    if red_cell_diameter_px > 0:
        limit = np.pi / 4 * (policy.max_cell_diameter * red_cell_diameter_px) ** 2
        limit_text = f"the largest cell at this scale ({policy.max_cell_diameter:g} red cells)"
    else:
        limit = policy.max_region_share * area
        limit_text = f"{100 * policy.max_region_share:.0f} % of the field"
    kept = [c for c in cells if c.area <= limit]
    if dropped_regions:
        flags.append(REGION_TOO_LARGE)
        reasons.append(
            f"{dropped_regions} stained region(s) larger than any nucleus at this scale (a "
            "clump, a thick part of the smear, a stain deposit) were dropped: the field's "
            "segmentation cannot be trusted"
        )
    elif len(kept) < len(cells):
        largest = max(c.area for c in cells)
        flags.append(REGION_TOO_LARGE)
        reasons.append(
            f"a segmented region of {largest} px ({100 * largest / area:.0f} % of the field) is "
            f"larger than {limit_text}: segmentation failed on this image; the region was "
            "dropped"
        )
    if red_cell_diameter_px <= 0 or red_cell_count < 1:
        flags.append(NO_RED_CELL_LAYER)
        reasons.append(
            "no red-cell layer measured: the image is blank, uniform or not a smear field, or "
            "shows too few red cells to measure its scale; if it is a smear, give its pixel "
            "size (um_per_px or an instrument profile)"
        )
    else:
        um_per_px = RED_CELL_DIAMETER_UM / red_cell_diameter_px
        if not policy.min_um_per_px <= um_per_px <= policy.max_um_per_px:
            flags.append(SCALE_OUT_OF_RANGE)
            reasons.append(
                f"pixel size {um_per_px:.3f} um/px (red cells {red_cell_diameter_px:.0f} px "
                f"across) is outside {policy.min_um_per_px}-{policy.max_um_per_px} um/px; "
                "check the microscope's calibration or give um_per_px"
            )
        if scale_confidence < policy.min_scale_confidence:
            flags.append(SCALE_UNCERTAIN)
            reasons.append(
                f"the red cells gave an unsure pixel size (confidence {scale_confidence:.2f}): "
                "dense or few red cells; an instrument profile removes the guess"
            )
        red_cell_area = red_cell_diameter_px**2
        capacity = policy.max_nucleated_per_red_cell_area * area / red_cell_area
        covered = sum(c.area for c in kept) / area
        if len(kept) > max(4.0, capacity) or covered > policy.max_nucleated_share:
            flags.append(NUCLEATED_COUNT_IMPLAUSIBLE)
            reasons.append(
                f"{len(kept)} nucleated regions covering {100 * covered:.0f} % of the field: "
                f"at this scale at most {capacity:.0f} fit; the stain or the scale was misread"
            )
    return QcResult(kept, flags, reasons)
