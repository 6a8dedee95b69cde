"""Protobuf conversions of types that more than one servicer returns."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from marrowscope.v1 import common_pb2

from .model_registry import ModelVersionRecord


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def labeled_cells(cells: Iterable[tuple[str, str, str]]) -> list[common_pb2.LabeledCell]:
    """(cell id, object key, class code) triples as LabeledCell messages."""
    return [
        common_pb2.LabeledCell(cell_id=c, object_key=k, class_code=code) for c, k, code in cells
    ]


def epoch_metrics(entry: dict[str, float]) -> common_pb2.EpochMetrics:
    return common_pb2.EpochMetrics(
        epoch=int(entry["epoch"]),
        train_loss=entry["train_loss"],
        train_accuracy=entry["train_accuracy"],
        validation_loss=entry["validation_loss"],
        validation_accuracy=entry["validation_accuracy"],
        seconds=entry.get("seconds", 0.0),
    )


def model_version(record: ModelVersionRecord) -> common_pb2.ModelVersion:
    spec = record.input_spec
    return common_pb2.ModelVersion(
        id=record.id,
        name=record.name,
        parent_id=record.parent_id,
        taxonomy=record.taxonomy,
        class_codes=record.class_codes,
        input=common_pb2.InputSpec(
            size=spec.size,
            mean=list(spec.mean),
            std=list(spec.std),
            layout=spec.layout,
            dtype=spec.dtype,
        ),
        artifact=common_pb2.ObjectRef(
            key=record.artifact_key,
            sha256=record.artifact_sha256,
            size_bytes=record.artifact_bytes,
            content_type="application/onnx",
        ),
        training_set_hash=record.training_set_hash,
        metrics=record.metrics,
        learning_curve=[epoch_metrics(e) for e in record.learning_curve],
        created_at=timestamp(record.created_at),
        architecture=record.architecture,
        demo=record.demo,
    )
