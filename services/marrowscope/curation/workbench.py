"""What the experts' workbench (the web UI and other UI clients) reads besides the queue
itself: the campaigns an expert works, tasks they already hold, reference cells of a class,
the cell images behind tasks, and their own pace. Plain Python over PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marrowscope.core.db import DictPool
from marrowscope.core.errors import NotFound
from marrowscope.core.ids import parse_uuid

from .service import CurationService, Task, User


@dataclass(frozen=True)
class CampaignQueue:
    id: str
    name: str
    method: str
    taxonomy: str
    state: str
    open_cst: int
    open_al: int
    decided: int
    assigned: list[str]


class Workbench:
    def __init__(self, pool: DictPool, curation: CurationService) -> None:
        self.pool = pool
        self.curation = curation

    def _visible(self, user: User) -> str:
        """SQL condition: campaign c is visible to %(user)s (admins see all)."""
        if user.role == "admin":
            return "true"
        return """(NOT EXISTS (SELECT 1 FROM campaign_assignments a WHERE a.campaign_id = c.id)
                   OR EXISTS (SELECT 1 FROM campaign_assignments a
                              WHERE a.campaign_id = c.id AND a.user_name = %(user)s))"""

    def queues(self, user: User) -> list[CampaignQueue]:
        self.curation.require(user, "expert", "admin")
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"""SELECT c.id, c.name, c.method, c.taxonomy, c.state,
                       count(t.id) FILTER (WHERE t.kind = 'CST' AND t.state <> 'decided') AS open_cst,
                       count(t.id) FILTER (WHERE t.kind = 'AL' AND t.state <> 'decided') AS open_al,
                       count(t.id) FILTER (WHERE t.state = 'decided') AS decided,
                       coalesce((SELECT array_agg(user_name ORDER BY user_name)
                                 FROM campaign_assignments a WHERE a.campaign_id = c.id), '{{}}') AS assigned
                   FROM campaigns c LEFT JOIN review_tasks t ON t.campaign_id = c.id
                   WHERE {self._visible(user)}
                   GROUP BY c.id ORDER BY c.created_at DESC""",
                {"user": user.name},
            ).fetchall()
        return [
            CampaignQueue(
                str(r["id"]),
                r["name"],
                r["method"],
                r["taxonomy"],
                r["state"],
                r["open_cst"],
                r["open_al"],
                r["decided"],
                list(r["assigned"]),
            )
            for r in rows
        ]

    def check_visible(self, user: User, campaign_id: str) -> dict[str, Any]:
        cid = parse_uuid(campaign_id, "campaign id")
        with self.pool.connection() as conn:
            row = conn.execute(
                f"SELECT c.* FROM campaigns c WHERE c.id = %(c)s AND {self._visible(user)}",
                {"c": cid, "user": user.name},
            ).fetchone()
        if row is None:
            raise NotFound(f"campaign {cid} not found or not assigned to you")
        return row

    def assign(self, actor: User, campaign_id: str, user_name: str, assigned: bool) -> list[str]:
        self.curation.require(actor, "admin")
        cid = parse_uuid(campaign_id, "campaign id")
        with self.pool.connection() as conn, conn.transaction():
            if conn.execute("SELECT 1 FROM users WHERE name = %s", (user_name,)).fetchone() is None:
                raise NotFound(f"user {user_name!r} not found")
            if assigned:
                conn.execute(
                    """INSERT INTO campaign_assignments (campaign_id, user_name, assigned_by)
                       VALUES (%s, %s, %s) ON CONFLICT DO NOTHING""",
                    (cid, user_name, actor.name),
                )
            else:
                conn.execute(
                    "DELETE FROM campaign_assignments WHERE campaign_id = %s AND user_name = %s",
                    (cid, user_name),
                )
            self.curation._audit(
                conn,
                actor,
                "assign" if assigned else "unassign",
                "campaign",
                str(cid),
                None,
                {"user": user_name},
                None,
            )
            rows = conn.execute(
                "SELECT user_name FROM campaign_assignments WHERE campaign_id = %s ORDER BY 1",
                (cid,),
            ).fetchall()
        return [r["user_name"] for r in rows]

    def held(self, user: User, campaign_id: str, kind: str, proposed_class: str = "") -> list[Task]:
        """Tasks this user claimed whose lease still runs (what a reloaded page shows again)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT t.*, r.number AS round_number FROM review_tasks t
                   JOIN rounds r ON r.id = t.round_id
                   WHERE t.campaign_id = %(c)s AND t.kind = %(k)s AND t.state = 'claimed'
                     AND t.claimed_by = %(u)s AND t.lease_expires_at > now()
                     AND (%(p)s = '' OR t.proposed_class = %(p)s)
                   ORDER BY t.created_at, t.id""",
                {
                    "c": parse_uuid(campaign_id, "campaign id"),
                    "k": kind,
                    "u": user.name,
                    "p": proposed_class,
                },
            ).fetchall()
        return [Task.from_row(r) for r in rows]

    def task_image_key(self, user: User, task_id: str) -> str:
        self.curation.require(user, "expert", "admin")
        with self.pool.connection() as conn:
            row = conn.execute(
                f"""SELECT t.object_key FROM review_tasks t JOIN campaigns c ON c.id = t.campaign_id
                    WHERE t.id = %(t)s AND {self._visible(user)}""",
                {"t": parse_uuid(task_id, "task id"), "user": user.name},
            ).fetchone()
        if row is None:
            raise NotFound(f"task {task_id} not found")
        return str(row["object_key"])

    def reference_cells(
        self, user: User, campaign_id: str, class_codes: list[str], per_class: int = 4
    ) -> dict[str, list[str]]:
        """Cell ids of confirmed examples (imported or expert labels) of each class, from the
        campaign's dataset: what the expert compares an unsure cell with."""
        campaign = self.check_visible(user, campaign_id)
        out: dict[str, list[str]] = {}
        with self.pool.connection() as conn:
            for code in class_codes[:5]:
                rows = conn.execute(
                    """SELECT DISTINCT ON (l.cell_id) l.cell_id FROM labels l
                       JOIN cells c ON c.id = l.cell_id
                       WHERE l.class_code = %s AND l.taxonomy = %s AND c.dataset = %s
                         AND l.source IN ('import', 'expert', 'reference')
                       ORDER BY l.cell_id LIMIT %s""",
                    (code, campaign["taxonomy"], campaign["dataset"], per_class),
                ).fetchall()
                out[code] = [str(r["cell_id"]) for r in rows]
        return out

    def cell_image_key(self, user: User, cell_id: str) -> str:
        self.curation.require(user, "expert", "admin")
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT object_key FROM cells WHERE id = %s", (parse_uuid(cell_id, "cell id"),)
            ).fetchone()
        if row is None:
            raise NotFound(f"cell {cell_id} not found")
        return str(row["object_key"])

    def pace(self, user: User) -> dict[str, Any]:
        """The user's own decisions in the last 10 and 60 minutes, and per minute."""
        with self.pool.connection() as conn:
            row = conn.execute(
                """SELECT count(*) FILTER (WHERE created_at > now() - interval '10 minutes') AS last10,
                          count(*) FILTER (WHERE created_at > now() - interval '60 minutes') AS last60,
                          count(*) AS total,
                          extract(epoch FROM
                              max(created_at) FILTER (WHERE created_at > now() - interval '10 minutes')
                              - min(created_at) FILTER (WHERE created_at > now() - interval '10 minutes')
                          ) AS span10
                   FROM decisions WHERE user_name = %s AND action <> 'undo'""",
                (user.name,),
            ).fetchone()
        assert row is not None
        span = float(row["span10"] or 0.0)
        per_minute = row["last10"] / (span / 60.0) if span >= 5.0 else float(row["last10"])
        return {
            "last_10_min": row["last10"],
            "last_60_min": row["last60"],
            "total": row["total"],
            "per_minute": round(per_minute, 1),
        }
