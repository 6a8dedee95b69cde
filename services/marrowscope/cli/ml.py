"""``marrowscope train`` and ``marrowscope evaluate``: ML staff's commands against a running stack.

Both read an ImageFolder directory, put its images in the object store (content-addressed, so a
second run uploads nothing new) and talk to the services over gRPC like any other client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from marrowscope.core import messages
from marrowscope.core.clients import ServiceClients
from marrowscope.core.datasets import LabelledImage, scan_image_folder, split_per_class
from marrowscope.core.errors import InvalidArgument, MarrowscopeError
from marrowscope.core.evaluation import evaluate, format_report
from marrowscope.core.images import decode_image
from marrowscope.core.objectstore import ObjectStore, put_content_addressed
from marrowscope.core.preprocess import InputSpecData, decode_for_model, input_dtype_of
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.v1 import (
    common_pb2,
    inference_pb2,
    orchestrator_pb2,
    segmentation_pb2,
    training_pb2,
)

from .bootstrap import wait_for_job

CHUNK = 256


@dataclass(frozen=True)
class StoredImage:
    image: LabelledImage
    key: str


def upload_images(
    images: Sequence[LabelledImage], store: ObjectStore, desc: str
) -> tuple[list[StoredImage], list[str]]:
    """Check and store each image; unreadable files are reported, not fatal."""

    def one(image: LabelledImage) -> StoredImage | str:
        try:
            data = image.path.read_bytes()
            decoded = decode_image(data)
        except (OSError, MarrowscopeError) as error:
            return f"{image.path}: {error}"
        suffix = "." + decoded.format.lower().replace("jpeg", "jpg")
        stored = put_content_addressed(store, "cells", data, decoded.content_type, suffix)
        return StoredImage(image, stored.key)

    stored: list[StoredImage] = []
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in tqdm(pool.map(one, images), total=len(images), desc=desc, unit="img"):
            (problems if isinstance(result, str) else stored).append(result)
    return stored, problems


async def register_cells(
    clients: ServiceClients,
    stored: list[StoredImage],
    dataset: str,
    taxonomy: str,
    center_crop: bool = False,
) -> list[tuple[str, str, str]]:
    """Register stored images as cells: (cell id, the cell's image key, class code), in input
    order; with ``center_crop`` each cell is the centre-cell crop of its image (its own key)."""
    out: list[tuple[str, str, str]] = []
    bar = tqdm(
        total=len(stored),
        desc="registering cells" + (" (centre crops)" if center_crop else ""),
        unit="cell",
        disable=len(stored) <= 500,
    )
    for start in range(0, len(stored), 500):
        part = stored[start : start + 500]
        response = await clients.orchestrator.ImportCells(
            orchestrator_pb2.ImportCellsRequest(
                dataset=dataset,
                taxonomy=taxonomy,
                crop_center_cell=center_crop,
                cells=[
                    orchestrator_pb2.ImportCell(
                        object_key=s.key, reference_label=s.image.class_code
                    )
                    for s in part
                ],
            ),
            timeout=120,
        )
        out += [
            (r.cell_id, r.object_key or s.key, s.image.class_code)
            for r, s in zip(response.cells, part, strict=True)
        ]
        bar.update(len(part))
    bar.close()
    return out


async def crop_center_cells(
    clients: ServiceClients, stored: list[StoredImage], in_flight: int = 4
) -> tuple[list[StoredImage], list[str]]:
    """Each image's centre-cell crop, cut and stored by the segmentation service (no cell is
    registered); an image without a nucleated cell is reported, not fatal."""
    gate = asyncio.Semaphore(in_flight)
    bar = tqdm(total=len(stored), desc="cutting centre-cell crops", unit="img")

    async def one(image: StoredImage) -> StoredImage | str:
        async with gate:
            try:
                response = await clients.segmentation.CropCenterCell(
                    segmentation_pb2.CropCenterCellRequest(image_key=image.key), timeout=120
                )
                return StoredImage(image.image, response.crop.key)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                return f"{image.image.path}: {error.details()}"
            finally:
                bar.update(1)

    results = await asyncio.gather(*(one(s) for s in stored))
    bar.close()
    crops = [r for r in results if isinstance(r, StoredImage)]
    return crops, [r for r in results if isinstance(r, str)]


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    data: Path
    mapping: Path | None
    image_size: int
    epochs: int
    batch_size: int
    width: int
    validation: float
    limit_per_class: int
    seed: int
    parent: str
    early_stopping: int
    lr_schedule: str = "constant"
    precise_bn_images: int | None = None  # None: the service's default
    center_crop: bool = False  # train on the centre-cell crops the segmentation service cuts


async def train_folder(
    clients: ServiceClients, store: ObjectStore, options: TrainOptions
) -> training_pb2.TrainingJob:
    """Train on an image folder through the training service; returns the finished job."""
    folder = scan_image_folder(options.data, options.mapping)
    split = split_per_class(
        folder.images, options.validation, 0.0, options.seed, options.limit_per_class
    )
    print(f"{len(folder.images)} images, taxonomy {folder.taxonomy}: {folder.counts()}")
    if folder.dropped:
        print(f"left out by the mapping: {folder.dropped}")
    stored, problems = upload_images(split.train + split.validation, store, "uploading")
    for problem in problems:
        print(f"skipped {problem}")
    dataset = f"folder-{options.data.name}" + ("-centre" if options.center_crop else "")
    if options.center_crop:  # cut first, so an image without a nucleated cell is only skipped
        stored, problems = await crop_center_cells(clients, stored)
        for problem in problems:
            print(f"skipped {problem}")
    cells = await register_cells(clients, stored, dataset, folder.taxonomy)
    validation_paths = {str(i.path) for i in split.validation}
    teacher = [
        c for c, s in zip(cells, stored, strict=True) if str(s.image.path) not in validation_paths
    ]
    validation = [
        c for c, s in zip(cells, stored, strict=True) if str(s.image.path) in validation_paths
    ]
    hyper = training_pb2.HyperParameters(
        epochs=options.epochs,
        batch_size=options.batch_size,
        input_size=options.image_size,
        seed=options.seed,
        augment=True,
        width=options.width,
        early_stopping_patience=options.early_stopping,
        lr_schedule=options.lr_schedule,
        precise_bn_images=options.precise_bn_images,
    )
    # The same data and settings give the same request id: a retried command joins its job.
    fingerprint = hashlib.sha256(
        json.dumps(
            [
                sorted(c[1:] for c in teacher),
                sorted(c[1:] for c in validation),
                str(hyper),
                options.parent,
            ]
        ).encode()
    ).hexdigest()[:32]
    job = await clients.training.StartTraining(
        training_pb2.StartTrainingRequest(
            request_id=f"cli-train-{fingerprint}",
            taxonomy=folder.taxonomy,
            teacher=messages.labeled_cells(teacher),
            validation=messages.labeled_cells(validation),
            parent_model_version=options.parent,
            hyper_parameters=hyper,
            labels={"purpose": "cli-train", "dataset": dataset},
        )
    )
    print(f"training job {job.id}: {len(teacher)} teacher cells, {len(validation)} validation")
    return await wait_for_job(clients, job, "training")


async def predict_with_service(
    clients: ServiceClients, stored: list[StoredImage], model: str
) -> tuple[list[str], str]:
    """Top-1 class per stored image through the inference service ('' where unreadable), with
    the version ``model`` names (warmed first; what others are served does not change)."""
    serving = await clients.inference.LoadModel(
        inference_pb2.LoadModelRequest(model_version=model), timeout=120
    )
    name = serving.model.name
    requests = [
        inference_pb2.ClassifyRequest(
            cells=[
                common_pb2.CellRef(cell_id=str(i), object_key=s.key)
                for i, s in enumerate(stored[start : start + CHUNK], start)
            ],
            model_version=name,
        )
        for start in range(0, len(stored), CHUNK)
    ]
    predicted = [""] * len(stored)
    bar = tqdm(total=len(stored), desc=f"classifying with {name}", unit="cell")
    async for response in clients.inference.ClassifyStream(iter(requests), timeout=3600):
        for p in response.predictions:
            predicted[int(p.cell_id)] = p.top1_class
        bar.update(len(response.predictions))
    bar.close()
    return predicted, name


def predict_with_file(
    images: list[LabelledImage], onnx_path: Path, image_size: int, codes: list[str]
) -> list[str]:
    """Top-1 class per image from an ONNX file run in-process (same preprocessing); ``codes``
    is the model's class order."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    # Models trained before the normalisation moved into the graph take float input.
    spec = InputSpecData(size=image_size, dtype=input_dtype_of(session.get_inputs()[0].type))
    out: list[str] = []
    for start in tqdm(range(0, len(images), 64), desc=f"classifying with {onnx_path.name}"):
        batch = np.stack(
            [decode_for_model(i.path.read_bytes(), spec) for i in images[start : start + 64]]
        )
        out += [codes[int(k)] for k in session.run(None, {"image": batch})[0].argmax(1)]
    return out


async def evaluate_folder(
    clients: ServiceClients | None,
    store: ObjectStore | None,
    data: Path,
    mapping: Path | None,
    model: str,
    image_size: int,
    taxonomy_name: str,
    center_crop: bool = False,
) -> dict:
    """Accuracy, per-class recall / precision and the confusion matrix on a labelled folder;
    with ``center_crop`` on the centre-cell crops the segmentation service cuts (as for a model
    trained with ``train --center-crop``)."""
    folder = scan_image_folder(data, mapping)
    model_path = Path(model)
    if model_path.suffix == ".onnx" and model_path.is_file():
        if center_crop:
            raise InvalidArgument(
                "--center-crop needs a registered model version and a running stack (the "
                "segmentation service cuts the crops); not a .onnx file"
            )
        taxonomy = load_taxonomy(taxonomy_name or folder.taxonomy)
        predicted = predict_with_file(folder.images, model_path, image_size, taxonomy.codes)
        images, name = folder.images, model_path.name
    else:
        if clients is None or store is None:
            raise InvalidArgument("evaluating a registered version needs a running stack")
        stored, problems = upload_images(folder.images, store, "uploading")
        for problem in problems:
            print(f"skipped {problem}")
        if center_crop:
            stored, problems = await crop_center_cells(clients, stored)
            for problem in problems:
                print(f"skipped {problem}")
        predicted, name = await predict_with_service(clients, stored, model)
        images = [s.image for s in stored]
        evaluated = await clients.training.GetModelVersion(
            training_pb2.GetModelVersionRequest(id=name)
        )
        taxonomy = load_taxonomy(evaluated.taxonomy)
    if taxonomy.name != folder.taxonomy:
        raise InvalidArgument(
            f"the model predicts {taxonomy.name} classes but the folder is labelled in "
            f"{folder.taxonomy}; pass --mapping FILE mapping the labels to {taxonomy.name}"
        )
    keep = [k for k, p in enumerate(predicted) if p]
    report = evaluate([images[k].class_code for k in keep], [predicted[k] for k in keep], taxonomy)
    report.update(
        model=name,
        data=str(data),
        taxonomy=taxonomy.name,
        unreadable=len(folder.images) - len(keep),
    )
    print(format_report(report))
    return report
