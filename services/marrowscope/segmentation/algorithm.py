"""What every segmentation algorithm produces, and the paper's crop of one cell.

The default algorithm lives in :mod:`.stain` (no trained weights); the learned field U-Net
through ONNX Runtime in :mod:`.learned`. Both are :class:`SegmentationAlgorithm`; which ones a
service offers comes from its settings (:mod:`.catalogue`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

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
