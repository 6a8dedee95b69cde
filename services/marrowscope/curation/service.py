"""The experts' side: review tasks in a leased work queue, durable idempotent decisions,
an insert-only audit trail, users with roles (disabled, re-keyed), and the web UI's
server-side sessions (kept by ``sessions``, revoked here with their user's credentials).

Curation owns its review queues and batches (tables ``review_queues``, ``review_batches``,
``review_tasks``, ``queue_assignments``, ``decisions``) and reads no other service's tables:
a requester (the orchestrator for a campaign round, the LIS API for an analysis job) describes
the queue and the batch when it creates tasks, and keeps its own ids for both.

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

from marrowscope.core.audit import append_event
from marrowscope.core.db import DictConnection, DictPool
from marrowscope.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from marrowscope.core.ids import parse_uuid
from marrowscope.core.metrics import QueryGauge
from marrowscope.core.taxonomy import load_taxonomy

from . import sessions

log = logging.getLogger(__name__)
ROLES = ("expert", "admin", "service")
ACTIONS_BY_KIND = {"CST": ("confirm", "correct", "too_difficult"), "AL": ("label", "too_difficult")}
REQUESTERS = ("campaign_round", "analysis_job")
# SQL condition: the queue named by the column in {queue} may be worked by %(user)s. A queue
# nobody is assigned to is open to every expert; admins are checked apart.
ASSIGNED_OR_OPEN = """(NOT EXISTS (SELECT 1 FROM queue_assignments a WHERE a.queue_id = {queue})
    OR EXISTS (SELECT 1 FROM queue_assignments a
               WHERE a.queue_id = {queue} AND a.user_name = %(user)s))"""


@dataclass(frozen=True)
class User:
    name: str
    role: str


@dataclass(frozen=True, kw_only=True)
class QueueInfo:
    """A review queue as its requester describes it. Required the first time a queue is
    named (then ``taxonomy`` must be set); later an empty field keeps what is stored."""

    name: str = ""
    kind: str = ""  # the campaign's method (CST, AL, CST_AL, ...) or LIS_REVIEW
    taxonomy: str = ""  # the classes decisions are checked against
    dataset: str = ""  # where reference cells of a class come from ('' = none)


@dataclass(frozen=True, kw_only=True)
class ReviewBatchRequest:
    """Where new tasks go: a batch (``batch_id``, the requester's campaign round or analysis
    job id) of a queue (``queue_id``, the requester's campaign or review queue id)."""

    queue_id: str
    batch_id: str
    requester: str  # one of REQUESTERS
    round_number: int = 0  # the campaign round's number; 0 for an analysis job
    queue: QueueInfo | None = None


@dataclass(frozen=True)
class NewTask:
    cell_id: str
    object_key: str
    kind: str
    proposed_class: str
    top_classes: list[tuple[str, float]]


@dataclass(frozen=True, kw_only=True)
class Task:
    id: str
    queue_id: str
    batch_id: str
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
            id=str(row["id"]),
            queue_id=str(row["queue_id"]),
            batch_id=str(row["batch_id"]),
            round_number=int(row.get("round_number") or 0),
            cell_id=str(row["cell_id"]),
            object_key=row["object_key"],
            kind=row["kind"],
            proposed_class=row["proposed_class"] or "",
            top_classes=[(c, float(p)) for c, p in row["top_classes"]],
            state=row["state"],
            claimed_by=row["claimed_by"] or "",
            lease_expires_at=row["lease_expires_at"],
        )


@dataclass(frozen=True)
class DecisionInput:
    client_decision_id: str
    task_id: str
    action: str
    class_code: str = ""
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
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


@dataclass(frozen=True, kw_only=True)
class ProgressRow:
    batch_id: str
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
        """Create or re-key a bootstrap user (admin or service) from configured tokens.

        The configured token is the only one that works afterwards: a changed token replaces
        the stored hash (the old token is refused from then on) and revokes the user's web
        sessions. A user an admin disabled stays disabled."""
        with self.pool.connection() as conn, conn.transaction():
            old = conn.execute(
                "SELECT token_sha256 FROM users WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            conn.execute(
                """INSERT INTO users (id, name, role, token_sha256) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (name) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256,
                       role = EXCLUDED.role""",
                (uuid.uuid4(), name, role, token_hash(token)),
            )
            if old is not None and old["token_sha256"] != token_hash(token):
                revoked = sessions.revoke_user_sessions(conn, name)
                self._audit(
                    conn,
                    User("settings", "service"),
                    "rekey_user",
                    "user",
                    name,
                    None,
                    {"sessions_revoked": revoked},
                    "token changed in the settings",
                )

    def authenticate(self, token: str) -> User:
        """The user of a token (gRPC metadata, HTTP bearer, or sign-in); Unauthenticated for
        a missing, unknown, replaced or disabled user's token."""
        if not token:
            raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>'")
        with self.pool.connection() as conn:
            row = conn.execute(
                """SELECT name, role FROM users
                   WHERE token_sha256 = %s AND disabled_at IS NULL""",
                (token_hash(token),),
            ).fetchone()
        if row is None:
            # One message for unknown and disabled: a caller learns nothing about accounts.
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

    def set_disabled(self, actor: User, name: str, disabled: bool, reason: str = "") -> bool:
        """Disable (or enable again) a user; True if that changed anything. A disabled user's
        token and web sessions are refused everywhere; disabling also revokes the sessions,
        so enabling again does not bring them back. Admins cannot disable themselves (the
        last admin would lock everyone out)."""
        self.require(actor, "admin")
        if disabled and name == actor.name:
            raise FailedPrecondition("you cannot disable yourself; ask another admin")
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT disabled_at FROM users WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            if row is None:
                raise NotFound(f"user {name!r} not found")
            if (row["disabled_at"] is not None) == disabled:
                return False
            conn.execute(
                "UPDATE users SET disabled_at = CASE WHEN %s THEN now() END WHERE name = %s",
                (disabled, name),
            )
            revoked = sessions.revoke_user_sessions(conn, name) if disabled else 0
            self._audit(
                conn,
                actor,
                "disable_user" if disabled else "enable_user",
                "user",
                name,
                {"disabled": not disabled},
                {"disabled": disabled, "sessions_revoked": revoked},
                reason,
            )
        return True

    def rotate_token(self, actor: User, name: str, reason: str = "") -> str:
        """Give a user a new token (returned once; only its hash is stored). The old token is
        refused from now on and the user's web sessions are revoked, since they may have been
        opened with a leaked token. A bootstrap user's token comes from the settings again
        at the next start: rotate those there."""
        self.require(actor, "admin")
        token = secrets.token_urlsafe(32)
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "UPDATE users SET token_sha256 = %s WHERE name = %s RETURNING role",
                (token_hash(token), name),
            ).fetchone()
            if row is None:
                raise NotFound(f"user {name!r} not found")
            revoked = sessions.revoke_user_sessions(conn, name)
            self._audit(
                conn,
                actor,
                "rotate_token",
                "user",
                name,
                None,
                {"sessions_revoked": revoked},
                reason,
            )
        return token

    # ------------------------------------------------------------------ web sessions
    def start_session(
        self, token: str, absolute_seconds: int, replaces: str = ""
    ) -> tuple[User, str]:
        """Sign a browser in with a user token: (the user, a new opaque session id). The
        session it ``replaces`` (the cookie it came with, if any) is revoked. Service accounts
        have no business in the workbench (PermissionDenied)."""
        user = self.authenticate(token)
        if user.role == "service":
            raise PermissionDenied("service accounts cannot sign in to the workbench")
        with self.pool.connection() as conn, conn.transaction():
            if replaces:
                sessions.end_session(conn, replaces)
            session_id = sessions.start_session(conn, user.name, absolute_seconds)
        return user, session_id

    def session_user(self, session_id: str, idle_seconds: int) -> User:
        """The user of a live web session (Unauthenticated otherwise)."""
        if not session_id:
            raise Unauthenticated("not signed in: sign in, or send 'authorization: Bearer'")
        with self.pool.connection() as conn:
            found = sessions.session_user(conn, session_id, idle_seconds)
        if found is None:
            raise Unauthenticated("your session has ended; sign in again")
        return User(*found)

    def end_session(self, session_id: str) -> bool:
        """Revoke a web session (sign-out); True if it was live."""
        with self.pool.connection() as conn:
            return sessions.end_session(conn, session_id)

    # ------------------------------------------------------------------ the queue
    def create_tasks(
        self, actor: User, batch: ReviewBatchRequest, tasks: list[NewTask]
    ) -> tuple[int, int]:
        """Create tasks in ``batch``: (created, already present). The queue and the batch are
        recorded on first sight; idempotent by (batch, cell)."""
        self.require(actor, "service", "admin")
        queue_id = parse_uuid(batch.queue_id, "campaign (queue) id")
        batch_id = parse_uuid(batch.batch_id, "round (batch) id")
        if batch.requester not in REQUESTERS:
            raise InvalidArgument(
                f"say who requests the batch: one of {', '.join(REQUESTERS)}, "
                f"not {batch.requester!r}"
            )
        for task in tasks:
            if task.kind not in ACTIONS_BY_KIND:
                raise InvalidArgument(f"task kind must be CST or AL, not {task.kind!r}")
            if task.kind == "CST" and not task.proposed_class:
                raise InvalidArgument("a CST task needs the proposed (pseudo) class")
        created = 0
        try:
            with self.pool.connection() as conn, conn.transaction():
                self._upsert_queue(conn, queue_id, batch.queue or QueueInfo())
                self._upsert_batch(conn, queue_id, batch_id, batch)
                for task in tasks:
                    row = conn.execute(
                        """INSERT INTO review_tasks (id, queue_id, batch_id, cell_id, object_key,
                               kind, proposed_class, top_classes)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                           ON CONFLICT (batch_id, cell_id) DO NOTHING RETURNING id""",
                        (
                            uuid.uuid4(),
                            queue_id,
                            batch_id,
                            parse_uuid(task.cell_id, "cell id"),
                            task.object_key,
                            task.kind,
                            task.proposed_class or None,
                            Jsonb([[c, p] for c, p in task.top_classes]),
                        ),
                    ).fetchone()
                    created += row is not None
        except psycopg.errors.ForeignKeyViolation:
            # review_tasks.cell_id points at the cell registry: the requester registers cells
            # before it asks for their review.
            raise NotFound("a task names a cell that is not registered") from None
        return created, len(tasks) - created

    @staticmethod
    def _upsert_queue(conn: DictConnection, queue_id: str, info: QueueInfo) -> None:
        """Record the queue on first sight; later, a given name, kind or dataset replaces the
        stored one. Its taxonomy never changes (decisions already made were checked with it)."""
        params = {
            "id": queue_id,
            "name": info.name,
            "first_name": info.name or queue_id,  # a queue always has a name to show
            "kind": info.kind,
            "taxonomy": info.taxonomy,
            "dataset": info.dataset,
        }
        update = """name = CASE WHEN %(name)s = '' THEN review_queues.name ELSE %(name)s END,
                    kind = CASE WHEN %(kind)s = '' THEN review_queues.kind ELSE %(kind)s END,
                    dataset = CASE WHEN %(dataset)s = '' THEN review_queues.dataset
                                   ELSE %(dataset)s END"""
        if not info.taxonomy:
            found = conn.execute(
                f"UPDATE review_queues SET {update} WHERE id = %(id)s RETURNING id", params
            ).fetchone()
            if found is None:
                raise InvalidArgument(
                    f"queue {queue_id} is new: describe it (name, kind and at least its "
                    "taxonomy) the first time tasks are created in it"
                )
            return
        try:
            load_taxonomy(info.taxonomy)
        except NotFound as exc:
            raise InvalidArgument(str(exc)) from None
        row = conn.execute(
            f"""INSERT INTO review_queues (id, name, kind, taxonomy, dataset)
                VALUES (%(id)s, %(first_name)s, %(kind)s, %(taxonomy)s, %(dataset)s)
                ON CONFLICT (id) DO UPDATE SET {update}
                RETURNING taxonomy""",
            params,
        ).fetchone()
        assert row is not None
        if row["taxonomy"] != info.taxonomy:
            raise FailedPrecondition(
                f"queue {queue_id} checks decisions against taxonomy {row['taxonomy']!r}, "
                f"not {info.taxonomy!r}; use a new queue for another taxonomy"
            )

    @staticmethod
    def _upsert_batch(
        conn: DictConnection, queue_id: str, batch_id: str, batch: ReviewBatchRequest
    ) -> None:
        """Record the batch on first sight; a batch belongs to one queue for good."""
        conn.execute(
            """INSERT INTO review_batches (id, queue_id, requester, number)
               VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING""",
            (batch_id, queue_id, batch.requester, batch.round_number),
        )
        row = conn.execute(
            "SELECT queue_id FROM review_batches WHERE id = %s", (batch_id,)
        ).fetchone()
        assert row is not None
        if str(row["queue_id"]) != queue_id:
            raise FailedPrecondition(
                f"batch {batch_id} belongs to queue {row['queue_id']}, not {queue_id}"
            )

    def claim(
        self,
        user: User,
        queue_id: str = "",
        kind: str = "",
        proposed_class: str = "",
        limit: int = 50,
        lease_seconds: int = 0,
    ) -> list[Task]:
        """Lease up to ``limit`` open tasks (of one queue, kind and proposed class if given)
        that this user may work; no two users get the same task."""
        self.require(user, "expert", "admin")
        limit = max(1, min(limit or 50, self.max_claim))
        lease = lease_seconds or self.default_lease_seconds
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"""WITH picked AS (
                       SELECT id FROM review_tasks
                       WHERE (state = 'open' OR (state = 'claimed' AND lease_expires_at < now()))
                         AND (%(q)s = '' OR queue_id::text = %(q)s)
                         AND (%(k)s = '' OR kind = %(k)s)
                         AND (%(p)s = '' OR proposed_class = %(p)s)
                         AND (%(admin)s OR {ASSIGNED_OR_OPEN.format(queue="review_tasks.queue_id")})
                       ORDER BY created_at, id LIMIT %(n)s
                       FOR UPDATE SKIP LOCKED)
                   UPDATE review_tasks t SET state = 'claimed', claimed_by = %(user)s,
                       lease_expires_at = now() + make_interval(secs => %(l)s)
                   FROM picked, review_batches b WHERE t.id = picked.id AND b.id = t.batch_id
                   RETURNING t.*, b.number AS round_number""",
                {
                    "q": queue_id,
                    "k": kind,
                    "p": proposed_class,
                    "n": limit,
                    "user": user.name,
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
                f"""SELECT t.*, q.taxonomy,
                       coalesce(t.lease_expires_at > now(), false) AS lease_valid,
                       {ASSIGNED_OR_OPEN.format(queue="t.queue_id")} AS may_work
                   FROM review_tasks t
                   JOIN review_queues q ON q.id = t.queue_id WHERE t.id = %(t)s
                   FOR UPDATE OF t""",  # lock the task only, never the shared queue row
                {"t": parse_uuid(item.task_id, "task id"), "user": user.name},
            ).fetchone()
            if task is None:
                raise NotFound(f"review task {item.task_id} not found")
            # The same rule as claim: once experts are assigned to a queue, only they decide.
            if user.role != "admin" and not task["may_work"]:
                raise PermissionDenied(
                    f"you are not assigned to the queue of task {item.task_id}; "
                    "ask an admin to assign you"
                )
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
            id=str(decision_id),
            client_decision_id=item.client_decision_id,
            task_id=str(task["id"]),
            cell_id=str(task["cell_id"]),
            action=item.action,
            class_code=class_code,
            user=user.name,
            decided_at=row["created_at"],
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
        self, user: User, queue_id: str, batch_id: str = "", include_undone: bool = False
    ) -> list[Decision]:
        """Decisions on a queue's tasks (of one batch if given); experts see only their own."""
        self.require(user, "service", "admin", "expert")
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT d.*, t.cell_id,
                       EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id) AS undone
                   FROM decisions d JOIN review_tasks t ON t.id = d.task_id
                   WHERE t.queue_id = %(q)s AND (%(b)s = '' OR t.batch_id::text = %(b)s)
                     AND d.action <> 'undo'
                     AND (%(u)s OR NOT EXISTS (SELECT 1 FROM decisions u WHERE u.undoes = d.id))
                     AND (%(expert)s = '' OR d.user_name = %(expert)s)
                   ORDER BY d.created_at""",
                {
                    "q": parse_uuid(queue_id, "campaign (queue) id"),
                    "b": batch_id,
                    "u": include_undone,
                    "expert": user.name if user.role == "expert" else "",
                },
            ).fetchall()
        return [_decision(r) for r in rows]

    def progress(self, user: User, queue_id: str, batch_id: str = "") -> list[ProgressRow]:
        """Open, claimed and decided tasks of a queue (of one batch if given) per batch, kind
        and proposed class."""
        self.require(user, "service", "admin", "expert")
        with self.pool.connection() as conn:
            rows = conn.execute(
                """SELECT batch_id, kind, coalesce(proposed_class, '') AS class_code,
                       count(*) FILTER (WHERE state = 'open'
                           OR (state = 'claimed' AND lease_expires_at < now())) AS open,
                       count(*) FILTER (WHERE state = 'claimed'
                           AND lease_expires_at >= now()) AS claimed,
                       count(*) FILTER (WHERE state = 'decided') AS decided
                   FROM review_tasks
                   WHERE queue_id = %(q)s AND (%(b)s = '' OR batch_id::text = %(b)s)
                   GROUP BY batch_id, kind, proposed_class ORDER BY 1, 2, 3""",
                {"q": parse_uuid(queue_id, "campaign (queue) id"), "b": batch_id},
            ).fetchall()
        return [
            ProgressRow(
                batch_id=str(r["batch_id"]),
                kind=r["kind"],
                class_code=r["class_code"],
                open=r["open"],
                claimed=r["claimed"],
                decided=r["decided"],
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
        append_event(
            conn,
            actor=actor.name,
            action=action,
            entity=entity,
            entity_id=entity_id,
            previous=previous,
            current=current,
            reason=reason,
        )


def _decision(row: dict[str, Any]) -> Decision:
    return Decision(
        id=str(row["id"]),
        client_decision_id=row["client_decision_id"],
        task_id=str(row["task_id"]),
        cell_id=str(row["cell_id"]),
        action=row["action"],
        class_code=row["class_code"] or "",
        user=row["user_name"],
        decided_at=row["created_at"],
        undone=bool(row["undone"]),
    )


def metric_gauges(pool: DictPool) -> list[QueryGauge]:
    """Review tasks not yet decided, per queue (a campaign's id, or the LIS review queue) and
    state, read when Prometheus scrapes: a campaign waiting for its experts shows here."""
    return [
        QueryGauge(
            pool,
            "marrowscope_review_tasks",
            "review tasks not yet decided, by queue and state",
            ["queue", "state"],
            """SELECT queue_id::text AS queue, state, count(*) AS value FROM review_tasks
               WHERE state <> 'decided' GROUP BY queue_id, state""",
        )
    ]
