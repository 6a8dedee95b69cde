"""Segmentation domain logic: field image in the store -> registered, stored cell crops.

Plain Python (no gRPC): the servicer converts messages, this does the work.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument, NotFound
from marrowscope.core.images import ImageLimits, decode_image, encode_png
from marrowscope.core.objectstore import ObjectStore, StoredObject, put_content_addressed
from marrowscope.core.taxonomy import load_taxonomy

from .algorithm import SegmentationAlgorithm, crop_cell, mask_to_rle
from .stain import StainSegmenter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredCell:
    cell_id: str
    index: int
    crop: StoredObject
    box: tuple[int, int, int, int]
    mask_rle: str
    area: int
    flags: list[str]


@dataclass(frozen=True)
class FieldResult:
    field_image_id: str
    field_image_key: str
    algorithm_version: str
    cells: list[StoredCell]
    red_cell_count: int
    platelet_count: int


@dataclass(frozen=True)
class ImportedCell:
    cell_id: str
    object_key: str
    created: bool


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
        default = StainSegmenter()
        self.algorithms = algorithms or {default.version: default}
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

    def segment(self, field_image_key: str, algorithm: str = "") -> FieldResult:
        algo = self._algorithm(algorithm)
        data = self.store.get(field_image_key)
        image = decode_image(data, self.limits)
        field_sha = hashlib.sha256(data).hexdigest()
        field_id = self._register_field(
            field_image_key, field_sha, image.width, image.height, image.format
        )
        result = algo.segment(image.rgb)
        cells = []
        for index, region in enumerate(result.cells):
            crop = put_content_addressed(
                self.store, "cells", encode_png(crop_cell(image.rgb, region)), "image/png", ".png"
            )
            rle = mask_to_rle(region.mask)
            origin = f"seg:{field_sha}:{algo.version}:{index}"
            cell_id = self._register_cell(
                origin, crop, field_id, region.box, rle, region.area, region.flags, algo.version
            )
            cells.append(
                StoredCell(cell_id, index, crop, region.box, rle, region.area, region.flags)
            )
        log.info("segmented field %s: %d cells (%s)", field_id, len(cells), algo.version)
        return FieldResult(
            field_id,
            field_image_key,
            algo.version,
            cells,
            result.red_cell_count,
            result.platelet_count,
        )

    def _register_field(self, key: str, sha: str, width: int, height: int, fmt: str) -> str:
        with self.pool.connection() as conn:
            row = conn.execute(
                """INSERT INTO field_images (id, object_key, sha256, width, height, format)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (object_key) DO UPDATE SET object_key = EXCLUDED.object_key
                   RETURNING id""",
                (uuid.uuid4(), key, sha, width, height, fmt),
            ).fetchone()
        assert row is not None
        return str(row["id"])

    def _register_cell(
        self,
        origin: str,
        crop: StoredObject,
        field_id: str | None,
        box: tuple[int, int, int, int] | None,
        rle: str | None,
        area: int | None,
        flags: list[str],
        algorithm_version: str | None,
        dataset: str | None = None,
    ) -> str:
        with self.pool.connection() as conn:
            row = conn.execute(
                """INSERT INTO cells (id, origin_key, object_key, sha256, dataset, field_image_id,
                                      box, mask_rle, area, quality_flags, algorithm_version)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (origin_key) DO UPDATE SET origin_key = EXCLUDED.origin_key
                   RETURNING id""",
                (
                    uuid.uuid4(),
                    origin,
                    crop.key,
                    crop.sha256,
                    dataset,
                    field_id,
                    list(box) if box else None,
                    rle,
                    area,
                    flags,
                    algorithm_version,
                ),
            ).fetchone()
        assert row is not None
        return str(row["id"])

    def import_cells(
        self, dataset: str, taxonomy: str, cells: list[tuple[str, str]], center_crop: bool = False
    ) -> list[ImportedCell]:
        """Register single-cell images already in the store; idempotent by image content.

        ``cells`` holds (object_key, reference_label); the label ('' for none) is recorded once
        as the dataset's reference label. With ``center_crop`` the registered image is the
        centre-cell crop of the stored one (the original stays where it is).
        """
        if not dataset:
            raise InvalidArgument("dataset name is required to import cells")
        tax = load_taxonomy(taxonomy)
        for _, label in cells:
            if label:
                tax.check(label)
        imported = []
        for key, label in cells:
            try:
                data = self.store.get(key)
            except NotFound:
                raise NotFound(
                    f"object {key} not found; upload the image before importing it"
                ) from None
            sha = hashlib.sha256(data).hexdigest()
            if center_crop:
                stored, _ = self._center_crop(data, key)
            else:
                decode_image(data, self.limits)  # refuse anything that is not a usable image
                stored = StoredObject(key, sha, len(data), "")
            origin = f"import:{dataset}:{sha}" + (":center" if center_crop else "")
            with self.pool.connection() as conn, conn.transaction():
                row = conn.execute(
                    """INSERT INTO cells (id, origin_key, object_key, sha256, dataset)
                       VALUES (%s, %s, %s, %s, %s) ON CONFLICT (origin_key) DO NOTHING
                       RETURNING id""",
                    (uuid.uuid4(), origin, stored.key, stored.sha256, dataset),
                ).fetchone()
                created = row is not None
                if row is None:
                    row = conn.execute(
                        "SELECT id FROM cells WHERE origin_key = %s", (origin,)
                    ).fetchone()
                assert row is not None
                if created and label:
                    conn.execute(
                        """INSERT INTO labels (cell_id, taxonomy, class_code, source)
                           VALUES (%s, %s, %s, 'reference')""",
                        (row["id"], tax.name, label),
                    )
            imported.append(ImportedCell(str(row["id"]), stored.key, created))
        return imported
