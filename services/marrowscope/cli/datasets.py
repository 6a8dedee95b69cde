"""Put a labelled single-cell dataset into the object store and register it as cells."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm import tqdm

from marrowscope.core.clients import ServiceClients
from marrowscope.core.images import encode_png
from marrowscope.core.objectstore import ObjectStore, put_content_addressed
from marrowscope.core.synthetic import SyntheticCell
from marrowscope.v1 import orchestrator_pb2


async def import_synthetic(
    cells: Iterable[SyntheticCell],
    total: int,
    dataset: str,
    store: ObjectStore,
    clients: ServiceClients,
    taxonomy: str = "paper17",
    batch: int = 200,
) -> dict[str, tuple[str, str]]:
    """Store and import ``cells``; return cell id -> (object key, class code): the ground truth."""
    truth: dict[str, tuple[str, str]] = {}
    pending: list[tuple[str, str]] = []

    async def flush() -> None:
        response = await clients.orchestrator.ImportCells(
            orchestrator_pb2.ImportCellsRequest(
                dataset=dataset,
                taxonomy=taxonomy,
                cells=[
                    orchestrator_pb2.ImportCell(object_key=k, reference_label=c) for k, c in pending
                ],
            ),
            timeout=120,
        )
        for ref, (key, code) in zip(response.cells, pending, strict=True):
            truth[ref.cell_id] = (key, code)
        pending.clear()

    for cell in tqdm(cells, total=total, desc=f"dataset {dataset}", unit="cell", leave=False):
        stored = put_content_addressed(store, "cells", encode_png(cell.rgb), "image/png", ".png")
        pending.append((stored.key, cell.class_code))
        if len(pending) >= batch:
            await flush()
    if pending:
        await flush()
    return truth
