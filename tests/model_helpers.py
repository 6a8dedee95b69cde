"""Registered model versions for tests: real exported classifiers, or placeholders for tests
that need a version in the registry but never run it (they keep inference down or out)."""

from __future__ import annotations

import hashlib
import uuid

from marrowscope.core.db import DictPool
from marrowscope.core.model_registry import (
    ModelVersionRecord,
    NewModelVersion,
    current_alias,
    model_version_on,
    register_model_version,
)
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.preprocess import InputSpecData
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.training.promotion import ModelAliases


def register_onnx(
    pool: DictPool,
    store: ObjectStore,
    onnx: bytes,
    spec: InputSpecData,
    tag: str,
    weights: bytes = b"",
    taxonomy: str = "paper17",
    demo: bool = False,
) -> str:
    """Register an exported classifier (all classes of ``taxonomy``); its version id."""
    tax = load_taxonomy(taxonomy)
    with pool.connection() as conn, conn.transaction():
        return register_model_version(
            conn,
            store,
            NewModelVersion(
                onnx_bytes=onnx,
                weights_bytes=weights or tag.encode(),
                taxonomy=tax.name,
                class_codes=tax.codes,
                architecture="se_cnn",
                input_spec=spec,
                training_set_hash=tag,
                demo=demo,
            ),
        )


def register_placeholder(
    pool: DictPool, store: ObjectStore, taxonomy: str = "paper17", demo: bool = False
) -> ModelVersionRecord:
    marker = uuid.uuid4().bytes  # distinct artifacts, distinct versions
    version_id = register_onnx(
        pool,
        store,
        b"placeholder onnx " + marker,
        InputSpecData(size=32),
        hashlib.sha256(marker).hexdigest(),
        weights=b"placeholder weights " + marker,
        taxonomy=taxonomy,
        demo=demo,
    )
    with pool.connection() as conn:
        return model_version_on(conn, version_id)


def ensure_production(pool: DictPool, store: ObjectStore) -> ModelVersionRecord:
    """The production version, registering and promoting a placeholder where none exists."""
    with pool.connection() as conn:
        current = current_alias(conn, "production")
        if current is not None:
            return model_version_on(conn, current)
    record = register_placeholder(pool, store)
    # No locked evaluation set here: forced, as a lab would have to.
    ModelAliases(pool, "paper17").promote(
        record.id, "production", "tests", "placeholder", force=True
    )
    return record
