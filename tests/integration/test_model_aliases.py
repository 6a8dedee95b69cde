"""The production alias in a database of its own: who may become production (the LIS
differential's classes, demo models only where none exists), rollback, and every change in
the audit trail's hash chain."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from marrowscope.core.audit import verify_audit_chain
from marrowscope.core.db import (
    DictPool,
    apply_migrations,
    create_database,
    drop_database,
    open_pool,
)
from marrowscope.core.errors import FailedPrecondition, InvalidArgument, NotFound
from marrowscope.core.model_registry import resolve
from marrowscope.core.objectstore import FilesystemObjectStore
from marrowscope.core.settings import DatabaseSettings
from marrowscope.training.promotion import ModelAliases
from tests.model_helpers import register_placeholder

pytestmark = pytest.mark.integration


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

    bootstrap = aliases.promote(demo.id, "production", "marrowscope", "first start")
    assert bootstrap.action == "bootstrap" and bootstrap.previous is None
    promoted = aliases.promote(first.name, "production", "dr-lab", "validated on our cells")
    assert promoted.previous is not None and promoted.previous.id == demo.id
    again = aliases.promote(first.name, "production", "dr-lab", "clicked twice")
    assert again.at == promoted.at  # naming the current version changes nothing
    with pytest.raises(FailedPrecondition, match="demo model"):
        aliases.promote(demo.name, "production", "marrowscope", "first start again")
    aliases.promote(pbc.name, "candidate", "ml-staff", "an experiment")  # any taxonomy

    aliases.promote(second.name, "production", "dr-lab", "new version")
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
    aliases.promote(only.name, "production", "dr-lab", "first")
    with pytest.raises(FailedPrecondition, match="no earlier version"):
        aliases.rollback("production", "dr-lab", "oops")
    with pytest.raises(InvalidArgument, match="unknown alias"):
        aliases.promote(only.name, "staging", "dr-lab", "typo")
