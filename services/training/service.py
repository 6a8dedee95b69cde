"""Training jobs: persisted in PostgreSQL, each run by a subprocess (``job.py``).

A job is identified by the caller's request id, so a retried StartTraining returns the job
already started instead of training twice. Jobs outlive client disconnects and restarts of
this service (the subprocess keeps running and reports through the database).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument, NotFound
from marrowscope.core.ids import parse_uuid
from marrowscope.core.model_registry import get_model_version
from marrowscope.core.taxonomy import load_taxonomy

from .settings import TrainingSettings
from .trainer import HyperParameters

log = logging.getLogger(__name__)
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class JobRequest:
    request_id: str
    taxonomy: str
    teacher: list[tuple[str, str, str]]  # cell id, object key, class code
    validation: list[tuple[str, str, str]]
    parent_model_version: str = ""
    hyper: HyperParameters = field(default_factory=HyperParameters)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStatus:
    id: str
    state: str
    epoch: int
    total_epochs: int
    learning_curve: list[dict[str, float]]
    model_version: str
    error: str
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobStatus:
        return cls(
            str(row["id"]), row["state"], row["epoch"], row["total_epochs"],
            list(row["learning_curve"]), str(row["model_version_id"] or ""), row["error"] or "",
            dict(row["labels"]), row["created_at"], row["updated_at"],
        )  # fmt: skip

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


class TrainingService:
    def __init__(self, pool: DictPool, settings: TrainingSettings) -> None:
        self.pool = pool
        self.settings = settings
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def start(self, request: JobRequest) -> JobStatus:
        if not request.request_id:
            raise InvalidArgument("request_id is required (it makes StartTraining idempotent)")
        taxonomy = load_taxonomy(request.taxonomy)
        if len(request.teacher) < 2:
            raise InvalidArgument("the teacher set needs at least two labelled cells")
        for _, key, code in [*request.teacher, *request.validation]:
            taxonomy.check(code)
            if not key:
                raise InvalidArgument("every labelled cell needs an object key")
        if request.hyper.epochs < 1 or request.hyper.batch_size < 2:
            raise InvalidArgument("epochs must be >= 1 and batch_size >= 2")
        if request.hyper.input_size < 32 or request.hyper.input_size > 512:
            raise InvalidArgument("input_size must be between 32 and 512 pixels")
        parent = ""
        if request.parent_model_version:
            parent_record = get_model_version(self.pool, request.parent_model_version)
            if parent_record.taxonomy != taxonomy.name:
                raise InvalidArgument(
                    f"parent version {parent_record.name} is for taxonomy {parent_record.taxonomy}"
                )
            parent = parent_record.id
        hyper = request.hyper
        if not hyper.threads and self.settings.torch_threads:
            hyper = replace(hyper, threads=self.settings.torch_threads)
        spec = {
            "taxonomy": taxonomy.name,
            "teacher": [list(t) for t in request.teacher],
            "validation": [list(v) for v in request.validation],
            "parent": parent,
            "hyper": asdict(hyper),
        }
        with self.pool.connection() as conn:
            row = conn.execute(
                """INSERT INTO training_jobs (id, request_id, spec, labels, total_epochs)
                   VALUES (%s, %s, %s, %s, %s) ON CONFLICT (request_id) DO NOTHING
                   RETURNING *""",
                (
                    uuid.uuid4(),
                    request.request_id,
                    Jsonb(spec),
                    Jsonb(request.labels),
                    hyper.epochs,
                ),  # fmt: skip
            ).fetchone()
            if row is None:  # a retry: the job exists already
                row = conn.execute(
                    "SELECT * FROM training_jobs WHERE request_id = %s", (request.request_id,)
                ).fetchone()
                assert row is not None
                return JobStatus.from_row(row)
        status = JobStatus.from_row(row)
        self._launch(status.id)
        return status

    def _launch(self, job_id: str) -> None:
        log_dir = self.settings.job_log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"training-job-{job_id}.log", "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "marrowscope.training.job", job_id],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives this service's restart and signals
                env=os.environ.copy(),
            )
        with self._lock:
            self._processes[job_id] = process
        threading.Thread(target=self._reap, args=(job_id, process), daemon=True).start()
        log.info("launched training job %s (pid %d)", job_id, process.pid)

    def _reap(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._lock:
            self._processes.pop(job_id, None)
        with self.pool.connection() as conn:
            conn.execute(
                """UPDATE training_jobs SET state = 'failed', updated_at = now(),
                       error = %s WHERE id = %s AND state IN ('queued', 'running')""",
                (
                    f"training process exited with code {code} before finishing; see "
                    f"{self.settings.job_log_dir}/training-job-{job_id}.log",
                    job_id,
                ),
            )

    def recover(self) -> int:
        """After a restart: fail jobs whose process is gone; return how many."""
        failed = 0
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, runner FROM training_jobs WHERE state IN ('queued', 'running')"
            ).fetchall()
            for row in rows:
                runner = row["runner"] or ""
                pid = int(runner.split(":")[1]) if runner.startswith("local:") else 0
                if pid and _alive(pid):
                    continue
                conn.execute(
                    """UPDATE training_jobs SET state = 'failed', updated_at = now(),
                           error = 'interrupted: the training process is gone (service restart)'
                       WHERE id = %s AND state IN ('queued', 'running')""",
                    (row["id"],),
                )
                failed += 1
        return failed

    def get(self, job_id: str) -> JobStatus:
        job_id = parse_uuid(job_id, "job id")
        with self.pool.connection() as conn:
            row = conn.execute("SELECT * FROM training_jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"training job {job_id} not found")
        return JobStatus.from_row(row)

    def cancel(self, job_id: str) -> JobStatus:
        status = self.get(job_id)
        if status.finished:
            return status
        with self.pool.connection() as conn:
            conn.execute(
                """UPDATE training_jobs SET cancel_requested = true, updated_at = now(),
                       state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END
                   WHERE id = %s""",
                (job_id,),
            )
        with self._lock:
            process = self._processes.get(job_id)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
        return self.get(job_id)

    def shutdown(self) -> None:
        """Jobs keep running after the service stops (they report through the database)."""
        with self._lock:
            running = list(self._processes)
        if running:
            log.info("leaving %d training job(s) running: %s", len(running), ", ".join(running))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
