"""The experts' side: review tasks in a leased work queue, durable idempotent decisions,
an insert-only audit trail, users with roles.

Plain Python over PostgreSQL. A decision is committed before it is acknowledged; a retry
with the same client decision id returns the stored decision and never creates a second one.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from marrowscope.core.db import DictConnection, DictPool
from marrowscope.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from marrowscope.core.ids import parse_uuid
from marrowscope.core.taxonomy import load_taxonomy

log = logging.getLogger(__name__)
ROLES = ("expert", "admin", "service")
ACTIONS_BY_KIND = {"CST": ("confirm", "correct", "too_difficult"), "AL": ("label", "too_difficult")}


@dataclass(frozen=True)
class User:
    name: str
    role: str


@dataclass(frozen=True)
class NewTask:
    cell_id: str
    object_key: str
    kind: str
    proposed_class: str
    top_classes: list[tuple[str, float]]


@dataclass(frozen=True)
class Task:
    id: str
    campaign_id: str
    round_id: str
    round_number: int
    cell_id: str
    object_key: str
    kind: str
    proposed_class: str
    top_classes: list[tuple[str, float]]
    state: str
    claimed_by: str
    lease_expires_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Task:
        return cls(
            str(row["id"]),
            str(row["campaign_id"]),
            str(row["round_id"]),
            int(row.get("round_number") or 0),
            str(row["cell_id"]),
            row["object_key"],
            row["kind"],
            row["proposed_class"] or "",
            [(c, float(p)) for c, p in row["top_classes"]],
            row["state"],
            row["claimed_by"] or "",
            row["lease_expires_at"],
        )


@dataclass(frozen=True)
class DecisionInput:
    client_decision_id: str
    task_id: str
    action: str
    class_code: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    id: str
    client_decision_id: str
    task_id: str
    cell_id: str
    action: str
    class_code: str
    user: str
    decided_at: datetime
    undone: bool = False


@dataclass(frozen=True)
class ProgressRow:
    round_id: str
    kind: str
    class_code: str
    open: int
    claimed: int
    decided: int


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class CurationService:
    def __init__(self, pool: DictPool, default_lease_seconds: int = 600, max_claim: int = 200):
        self.pool = pool
        self.default_lease_seconds = default_lease_seconds
        self.max_claim = max_claim

    # ------------------------------------------------------------------ users and roles
    def ensure_user(self, name: str, role: str, token: str) -> None:
        """Create or re-key a bootstrap user (admin or service) from configured tokens."""
        with self.pool.connection() as conn:
            conn.execute(
                """INSERT INTO users (id, name, role, token_sha256) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (name) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256,
                       role = EXCLUDED.role""",
                (uuid.uuid4(), name, role, token_hash(token)),
            )

    def authenticate(self, token: str) -> User:
        if not token:
            raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>'")
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT name, role FROM users WHERE token_sha256 = %s", (token_hash(token),)
            ).fetchone()
        if row is None:
            raise Unauthenticated("unknown or revoked token")
        return User(row["name"], row["role"])

    @staticmethod
    def require(user: User, *roles: str) -> None:
        if user.role not in roles:
            raise PermissionDenied(f"role {user.role} may not do this (needs {' or '.join(roles)})")

    def create_user(self, actor: User, name: str, role: str) -> tuple[User, str]:
        self.require(actor, "admin")
        if role not in ROLES or not name.strip():
            raise InvalidArgument(f"a user needs a name and one of the roles {ROLES}")
        token = secrets.token_urlsafe(32)
        try:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO users (id, name, role, token_sha256) VALUES (%s, %s, %s, %s)",
                    (uuid.uuid4(), name, role, token_hash(token)),
                )
                self._audit(conn, actor, "create_user", "user", name, None, {"role": role}, None)
        except psycopg.errors.UniqueViolation:
            raise FailedPrecondition(f"user {name!r} exists already") from None
        return User(name, role), token

    # ------------------------------------------------------------------ the queue
    def create_tasks(
        self, actor: User, campaign_id: str, round_id: str, tasks: list[NewTask]
    ) -> tuple[int, int]:
        self.require(actor, "service", "admin")
        campaign_id, round_id = (
            parse_uuid(campaign_id, "campaign id"),
            parse_uuid(round_id, "round id"),
        )
        created = 0
        with self.pool.connection() as conn, conn.transaction():
            found = conn.execute(
                "SELECT 1 FROM rounds WHERE id = %s AND campaign_id = %s", (round_id, campaign_id)
            ).fetchone()
            if found is None:
                raise NotFound(f"round {round_id} of campaign {campaign_id} not found")
            for task in tasks:
                if task.kind not in ACTIONS_BY_KIND:
                    raise InvalidArgument(f"task kind must be CST or AL, not {task.kind!r}")
                if task.kind == "CST" and not task.proposed_class:
                    raise InvalidArgument("a CST task needs the proposed (pseudo) class")
                row = conn.execute(
                    """INSERT INTO review_tasks (id, campaign_id, round_id, cell_id, object_key,
                           kind, proposed_class, top_classes)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                       ON CONFLICT (round_id, cell_id) DO NOTHING RETURNING id""",
                    (
                        uuid.uuid4(),
                        campaign_id,
                        round_id,
                        parse_uuid(task.cell_id, "cell id"),
                        task.object_key,
                        task.kind,
                        task.proposed_class or None,
                        Jsonb([[c, p] for c, p in task.top_classes]),
                    ),
                ).fetchone()
                created += row is not None
        return created, len(tasks) - created

    def claim(
        self,
        user: User,
        campaign_id: str = "",
        kind: str = "",
        proposed_class: str = "",
        limit: int = 50,
        lease_seconds: int = 0,
    ) -> list[Task]:
        self.require(user, "expert", "admin")
        limit = max(1, min(limit or 50, self.max_claim))
        lease = lease_seconds or self.default_lease_seconds
        with self.pool.connection() as conn:
            rows = conn.execute(
                """WITH picked AS (
                       SELECT id FROM review_tasks
                       WHERE (state = 'open' OR (state = 'claimed' AND lease_expires_at < now()))
                         AND (%(c)s = '' OR campaign_id::text = %(c)s)
                         AND (%(k)s = '' OR kind = %(k)s)
                         AND (%(p)s = '' OR proposed_class = %(p)s)
                         AND (%(admin)s OR NOT EXISTS (
                                 SELECT 1 FROM campaign_assignments a
                                 WHERE a.campaign_id = review_tasks.campaign_id)
                              OR EXISTS (SELECT 1 FROM campaign_assignments a
                                 WHERE a.campaign_id = review_tasks.campaign_id
                                   AND a.user_name = %(u)s))
                       ORDER BY created_at, id LIMIT %(n)s
                       FOR UPDATE SKIP LOCKED)
                   UPDATE review_tasks t SET state = 'claimed', claimed_by = %(u)s,
                       lease_expires_at = now() + make_interval(secs => %(l)s)
                   FROM picked, rounds r WHERE t.id = picked.id AND r.id = t.round_id
                   RETURNING t.*, r.number AS round_number""",
                {
                    "c": campaign_id,
                    "k": kind,
                    "p": proposed_class,
                    "n": limit,
                    "u": user.name,
                    "l": lease,
                    "admin": user.role == "admin",
                },
            ).fetchall()
        return [Task.from_row(r) for r in rows]

    def release(self, user: User, task_ids: list[str]) -> int:
        self.require(user, "expert", "admin")
        with self.pool.connection() as conn:
            result = conn.execute(
                """UPDATE review_tasks SET state = 'open', claimed_by = NULL,
                       lease_expires_at = NULL
                   WHERE id = ANY(%s) AND state = 'claimed' AND claimed_by = %s""",
                ([parse_uuid(t, "task id") for t in task_ids], user.name),
            )
            return result.rowcount

    # ------------------------------------------------------------------ decisions
    def submit(self, user: User, inputs: list[DecisionInput]) -> list[Decision]:
        self.require(user, "expert", "admin")
        return [self._submit_one(user, d) for d in inputs]

    def _submit_one(self, user: User, item: DecisionInput) -> Decision:
        if not item.client_decision_id:
            raise InvalidArgument("client_decision_id is required (it makes retries safe)")
        with self.pool.connection() as conn, conn.transaction():
            existing = self._decision_by_client_id(conn, item.client_decision_id)
            if existing is not None:
                if existing.task_id != item.task_id:
                    raise FailedPrecondition(
                        f"client decision id {item.client_decision_id} was used for another task"
                    )
                return existing
            task = conn.execute(
                """SELECT t.*, c.taxonomy,
                       coalesce(t.lease_expires_at > now(), false) AS lease_valid
                   FROM review_tasks t
                   JOIN campaigns c ON c.id = t.campaign_id WHERE t.id = %s
                   FOR UPDATE OF t""",  # lock the task only, never the shared campaign row
                (parse_uuid(item.task_id, "task id"),),
            ).fetchone()
            if task is None:
                raise NotFound(f"review task {item.task_id} not found")
            if task["state"] == "decided":
                raise FailedPrecondition(
                    f"task {item.task_id} is decided already; undo that decision to change it"
                )
            held_by_other = task["claimed_by"] != user.name and task["lease_valid"]
            if task["state"] == "claimed" and held_by_other:
                raise FailedPrecondition(f"task {item.task_id} is claimed by another expert")
            if item.action not in ACTIONS_BY_KIND[task["kind"]]:
                raise InvalidArgument(
                    f"{task['kind']} tasks take {', '.join(ACTIONS_BY_KIND[task['kind']])}, "
                    f"not {item.action!r}"
                )
            class_code = ""
            if item.action == "confirm":
                class_code = task["proposed_class"]
            elif item.action in ("correct", "label"):
                if not item.class_code:
                    raise InvalidArgument(f"action {item.action} needs a class_code")
                class_code = load_taxonomy(task["taxonomy"]).check(item.class_code)
            decision_id = uuid.uuid4()
            row = conn.execute(
                """INSERT INTO decisions (id, client_decision_id, task_id, action, class_code,
                       user_name, reason) VALUES (%s, %s, %s, %s, %s, %s, %s)
                   RETURNING created_at""",
                (
                    decision_id,
                    item.client_decision_id,
                    task["id"],
                    item.action,
                    class_code or None,
                    user.name,
                    item.reason or None,
                ),
            ).fetchone()
            assert row is not None
            conn.execute(
                """UPDATE review_tasks SET state = 'decided', decided_at = now(),
                       claimed_by = %s WHERE id = %s""",
                (user.name, task["id"]),
            )
            self._audit(
                conn,
                user,
                "decide",
                "review_task",
                str(task["id"]),
                {"state": task["state"], "proposed_class": task["proposed_class"]},
                {"action": item.action, "class_code": class_code, "decision_id": str(decision_id)},
                item.reason,
            )
        return Decision(
            str(decision_id),
            item.client_decision_id,
            str(task["id"]),
            str(task["cell_id"]),
            item.action,
            class_code,
            user.name,
            row["created_at"],
        )

    def undo(self, user: User, client_decision_id: str, reason: str = "") -> Decision:
        self.require(user, "expert", "admin")
        with self.pool.connection() as conn, conn.transaction():
            target = self._decision_by_client_id(conn, client_decision_id)
            if target is None:
                raise NotFound(f"decision {client_decision_id} not found")
            if target.user != user.name and user.role != "admin":
                raise PermissionDenied("only the expert who decided (or an admin) may undo")
            if target.undone:
                return target
            task = conn.execute(
                "SELECT state FROM review_tasks WHERE id = %s FOR UPDATE", (target.task_id,)
            ).fetchone()
            assert task is not None
            conn.execute(
                """INSERT INTO decisions (id, client_decision_id, task_id, action, undoes,
                       user_name, reason) VALUES (%s, %s, %s, 'undo', %s, %s, %s)""",
                (
                    uuid.uuid4(),
                    f"undo:{client_decision_id}",
                    target.task_id,
                    target.id,
                    user.name,
                    reason or None,
                ),
            )
            conn.execute(
                """UPDATE review_tasks SET state = 'open', claimed_by = NULL,
                       lease_expires_at = NULL, decided_at = NULL WHERE id = %s""",
                (target.task_id,),
            )
            self._audit(
                conn,
                user,
                "undo",
                "review_task",
                target.task_id,
                {"action": target.action, "class_code": target.class_code},
                {"state": "open"},
                reason,
            )
            undone = self._decision_by_client_id(conn, client_decision_id)
        assert undone is not None
        return undone

    def _decision_by_client_id(self, conn: DictConnection, client_id: str) -> Decision | None:
        row = conn.execute(
            """SELECT d.*, t.cell_id,
                   EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) AS undone
               FROM decisions d JOIN review_tasks t ON t.id = d.task_id
               WHERE d.client_decision_id = %s AND d.action <> 'undo'""",
            (client_id,),
        ).fetchone()
        return _decision(row) if row else None

    def list_decisions(
        self, user: User, campaign_id: str, round_id: str = "", include_undone: bool = False
    ) -> list[Decision]:
        self.require(user, "service", "admin", "expert")
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT d.*, t.cell_id,
                       EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) AS undone
                   FROM decisions d JOIN review_tasks t ON t.id = d.task_id
                   WHERE t.campaign_id = %(c)s AND (%(r)s = '' OR t.round_id::text = %(r)s)
                     AND d.action <> 'undo'
                     AND (%(u)s OR NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id))
                     AND (%(expert)s = '' OR d.user_name = %(expert)s)
                   ORDER BY d.created_at""",
                {
                    "c": parse_uuid(campaign_id, "campaign id"),
                    "r": round_id,
                    "u": include_undone,
                    "expert": user.name if user.role == "expert" else "",
                },
            ).fetchall()
        return [_decision(r) for r in rows]

    def progress(self, user: User, campaign_id: str, round_id: str = "") -> list[ProgressRow]:
        self.require(user, "service", "admin", "expert")
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT round_id, kind, coalesce(proposed_class, '') AS class_code,
                       count(*) FILTER (WHERE state = 'open'
                           OR (state = 'claimed' AND lease_expires_at < now())) AS open,
                       count(*) FILTER (WHERE state = 'claimed'
                           AND lease_expires_at >= now()) AS claimed,
                       count(*) FILTER (WHERE state = 'decided') AS decided
                   FROM review_tasks
                   WHERE campaign_id = %(c)s AND (%(r)s = '' OR round_id::text = %(r)s)
                   GROUP BY round_id, kind, proposed_class ORDER BY 1, 2, 3""",
                {"c": parse_uuid(campaign_id, "campaign id"), "r": round_id},
            ).fetchall()
        return [
            ProgressRow(
                str(r["round_id"]),
                r["kind"],
                r["class_code"],
                r["open"],
                r["claimed"],
                r["decided"],
            )
            for r in rows
        ]

    @staticmethod
    def _audit(
        conn: DictConnection,
        actor: User,
        action: str,
        entity: str,
        entity_id: str,
        previous: dict | None,
        current: dict | None,
        reason: str | None,
    ) -> None:
        conn.execute(
            """INSERT INTO audit_events (actor, action, entity, entity_id, previous, current, reason)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            (
                actor.name,
                action,
                entity,
                entity_id,
                Jsonb(previous) if previous else None,
                Jsonb(current) if current else None,
                reason or None,
            ),
        )


def _decision(row: dict[str, Any]) -> Decision:
    return Decision(
        str(row["id"]),
        row["client_decision_id"],
        str(row["task_id"]),
        str(row["cell_id"]),
        row["action"],
        row["class_code"] or "",
        row["user_name"],
        row["created_at"],
        bool(row["undone"]),
    )
