"""`marrowscope audit verify` against a real PostgreSQL: an intact chain exits 0, a row edited
behind the insert-only trigger's back is reported and exits 1."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from marrowscope.cli import stack
from marrowscope.cli.main import main
from marrowscope.core.audit import append_event
from marrowscope.core.db import apply_migrations, create_database, drop_database

pytestmark = pytest.mark.integration


@pytest.fixture()
def audit_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A database of its own with three audit events (the test tampers with its trail)."""
    name = f"marrowscope_audit_{uuid.uuid4().hex[:8]}"
    create_database(pg_admin_dsn, name)
    dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)
    with psycopg.connect(dsn) as conn:
        apply_migrations(conn)
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        for n in range(3):
            append_event(
                conn,
                actor="dr-h",
                action="promote",
                entity="model_alias",
                entity_id=f"v{n}",
                previous={"version": n},
                current={"version": n + 1},
                reason=f"round {n}",
            )
    yield dsn
    drop_database(pg_admin_dsn, name)


def verify(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["audit", "verify", *args])
    return code, capsys.readouterr().out


def test_verify_reports_intact_and_then_the_first_break(
    audit_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(capsys, "--dsn", audit_dsn)
    assert code == 0 and out.strip() == "3 events checked: intact"
    code, out = verify(capsys, "--dsn", audit_dsn, "--json")
    assert code == 0
    assert json.loads(out) == {"events": 3, "intact": True, "break_count": 0, "first_break": None}

    # A superuser edits history with the insert-only trigger disabled.
    with psycopg.connect(audit_dsn, row_factory=dict_row) as conn:
        target = conn.execute(
            "SELECT id, chain_seq FROM audit_events WHERE chain_seq = 2"
        ).fetchone()
        assert target is not None
        conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_insert_only")
        conn.execute(
            "UPDATE audit_events SET reason = 'edited later' WHERE id = %s", (target["id"],)
        )
        conn.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_insert_only")

    code, out = verify(capsys, "--dsn", audit_dsn)
    assert code == 1
    assert out.strip() == (
        f"3 events checked: chain broken at event {target['id']} (chain_seq 2): content changed"
    )
    code, out = verify(capsys, "--dsn", audit_dsn, "--json")
    report = json.loads(out)
    assert code == 1 and report["intact"] is False and report["break_count"] == 1
    assert report["first_break"] == {
        "id": target["id"],
        "chain_seq": 2,
        "problem": "content changed",
    }


def test_the_dsn_defaults_to_the_local_stacks(
    audit_dsn: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MARROWSCOPE_DB_DSN", raising=False)
    home = tmp_path / "home"
    # No stack and no MARROWSCOPE_DB_DSN: a usage error (2) that says what to do.
    assert main(["--home", str(home), "audit", "verify"]) == 2
    assert "--dsn" in capsys.readouterr().err

    monkeypatch.setenv("MARROWSCOPE_DB_DSN", audit_dsn)
    assert main(["--home", str(home), "audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out

    # A running stack's DSN (its state file) comes before the environment's.
    monkeypatch.setenv("MARROWSCOPE_DB_DSN", "postgresql://nobody@127.0.0.1:1/none")
    state_file = stack.StackPaths(home).state_file
    state_file.parent.mkdir(parents=True)
    state_file.write_text(json.dumps({"env": {"MARROWSCOPE_DB_DSN": audit_dsn}}))
    assert main(["--home", str(home), "audit", "verify"]) == 0
    assert "3 events checked: intact" in capsys.readouterr().out

    # An unreachable database: exit 2 with the reason, no traceback.
    assert main(["audit", "verify", "--dsn", "postgresql://nobody@127.0.0.1:1/none"]) == 2
    assert "cannot reach PostgreSQL" in capsys.readouterr().err
