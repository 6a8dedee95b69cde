"""What every segmentation algorithm produces, and the paper's crop of one cell.

The default algorithm lives in :mod:`.stain` (no trained weights); the learned field U-Net
through ONNX Runtime in :mod:`.learned`. Both are :class:`SegmentationAlgorithm`; which ones a
service offers comes from its settings (:mod:`.catalogue`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from marrowscope.core.preprocess import to_canvas


@dataclass(frozen=True)
class CellRegion:
    box: tuple[int, int, int, int]  # x, y, width, height
    mask: np.ndarray  # bool, box-sized
    flags: list[str] = field(default_factory=list)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True, kw_only=True)
class FieldReport:
    """How a field was read before segmentation, and whether its result can be trusted.

    ``um_per_px`` is 0 where the scale is unknown (no red-cell layer, nothing given).
    ``flags`` name the quality problems (:mod:`.field_qc`); ``reasons`` say them in words."""

    um_per_px: float = 0.0
    red_cell_diameter_px: float = 0.0
    scale_source: str = ""  # "red_cells", "upload", "instrument_profile", or "" (unknown)
    scale_confidence: float = 0.0
    vignetting: float = 0.0  # 1 - darkest corner / centre of the fitted background
    background_rgb: tuple[int, int, int] = (0, 0, 0)  # before correction
    analysable: bool = True
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Segmentation:
    cells: list[CellRegion]
    red_cell_count: int
    platelet_count: int
    report: FieldReport | None = None  # set by scale-aware segmenters (:mod:`.canonical`)
    dropped_regions: int = 0  # stained regions too large to be one cell at the field's scale


class SegmentationAlgorithm(Protocol):
    """Field image -> nucleated cells (box + mask + flags), red cell and platelet counts.

    ``version`` names the algorithm and its parameters: the same image and version must give
    the same cells (the service stores them once per image and version)."""

    @property
    def version(self) -> str: ...

    def segment(self, rgb: np.ndarray) -> Segmentation: ...

    def center_cell(self, rgb: np.ndarray) -> CellRegion | None: ...


def crop_cell(rgb: np.ndarray, region: CellRegion) -> np.ndarray:
    """The paper's crop: the cell with its extracellular area removed, centred on 282x282 black."""
    x, y, w, h = region.box
    patch = rgb[y : y + h, x : x + w].copy()
    patch[~region.mask] = 0
    return to_canvas(patch)


def rescale_region(region: CellRegion, scale: float, shape: tuple[int, int]) -> CellRegion:
    """A region found on a resampled copy (``scale`` = copy px per field px), at the
    field's resolution (``shape`` = height, width)."""
    x, y, w, h = region.box
    x0, y0 = int(x / scale), int(y / scale)
    x1, y1 = (
        min(shape[1], int(np.ceil((x + w) / scale))),
        min(shape[0], int(np.ceil((y + h) / scale))),
    )
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    mask = Image.fromarray(region.mask).resize((x1 - x0, y1 - y0), Image.Resampling.NEAREST)
    return CellRegion((x0, y0, x1 - x0, y1 - y0), np.asarray(mask, dtype=bool), region.flags)


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
