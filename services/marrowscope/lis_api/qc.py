"""Quality control before counting: which cells and fields a differential may count.

A cell the segmenter flagged as cut by the field's border or too large for a white cell is
not counted (each reason is reported with its count); an overlapping cell is counted but
reported. A field whose segmentation is implausible is not analysable: none of its cells is counted and
the report says why. Scale-aware segmenters (the default U-Net, stain-v4) judge the field themselves, at its
measured scale (``SegmentResponse.field_quality``); for the others this module judges it: one
region covering a large share of the field (as when a whole field from another microscope
comes back as one "cell"), or no red cells at all, where every smear field has them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from marrowscope.v1 import segmentation_pb2

FLAG_NAMES = {
    segmentation_pb2.QUALITY_FLAG_TOUCHES_BORDER: "touches_border",
    segmentation_pb2.QUALITY_FLAG_OVERLAPS_CELL: "overlaps_cell",
    segmentation_pb2.QUALITY_FLAG_TOO_SMALL: "too_small",
    segmentation_pb2.QUALITY_FLAG_TOO_LARGE: "too_large",
    segmentation_pb2.QUALITY_FLAG_LOW_CONTRAST: "low_contrast",
}
# FIELD_FLAG_REGION_TOO_LARGE -> "region_too_large", as the segmentation service names them.
FIELD_FLAG_NAMES = {
    value: name.removeprefix("FIELD_FLAG_").lower()
    for name, value in segmentation_pb2.FieldFlag.items()
    if value != segmentation_pb2.FIELD_FLAG_UNSPECIFIED
}
FIELD_NOT_ANALYSABLE = "field_not_analysable"


@dataclass(frozen=True)
class QcPolicy:
    """What is excluded (configurable per lab, see LisApiSettings)."""

    exclude_flags: tuple[str, ...] = ("touches_border", "too_large")
    max_region_share: float = 0.25  # one region above this share of the field: implausible
    min_red_cells: int = 1  # fewer red cells found than this: implausible


@dataclass(frozen=True)
class FieldVerdict:
    analysable: bool
    reason: str = ""  # why not, in words a hematologist reads in the report
    largest_region_share: float = 0.0
    red_cell_count: int = 0
    um_per_px: float | None = None  # the scale the segmenter used; None: unknown
    scale_source: str = ""
    scale_confidence: float | None = None
    flags: list[str] = field(default_factory=list)  # the segmenter's field-QC flags
    cell_flags: dict[str, list[str]] = field(default_factory=dict)  # cell id -> flag names
    excluded: dict[str, str] = field(default_factory=dict)  # cell id -> reason not counted


def judge_field(
    segmented: segmentation_pb2.SegmentResponse,
    width: int | None,
    height: int | None,
    policy: QcPolicy,
) -> FieldVerdict:
    """The field's verdict and each cell's flags and exclusion reason ('' when counted)."""
    flags = {
        c.cell_id: [FLAG_NAMES.get(f, str(f)) for f in c.quality_flags] for c in segmented.cells
    }
    area = (width or 0) * (height or 0)
    largest = max((c.area for c in segmented.cells), default=0)
    share = largest / area if area else 0.0
    problems = []
    quality = segmented.field_quality
    if quality.assessed:
        # A scale-aware segmenter judged the field itself, at its measured scale.
        if not quality.analysable:
            problems.append(quality.reason or "the segmenter judged this field not analysable")
    elif area and share > policy.max_region_share:
        problems.append(
            f"one segmented region covers {100 * share:.0f} % of the field (more than "
            f"{100 * policy.max_region_share:.0f} %): the segmentation failed on this image"
        )
    if not quality.assessed and segmented.red_cell_count < policy.min_red_cells:
        problems.append(
            f"{segmented.red_cell_count} red cells found: a smear field has many; the image "
            "is not a smear field or the segmentation failed on it"
        )
    if problems:
        excluded = {cell_id: FIELD_NOT_ANALYSABLE for cell_id in flags}
    else:
        excluded = {
            cell_id: next((f for f in policy.exclude_flags if f in names), "")
            for cell_id, names in flags.items()
        }
    return FieldVerdict(
        analysable=not problems,
        reason="; ".join(problems),
        largest_region_share=round(share, 4),
        red_cell_count=segmented.red_cell_count,
        um_per_px=quality.um_per_px or None,
        scale_source=quality.scale_source,
        scale_confidence=quality.scale_confidence if quality.assessed else None,
        flags=[FIELD_FLAG_NAMES.get(f, str(f)) for f in quality.flags],
        cell_flags=flags,
        excluded=excluded,
    )
