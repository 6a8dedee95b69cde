"""A field's pixel size, measured on its red cells.

A normal red cell is about 7.5 um across on any microscope, and every smear field has many, so
their size in pixels says how large one pixel is. On the flat-fielded field (background grey):
the cell layer is what is darker than the background by an Otsu threshold on optical density;
central pallor is filled; in the distance transform of that layer each maximal disc's centre is
a local maximum whose value is the disc's radius. Discs are taken greedily from the largest
peak, each one claiming the area it covers, so the ridge of one clump is not counted many
times; the red-cell diameter is the median disc diameter times a calibration factor (the
discs found are inscribed, so a little smaller than the annotated boxes; the factor was fitted
on TXL-PBC val against its red-cell boxes, ``bench/segmentation.py --calibrate``).

The estimate says how sure it is: few discs, a wide spread of sizes, or a cell layer so dense
that there is no background between cells (the discs then merge) lower its confidence. When
the lab gives the pixel size (per upload, or an instrument profile), that is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from .illumination import optical_density
from .stain import otsu_threshold

RED_CELL_DIAMETER_UM = 7.5
DISC_TO_BOX = 1.20  # annotated red-cell box side / measured disc diameter (TXL-PBC val)
WORKING_SIDE = 400  # the cell layer is measured at most this many pixels wide
MIN_RADIUS_PX = 2.0  # at the working size: smaller peaks are noise or platelets
# Red cells absorb more green than red (they look pink to red): the cell layer's median
# green-minus-red optical density. TXL-PBC val fields and their simulated other-lab versions
# range from 0.013 up (median 0.14); a grey or uniform image gives 0.
MIN_RED_CELL_TINT = 0.008


@dataclass(frozen=True, kw_only=True)
class FieldScale:
    """How large a field's pixels are, where that came from, and how sure it is."""

    red_cell_diameter_px: float  # in the field's own pixels
    source: str  # "red_cells" (measured), "upload" or "instrument_profile" (given)
    confidence: float  # 0-1; given values are 1
    red_cells_measured: int = 0
    cell_layer_share: float = 0.0  # of the field, the share the cell layer covers

    @property
    def um_per_px(self) -> float:
        return RED_CELL_DIAMETER_UM / self.red_cell_diameter_px

    @classmethod
    def given(cls, um_per_px: float, source: str) -> FieldScale:
        return cls(
            red_cell_diameter_px=RED_CELL_DIAMETER_UM / um_per_px, source=source, confidence=1.0
        )


def cell_layer(rgb: np.ndarray, od: np.ndarray | None = None) -> np.ndarray | None:
    """The cells (red and white, pallor filled) of a flat-fielded field, or None when nothing
    stands out from the background (a blank or uniform image). ``od``: its optical density,
    when already computed."""
    density = (optical_density(rgb) if od is None else od).sum(axis=2)
    if float(np.percentile(density, 99)) < 0.12:
        return None  # nothing absorbs: no smear on this image
    # Clipped: the few nuclei (far denser) would otherwise pull the split between them and
    # the red cells instead of between the red cells and the background.
    values = np.minimum(density[::2, ::2].ravel(), 0.4)
    threshold = max(0.06, otsu_threshold(values, bins=128))
    return fill_holes(ndimage.binary_opening(density > threshold, iterations=1))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: background not connected to the image's edge (the
    same as ``ndimage.binary_fill_holes``, by labelling instead of iterated dilation)."""
    background, count = ndimage.label(~mask)
    edge = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    open_to_edge = np.zeros(count + 1, bool)
    open_to_edge[np.unique(edge)] = True
    return np.asarray(mask | ~open_to_edge[background], bool)


def measure_discs(layer: np.ndarray) -> np.ndarray:
    """Radii (px) of the maximal discs of a binary cell layer, largest first, each disc
    claiming its area so one clump's ridge does not yield many."""
    distance = ndimage.distance_transform_edt(np.pad(layer, 1))[1:-1, 1:-1]
    peaks = (distance == ndimage.maximum_filter(distance, size=5)) & (distance >= MIN_RADIUS_PX)
    ys, xs = np.nonzero(peaks)
    if not len(ys):
        return np.zeros(0)
    values = distance[ys, xs]
    order = np.argsort(-values, kind="stable")
    claimed = np.zeros(layer.shape, bool)
    height, width = layer.shape
    radii = []
    for k in order:
        y, x, r = int(ys[k]), int(xs[k]), float(values[k])
        if claimed[y, x]:
            continue
        radii.append(r)
        reach = int(r * 0.9)
        y0, y1, x0, x1 = (
            max(0, y - reach),
            min(height, y + reach + 1),
            max(0, x - reach),
            min(width, x + reach + 1),
        )
        yy, xx = np.ogrid[y0 - y : y1 - y, x0 - x : x1 - x]
        claimed[y0:y1, x0:x1] |= yy * yy + xx * xx <= (r * 0.9) ** 2
    return np.asarray(radii)


def estimate_scale(rgb: np.ndarray, working_side: int = WORKING_SIDE) -> FieldScale | None:
    """The red-cell diameter of a flat-fielded field, or None when it shows no red-cell layer
    (nothing stands out from the background, or what does is not red). Larger images are
    measured at most ``working_side`` wide (0: as they are)."""
    height, width = rgb.shape[:2]
    factor = max(1, int(np.ceil(max(height, width) / working_side))) if working_side else 1
    small = np.asarray(Image.fromarray(rgb).reduce(factor)) if factor > 1 else rgb
    od = optical_density(small)
    layer = cell_layer(small, od)
    if layer is None:
        return None
    density = od[layer]
    if float(np.median(density[:, 1] - density[:, 0])) < MIN_RED_CELL_TINT:
        return None  # what stands out is not red cells (grey shapes, a ramp, a photo)
    share = float(layer.mean())
    radii = np.sort(measure_discs(layer))
    # Red cells are the bulk of the layer's area; white cells and clumps are a large tail, and
    # bits of edge and platelets many small discs of little area: the area-weighted median.
    # At high magnification a field shows a few red cells beside one large white cell, which
    # then carries that median: the largest disc is dropped (twice at most) until at least
    # two discs agree on a size.
    for _ in range(3):
        if len(radii) < 2:
            return None
        cumulative = np.cumsum(radii**2)
        median = float(radii[np.searchsorted(cumulative, cumulative[-1] / 2)])
        typical = radii[(radii > 0.6 * median) & (radii < 1.5 * median)]
        if len(typical) >= 2:
            break
        radii = radii[:-1]
    else:
        return None
    diameter = 2.0 * (median + 0.5) * DISC_TO_BOX * factor
    spread = float(np.subtract(*np.percentile(typical, [75, 25]))) / max(median, 1e-6)
    confidence = (
        min(1.0, len(typical) / 20.0)
        * float(np.clip(1.5 - 2.0 * spread, 0.0, 1.0))
        * (1.0 if share < 0.7 else float(np.clip((0.95 - share) / 0.25, 0.0, 1.0)))
    )
    return FieldScale(
        red_cell_diameter_px=round(diameter, 2),
        source="red_cells",
        confidence=round(confidence, 3),
        red_cells_measured=int(len(typical)),
        cell_layer_share=round(share, 4),
    )
