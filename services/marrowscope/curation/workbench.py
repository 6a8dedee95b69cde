"""What the experts' workbench (the web UI and other UI clients) reads besides the queue
itself: the review queues an expert works, tasks they already hold, the next page of tasks,
reference cells of a class, the cell images behind tasks, and their own pace.

Plain Python over PostgreSQL, on curation's own tables; cells come from the core's cell
registry (``marrowscope.core.cell_registry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marrowscope.core import cell_registry
from marrowscope.core.audit import append_event
from marrowscope.core.db import DictPool
from marrowscope.core.errors import NotFound
from marrowscope.core.ids import parse_uuid

from .service import ASSIGNED_OR_OPEN, CurationService, Task, User


@dataclass(frozen=True)
class Queue:
    """A review queue as curation stored it from its requester's description."""

    id: str
    name: str
    kind: str
    taxonomy: str
    dataset: str


@dataclass(frozen=True, kw_only=True)
class QueueSummary:
    """A queue on the expert's list: its open CST / AL tasks and who is assigned."""

    id: str
    name: str
    kind: str
    taxonomy: str
    state: str  # 'open' while it has undecided tasks, else 'idle'
    open_cst: int
    open_al: int
    decided: int
    assigned: list[str]


@dataclass(frozen=True)
class TaskPage:
    """Tasks to show on one page: those the user already holds first, then newly claimed."""

    taxonomy: str
    proposed_class: str
    tasks: list[Task]


class Workbench:
    def __init__(self, pool: DictPool, curation: CurationService) -> None:
        self.pool = pool
        self.curation = curation

    @staticmethod
    def _visible(user: User, queue: str) -> str:
        """SQL condition: the queue whose id is the column ``queue`` is visible to %(user)s
        (admins see all)."""
        if user.role == "admin":
            return "true"
        return ASSIGNED_OR_OPEN.format(queue=queue)

    def queues(self, user: User) -> list[QueueSummary]:
        """The queues this user works (all for admins), newest first."""
        self.curation.require(user, "expert", "admin")
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"""SELECT q.id, q.name, q.kind, q.taxonomy,
                       count(t.id) FILTER (WHERE t.kind = 'CST' AND t.state <> 'decided') AS open_cst,
                       count(t.id) FILTER (WHERE t.kind = 'AL' AND t.state <> 'decided') AS open_al,
                       count(t.id) FILTER (WHERE t.state = 'decided') AS decided,
                       coalesce((SELECT array_agg(user_name ORDER BY user_name)
                                 FROM queue_assignments a WHERE a.queue_id = q.id), '{{}}') AS assigned
                   FROM review_queues q LEFT JOIN review_tasks t ON t.queue_id = q.id
                   WHERE {self._visible(user, "q.id")}
                   GROUP BY q.id ORDER BY q.created_at DESC""",
                {"user": user.name},
            ).fetchall()
        return [
            QueueSummary(
                id=str(r["id"]),
                name=r["name"],
                kind=r["kind"],
                taxonomy=r["taxonomy"],
                state="open" if r["open_cst"] + r["open_al"] else "idle",
                open_cst=r["open_cst"],
                open_al=r["open_al"],
                decided=r["decided"],
                assigned=list(r["assigned"]),
            )
            for r in rows
        ]

    def check_visible(self, user: User, queue_id: str) -> Queue:
        """The queue, if it exists and this user may work it (else NotFound)."""
        qid = parse_uuid(queue_id, "campaign (queue) id")
        with self.pool.connection() as conn:
            row = conn.execute(
                f"""SELECT q.id, q.name, q.kind, q.taxonomy, q.dataset FROM review_queues q
                    WHERE q.id = %(q)s AND {self._visible(user, "q.id")}""",
                {"q": qid, "user": user.name},
            ).fetchone()
        if row is None:
            raise NotFound(f"queue {qid} not found or not assigned to you")
        return Queue(str(row["id"]), row["name"], row["kind"], row["taxonomy"], row["dataset"])

    def assign(self, actor: User, queue_id: str, user_name: str, assigned: bool) -> list[str]:
        """Assign (or unassign) an expert to a queue; the queue's experts after the change.
        The queue need not exist yet: an admin may assign before its first batch arrives."""
        self.curation.require(actor, "admin")
        qid = parse_uuid(queue_id, "campaign (queue) id")
        with self.pool.connection() as conn, conn.transaction():
            if conn.execute("SELECT 1 FROM users WHERE name = %s", (user_name,)).fetchone() is None:
                raise NotFound(f"user {user_name!r} not found")
            if assigned:
                conn.execute(
                    """INSERT INTO queue_assignments (queue_id, user_name, assigned_by)
                       VALUES (%s, %s, %s) ON CONFLICT DO NOTHING""",
                    (qid, user_name, actor.name),
                )
            else:
                conn.execute(
                    "DELETE FROM queue_assignments WHERE queue_id = %s AND user_name = %s",
                    (qid, user_name),
                )
            append_event(
                conn,
                actor=actor.name,
                action="assign" if assigned else "unassign",
                entity="review_queue",
                entity_id=str(qid),
                previous=None,
                current={"user": user_name},
                reason=None,
            )
            rows = conn.execute(
                "SELECT user_name FROM queue_assignments WHERE queue_id = %s ORDER BY 1", (qid,)
            ).fetchall()
        return [r["user_name"] for r in rows]

    def assignments(self, actor: User) -> dict[str, list[str]]:
        """Every queue id with assigned experts (including queues with no batch yet)."""
        self.curation.require(actor, "admin")
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT queue_id, array_agg(user_name ORDER BY user_name) AS users
                   FROM queue_assignments GROUP BY queue_id"""
            ).fetchall()
        return {str(r["queue_id"]): list(r["users"]) for r in rows}

    def held(self, user: User, queue_id: str, kind: str, proposed_class: str = "") -> list[Task]:
        """Tasks this user claimed whose lease still runs (what a reloaded page shows again)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT t.*, b.number AS round_number FROM review_tasks t
                   JOIN review_batches b ON b.id = t.batch_id
                   WHERE t.queue_id = %(q)s AND t.kind = %(k)s AND t.state = 'claimed'
                     AND t.claimed_by = %(u)s AND t.lease_expires_at > now()
                     AND (%(p)s = '' OR t.proposed_class = %(p)s)
                   ORDER BY t.created_at, t.id""",
                {
                    "q": parse_uuid(queue_id, "campaign (queue) id"),
                    "k": kind,
                    "u": user.name,
                    "p": proposed_class,
                },
            ).fetchall()
        return [Task.from_row(r) for r in rows]

    def next_page(
        self, user: User, queue_id: str, kind: str, proposed_class: str = "", limit: int = 50
    ) -> TaskPage:
        """The next page of ``kind`` tasks of a queue: the tasks this user still holds first
        (a reload shows the same page), then newly claimed ones up to ``limit``.

        A CST page shows one proposed class. Without one, it is the class of the page a
        reload left off; else the class with the most open tasks."""
        queue = self.check_visible(user, queue_id)
        proposed = proposed_class
        if kind == "CST" and not proposed:
            held_any = self.held(user, queue_id, "CST")
            if held_any:
                proposed = held_any[0].proposed_class
            else:
                open_by_class: dict[str, int] = {}
                for r in self.curation.progress(user, queue_id):
                    if r.kind == "CST":
                        open_by_class[r.class_code] = open_by_class.get(r.class_code, 0) + r.open
                if open_by_class and max(open_by_class.values()) > 0:
                    proposed = max(open_by_class, key=lambda c: open_by_class[c])
            tasks = [t for t in held_any if t.proposed_class == proposed]
        else:
            tasks = self.held(user, queue_id, kind, proposed)
        if len(tasks) < limit:
            tasks += self.curation.claim(user, queue_id, kind, proposed, limit - len(tasks))
        return TaskPage(queue.taxonomy, proposed, tasks)

    def task_image_key(self, user: User, task_id: str) -> str:
        """The object key of a task's cell image, for a user who may see the task's queue."""
        self.curation.require(user, "expert", "admin")
        with self.pool.connection() as conn:
            row = conn.execute(
                f"""SELECT t.object_key FROM review_tasks t
                    WHERE t.id = %(t)s AND {self._visible(user, "t.queue_id")}""",
                {"t": parse_uuid(task_id, "task id"), "user": user.name},
            ).fetchone()
        if row is None:
            raise NotFound(f"task {task_id} not found")
        return str(row["object_key"])

    def reference_cells(
        self, user: User, queue_id: str, class_codes: list[str], per_class: int = 4
    ) -> dict[str, list[str]]:
        """Cell ids of confirmed examples (imported or expert labels) of each class, from the
        queue's dataset: what the expert compares an unsure cell with. A queue without a
        dataset (the LIS review) has none."""
        queue = self.check_visible(user, queue_id)
        codes = class_codes[:5]
        if not queue.dataset:
            return {code: [] for code in codes}
        with self.pool.connection() as conn:
            return {
                code: cell_registry.confirmed_examples(
                    conn, queue.taxonomy, queue.dataset, code, per_class
                )
                for code in codes
            }

    def cell_image_key(self, user: User, cell_id: str) -> str:
        """The object key of a registered cell's image (reference cells are any cells)."""
        self.curation.require(user, "expert", "admin")
        with self.pool.connection() as conn:
            key = cell_registry.cell_object_key(conn, cell_id)
        if key is None:
            raise NotFound(f"cell {cell_id} not found")
        return key

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
