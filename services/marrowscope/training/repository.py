"""The training jobs table: the one module that reads and writes ``training_jobs``.

The serving process (``service.py``) creates, cancels and recovers jobs; the job process
(``job.py``, a subprocess or a Kubernetes Job) records its progress and end state. Both go
through these functions, each on the caller's connection.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from psycopg.types.json import Jsonb

from marrowscope.core.db import DictConnection, DictPool
from marrowscope.core.metrics import QueryGauge


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


END_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
_START_LOCK = 0x747261696E  # "train": advisory lock id serialising job starts


def metric_gauges(pool: DictPool) -> list[QueryGauge]:
    """Training jobs by state, read when Prometheus scrapes."""
    return [
        QueryGauge(
            pool,
            "marrowscope_training_jobs",
            "training jobs by state",
            ["state"],
            "SELECT state, count(*) AS value FROM training_jobs GROUP BY state",
        )
    ]


def lock_job_starts(conn: DictConnection) -> None:
    """Serialise job starts until the caller's transaction ends, so that counting the jobs
    in flight and inserting a new one is atomic across service replicas."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_START_LOCK,))


def job_of_request(conn: DictConnection, request_id: str) -> dict[str, Any] | None:
    """The job a request id already started, if any (a retried StartTraining)."""
    return conn.execute(
        "SELECT * FROM training_jobs WHERE request_id = %s", (request_id,)
    ).fetchone()


def insert_job(
    conn: DictConnection,
    job_id: uuid.UUID,
    request_id: str,
    spec: dict[str, Any],
    labels: dict[str, str],
    total_epochs: int,
    runner: str | None,
) -> dict[str, Any]:
    """The job of ``request_id``: inserted now, or the one a retried request created."""
    row = conn.execute(
        """INSERT INTO training_jobs (id, request_id, spec, labels, total_epochs, runner)
           VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING
           RETURNING *""",
        (job_id, request_id, Jsonb(spec), Jsonb(labels), total_epochs, runner),
    ).fetchone()
    if row is None:
        row = job_of_request(conn, request_id)
    assert row is not None
    return row


def get_job(conn: DictConnection, job_id: str) -> dict[str, Any] | None:
    return conn.execute("SELECT * FROM training_jobs WHERE id = %s", (job_id,)).fetchone()


def unfinished_jobs(conn: DictConnection) -> list[dict[str, Any]]:
    """Jobs still queued or running (what a restarted service must account for)."""
    return conn.execute(
        "SELECT id, state, runner, labels FROM training_jobs WHERE state IN ('queued', 'running')"
    ).fetchall()


def fail_if_unfinished(conn: DictConnection, job_id: str, error: str) -> None:
    """The job's process ended without recording an end state: it failed."""
    conn.execute(
        """UPDATE training_jobs SET state = 'failed', updated_at = now(), error = %s
           WHERE id = %s AND state IN ('queued', 'running')""",
        (error, job_id),
    )


def request_cancel(conn: DictConnection, job_id: str) -> None:
    """Ask a running job to stop after its epoch; a queued job is cancelled at once."""
    conn.execute(
        """UPDATE training_jobs SET cancel_requested = true, updated_at = now(),
               state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END
           WHERE id = %s""",
        (job_id,),
    )


def start_running(conn: DictConnection, job_id: str, runner: str) -> dict[str, Any] | None:
    """Mark a queued job running; its spec, or None when it is not queued (run or cancelled)."""
    row = conn.execute(
        # A Kubernetes Job keeps the runner its launcher recorded (k8s:<job name>).
        """UPDATE training_jobs SET state = 'running', updated_at = now(),
               runner = CASE WHEN runner LIKE 'k8s:%%' THEN runner ELSE %s END
           WHERE id = %s AND state = 'queued' RETURNING spec""",
        (runner, job_id),
    ).fetchone()
    return None if row is None else dict(row["spec"])


def cancel_requested(conn: DictConnection, job_id: str) -> bool:
    row = conn.execute(
        "SELECT cancel_requested FROM training_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    return bool(row and row["cancel_requested"])


def record_epoch(conn: DictConnection, job_id: str, epoch: int, entry: dict[str, Any]) -> None:
    """Append one epoch to the job's learning curve."""
    conn.execute(
        """UPDATE training_jobs SET epoch = %s,
               learning_curve = learning_curve || %s::jsonb, updated_at = now()
           WHERE id = %s""",
        (epoch, Jsonb([entry]), job_id),
    )


def finish(
    conn: DictConnection,
    job_id: str,
    state: JobState,
    *,
    model_version_id: str | None = None,
    error: str | None = None,
) -> None:
    """Record the job's end state: succeeded (with its model version), cancelled or failed."""
    if state not in END_STATES:
        raise ValueError(f"not an end state: {state!r}")
    conn.execute(
        """UPDATE training_jobs SET state = %s, updated_at = now(),
               model_version_id = coalesce(%s, model_version_id), error = coalesce(%s, error)
           WHERE id = %s""",
        (state, model_version_id, error, job_id),
    )


def cells_trained_on(conn: DictConnection, cell_ids: list[str]) -> int:
    """How many of ``cell_ids`` were in the teacher or validation set of any training job."""
    row = conn.execute(
        """SELECT count(DISTINCT cell) AS n FROM training_jobs j,
               LATERAL (SELECT t->>0 AS cell FROM jsonb_array_elements(j.spec->'teacher') t
                        UNION ALL
                        SELECT v->>0 FROM jsonb_array_elements(j.spec->'validation') v) used
           WHERE cell = ANY(%s::text[])""",
        (list(cell_ids),),
    ).fetchone()
    return int(row["n"]) if row else 0
