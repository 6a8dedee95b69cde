"""Registered model versions (rows of ``model_versions``), read by training and inference."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from .db import DictConnection, DictPool
from .errors import InvalidArgument, NotFound
from .ids import is_uuid
from .objectstore import ObjectStore, put_content_addressed
from .preprocess import InputSpecData


@dataclass(frozen=True, kw_only=True)
class ModelVersionRecord:
    id: str
    name: str
    parent_id: str
    taxonomy: str
    class_codes: list[str]
    architecture: str
    input_spec: InputSpecData
    artifact_key: str
    artifact_sha256: str
    artifact_bytes: int
    weights_key: str
    training_set_hash: str
    metrics: dict[str, float]
    learning_curve: list[dict[str, float]]
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ModelVersionRecord:
        return cls(
            id=str(row["id"]),
            name=row["name"],
            parent_id=str(row["parent_id"] or ""),
            taxonomy=row["taxonomy"],
            class_codes=list(row["class_codes"]),
            architecture=row["architecture"],
            input_spec=InputSpecData.from_json(row["input_spec"]),
            artifact_key=row["artifact_key"],
            artifact_sha256=row["artifact_sha256"],
            artifact_bytes=int(row["artifact_bytes"]),
            weights_key=row["weights_key"],
            training_set_hash=row["training_set_hash"],
            metrics=dict(row["metrics"]),
            learning_curve=list(row["learning_curve"]),
            created_at=row["created_at"],
        )


def get_model_version(pool: DictPool, id_or_name: str) -> ModelVersionRecord:
    """The registered version with this id or name (NotFound otherwise)."""
    with pool.connection() as conn:
        return model_version_on(conn, id_or_name)


def model_version_on(conn: DictConnection, id_or_name: str) -> ModelVersionRecord:
    """``get_model_version`` on the caller's connection (e.g. a training job's)."""
    if not id_or_name:
        raise InvalidArgument("a model version id or name is required")
    column = "id" if is_uuid(id_or_name) else "name"
    row = conn.execute(
        f"SELECT * FROM model_versions WHERE {column} = %s",
        (id_or_name,),
    ).fetchone()
    if row is None:
        raise NotFound(f"model version {id_or_name} is not registered")
    return ModelVersionRecord.from_row(row)


def list_model_versions(
    pool: DictPool, taxonomy: str = "", limit: int = 50
) -> list[ModelVersionRecord]:
    with pool.connection() as conn:
        rows = conn.execute(
            """SELECT * FROM model_versions WHERE (%(t)s = '' OR taxonomy = %(t)s)
               ORDER BY created_at DESC LIMIT %(n)s""",
            {"t": taxonomy, "n": max(1, min(limit or 50, 500))},
        ).fetchall()
    return [ModelVersionRecord.from_row(r) for r in rows]


@dataclass(frozen=True, kw_only=True)
class NewModelVersion:
    """What a finished training hands over for registration."""

    onnx_bytes: bytes
    weights_bytes: bytes
    taxonomy: str
    class_codes: list[str]
    architecture: str
    input_spec: InputSpecData
    training_set_hash: str
    parent_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    learning_curve: list[dict[str, float]] = field(default_factory=list)
    training_job_id: str | None = None


def register_model_version(conn: DictConnection, store: ObjectStore, new: NewModelVersion) -> str:
    """Upload the artifacts (content-addressed) and insert the version row; returns its id.

    Call inside the caller's transaction when the registration must be atomic with other rows.
    """
    onnx = put_content_addressed(store, "models", new.onnx_bytes, "application/onnx", ".onnx")
    weights = put_content_addressed(
        store, "models", new.weights_bytes, "application/octet-stream", ".pt"
    )
    version_id = uuid.uuid4()
    conn.execute(
        """INSERT INTO model_versions (id, name, parent_id, taxonomy, class_codes,
               architecture, input_spec, artifact_key, artifact_sha256, artifact_bytes,
               weights_key, training_set_hash, metrics, learning_curve, training_job_id)
           VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
        (
            version_id,
            f"{new.taxonomy}-{version_id.hex[:8]}",
            new.parent_id,
            new.taxonomy,
            new.class_codes,
            new.architecture,
            Jsonb(new.input_spec.to_json()),
            onnx.key,
            onnx.sha256,
            onnx.size_bytes,
            weights.key,
            new.training_set_hash,
            Jsonb(new.metrics),
            Jsonb(new.learning_curve),
            new.training_job_id,
        ),
    )
    return str(version_id)
