"""PostgreSQL access: one psycopg 3 connection pool per process, SQL migrations on start-up.

Migrations are the files ``migrations/NNNN_name.sql``, applied in order, each in its own
transaction, under an advisory lock so that services starting together do not race. An applied
migration whose file changed afterwards is an error: write a new migration instead.

Pooled connections are checked before they are handed out (a server restart or a terminated
backend costs one reconnect, not a failed request) and carry a statement timeout
(``MARROWSCOPE_DB_STATEMENT_TIMEOUT_S``); migrations run on their own connection without it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeAlias

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from .errors import Unavailable
from .settings import DatabaseSettings

log = logging.getLogger(__name__)
# Rows come back as dicts everywhere (row_factory=dict_row).
Row: TypeAlias = dict[str, Any]
DictConnection: TypeAlias = psycopg.Connection[Row]
DictPool: TypeAlias = ConnectionPool[DictConnection]
_MIGRATION_LOCK = 0x6D6172726F77  # "marrow": advisory lock id
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("marrowscope.core").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


def apply_migrations(conn: psycopg.Connection) -> list[int]:
    """Apply the migrations that are missing; return the versions applied now."""
    applied_now: list[int] = []
    conn.autocommit = True
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
    try:
        done = {
            row[0]: row[1]
            for row in conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        }
        for migration in load_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise RuntimeError(
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; add a new migration instead of editing an applied one"
                    )
                continue
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied_now


def statement_timeout_configurer(timeout_s: float) -> Callable[[DictConnection], None]:
    """A pool ``configure`` callback giving each new connection ``statement_timeout``
    (0 = none). A ``SET`` rather than a libpq ``options`` argument, which would replace any
    ``options`` the DSN carries."""
    milliseconds = str(max(0, round(timeout_s * 1000)))

    def configure(conn: DictConnection) -> None:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (milliseconds,))
        conn.commit()  # the pool wants the connection idle, not in a transaction

    return configure


def open_pool(settings: DatabaseSettings, *, name: str = "marrowscope") -> DictPool:
    """Open a pool (rows as dicts), waiting for the database, and apply migrations if asked.

    Each connection is checked when it is taken from the pool and has the configured
    statement timeout."""
    if settings.apply_migrations:
        try:
            with psycopg.connect(settings.dsn, connect_timeout=10) as conn:
                apply_migrations(conn)
        except psycopg.OperationalError as exc:
            raise Unavailable(
                f"cannot reach PostgreSQL ({exc.__class__.__name__}); check MARROWSCOPE_DB_DSN "
                "and that the server is running"
            ) from exc
    pool: DictPool = ConnectionPool(
        settings.dsn,
        connection_class=psycopg.Connection[Row],
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        name=name,
        open=False,
        # A connection the server closed (restart, idle timeout, pg_terminate_backend) is
        # replaced when taken, instead of failing the request that gets it.
        check=ConnectionPool.check_connection,
        configure=statement_timeout_configurer(settings.statement_timeout_s),
        # Waiting for a connection (all busy, or the server down) fails after this long with
        # PoolTimeout, which the APIs answer as 503 naming the database, instead of hanging.
        timeout=settings.pool_timeout_s,
        kwargs={"row_factory": dict_row, "connect_timeout": settings.connect_timeout_s},
    )
    pool.open(wait=True, timeout=30)
    return pool


def create_database(admin_dsn: str, name: str) -> None:
    """Create database ``name`` through an admin connection if it does not exist."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"unsafe database name {name!r}")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())


def drop_database(admin_dsn: str, name: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"unsafe database name {name!r}")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())
