"""Dataset import (the orchestrator's ImportCells) on real PBC cells: centre crops cut by the
segmentation service over loopback gRPC, cells and reference labels through the core cell
registry, idempotent by content, and a bad image that changes nothing."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument, NotFound
from marrowscope.core.objectstore import FilesystemObjectStore, put_content_addressed
from marrowscope.orchestrator.datasets import DatasetImporter, segmentation_cropper
from marrowscope.segmentation.service import SegmentationService
from marrowscope.v1 import segmentation_pb2

from ..conftest import DATA
from .segmentation_server import segmentation_stub

pytestmark = pytest.mark.integration


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _counts(pool: DictPool, dataset: str) -> tuple[int, int]:
    with pool.connection() as conn:
        row = conn.execute(
            """SELECT count(DISTINCT c.id) AS cells, count(l.id) AS labels FROM cells c
               LEFT JOIN labels l ON l.cell_id = c.id WHERE c.dataset = %s""",
            (dataset,),
        ).fetchone()
    assert row is not None
    return int(row["cells"]), int(row["labels"])


def test_import_crops_through_segmentation_registers_once_and_refuses_bad_images(
    db_pool: DictPool, tmp_path: Path
) -> None:
    store = FilesystemObjectStore(tmp_path / "store")
    segmentation = SegmentationService(db_pool, store)
    images = [sorted((DATA / "pbc" / code).glob("*.jpg"))[0] for code in ("LY", "MO")]
    keys = [
        put_content_addressed(store, "uploads", p.read_bytes(), "image/jpeg", ".jpg").key
        for p in images
    ]
    empty = put_content_addressed(
        store, "uploads", _png(Image.new("RGB", (200, 200), (230, 225, 220))), "image/png", ".png"
    ).key
    broken = put_content_addressed(
        store, "uploads", b"%PDF-1.7 not an image", "application/pdf", ".pdf"
    ).key

    async def scenario() -> None:
        async with segmentation_stub(segmentation) as stub:
            importer = DatasetImporter(db_pool, store, segmentation_cropper(stub))
            cells = [(keys[0], "LY"), (keys[1], "MO")]
            first = await importer.import_cells("pbc-centre", "pbc11", cells, center_crop=True)
            assert [c.created for c in first] == [True, True]
            centre = await stub.CropCenterCell(
                segmentation_pb2.CropCenterCellRequest(image_key=keys[0])
            )
            assert first[0].object_key == centre.crop.key != keys[0]  # the crop, not the upload
            again = await importer.import_cells("pbc-centre", "pbc11", cells, center_crop=True)
            assert [c.cell_id for c in again] == [c.cell_id for c in first]
            assert not any(c.created for c in again)
            assert _counts(db_pool, "pbc-centre") == (2, 2)  # one reference label per cell

            plain = await importer.import_cells("pbc-plain", "pbc11", [(keys[0], "LY")])
            assert plain[0].object_key == keys[0] and plain[0].cell_id != first[0].cell_id

            # A batch with one bad image registers nothing of the batch.
            with pytest.raises(InvalidArgument):
                await importer.import_cells("pbc-bad", "pbc11", [(keys[1], "MO"), (broken, "LY")])
            with pytest.raises(InvalidArgument, match="nucleated"):
                await importer.import_cells(
                    "pbc-bad", "pbc11", [(keys[1], "MO"), (empty, "LY")], center_crop=True
                )
            with pytest.raises(NotFound, match="upload the image"):
                await importer.import_cells("pbc-bad", "pbc11", [("uploads/ab/none.jpg", "")])
            with pytest.raises(InvalidArgument):
                await importer.import_cells("pbc-bad", "pbc11", [(keys[1], "NOT-A-CLASS")])
            assert _counts(db_pool, "pbc-bad") == (0, 0)

    asyncio.run(scenario())
