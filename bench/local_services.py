"""What the service benchmarks share: a throwaway PostgreSQL database and one service process
on loopback, started, waited for and stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

from marrowscope.core.db import create_database, drop_database

ADMIN_DSN = os.environ.get(
    "MARROWSCOPE_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A new database on the machine's PostgreSQL (dropped afterwards); yields its DSN."""
    name = f"marrowscope_bench_{uuid.uuid4().hex[:8]}"
    create_database(ADMIN_DSN, name)
    try:
        yield psycopg.conninfo.make_conninfo(ADMIN_DSN, dbname=name)
    finally:
        drop_database(ADMIN_DSN, name)


@contextmanager
def running_service(
    module: str, env: dict[str, str], health_url: str, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m <module>`` with ``env``, once ``health_url`` answers; stopped afterwards.
    Yields the process (its pid, for memory figures). gRPC runs in plaintext here (nothing
    but the benchmark on loopback) unless ``env`` gives the service its certificates."""
    env = {"GRPC_ALLOW_PLAINTEXT": "true", **env}
    server = subprocess.Popen(
        [sys.executable, "-m", module], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(health_url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"{module} did not start; see {log}") from None
                time.sleep(0.2)
        yield server
    finally:
        server.terminate()
        server.wait(10)
