"""Segmentation domain logic: field image in the store -> registered, stored cell crops.

Plain Python (no gRPC): the servicer converts messages, this does the work.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from marrowscope.core import cell_registry
from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument
from marrowscope.core.images import ImageLimits, decode_image, encode_png
from marrowscope.core.objectstore import ObjectStore, StoredObject, put_content_addressed
from marrowscope.core.pixel_size import check_um_per_px

from .algorithm import FieldReport, Segmentation, SegmentationAlgorithm, crop_cell, mask_to_rle
from .canonical import ScaleAwareSegmenter
from .catalogue import default_algorithms
from .field_scale import FieldScale

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class StoredCell:
    cell_id: str
    index: int
    crop: StoredObject
    box: tuple[int, int, int, int]
    mask_rle: str
    area: int
    flags: list[str]


@dataclass(frozen=True, kw_only=True)
class FieldResult:
    field_image_id: str
    field_image_key: str
    algorithm_version: str
    cells: list[StoredCell]
    red_cell_count: int
    platelet_count: int
    report: FieldReport | None = None  # scale and field quality (scale-aware algorithms)


def given_scale(um_per_px: float, source: str) -> FieldScale | None:
    """A pixel size the lab gave (0: none, measure it on the red cells), checked for sense."""
    if not um_per_px:
        return None
    return FieldScale.given(check_um_per_px(um_per_px), source or "upload")


class SegmentationService:
    def __init__(
        self,
        pool: DictPool,
        store: ObjectStore,
        algorithms: dict[str, SegmentationAlgorithm] | None = None,
        limits: ImageLimits | None = None,
    ) -> None:
        self.pool = pool
        self.store = store
        self.algorithms = algorithms or default_algorithms()
        self.default_algorithm = next(iter(self.algorithms))
        self.limits = limits or ImageLimits()

    def _algorithm(self, name: str) -> SegmentationAlgorithm:
        algo = self.algorithms.get(name or self.default_algorithm)
        if algo is None:
            raise InvalidArgument(
                f"unknown segmentation algorithm {name!r}; known: {', '.join(self.algorithms)}"
            )
        return algo

    def crop_center_cell(self, image_key: str) -> tuple[StoredObject, tuple[int, int, int, int]]:
        """Centre-cell mode: the central nucleated cell of a single-cell image, on the paper's
        282x282 black crop, stored content-addressed (the same image gives the same key)."""
        return self._center_crop(self.store.get(image_key), image_key)

    def _center_crop(self, data: bytes, key: str) -> tuple[StoredObject, tuple[int, int, int, int]]:
        image = decode_image(data, self.limits)
        region = self._algorithm("").center_cell(image.rgb)
        if region is None:
            raise InvalidArgument(f"no nucleated cell found in {key}; import it uncropped")
        crop = encode_png(crop_cell(image.rgb, region))
        return put_content_addressed(self.store, "cells", crop, "image/png", ".png"), region.box

    def segment(
        self,
        field_image_key: str,
        algorithm: str = "",
        um_per_px: float = 0.0,
        um_per_px_source: str = "",
    ) -> FieldResult:
        """Cut, store and register the cells of one field. ``um_per_px`` (0: measure it) is the
        field's pixel size when the lab knows it; scale-aware algorithms use it."""
        algo = self._algorithm(algorithm)
        given = given_scale(um_per_px, um_per_px_source)
        data = self.store.get(field_image_key)
        image = decode_image(data, self.limits)
        field_sha = hashlib.sha256(data).hexdigest()
        with self.pool.connection() as conn:
            field_id = cell_registry.register_field_image(
                conn, field_image_key, field_sha, image.width, image.height, image.format
            )
        result: Segmentation
        if isinstance(algo, ScaleAwareSegmenter):
            result = algo.segment(image.rgb, given)
        else:
            result = algo.segment(image.rgb)
        # A given pixel size can change the cells: it is part of what makes them the same.
        variant = f"{algo.version}@{um_per_px:.5g}um" if given else algo.version
        cells = []
        for index, region in enumerate(result.cells):
            crop = put_content_addressed(
                self.store, "cells", encode_png(crop_cell(image.rgb, region)), "image/png", ".png"
            )
            rle = mask_to_rle(region.mask)
            origin = f"seg:{field_sha}:{variant}:{index}"
            new_cell = cell_registry.NewCell(
                origin_key=origin,
                object_key=crop.key,
                sha256=crop.sha256,
                field_image_id=field_id,
                box=region.box,
                mask_rle=rle,
                area=region.area,
                quality_flags=region.flags,
                algorithm_version=algo.version,
            )
            with self.pool.connection() as conn:
                cell_id, _ = cell_registry.register_cell(conn, new_cell)
            cells.append(
                StoredCell(
                    cell_id=cell_id,
                    index=index,
                    crop=crop,
                    box=region.box,
                    mask_rle=rle,
                    area=region.area,
                    flags=region.flags,
                )
            )
        report = result.report
        log.info(
            "segmented field %s: %d cells (%s)%s",
            field_id,
            len(cells),
            algo.version,
            f"; not analysable: {', '.join(report.flags)}"
            if report and not report.analysable
            else "",
        )
        return FieldResult(
            field_image_id=field_id,
            field_image_key=field_image_key,
            algorithm_version=algo.version,
            cells=cells,
            red_cell_count=result.red_cell_count,
            platelet_count=result.platelet_count,
            report=report,
        )
