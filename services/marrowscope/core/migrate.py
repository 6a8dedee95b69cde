"""Apply the database migrations and exit: ``python -m marrowscope.core.migrate``.

The Helm chart runs this as a pre-install / pre-upgrade hook Job, so the services start with
``MARROWSCOPE_DB_APPLY_MIGRATIONS=false`` and never race each other over the schema.
"""

from __future__ import annotations

import sys

import psycopg

from .db import apply_migrations
from .settings import DatabaseSettings


def main() -> int:
    settings = DatabaseSettings()
    try:
        with psycopg.connect(settings.dsn, connect_timeout=30) as conn:
            applied = apply_migrations(conn)
    except psycopg.OperationalError as exc:
        print(f"cannot reach PostgreSQL: {exc}; check MARROWSCOPE_DB_DSN", file=sys.stderr)
        return 2
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
