"""The audit trail: appending events, and verifying its hash chain (see migration 0002)."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.types.json import Jsonb

from .db import DictConnection


@dataclass(frozen=True)
class ChainReport:
    events: int
    breaks: list[dict]  # id, chain_seq, problem

    @property
    def intact(self) -> bool:
        return not self.breaks


def verify_audit_chain(conn: DictConnection) -> ChainReport:
    """Recompute every event's hash and link in the database; list what does not match."""
    row = conn.execute("SELECT count(*) AS n FROM audit_events").fetchone()
    breaks = conn.execute("SELECT id, chain_seq, problem FROM audit_chain_breaks()").fetchall()
    return ChainReport(int(row["n"]) if row else 0, [dict(b) for b in breaks])


def append_event(
    conn: DictConnection,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    previous: dict | None,
    current: dict | None,
    reason: str | None,
) -> None:
    """Append one event to the insert-only audit trail, on the caller's connection (so it
    commits or rolls back with the change it records). The chain columns are filled in by the
    database's trigger."""
    conn.execute(
        """INSERT INTO audit_events (actor, action, entity, entity_id, previous, current, reason)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (
            actor,
            action,
            entity,
            entity_id,
            Jsonb(previous) if previous else None,
            Jsonb(current) if current else None,
            reason or None,
        ),
    )
