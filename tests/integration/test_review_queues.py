"""Curation's own review queues and batches on real PostgreSQL: a requester describes its
queue on first use, batches of a queue are counted apart, a batch belongs to one queue, an
assignment limits who decides, the gRPC request maps onto the domain call, and migration 0006
moves what the queue held before onto the new tables."""

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from marrowscope.core import cell_registry
from marrowscope.core.db import (
    apply_migrations,
    create_database,
    drop_database,
    load_migrations,
)
from marrowscope.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from marrowscope.curation.service import (
    CurationService,
    DecisionInput,
    NewTask,
    QueueInfo,
    ReviewBatchRequest,
    User,
)
from marrowscope.curation.servicer import CurationServicer
from marrowscope.curation.workbench import Workbench
from marrowscope.v1 import curation_pb2

pytestmark = pytest.mark.integration
ROBOT = User("orchestrator", "service")
ADMIN = User("root", "admin")


def new_cells(db_pool: Any, count: int) -> list[str]:
    with db_pool.connection() as conn:
        return [
            cell_registry.register_cell(
                conn,
                cell_registry.NewCell(
                    origin_key=f"rq:{uuid.uuid4()}", object_key="cells/x", sha256="x"
                ),
            )[0]
            for _ in range(count)
        ]


def cst_tasks(cells: list[str]) -> list[NewTask]:
    return [NewTask(c, "cells/x", "CST", "SEG", [("SEG", 0.9)]) for c in cells]


def batch(queue_id: str, batch_id: str, **kwargs: Any) -> ReviewBatchRequest:
    kwargs.setdefault("requester", "campaign_round")
    return ReviewBatchRequest(queue_id=queue_id, batch_id=batch_id, **kwargs)


PAPER17 = QueueInfo(name="q", kind="CST", taxonomy="paper17", dataset="d")


def test_a_new_queue_must_be_described(db_pool) -> None:  # type: ignore[no-untyped-def]
    service = CurationService(db_pool)
    queue, round_id = str(uuid.uuid4()), str(uuid.uuid4())
    tasks = cst_tasks(new_cells(db_pool, 2))
    with pytest.raises(InvalidArgument, match="is new: describe it"):
        service.create_tasks(ROBOT, batch(queue, round_id), tasks)
    with pytest.raises(InvalidArgument, match="is new: describe it"):
        service.create_tasks(ROBOT, batch(queue, round_id, queue=QueueInfo(name="x")), tasks)
    with pytest.raises(InvalidArgument, match="unknown taxonomy"):
        service.create_tasks(
            ROBOT, batch(queue, round_id, queue=QueueInfo(taxonomy="no-such-taxonomy")), tasks
        )
    with pytest.raises(InvalidArgument, match="requests the batch"):
        service.create_tasks(ROBOT, batch(queue, round_id, requester="", queue=PAPER17), tasks)
    with db_pool.connection() as conn:
        found = conn.execute("SELECT 1 FROM review_queues WHERE id = %s", (queue,)).fetchone()
    assert found is None  # nothing of a refused request stays behind

    assert service.create_tasks(ROBOT, batch(queue, round_id, queue=PAPER17), tasks) == (2, 0)
    # Known now: later batches need no description, and a new name replaces the old one.
    later = cst_tasks(new_cells(db_pool, 1))
    assert service.create_tasks(ROBOT, batch(queue, str(uuid.uuid4())), later) == (1, 0)
    renamed = QueueInfo(name="renamed")
    assert service.create_tasks(ROBOT, batch(queue, round_id, queue=renamed), tasks) == (0, 2)
    with pytest.raises(FailedPrecondition, match="checks decisions against taxonomy"):
        service.create_tasks(
            ROBOT, batch(queue, round_id, queue=QueueInfo(taxonomy="pbc11")), tasks
        )
    with db_pool.connection() as conn:
        row = conn.execute(
            "SELECT name, kind, taxonomy, dataset FROM review_queues WHERE id = %s", (queue,)
        ).fetchone()
    assert row == {"name": "renamed", "kind": "CST", "taxonomy": "paper17", "dataset": "d"}


def test_batches_of_one_queue_are_counted_apart(db_pool) -> None:  # type: ignore[no-untyped-def]
    service = CurationService(db_pool)
    queue, first, second = (str(uuid.uuid4()) for _ in range(3))
    cells = new_cells(db_pool, 5)
    service.create_tasks(
        ROBOT, batch(queue, first, round_number=1, queue=PAPER17), cst_tasks(cells[:2])
    )
    service.create_tasks(ROBOT, batch(queue, second, round_number=2), cst_tasks(cells[2:]))
    ana = User(f"ana-{queue[:6]}", "expert")
    claimed = service.claim(ana, queue, limit=10)
    assert sorted((t.batch_id, t.round_number) for t in claimed) == sorted(
        [(first, 1)] * 2 + [(second, 2)] * 3
    )
    for task in claimed:
        if task.batch_id == second:
            service.submit(ana, [DecisionInput(str(uuid.uuid4()), task.id, "confirm")])
    by_batch = {
        b: [(r.batch_id, r.open, r.claimed, r.decided) for r in service.progress(ROBOT, queue, b)]
        for b in (first, second)
    }
    assert by_batch == {first: [(first, 0, 2, 0)], second: [(second, 0, 0, 3)]}
    assert len(service.progress(ROBOT, queue)) == 2
    assert service.list_decisions(ROBOT, queue, first) == []
    decided = service.list_decisions(ROBOT, queue, second)
    assert sorted(d.cell_id for d in decided) == sorted(cells[2:])
    assert len(service.list_decisions(ROBOT, queue)) == 3


def test_a_batch_belongs_to_one_queue(db_pool) -> None:  # type: ignore[no-untyped-def]
    service = CurationService(db_pool)
    queue, other, round_id = (str(uuid.uuid4()) for _ in range(3))
    service.create_tasks(ROBOT, batch(queue, round_id, queue=PAPER17), [])
    with pytest.raises(FailedPrecondition, match=f"belongs to queue {queue}"):
        service.create_tasks(
            ROBOT, batch(other, round_id, queue=PAPER17), cst_tasks(new_cells(db_pool, 1))
        )
    with db_pool.connection() as conn:
        tasks = conn.execute(
            "SELECT count(*) AS n FROM review_tasks WHERE batch_id = %s", (round_id,)
        ).fetchone()
    assert tasks["n"] == 0


def test_only_assigned_experts_decide_in_an_assigned_queue(db_pool) -> None:  # type: ignore[no-untyped-def]
    service = CurationService(db_pool)
    workbench = Workbench(db_pool, service)
    queue = str(uuid.uuid4())
    service.create_tasks(
        ROBOT, batch(queue, str(uuid.uuid4()), queue=PAPER17), cst_tasks(new_cells(db_pool, 3))
    )
    outsider = User(f"out-{queue[:6]}", "expert")
    insider = User(f"in-{queue[:6]}", "expert")
    service.ensure_user(insider.name, "expert", f"token-{uuid.uuid4()}")
    # Claimed while the queue was open to everyone, then the admin assigns someone else.
    held = service.claim(outsider, queue, limit=1)
    assert workbench.assign(ADMIN, queue, insider.name, True) == [insider.name]
    with pytest.raises(PermissionDenied, match="not assigned to the queue"):
        service.submit(outsider, [DecisionInput(f"o-{queue}", held[0].id, "confirm")])
    assert service.claim(outsider, queue) == []
    [mine] = service.claim(insider, queue, limit=1)
    assert service.submit(insider, [DecisionInput(f"i-{queue}", mine.id, "confirm")])
    [rest] = service.claim(ADMIN, queue, limit=1)
    assert service.submit(ADMIN, [DecisionInput(f"a-{queue}", rest.id, "confirm")])
    listed = {q.id: q for q in workbench.queues(insider)}
    assert listed[queue].assigned == [insider.name] and listed[queue].state == "open"
    assert queue not in {q.id for q in workbench.queues(outsider)}


class FakeContext:
    """What the servicer reads of a gRPC context: the caller's metadata."""

    def __init__(self, token: str) -> None:
        self.token = token

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


def test_the_grpc_request_describes_queue_requester_and_round(db_pool) -> None:  # type: ignore[no-untyped-def]
    service = CurationService(db_pool)
    token = f"svc-{uuid.uuid4()}"
    service.ensure_user(f"lis-{token[4:10]}", "service", token)
    servicer = CurationServicer(service)
    queue, job = str(uuid.uuid4()), str(uuid.uuid4())
    request = curation_pb2.CreateReviewTasksRequest(
        campaign_id=queue,
        round_id=job,
        tasks=[
            curation_pb2.NewReviewTask(
                cell_id=c,
                object_key="cells/x",
                kind=curation_pb2.TASK_KIND_AL,
                top_classes=[curation_pb2.ClassScore(class_code="MC", probability=0.5)],
            )
            for c in new_cells(db_pool, 2)
        ],
        queue=curation_pb2.ReviewQueue(name="patients", kind="LIS_REVIEW", taxonomy="paper17"),
        requester=curation_pb2.BATCH_REQUESTER_ANALYSIS_JOB,
    )
    reply = asyncio.run(servicer.CreateReviewTasks(request, FakeContext(token)))
    assert (reply.created, reply.already_present) == (2, 0)
    unspecified = curation_pb2.CreateReviewTasksRequest(campaign_id=queue, round_id=job)
    with pytest.raises(InvalidArgument, match="requests the batch"):
        asyncio.run(servicer.CreateReviewTasks(unspecified, FakeContext(token)))
    with db_pool.connection() as conn:
        row = conn.execute(
            """SELECT q.name, q.kind, q.taxonomy, q.dataset, b.requester, b.number
               FROM review_batches b JOIN review_queues q ON q.id = b.queue_id
               WHERE b.id = %s""",
            (job,),
        ).fetchone()
    assert row == {
        "name": "patients",
        "kind": "LIS_REVIEW",
        "taxonomy": "paper17",
        "dataset": "",
        "requester": "analysis_job",
        "number": 0,
    }
    progress = asyncio.run(
        servicer.GetProgress(
            curation_pb2.GetProgressRequest(campaign_id=queue, round_id=job), FakeContext(token)
        )
    )
    assert progress.open == 2 and {c.round_id for c in progress.counts} == {job}
    # A queue without a dataset has no reference cells to compare with.
    expert = User(f"exp-{token[4:10]}", "expert")
    assert Workbench(db_pool, service).reference_cells(expert, queue, ["MC"]) == {"MC": []}


@pytest.fixture()
def fresh_dsn(pg_admin_dsn: str):  # type: ignore[no-untyped-def]
    name = f"marrowscope_mig_{uuid.uuid4().hex[:10]}"
    create_database(pg_admin_dsn, name)
    yield psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)
    drop_database(pg_admin_dsn, name)


def test_migration_0006_keeps_what_the_queue_held(fresh_dsn: str) -> None:
    migrations = load_migrations()
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        # The schema as it was before 0006, recorded as apply_migrations records it.
        conn.execute(
            """CREATE TABLE schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for migration in (m for m in migrations if m.version <= 5):
            with conn.transaction():
                conn.execute(migration.sql.encode())  # type: ignore[call-overload]  # a script
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
        lis, lis_round, ssl, ssl_round, idle = (uuid.uuid4() for _ in range(5))
        cells = [uuid.uuid4() for _ in range(2)]
        for cell in cells:
            conn.execute(
                "INSERT INTO cells (id, origin_key, object_key, sha256) VALUES (%s, %s, 'k', 'x')",
                (cell, f"m:{cell}"),
            )
        for campaign, name, method, dataset in (
            (lis, "LIS review", "LIS_REVIEW", "lis"),
            (ssl, "ssl", "CST_AL", "pbc"),
            (idle, "no tasks yet", "AL", "pbc"),
        ):
            conn.execute(
                """INSERT INTO campaigns (id, name, method, dataset, taxonomy, parameters)
                   VALUES (%s, %s, %s, %s, 'paper17', '{}')""",
                (campaign, name, method, dataset),
            )
        for round_id, campaign, number in ((lis_round, lis, 7), (ssl_round, ssl, 3)):
            conn.execute(
                """INSERT INTO rounds (id, campaign_id, number, state)
                   VALUES (%s, %s, %s, 'reviewing')""",
                (round_id, campaign, number),
            )
        tasks = {}
        for campaign, round_id, cell in ((lis, lis_round, cells[0]), (ssl, ssl_round, cells[1])):
            tasks[campaign] = uuid.uuid4()
            conn.execute(
                """INSERT INTO review_tasks (id, campaign_id, round_id, cell_id, object_key, kind)
                   VALUES (%s, %s, %s, %s, 'k', 'AL')""",
                (tasks[campaign], campaign, round_id, cell),
            )
        conn.execute(
            "INSERT INTO users (id, name, role, token_sha256) VALUES (%s, 'ana', 'expert', 'h')",
            (uuid.uuid4(),),
        )
        for campaign in (ssl, idle):
            conn.execute(
                """INSERT INTO campaign_assignments (campaign_id, user_name, assigned_by)
                   VALUES (%s, 'ana', 'root')""",
                (campaign,),
            )

        assert apply_migrations(conn) == [m.version for m in migrations if m.version > 5]

        moved = conn.execute(
            "SELECT id, queue_id, batch_id FROM review_tasks ORDER BY queue_id"
        ).fetchall()
        assert sorted(moved) == sorted([(tasks[lis], lis, lis_round), (tasks[ssl], ssl, ssl_round)])
        queues = conn.execute(
            "SELECT id, name, kind, taxonomy, dataset FROM review_queues"
        ).fetchall()
        assert sorted(queues) == sorted(
            [
                (lis, "LIS review", "LIS_REVIEW", "paper17", ""),
                (ssl, "ssl", "CST_AL", "paper17", "pbc"),
            ]
        )  # a campaign without tasks has no queue yet
        batches = conn.execute(
            "SELECT id, queue_id, requester, number FROM review_batches"
        ).fetchall()
        assert sorted(batches) == sorted(
            [(lis_round, lis, "analysis_job", 0), (ssl_round, ssl, "campaign_round", 3)]
        )
        left = conn.execute("SELECT id FROM campaigns").fetchall()
        assert sorted(r[0] for r in left) == sorted([ssl, idle])
        assert conn.execute("SELECT id FROM rounds").fetchall() == [(ssl_round,)]
        assigned = conn.execute(
            "SELECT queue_id, user_name, assigned_by FROM queue_assignments"
        ).fetchall()
        assert sorted(assigned) == sorted([(ssl, "ana", "root"), (idle, "ana", "root")])
