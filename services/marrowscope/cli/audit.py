"""`marrowscope audit verify`: check the audit trail's hash chain in PostgreSQL.

audit verify [--dsn DSN] [--json]    recompute every event's hash and link

Exit 0: intact; 1: the chain is broken (the first break is shown: event id, chain_seq,
problem); 2: no database could be found or reached. The database is the one given with
``--dsn``, else the running local stack's (``marrowscope up``), else ``$MARROWSCOPE_DB_DSN``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from marrowscope.core.audit import ChainReport, verify_audit_chain
from marrowscope.core.errors import FailedPrecondition, Unavailable

from . import stack


def add_parser(sub: Any) -> None:
    """Add ``audit`` (with its ``verify`` action) to the CLI's subcommands ``sub``."""
    audit = sub.add_parser("audit", help="the audit trail: verify its hash chain")
    actions = audit.add_subparsers(dest="audit_action", required=True)
    verify = actions.add_parser(
        "verify",
        help="recompute every event's hash and link; exit 1 if the chain is broken",
    )
    verify.add_argument(
        "--dsn",
        help="PostgreSQL DSN (default: the running local stack's, else $MARROWSCOPE_DB_DSN)",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(func=cmd_verify)


def resolve_dsn(dsn: str | None, home: Path) -> str:
    """The database to check: ``dsn``, else the local stack's, else ``$MARROWSCOPE_DB_DSN``."""
    if dsn:
        return dsn
    state = stack.read_state(stack.StackPaths(home)) or {}
    found = state.get("env", {}).get("MARROWSCOPE_DB_DSN") or os.environ.get("MARROWSCOPE_DB_DSN")
    if not found:
        raise stack.StackError(
            "no database to check: pass --dsn, set MARROWSCOPE_DB_DSN, or start the local "
            "stack (marrowscope up --detach)"
        )
    return str(found)


def verify(dsn: str) -> ChainReport:
    """Verify the chain in one read-only snapshot (the count and the breaks agree)."""
    try:
        with psycopg.connect(dsn, connect_timeout=10, row_factory=dict_row) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            return verify_audit_chain(conn)
    except psycopg.OperationalError as exc:
        raise Unavailable(f"cannot reach PostgreSQL ({exc.__class__.__name__}): {exc}") from exc
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction) as exc:
        raise FailedPrecondition(
            "this database has no audit trail (are Marrowscope's migrations applied?)"
        ) from exc


def cmd_verify(args: argparse.Namespace) -> int:
    """Print the events checked and 'intact', or the first break; 0 if intact, else 1."""
    report = verify(resolve_dsn(args.dsn, args.home))
    first = report.breaks[0] if report.breaks else None
    if args.json:
        print(
            json.dumps(
                {
                    "events": report.events,
                    "intact": report.intact,
                    "break_count": len(report.breaks),
                    "first_break": first,
                },
                indent=2,
            )
        )
    elif first is None:
        print(f"{report.events} events checked: intact")
    else:
        print(
            f"{report.events} events checked: chain broken at event {first['id']} "
            f"(chain_seq {first['chain_seq']}): {first['problem']}"
        )
        if len(report.breaks) > 1:
            print(f"{len(report.breaks)} breaks in all; the first is shown")
    return 0 if report.intact else 1
