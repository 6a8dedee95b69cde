"""Every field at one scale and one look before it is segmented, and checked after.

A field from any microscope is (1) corrected for uneven illumination and its background made
grey (:mod:`.illumination`), (2) stain-normalised, (3) measured: its pixel size from its red
cells (:mod:`.field_scale`) unless the lab gave it, (4) resampled so a red cell is
:data:`CANONICAL_RED_CELL_PX` pixels across, and then segmented there by an algorithm tuned at
that scale. Boxes and masks are mapped back to the field's pixels, and the field's quality is
judged (:mod:`.field_qc`). The scale, its source and confidence, and the verdict travel with
the result (:class:`~.algorithm.FieldReport`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
from PIL import Image

from marrowscope.core.errors import InvalidArgument

from .algorithm import CellRegion, FieldReport, Segmentation, rescale_region
from .field_qc import FieldQcPolicy, judge_field
from .field_scale import FieldScale, cell_layer, estimate_scale
from .illumination import (
    Illumination,
    fit_illumination,
    flat_field,
    normalise_stain,
    stain_gains,
)

CANONICAL_RED_CELL_PX = 28.0  # a red cell's diameter at the scale the algorithms run at (val)
MEASURE_SIDE = 400  # illumination and scale are measured on a copy at most this wide
FALLBACK_SIDE = 400  # without a scale, the field is segmented at this longer side
MAX_UPSAMPLING = 2.5
# A red cell this small (px) on the measuring copy is measured again on a finer copy: near the
# distance-transform's floor the estimate sticks at a few pixels whatever the truth.
FINE_MEASURE_BELOW_PX = 16.0
FINE_MEASURE_TARGET_PX = 24.0  # ... at a reduction that makes it about this wide
FINE_MEASURE_WINDOW = 640  # ... on the field's central window at most this wide
MAX_CANONICAL_PIXELS = 24_000_000  # a field larger at the canonical scale is refused (memory)


@dataclass(frozen=True, kw_only=True)
class PreparedField:
    rgb: np.ndarray  # at the canonical scale, flat-fielded and stain-normalised
    factor: float  # canonical px per field px
    scale: FieldScale | None  # None: no red-cell layer and nothing given
    illumination: Illumination


def prepare_field(
    rgb: np.ndarray,
    given: FieldScale | None = None,
    canonical_px: float = CANONICAL_RED_CELL_PX,
    normalise_stain_colours: bool = True,
) -> PreparedField:
    """``rgb`` corrected, measured and resampled to the canonical scale (its stain normalised
    too unless ``normalise_stain_colours`` is False)."""
    height, width = rgb.shape[:2]
    reduction = max(1, int(np.ceil(max(height, width) / MEASURE_SIDE)))
    small = np.asarray(Image.fromarray(rgb).reduce(reduction)) if reduction > 1 else rgb
    illumination = fit_illumination(small)
    corrected_small = flat_field(small, illumination)
    gains = stain_gains(corrected_small)
    scale = given
    if scale is None:
        scale = _measure(rgb, corrected_small, reduction, illumination)
    elif scale.cell_layer_share == 0.0:
        # A given scale: the layer is still measured, to count red cells where no white cell
        # is, and to tell a blank image from a smear.
        layer = cell_layer(corrected_small)
        if layer is not None:
            scale = replace(scale, cell_layer_share=round(float(layer.mean()), 4))
    if scale is not None:
        factor = min(MAX_UPSAMPLING, canonical_px / scale.red_cell_diameter_px)
    else:
        factor = min(1.0, FALLBACK_SIDE / max(height, width))
    if abs(factor - 1.0) <= 1e-3:
        factor = 1.0
    if height * width * factor * factor > MAX_CANONICAL_PIXELS:
        raise InvalidArgument(
            f"the field ({width}x{height}) at the canonical scale would be "
            f"{height * width * factor * factor / 1e6:.0f} MP (limit "
            f"{MAX_CANONICAL_PIXELS / 1e6:.0f} MP): its pixel size "
            f"({scale.um_per_px if scale else 0:.3f} um/px) is too coarse for a field this "
            "large; check um_per_px or send smaller fields"
        )
    if factor != 1.0:
        size = (max(8, round(width * factor)), max(8, round(height * factor)))
        image = Image.fromarray(rgb)
        box_reduction = int(1 / (factor * 1.3))  # a cheap box filter first, far from the goal
        if box_reduction >= 2:
            image = image.reduce(box_reduction)
        resampled = np.asarray(image.resize(size, Image.Resampling.BILINEAR))
    else:
        resampled = rgb
    canonical = flat_field(resampled, illumination)
    if normalise_stain_colours:
        canonical = normalise_stain(canonical, gains)
    return PreparedField(rgb=canonical, factor=factor, scale=scale, illumination=illumination)


def _measure(
    rgb: np.ndarray, corrected_small: np.ndarray, reduction: int, illumination: Illumination
) -> FieldScale | None:
    """The scale from the red cells on the measuring copy (``reduction`` x smaller), again on a
    finer central window where the red cells came out too small there to measure well."""
    measured = estimate_scale(corrected_small)  # before stain normalisation: its own tint
    if measured is None:
        return None
    diameter = measured.red_cell_diameter_px * reduction
    if reduction > 1 and measured.red_cell_diameter_px < FINE_MEASURE_BELOW_PX:
        finer = max(1, int(diameter / FINE_MEASURE_TARGET_PX))
        if finer < reduction:
            reduced = np.asarray(Image.fromarray(rgb).reduce(finer)) if finer > 1 else rgb
            rh, rw = reduced.shape[:2]
            y0, x0 = (
                max(0, (rh - FINE_MEASURE_WINDOW) // 2),
                max(0, (rw - FINE_MEASURE_WINDOW) // 2),
            )
            y1, x1 = min(rh, y0 + FINE_MEASURE_WINDOW), min(rw, x0 + FINE_MEASURE_WINDOW)
            window = flat_field(reduced[y0:y1, x0:x1], illumination, (rh, rw, y0, y1, x0, x1))
            fine = estimate_scale(window, working_side=0)
            if fine is not None:
                measured, reduction = fine, finer
                diameter = fine.red_cell_diameter_px * finer
    return replace(measured, red_cell_diameter_px=round(diameter, 2))


class CanonicalAlgorithm(Protocol):
    """What runs on a prepared field (canonical scale, corrected colours)."""

    def segment(self, rgb: np.ndarray) -> Segmentation: ...

    def center_cell(self, rgb: np.ndarray) -> CellRegion | None: ...


class ScaleAwareSegmenter:
    """A :class:`~.algorithm.SegmentationAlgorithm` that prepares each field, runs ``inner``
    at the canonical scale and judges the result."""

    def __init__(
        self,
        inner: CanonicalAlgorithm,
        version: str,
        policy: FieldQcPolicy | None = None,
        canonical_px: float = CANONICAL_RED_CELL_PX,
        center_cells: CanonicalAlgorithm | None = None,
        normalise_stain_colours: bool = True,
    ) -> None:
        self.inner = inner
        self.normalise_stain_colours = normalise_stain_colours
        self.center_cells = center_cells
        self._version = version
        self.policy = policy or FieldQcPolicy()
        self.canonical_px = canonical_px

    @property
    def version(self) -> str:
        return self._version

    def segment(self, rgb: np.ndarray, given: FieldScale | None = None) -> Segmentation:
        prepared = prepare_field(rgb, given, self.canonical_px, self.normalise_stain_colours)
        found = self.inner.segment(prepared.rgb)
        shape = (rgb.shape[0], rgb.shape[1])
        cells = [
            rescale_region(c, prepared.factor, shape) if prepared.factor != 1.0 else c
            for c in found.cells
        ]
        scale = prepared.scale
        red_cells = found.red_cell_count
        if not red_cells and scale is not None and scale.cell_layer_share:
            # No nucleated cell to count around: the measured cell layer, in red cells.
            disc = np.pi / 4 * scale.red_cell_diameter_px**2
            red_cells = round(scale.cell_layer_share * shape[0] * shape[1] / disc)
        verdict = judge_field(
            cells,
            shape,
            scale.red_cell_diameter_px if scale else 0.0,
            scale.confidence if scale else 0.0,
            red_cells,
            self.policy,
            dropped_regions=found.dropped_regions,
        )
        tint = prepared.illumination.tint
        report = FieldReport(
            um_per_px=round(scale.um_per_px, 4) if scale else 0.0,
            red_cell_diameter_px=scale.red_cell_diameter_px if scale else 0.0,
            scale_source=scale.source if scale else "",
            scale_confidence=scale.confidence if scale else 0.0,
            vignetting=prepared.illumination.vignetting,
            background_rgb=(round(tint[0]), round(tint[1]), round(tint[2])),
            analysable=verdict.analysable,
            flags=verdict.flags,
            reasons=verdict.reasons,
        )
        return Segmentation(verdict.cells, red_cells, found.platelet_count, report)

    def center_cell(self, rgb: np.ndarray) -> CellRegion | None:
        """Centre-cell mode (single-cell images from a slide scanner, one magnification per
        instrument): ``center_cells`` on the image as it is when set, so the crops the
        classifier trains on stay those it was measured with; else ``inner`` on the prepared
        image."""
        if self.center_cells is not None:
            return self.center_cells.center_cell(rgb)
        prepared = prepare_field(rgb, None, self.canonical_px)
        region = self.inner.center_cell(prepared.rgb)
        if region is None or prepared.factor == 1.0:
            return region
        return rescale_region(region, prepared.factor, (rgb.shape[0], rgb.shape[1]))
