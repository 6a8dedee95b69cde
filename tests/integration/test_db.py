import psycopg
import pytest

from marrowscope.core.db import apply_migrations, load_migrations

pytestmark = pytest.mark.integration


def test_migrations_are_idempotent(pg_dsn: str, db_pool) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(pg_dsn) as conn:
        assert apply_migrations(conn) == []  # the pool fixture applied them already
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in load_migrations()]


def test_audit_labels_and_decisions_are_insert_only(db_pool) -> None:  # type: ignore[no-untyped-def]
    with db_pool.connection() as conn:
        conn.execute(
            "INSERT INTO audit_events (actor, action, entity, entity_id) VALUES ('t', 'x', 'e', '1')"
        )
    with (
        db_pool.connection() as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="insert-only"),
    ):
        conn.execute("UPDATE audit_events SET actor = 'someone else'")
    with db_pool.connection() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM audit_events")
    with db_pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM audit_events").fetchone()["n"] >= 1
