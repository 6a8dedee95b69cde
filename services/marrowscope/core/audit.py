"""Verification of the audit trail's hash chain (see migration 0002)."""

from __future__ import annotations

from dataclasses import dataclass

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
