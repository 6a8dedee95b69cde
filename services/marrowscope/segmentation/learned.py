"""``unet-<hash>``: white cells found by a U-Net through ONNX Runtime (the paper's approach).

The model (trained by :mod:`marrowscope.training.field_unet`) gives per-pixel probabilities
of white-cell body, white-cell core, red cell core and platelet core. Two ways to run it:

- whole field (``p1``): the field squeezed to the model's input side, as it was trained; a
  wide frame with many cells then shrinks them below what the model knows;
- canonical (``c2``, the service's default through :mod:`.catalogue`): the prepared field at
  the canonical scale (:mod:`.canonical`: 28 px per red cell, about what the model saw in
  training), fully convolutional, whatever the field's size.

Each white-cell core is one cell; the body pixels go to the nearest core (a Voronoi split, so
touching cells stay apart); a body without a core of its own becomes a cell if large enough
(never, in the default). Boxes and masks come from the body map at the image's resolution.
Red cells and platelets are counted as cores.

The version names the weights (hash of the ONNX file) and the way it runs, so the same image
and version give the same cells.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnxruntime as ort
from PIL import Image
from scipy import ndimage

from marrowscope.core.errors import FailedPrecondition
from marrowscope.core.onnx_providers import open_session

from .algorithm import CellRegion, Segmentation
from .stain import saturation

POSTPROCESS_VERSION = "p1"
# the same post-processing on the canonical field, unsqueezed; c2: its stain not normalised
# (c1, with it, gave other cells for the same image, so it is a new version)
CANONICAL_VERSION = "c2"
PAD_MULTIPLE = 16  # 2 ** the U-Net's depth
TILE, TILE_MARGIN = 512, 32  # canonical images larger than a tile run in overlapping tiles


def model_input(
    rgb: np.ndarray, side: int, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """What the U-Net sees: the field (or its region ``box`` = x0, y0, x1, y1) squeezed to
    ``side`` x ``side`` RGB, aspect not kept. Training crops go through this too, so both
    resample alike."""
    return np.asarray(Image.fromarray(rgb).resize((side, side), Image.Resampling.BILINEAR, box=box))


class UNetSegmenter:
    """:class:`~.algorithm.SegmentationAlgorithm` over an exported field U-Net."""

    def __init__(
        self,
        onnx_bytes: bytes,
        threads: int = 1,
        prefer_cuda: bool = False,
        threshold: float = 0.5,
        min_core_fraction: float = 0.0015,  # of the model's input area: smaller is noise
        min_body_fraction: float = 0.01,  # a body without a core needs this much of the input
        max_cell_fraction: float = 0.8,
        whole_field: bool = True,
    ) -> None:
        """``whole_field``: the field squeezed to the model's input side (the service's mode
        since the U-Net came); False: the image as it is, fully convolutional (padded to a
        multiple of 16), for fields already at the canonical scale (:mod:`.canonical`), which
        is about the red-cell size the model saw in training."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = open_session(onnx_bytes, options, prefer_cuda)
        except Exception as error:  # noqa: BLE001 - ORT raises its own hierarchy
            raise FailedPrecondition(f"not a loadable ONNX segmentation model: {error}") from error
        meta = self._session.get_modelmeta().custom_metadata_map
        channels = meta.get("marrowscope.channels", "").split(",")
        if channels[:2] != ["wbc_cell", "wbc_core"] or "marrowscope.input_size" not in meta:
            raise FailedPrecondition(
                "the ONNX model is not a Marrowscope field U-Net (metadata missing): export "
                "it with `marrowscope train-segmenter`"
            )
        self._channels = {name: i for i, name in enumerate(channels)}
        self.provider = self._session.get_providers()[0]
        self.input_size = int(meta["marrowscope.input_size"])
        self.threshold = threshold
        self.min_core_fraction = min_core_fraction
        self.min_body_fraction = min_body_fraction
        self.max_cell_fraction = max_cell_fraction
        self.whole_field = whole_field
        digest = hashlib.sha256(onnx_bytes).hexdigest()[:12]
        mode = POSTPROCESS_VERSION if whole_field else CANONICAL_VERSION
        self._version = f"unet-{digest}-{mode}"

    @property
    def version(self) -> str:
        return self._version

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """(channels, side, side) probabilities for the whole field at the model's side, or
        (channels, height, width) for the image as it is (``whole_field`` False)."""
        if self.whole_field:
            return self._run(model_input(rgb, self.input_size))
        height, width = rgb.shape[:2]
        if height <= TILE + 2 * TILE_MARGIN and width <= TILE + 2 * TILE_MARGIN:
            return self._run_padded(rgb)
        # Larger images in overlapping tiles: memory stays bounded whatever the field's size,
        # and each tile keeps only its centre, where the model saw enough context.
        out = np.empty((len(self._channels), height, width), np.float32)
        for y in range(0, height, TILE):
            for x in range(0, width, TILE):
                y0, x0 = max(0, y - TILE_MARGIN), max(0, x - TILE_MARGIN)
                y1, x1 = min(height, y + TILE + TILE_MARGIN), min(width, x + TILE + TILE_MARGIN)
                tile = self._run_padded(rgb[y0:y1, x0:x1])
                th, tw = min(TILE, height - y), min(TILE, width - x)
                out[:, y : y + th, x : x + tw] = tile[:, y - y0 : y - y0 + th, x - x0 : x - x0 + tw]
        return out

    def _run_padded(self, rgb: np.ndarray) -> np.ndarray:
        """The model on ``rgb`` padded (edge pixels) to a multiple of 16, cropped back."""
        height, width = rgb.shape[:2]
        pad_h, pad_w = -height % PAD_MULTIPLE, -width % PAD_MULTIPLE
        probs = self._run(np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge"))
        return np.asarray(probs[:, :height, :width], np.float32)

    def _run(self, rgb: np.ndarray) -> np.ndarray:
        """The model's (channels, height, width) probabilities for one uint8 RGB image."""
        batch = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        return np.asarray(self._session.run(None, {"rgb": np.ascontiguousarray(batch)})[0][0])

    def _instances(self, probs: np.ndarray) -> tuple[np.ndarray, int]:
        """Instance labels at the model's side: one per core, plus bodies without one."""
        # The size limits are fractions of the area the model was trained at.
        side = probs.shape[-1] if self.whole_field else self.input_size
        body = probs[self._channels["wbc_cell"]] > self.threshold
        cores, count = ndimage.label(probs[self._channels["wbc_core"]] > self.threshold)
        if count:
            areas = np.bincount(cores.ravel(), minlength=count + 1)
            keep = areas >= self.min_core_fraction * side * side
            keep[0] = False
            renumber = np.zeros(count + 1, np.int32)
            renumber[keep] = np.arange(1, int(keep.sum()) + 1)
            cores, count = renumber[cores], int(keep.sum())
        # Per connected body: its pixels go to the nearest of its own cores (touching cells
        # split between their cores); a body without a core is one cell if large enough.
        owner = np.zeros_like(cores)
        blobs, _ = ndimage.label(body | (cores > 0))
        for number, where in enumerate(ndimage.find_objects(blobs), start=1):
            if where is None:
                continue
            region = blobs[where] == number
            inside = np.where(region, cores[where], 0)
            ids = np.unique(inside[inside > 0])
            if len(ids) == 1:
                owner[where][region] = ids[0]
            elif len(ids) > 1:
                _, (iy, ix) = ndimage.distance_transform_edt(inside == 0, return_indices=True)
                owner[where][region] = inside[iy, ix][region]
            elif region.sum() >= self.min_body_fraction * side * side:
                count += 1
                owner[where][region] = count
        return owner, count

    def _count(self, probs: np.ndarray, channel: str) -> int:
        if channel not in self._channels:
            return 0
        _, count = ndimage.label(probs[self._channels[channel]] > self.threshold)
        return int(count)

    def _regions(self, rgb: np.ndarray) -> tuple[list[CellRegion], np.ndarray]:
        height, width = rgb.shape[:2]
        probs = self.probabilities(rgb)
        owner_small, count = self._instances(probs)
        if not count:
            return [], probs
        if probs.shape[1:] == (height, width):  # the model ran on the image as it is
            body, owner_full = probs[self._channels["wbc_cell"]] > self.threshold, owner_small
        else:  # back at the field's resolution: the body map smoothly, the owners as they are
            body = (
                np.asarray(
                    Image.fromarray(probs[self._channels["wbc_cell"]]).resize(
                        (width, height), Image.Resampling.BILINEAR
                    )
                )
                > self.threshold
            )
            owner_full = np.asarray(
                Image.fromarray(owner_small.astype(np.int32)).resize(
                    (width, height), Image.Resampling.NEAREST
                )
            )
        owner = np.where(body, owner_full, 0)
        cells = []
        for k, where in enumerate(ndimage.find_objects(owner), start=1):
            if where is None:
                continue
            rows, cols = where
            mask = owner[where] == k
            flags = []
            if rows.start == 0 or cols.start == 0 or rows.stop >= height or cols.stop >= width:
                flags.append("touches_border")
            if mask.sum() > self.max_cell_fraction * height * width:
                flags.append("too_large")
            # Touching another cell: a neighbour's pixel within 2 px (window grown by as much).
            y0, x0 = max(0, rows.start - 2), max(0, cols.start - 2)
            around = owner[y0 : rows.stop + 2, x0 : cols.stop + 2]
            near = ndimage.binary_dilation(around == k, iterations=2)
            if np.any(near & (around > 0) & (around != k)):
                flags.append("overlaps_cell")
            if float(np.percentile(saturation(rgb[where])[mask], 95)) < 60:
                flags.append("low_contrast")
            box = (cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
            cells.append(CellRegion(box, mask, flags))
        return cells, probs

    def segment(self, rgb: np.ndarray) -> Segmentation:
        cells, probs = self._regions(rgb)
        return Segmentation(
            cells, self._count(probs, "rbc_core"), self._count(probs, "platelet_core")
        )

    def center_cell(self, rgb: np.ndarray) -> CellRegion | None:
        """The white cell nearest the image centre, or None when the model finds none."""
        cells, _ = self._regions(rgb)
        if not cells:
            return None
        height, width = rgb.shape[:2]
        return min(
            cells,
            key=lambda c: np.hypot(
                c.box[0] + c.box[2] / 2 - width / 2, c.box[1] + c.box[3] / 2 - height / 2
            ),
        )
