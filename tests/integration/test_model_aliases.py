"""The production alias in a database of its own: who may become production (the LIS
differential's classes, demo models only where none exists), rollback, and every change in
the audit trail's hash chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import torch

from marrowscope.core import cell_registry
from marrowscope.core.audit import verify_audit_chain
from marrowscope.core.db import (
    DictPool,
    apply_migrations,
    create_database,
    drop_database,
    open_pool,
)
from marrowscope.core.errors import FailedPrecondition, InvalidArgument, NotFound
from marrowscope.core.images import encode_png
from marrowscope.core.model_registry import (
    model_version_on,
    resolve,
)
from marrowscope.core.objectstore import FilesystemObjectStore, put_content_addressed
from marrowscope.core.preprocess import InputSpecData, decode_for_model
from marrowscope.core.settings import DatabaseSettings
from marrowscope.core.synthetic import make_cell
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.training import repository as jobs
from marrowscope.training.launchers import LocalProcessLauncher
from marrowscope.training.model import build_model
from marrowscope.training.promotion import ModelAliases
from marrowscope.training.service import JobRequest, TrainingService
from marrowscope.training.settings import TrainingSettings
from marrowscope.training.trainer import HyperParameters, export_onnx, train
from tests.model_helpers import register_onnx, register_placeholder

pytestmark = pytest.mark.integration
SPEC = InputSpecData(size=32)


@pytest.fixture()
def fresh_pool(pg_admin_dsn: str) -> Iterator[DictPool]:
    name = f"marrowscope_alias_{uuid.uuid4().hex[:8]}"
    create_database(pg_admin_dsn, name)
    dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)
    with psycopg.connect(dsn) as conn:
        apply_migrations(conn)
    pool = open_pool(DatabaseSettings(dsn=dsn, pool_max_size=2))
    yield pool
    pool.close()
    drop_database(pg_admin_dsn, name)


def test_production_takes_only_a_complete_clinical_model_and_keeps_every_change(
    fresh_pool: DictPool, tmp_path: Path
) -> None:
    store = FilesystemObjectStore(tmp_path / "store")
    aliases = ModelAliases(fresh_pool, "paper17")
    demo = register_placeholder(fresh_pool, store, demo=True)
    pbc = register_placeholder(fresh_pool, store, taxonomy="pbc11")
    first = register_placeholder(fresh_pool, store)
    second = register_placeholder(fresh_pool, store)

    with fresh_pool.connection() as conn, pytest.raises(NotFound, match="promote one"):
        resolve(conn, "production")
    with pytest.raises(FailedPrecondition) as refused:
        aliases.promote(pbc.name, "production", "dr-lab", "try the PBC model")
    assert "pbc11" in str(refused.value) and "lacks" in str(refused.value)
    assert "paper17" in str(refused.value)
    with pytest.raises(InvalidArgument, match="who"):
        aliases.promote(first.name, "production", " ", "nobody")

    bootstrap = aliases.promote(demo.id, "production", "marrowscope", "first start").change
    assert bootstrap.action == "bootstrap" and bootstrap.previous is None
    with pytest.raises(FailedPrecondition, match="no locked evaluation set"):
        aliases.promote(first.name, "production", "dr-lab", "validated on our cells")
    with pytest.raises(InvalidArgument, match="reason"):
        aliases.promote(first.name, "production", "dr-lab", "", force=True)
    promoted = aliases.promote(first.name, "production", "dr-lab", "validated", force=True).change
    assert promoted.previous is not None and promoted.previous.id == demo.id and promoted.forced
    again = aliases.promote(first.name, "production", "dr-lab", "clicked twice").change
    assert again.at == promoted.at  # naming the current version changes nothing
    with pytest.raises(FailedPrecondition, match="demo model"):
        aliases.promote(demo.name, "production", "marrowscope", "first start again")
    aliases.promote(pbc.name, "candidate", "ml-staff", "an experiment")  # any taxonomy

    aliases.promote(second.name, "production", "dr-lab", "new version", force=True)
    back = aliases.rollback("production", "dr-lab", "second version miscounts eosinophils")
    assert back.action == "rollback" and back.version.id == first.id
    with fresh_pool.connection() as conn:
        assert resolve(conn, "production").id == first.id
        assert resolve(conn, "candidate").id == pbc.id
        events = conn.execute(
            """SELECT action, actor, current->>'version' AS version, reason FROM audit_events
               WHERE entity = 'model_alias' ORDER BY chain_seq"""
        ).fetchall()
        assert verify_audit_chain(conn).intact
    assert [(e["action"], e["version"]) for e in events] == [
        ("model_bootstrap", demo.name),
        ("model_promote", first.name),
        ("model_promote", pbc.name),
        ("model_promote", second.name),
        ("model_rollback", first.name),
    ]
    assert events[-1]["reason"] == "second version miscounts eosinophils"
    current, history = aliases.aliases("production", 10)
    assert {c.alias: c.version.id for c in current} == {"production": first.id, "candidate": pbc.id}
    assert [h.action for h in history] == ["rollback", "promote", "promote", "bootstrap"]


def test_rollback_needs_an_earlier_version(fresh_pool: DictPool, tmp_path: Path) -> None:
    store = FilesystemObjectStore(tmp_path / "store")
    aliases = ModelAliases(fresh_pool, "paper17")
    with pytest.raises(NotFound, match="nothing to roll back"):
        aliases.rollback("production", "dr-lab", "oops")
    only = register_placeholder(fresh_pool, store)
    aliases.promote(only.name, "production", "dr-lab", "first", force=True)
    with pytest.raises(FailedPrecondition, match="no earlier version"):
        aliases.rollback("production", "dr-lab", "oops")
    with pytest.raises(InvalidArgument, match="unknown alias"):
        aliases.promote(only.name, "staging", "dr-lab", "typo")


def _cells(
    pool: DictPool, store: FilesystemObjectStore, dataset: str, seed: int, per_class: int = 3
) -> list[str]:
    """Generated cells of every class as an imported dataset with reference labels."""
    ids = []
    with pool.connection() as conn, conn.transaction():
        for code in load_taxonomy("paper17").codes:
            for i in range(per_class):
                crop = put_content_addressed(
                    store, "cells", encode_png(make_cell(code, i, seed=seed).rgb), "image/png"
                )
                cell_id, _ = cell_registry.register_cell(
                    conn,
                    cell_registry.NewCell(
                        origin_key=f"import:{dataset}:{crop.sha256}",
                        object_key=crop.key,
                        sha256=crop.sha256,
                        dataset=dataset,
                    ),
                )
                label = cell_registry.NewLabel(
                    cell_id=cell_id, taxonomy="paper17", class_code=code, source="reference"
                )
                cell_registry.add_labels(conn, [label])
                ids.append(cell_id)
    return ids


def test_the_gate_measures_the_candidate_against_production_on_the_locked_set(
    fresh_pool: DictPool, tmp_path: Path
) -> None:
    store = FilesystemObjectStore(tmp_path / "store")
    taxonomy = load_taxonomy("paper17")
    evaluation = _cells(fresh_pool, store, "lab-eval", seed=11)
    # A model trained on other generated cells (good on these), and an untrained one.
    train_codes = [c for c in taxonomy.codes for _ in range(5)]
    x = np.stack(
        [
            decode_for_model(encode_png(make_cell(c, i, seed=3).rgb), SPEC)
            for i, c in enumerate(train_codes)
        ]
    )
    y = np.array([taxonomy.codes.index(c) for c in train_codes])
    hyper = HyperParameters(epochs=6, batch_size=16, input_size=32, width=8, seed=0)
    trained = train(x, y, x, y, len(taxonomy.codes), SPEC, hyper)
    good = register_onnx(fresh_pool, store, trained.onnx_bytes, SPEC, "good")
    torch.manual_seed(0)
    untrained = build_model("se_cnn", len(taxonomy.codes), width=8).eval()
    bad = register_onnx(fresh_pool, store, export_onnx(untrained, SPEC), SPEC, "bad")
    aliases = ModelAliases(fresh_pool, "paper17", store)
    aliases.promote(good, "production", "dr-lab", "before any evaluation set", force=True)

    cells, newly = aliases.lock_evaluation_set("lab-eval", "", "dr-lab", "held out, never trained")
    assert (cells, newly) == (len(evaluation), True)
    assert aliases.lock_evaluation_set("lab-eval", "", "dr-lab", "again") == (cells, False)
    with pytest.raises(FailedPrecondition) as refused:
        aliases.promote(bad, "production", "ml-staff", "looks fine")
    message = str(refused.value)
    assert "worse than" in message and "lab-eval" in message and "accuracy" in message
    assert "macro-F1" in message and "recall" in message  # the comparison table
    with fresh_pool.connection() as conn:
        assert resolve(conn, "production").id == good  # nothing changed

    # The same network registered again (a re-export) is no worse: the gate passes by itself.
    with fresh_pool.connection() as conn:
        artifact = store.get(model_version_on(conn, good).artifact_key)
    copy = register_onnx(fresh_pool, store, artifact, SPEC, "good-again")
    passed = aliases.promote(copy, "production", "dr-lab", "re-exported")
    assert not passed.change.forced and "accuracy" in passed.comparison
    forced = aliases.promote(bad, "production", "dr-lab", "emergency: known regression", force=True)
    assert forced.change.forced
    with fresh_pool.connection() as conn:
        evidence = conn.execute(
            """SELECT current FROM audit_events WHERE entity = 'model_alias'
               ORDER BY chain_seq DESC LIMIT 2"""
        ).fetchall()
    overridden, gate_passed = evidence[0]["current"], evidence[1]["current"]
    assert gate_passed["gate"] == "passed" and gate_passed["evaluation_set"] == "lab-eval"
    assert gate_passed["candidate"]["accuracy"] == gate_passed["production"]["accuracy"]
    assert overridden["gate"] == "forced past shortfalls" and overridden["shortfalls"]
    assert overridden["candidate"]["accuracy"] < overridden["production"]["accuracy"]

    # The locked set cannot be trained on, and a set trained on cannot be locked.
    service = TrainingService(fresh_pool, TrainingSettings(), LocalProcessLauncher(tmp_path))
    teacher = [(cell_id, "k", "LY") for cell_id in evaluation[:2]]
    with pytest.raises(InvalidArgument, match="locked evaluation set"):
        service.start(
            JobRequest(request_id="r1", taxonomy="paper17", teacher=teacher, validation=[])
        )
    seen = _cells(fresh_pool, store, "seen-before", seed=12, per_class=1)
    with fresh_pool.connection() as conn:
        jobs.insert_job(
            conn,
            uuid.uuid4(),
            "r2",
            {"teacher": [[seen[0], "k", "LY"]], "validation": []},
            {},
            1,
            None,
        )
    with pytest.raises(FailedPrecondition, match="no model has seen"):
        aliases.lock_evaluation_set("seen-before", "", "dr-lab", "oops")
