"""The default segmentation algorithm (``threshold-v1``): no trained weights.

Nuclei are the darkest structures in a May-Grunwald Giemsa smear; the green channel separates
them best from red cells and background. Steps: Otsu threshold of the green channel (clamped
to a sane range), a closing that joins the lobes of one nucleus, connected components, size
filters, then each cell's region grows from its nucleus into non-background, non-red pixels.
A learned model can replace this behind ``SegmentationAlgorithm``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage

from marrowscope.core.preprocess import to_canvas


@dataclass(frozen=True)
class CellRegion:
    box: tuple[int, int, int, int]  # x, y, width, height
    mask: np.ndarray  # bool, box-sized
    flags: list[str] = field(default_factory=list)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Segmentation:
    cells: list[CellRegion]
    red_cell_count: int
    platelet_count: int


class SegmentationAlgorithm(Protocol):
    @property
    def version(self) -> str: ...

    def segment(self, rgb: np.ndarray) -> Segmentation: ...


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = hist.cumsum()
    total = weight[-1]
    mean = (hist * centres).cumsum()
    between = (mean[-1] * weight / total - mean) ** 2 / (weight * (total - weight) + 1e-12)
    return float(centres[int(np.argmax(between))])


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.hypot(yy, xx) <= radius


@dataclass(frozen=True)
class ThresholdSegmenter:
    min_nucleus_area: int = 250
    max_cell_area: int = 60_000
    version: str = "threshold-v1"

    def segment(self, rgb: np.ndarray) -> Segmentation:
        image = rgb.astype(np.float32) / 255.0
        red, green, blue = image[..., 0], image[..., 1], image[..., 2]
        # Two-stage Otsu: the first split is background vs everything stained; the second,
        # within the stained pixels, separates nuclei from red cells and cytoplasm.
        stained = green[green < _otsu(green)]
        second = _otsu(stained) if stained.size > 100 else 0.35
        threshold = float(np.clip(second, 0.2, 0.45))
        dark = green < threshold
        nuclei = ndimage.binary_closing(dark, structure=_disk(4))
        nuclei = ndimage.binary_opening(nuclei, structure=_disk(1))
        joined = ndimage.binary_dilation(nuclei, structure=_disk(5))
        labels, count = ndimage.label(joined)

        background = np.median(image[green > np.percentile(green, 60)], axis=0)
        foreground = np.linalg.norm(image - background, axis=2) > 0.08
        reddish = (red - blue) > 0.2
        cells: list[CellRegion] = []
        platelets = 0
        occupied = np.zeros(green.shape, np.int32)
        height, width = green.shape
        for index, region in enumerate(ndimage.find_objects(labels), start=1):
            if region is None:
                continue
            component = (labels[region] == index) & nuclei[region]
            area = int(component.sum())
            if area < self.min_nucleus_area:
                platelets += int(area > 5)
                continue
            grow = int(max(6, 0.9 * np.sqrt(area)))
            y0, x0 = max(region[0].start - grow, 0), max(region[1].start - grow, 0)
            y1 = min(region[0].stop + grow, height)
            x1 = min(region[1].stop + grow, width)
            nucleus = np.zeros((y1 - y0, x1 - x0), bool)
            nucleus[region[0].start - y0 : region[0].stop - y0,
                    region[1].start - x0 : region[1].stop - x0] = component  # fmt: skip
            reach = ndimage.distance_transform_edt(~nucleus) <= grow
            body = reach & foreground[y0:y1, x0:x1] & ~reddish[y0:y1, x0:x1]
            mask = ndimage.binary_fill_holes(body | nucleus)
            mask = ndimage.binary_opening(mask, structure=_disk(2)) | nucleus
            ys, xs = np.nonzero(mask)
            by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            box = (int(x0 + bx0), int(y0 + by0), int(bx1 - bx0), int(by1 - by0))
            cell_mask = mask[by0:by1, bx0:bx1]
            flags = []
            if box[0] == 0 or box[1] == 0 or box[0] + box[2] >= width or box[1] + box[3] >= height:
                flags.append("touches_border")
            if cell_mask.sum() > self.max_cell_area:
                flags.append("too_large")
            window = occupied[box[1] : box[1] + box[3], box[0] : box[0] + box[2]]
            if np.any(window[cell_mask] > 0):
                flags.append("overlaps_cell")
            window[cell_mask] = len(cells) + 1
            contrast = float(np.ptp(green[y0:y1, x0:x1][mask]))
            if contrast < 0.15:
                flags.append("low_contrast")
            cells.append(CellRegion(box, cell_mask, flags))
        red_cells = _count_red_cells(reddish & foreground)
        return Segmentation(cells, red_cells, platelets)


def _count_red_cells(mask: np.ndarray, typical_area: float = 2800.0) -> int:
    """Red cells clump, so estimate the count from the area rather than components."""
    return int(round(float(mask.sum()) / typical_area))


def crop_cell(rgb: np.ndarray, region: CellRegion) -> np.ndarray:
    """The paper's crop: the cell with its extracellular area removed, centred on 282x282 black."""
    x, y, w, h = region.box
    patch = rgb[y : y + h, x : x + w].copy()
    patch[~region.mask] = 0
    return to_canvas(patch)


def mask_to_rle(mask: np.ndarray) -> str:
    """Row-major run lengths, starting with a (possibly empty) background run."""
    flat = mask.ravel().astype(bool)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat.size and flat[0]:
        runs.insert(0, 0)
    return " ".join(str(r) for r in runs)


def rle_to_mask(rle: str, shape: tuple[int, int]) -> np.ndarray:
    runs = [int(r) for r in rle.split()] if rle else []
    flat = np.zeros(shape[0] * shape[1], bool)
    position, value = 0, False
    for run in runs:
        flat[position : position + run] = value
        position += run
        value = not value
    return flat.reshape(shape)
