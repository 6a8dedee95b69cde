"""The review queue on real PostgreSQL: leases, SKIP LOCKED claims, idempotent decisions,
undo as a new event, and the audit trail."""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from marrowscope.core import cell_registry
from marrowscope.core.audit import verify_audit_chain
from marrowscope.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from marrowscope.curation.service import (
    CurationService,
    DecisionInput,
    NewTask,
    QueueInfo,
    ReviewBatchRequest,
    User,
)

pytestmark = pytest.mark.integration


@pytest.fixture()
def queue(db_pool):  # type: ignore[no-untyped-def]
    """A campaign round with 20 CST tasks and 5 AL tasks (the queue described by its
    requester, the orchestrator)."""
    campaign, round_id = str(uuid.uuid4()), str(uuid.uuid4())
    with db_pool.connection() as conn:
        cells = [
            cell_registry.register_cell(
                conn,
                cell_registry.NewCell(
                    origin_key=f"test:{uuid.uuid4()}", object_key="cells/x", sha256="x"
                ),
            )[0]
            for _ in range(25)
        ]
    service = CurationService(db_pool)
    robot = User("orchestrator", "service")
    batch = ReviewBatchRequest(
        queue_id=campaign,
        batch_id=round_id,
        requester="campaign_round",
        round_number=1,
        queue=QueueInfo(name="q", kind="CST_AL", taxonomy="paper17", dataset="d"),
    )
    tasks = [NewTask(c, "cells/x", "CST", "SEG", [("SEG", 0.99)]) for c in cells[:20]]
    tasks += [NewTask(c, "cells/x", "AL", "", [("MC", 0.5), ("MMC", 0.4)]) for c in cells[20:]]
    assert service.create_tasks(robot, batch, tasks) == (25, 0)
    assert service.create_tasks(robot, batch, tasks) == (0, 25)
    return service, campaign, round_id


def test_two_experts_never_get_the_same_task(queue) -> None:  # type: ignore[no-untyped-def]
    service, campaign, _ = queue
    experts = [User("ana", "expert"), User("ben", "expert")]
    with ThreadPoolExecutor(2) as pool:
        claims = list(pool.map(lambda u: service.claim(u, campaign, limit=15), experts))
    ids = [t.id for claim in claims for t in claim]
    assert len(ids) == len(set(ids)) == 25
    assert service.claim(experts[0], campaign) == []


def test_decisions_are_idempotent_audited_and_undoable(queue, db_pool) -> None:  # type: ignore[no-untyped-def]
    service, campaign, round_id = queue
    ana = User("ana", "expert")
    cst = service.claim(ana, campaign, kind="CST", limit=2)
    al = service.claim(ana, campaign, kind="AL", limit=1)
    assert (cst[0].queue_id, cst[0].batch_id, cst[0].round_number) == (campaign, round_id, 1)
    decision = DecisionInput("client-1", cst[0].id, "confirm")
    first = service.submit(ana, [decision])[0]
    retry = service.submit(ana, [decision])[0]
    assert retry.id == first.id and first.class_code == "SEG"
    with pytest.raises(InvalidArgument, match="needs a class_code"):
        service.submit(ana, [DecisionInput("client-2", al[0].id, "label")])
    with pytest.raises(InvalidArgument, match="CST tasks take"):
        service.submit(ana, [DecisionInput("client-3", cst[1].id, "label", "MC")])
    service.submit(ana, [DecisionInput("client-4", al[0].id, "label", "MMC")])
    with pytest.raises(FailedPrecondition, match="claimed by another expert"):
        service.submit(User("ben", "expert"), [DecisionInput("b-1", cst[1].id, "confirm")])
    undone = service.undo(ana, "client-1", "misclick")
    assert undone.undone
    assert len(service.list_decisions(User("o", "service"), campaign, round_id)) == 1
    with db_pool.connection() as conn:
        audit = conn.execute(
            "SELECT action, actor FROM audit_events WHERE entity_id = %s ORDER BY id", (cst[0].id,)
        ).fetchall()
        state = conn.execute(
            "SELECT state FROM review_tasks WHERE id = %s", (cst[0].id,)
        ).fetchone()
    assert [(a["action"], a["actor"]) for a in audit] == [("decide", "ana"), ("undo", "ana")]
    assert state["state"] == "open"  # back in the queue
    progress = service.progress(User("o", "service"), campaign)
    assert sum(p.decided for p in progress) == 1


def test_roles_and_tokens(db_pool) -> None:  # type: ignore[no-untyped-def]
    service = CurationService(db_pool)
    service.ensure_user("root-admin", "admin", "admin-secret")
    admin = service.authenticate("admin-secret")
    user, token = service.create_user(admin, f"expert-{uuid.uuid4().hex[:6]}", "expert")
    assert service.authenticate(token) == user
    with pytest.raises(Unauthenticated):
        service.authenticate("wrong")
    with pytest.raises(PermissionDenied):
        service.create_user(user, "someone", "admin")
    with pytest.raises(PermissionDenied):
        batch = ReviewBatchRequest(
            queue_id=str(uuid.uuid4()), batch_id=str(uuid.uuid4()), requester="campaign_round"
        )
        service.create_tasks(user, batch, [])


def test_audit_chain_verifies_and_a_tampered_row_is_detected(queue, db_pool) -> None:  # type: ignore[no-untyped-def]
    service, campaign, _ = queue
    ana = User("ana", "expert")
    for task in service.claim(ana, campaign, kind="CST", limit=3):
        service.submit(ana, [DecisionInput(str(uuid.uuid4()), task.id, "confirm")])
    with db_pool.connection() as conn:
        report = verify_audit_chain(conn)
        assert report.intact and report.events >= 3, report.breaks
        target = conn.execute(
            "SELECT id FROM audit_events ORDER BY chain_seq DESC LIMIT 1 OFFSET 1"
        ).fetchone()
        # Someone with superuser rights edits history behind the insert-only trigger's back
        # (rolled back afterwards so other tests see the intact chain).
        with conn.transaction(force_rollback=True):
            conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_insert_only")
            conn.execute(
                "UPDATE audit_events SET reason = 'edited later' WHERE id = %s", (target["id"],)
            )
            broken = verify_audit_chain(conn)
            assert [b["id"] for b in broken.breaks] == [target["id"]]
            assert broken.breaks[0]["problem"] == "content changed"
            # Recomputing the edited row's hash moves the break to the link of the next row.
            conn.execute(
                """UPDATE audit_events SET hash = audit_event_hash(prev_hash, chain_seq, at, actor,
                       action, entity, entity_id, previous, current, reason) WHERE id = %s""",
                (target["id"],),
            )
            relinked = verify_audit_chain(conn)
            assert [b["problem"] for b in relinked.breaks] == ["link broken"]
        assert verify_audit_chain(conn).intact
