"""The connection pool against a real PostgreSQL: statement timeouts, connections checked
before they are handed out, and migrations unaffected by the pool's timeout."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from marrowscope.core.db import create_database, drop_database, open_pool
from marrowscope.core.settings import DatabaseSettings

pytestmark = pytest.mark.integration


def pool_settings(dsn: str, **values: float) -> DatabaseSettings:
    return DatabaseSettings(
        dsn=dsn, pool_min_size=1, pool_max_size=1, apply_migrations=False, **values
    )


def test_a_statement_beyond_the_timeout_is_cancelled(pg_dsn: str) -> None:
    pool = open_pool(pool_settings(pg_dsn, statement_timeout_s=0.2))
    try:
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled), pool.connection() as conn:
            conn.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 3
        with pool.connection() as conn:  # the connection serves the next request
            row = conn.execute("SELECT current_setting('statement_timeout') AS t").fetchone()
            assert row is not None and row["t"] == "200ms"
    finally:
        pool.close()
    default = open_pool(pool_settings(pg_dsn))
    try:
        with default.connection() as conn:
            row = conn.execute("SELECT current_setting('statement_timeout') AS t").fetchone()
            assert row is not None and row["t"] == "30s"
    finally:
        default.close()


def test_a_terminated_connection_is_replaced_before_it_is_handed_out(
    pg_dsn: str, pg_admin_dsn: str
) -> None:
    pool = open_pool(pool_settings(pg_dsn, statement_timeout_s=5))
    try:
        with pool.connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 10
            while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                assert time.monotonic() < deadline, "the backend did not end"
                time.sleep(0.05)
        with pool.connection() as conn:  # the pool's only connection was the dead one
            assert conn.info.backend_pid != pid
            row = conn.execute("SELECT current_setting('statement_timeout') AS t").fetchone()
            assert row is not None and row["t"] == "5s"  # configured like the first
    finally:
        pool.close()


def test_migrations_run_without_the_pools_statement_timeout(pg_admin_dsn: str) -> None:
    name = f"marrowscope_pool_{uuid.uuid4().hex[:8]}"
    create_database(pg_admin_dsn, name)
    try:
        dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)
        # 10 ms, shorter than the migrations take: they apply on a connection of their own.
        settings = DatabaseSettings(dsn=dsn, pool_max_size=1, statement_timeout_s=0.01)
        pool = open_pool(settings)
        try:
            with pool.connection() as conn:
                row = conn.execute("SELECT count(*) AS n FROM schema_migrations").fetchone()
                assert row is not None and row["n"] > 0
        finally:
            pool.close()
    finally:
        drop_database(pg_admin_dsn, name)


def test_migrate_waits_for_the_database_then_says_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chart's init container: `migrate --wait S` keeps trying for S seconds (the bundled
    PostgreSQL may still be starting), then exits 2 naming the problem; with the database up
    it applies the schema."""
    import socket

    from marrowscope.core import migrate

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("MARROWSCOPE_DB_DSN", f"postgresql://postgres@127.0.0.1:{port}/x")
    started = time.monotonic()
    assert migrate.main(["--wait", "3"]) == 2
    assert time.monotonic() - started >= 2.5
    err = capsys.readouterr().err
    assert "waiting for PostgreSQL" in err and "cannot reach PostgreSQL" in err
