"""Registered model versions and their aliases (tables ``model_versions`` and
``model_alias_changes``), read by training, inference and the LIS API.

An alias ('production': what the LIS classifies with; 'candidate') names one version at a
time; every change is an insert-only row and an audit event, so who promoted what, when and
why is never lost, and a rollback is the version before the current one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from .audit import append_event
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
    demo: bool = False  # trained on generated cells by the local stack: not for clinical use

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
            demo=bool(row.get("demo", False)),
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
    demo: bool = False


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
               weights_key, training_set_hash, metrics, learning_curve, training_job_id, demo)
           VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
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
            new.demo,
        ),
    )
    return str(version_id)


ALIASES = ("production", "candidate")


@dataclass(frozen=True, kw_only=True)
class AliasChange:
    alias: str
    version: ModelVersionRecord
    previous: ModelVersionRecord | None
    action: str  # promote, rollback or bootstrap
    actor: str
    reason: str
    forced: bool
    at: datetime


def current_alias(conn: DictConnection, alias: str) -> str | None:
    """The id of the version ``alias`` names now, or None when it names none yet."""
    if alias not in ALIASES:
        raise InvalidArgument(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
    row = conn.execute(
        """SELECT model_version_id FROM model_alias_changes WHERE alias = %s
           ORDER BY id DESC LIMIT 1""",
        (alias,),
    ).fetchone()
    return None if row is None else str(row["model_version_id"])


def resolve(conn: DictConnection, version_or_alias: str) -> ModelVersionRecord:
    """The version a name, an id or an alias stands for now (NotFound with what to do)."""
    if version_or_alias in ALIASES:
        version_id = current_alias(conn, version_or_alias)
        if version_id is None:
            raise NotFound(
                f"no model is {version_or_alias} yet: promote one "
                f"(`marrowscope models promote VERSION --alias {version_or_alias}`)"
            )
        return model_version_on(conn, version_id)
    return model_version_on(conn, version_or_alias)


def set_alias(
    conn: DictConnection,
    *,
    alias: str,
    version: ModelVersionRecord,
    action: str,
    actor: str,
    reason: str = "",
    forced: bool = False,
    evidence: dict[str, Any] | None = None,
) -> str | None:
    """Point ``alias`` at ``version``; returns the previous version's id. Records the change
    and an audit event on the caller's connection (call inside its transaction)."""
    previous = current_alias(conn, alias)
    conn.execute(
        """INSERT INTO model_alias_changes (alias, model_version_id, previous_version_id,
               action, actor, reason, forced) VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (alias, version.id, previous, action, actor, reason or None, forced),
    )
    append_event(
        conn,
        actor=actor,
        action=f"model_{action}",
        entity="model_alias",
        entity_id=alias,
        previous={"version_id": previous} if previous else None,
        current={
            "version_id": version.id,
            "version": version.name,
            "artifact_sha256": version.artifact_sha256,
            "forced": forced,
            **(evidence or {}),
        },
        reason=reason or None,
    )
    return previous


def alias_history(conn: DictConnection, alias: str, limit: int = 20) -> list[AliasChange]:
    """The newest changes of ``alias`` first."""
    rows = conn.execute(
        """SELECT * FROM model_alias_changes WHERE alias = %s ORDER BY id DESC LIMIT %s""",
        (alias, limit),
    ).fetchall()
    return [
        AliasChange(
            alias=r["alias"],
            version=model_version_on(conn, str(r["model_version_id"])),
            previous=(
                model_version_on(conn, str(r["previous_version_id"]))
                if r["previous_version_id"]
                else None
            ),
            action=r["action"],
            actor=r["actor"],
            reason=r["reason"] or "",
            forced=r["forced"],
            at=r["at"],
        )
        for r in rows
    ]
