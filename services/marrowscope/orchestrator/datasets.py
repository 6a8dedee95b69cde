"""Dataset import: single-cell images already in the object store become cells of a dataset
that campaigns draw from, with the dataset's own (reference) label.

The cells and labels are written through the core cell registry; with centre-cell cropping
the segmentation service cuts each image (its CropCenterCell call), so this module holds no
image algorithm. Idempotent by image content: importing the same image again finds its cell.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc

from marrowscope.core import cell_registry
from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument, NotFound, Unavailable
from marrowscope.core.images import ImageLimits, decode_image
from marrowscope.core.objectstore import ObjectStore, StoredObject
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.v1 import segmentation_pb2, segmentation_pb2_grpc

# Centre crops are cut by the segmentation service, a few at a time.
CROP_CONCURRENCY = 4

CentreCropper = Callable[[str], Awaitable[StoredObject]]


@dataclass(frozen=True)
class ImportedCell:
    cell_id: str
    object_key: str
    created: bool


def segmentation_cropper(
    stub: segmentation_pb2_grpc.SegmentationServiceStub, deadline_s: float = 60.0
) -> CentreCropper:
    """Centre crops from the segmentation service; its refusals become domain errors (an image
    without a nucleated cell is InvalidArgument, as it would be here)."""

    async def crop(key: str) -> StoredObject:
        try:
            reply = await stub.CropCenterCell(
                segmentation_pb2.CropCenterCellRequest(image_key=key), timeout=deadline_s
            )
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or exc.code().name
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(details) from None
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(details) from None
            raise Unavailable(f"segmentation service: {details}") from exc
        c = reply.crop
        return StoredObject(c.key, c.sha256, c.size_bytes, c.content_type)

    return crop


class DatasetImporter:
    def __init__(
        self,
        pool: DictPool,
        store: ObjectStore,
        crop_center: CentreCropper,
        limits: ImageLimits | None = None,
    ) -> None:
        self.pool = pool
        self.store = store
        self.crop_center = crop_center
        self.limits = limits or ImageLimits()

    async def import_cells(
        self, dataset: str, taxonomy: str, cells: list[tuple[str, str]], center_crop: bool = False
    ) -> list[ImportedCell]:
        """Register ``cells`` (object key, reference label or '') as cells of ``dataset``.

        The label is recorded once, when the cell is first registered. With ``center_crop``
        the registered image is the centre-cell crop of the stored one (the original stays).
        Every image is checked before anything is registered, so a bad one changes nothing.
        """
        if not dataset:
            raise InvalidArgument("dataset name is required to import cells")
        tax = load_taxonomy(taxonomy)
        for _, label in cells:
            if label:
                tax.check(label)
        limit = asyncio.Semaphore(CROP_CONCURRENCY)

        async def prepare(key: str) -> tuple[str, StoredObject]:
            data = await asyncio.to_thread(self._read, key)
            sha = hashlib.sha256(data).hexdigest()
            if center_crop:
                async with limit:
                    return sha, await self.crop_center(key)
            await asyncio.to_thread(decode_image, data, self.limits)  # a usable image?
            return sha, StoredObject(key, sha, len(data), "")

        prepared = await asyncio.gather(*(prepare(key) for key, _ in cells))
        return await asyncio.to_thread(
            self._register, dataset, tax.name, cells, prepared, center_crop
        )

    def _read(self, key: str) -> bytes:
        try:
            return self.store.get(key)
        except NotFound:
            raise NotFound(
                f"object {key} not found; upload the image before importing it"
            ) from None

    def _register(
        self,
        dataset: str,
        taxonomy: str,
        cells: list[tuple[str, str]],
        prepared: list[tuple[str, StoredObject]],
        center_crop: bool,
    ) -> list[ImportedCell]:
        imported = []
        with self.pool.connection() as conn, conn.transaction():
            for (_, label), (sha, stored) in zip(cells, prepared, strict=True):
                origin = f"import:{dataset}:{sha}" + (":center" if center_crop else "")
                new_cell = cell_registry.NewCell(
                    origin_key=origin, object_key=stored.key, sha256=stored.sha256, dataset=dataset
                )
                cell_id, created = cell_registry.register_cell(conn, new_cell)
                if created and label:
                    reference = cell_registry.NewLabel(
                        cell_id=cell_id, taxonomy=taxonomy, class_code=label, source="reference"
                    )
                    cell_registry.add_labels(conn, [reference])
                imported.append(ImportedCell(cell_id, stored.key, created))
        return imported
