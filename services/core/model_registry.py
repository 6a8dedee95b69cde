"""Registered model versions (rows of ``model_versions``), read by training and inference."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .db import DictPool
from .errors import InvalidArgument, NotFound
from .ids import is_uuid
from .preprocess import InputSpecData


@dataclass(frozen=True)
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
    if not id_or_name:
        raise InvalidArgument("a model version id or name is required")
    column = "id" if is_uuid(id_or_name) else "name"
    with pool.connection() as conn:
        row = conn.execute(
            f"SELECT * FROM model_versions WHERE {column} = %s",  # type: ignore[call-overload]
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
