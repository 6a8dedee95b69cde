"""Apply the database migrations and exit: ``python -m marrowscope.core.migrate [--wait S]``.

The Helm chart runs this as an init container of every service pod, so the schema is there
before a service starts (the services run with ``MARROWSCOPE_DB_APPLY_MIGRATIONS=false``).
Replicas take turns under PostgreSQL's advisory lock, and all but the first find nothing to
do. ``--wait`` keeps trying to reach the database for that many seconds first: on a fresh
install the bundled PostgreSQL starts alongside the services.
"""

from __future__ import annotations

import argparse
import sys
import time

import psycopg

from .db import apply_migrations
from .settings import DatabaseSettings


def connect_within(dsn: str, wait_s: float) -> psycopg.Connection:
    """A connection to ``dsn``, trying every 2 s for up to ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return psycopg.connect(dsn, connect_timeout=10)
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            print(f"waiting for PostgreSQL: {str(exc).strip()}", file=sys.stderr, flush=True)
            time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--wait", type=float, default=0, help="seconds to keep trying to reach the database"
    )
    args = parser.parse_args(argv)
    settings = DatabaseSettings()
    try:
        with connect_within(settings.dsn, args.wait) as conn:
            applied = apply_migrations(conn)
    except psycopg.OperationalError as exc:
        print(f"cannot reach PostgreSQL: {exc}; check MARROWSCOPE_DB_DSN", file=sys.stderr)
        return 2
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
