"""Training jobs: persisted in PostgreSQL, each run by a subprocess (``job.py``).

A job is identified by the caller's request id, so a retried StartTraining returns the job
already started instead of training twice. Jobs outlive client disconnects and restarts of
this service (the subprocess keeps running and reports through the database).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from marrowscope.core import cell_registry
from marrowscope.core.db import DictPool
from marrowscope.core.errors import InvalidArgument, NotFound
from marrowscope.core.ids import parse_uuid
from marrowscope.core.model_registry import get_model_version
from marrowscope.core.taxonomy import load_taxonomy

from . import repository as jobs
from .launchers import JobLauncher
from .settings import TrainingSettings
from .trainer import HyperParameters

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class JobRequest:
    request_id: str
    taxonomy: str
    teacher: list[tuple[str, str, str]]  # cell id, object key, class code
    validation: list[tuple[str, str, str]]
    parent_model_version: str = ""
    hyper: HyperParameters = field(default_factory=HyperParameters)
    labels: dict[str, str] = field(default_factory=dict)
    demo: bool = False  # generated training data: the version is registered as a demo model


@dataclass(frozen=True, kw_only=True)
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
            id=str(row["id"]),
            state=row["state"],
            epoch=row["epoch"],
            total_epochs=row["total_epochs"],
            learning_curve=list(row["learning_curve"]),
            model_version=str(row["model_version_id"] or ""),
            error=row["error"] or "",
            labels=dict(row["labels"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @property
    def finished(self) -> bool:
        return self.state in jobs.END_STATES


class TrainingService:
    def __init__(self, pool: DictPool, settings: TrainingSettings, launcher: JobLauncher) -> None:
        self.pool = pool
        self.settings = settings
        self.launcher = launcher

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
        with self.pool.connection() as conn:
            locked = cell_registry.locked_cells(
                conn, [cell_id for cell_id, _, _ in [*request.teacher, *request.validation]]
            )
        if locked:
            sets = ", ".join(f"{n} of {name}" for name, n in sorted(locked.items()))
            raise InvalidArgument(
                f"cells of a locked evaluation set cannot be trained on ({sets}): they "
                "measure candidates for production"
            )
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
            "demo": request.demo,
        }
        job_id = uuid.uuid4()
        runner = self.launcher.runner_tag(str(job_id)) or None
        with self.pool.connection() as conn:
            row = jobs.insert_job(
                conn, job_id, request.request_id, spec, request.labels, hyper.epochs, runner
            )
        if row["id"] != job_id:  # a retry: the job exists already
            return JobStatus.from_row(row)
        status = JobStatus.from_row(row)
        self.launcher.launch(status.id, status.labels, self._on_exit)
        return status

    def _on_exit(self, job_id: str, failure: str | None) -> None:
        """The job's process ended: if it did not record an end state, the job failed."""
        with self.pool.connection() as conn:
            jobs.fail_if_unfinished(
                conn, job_id, failure or "the training process ended without reporting a result"
            )

    def recover(self) -> int:
        """After a restart: watch jobs still running, relaunch queued ones whose launch was
        interrupted, fail the rest; return how many failed."""
        failed = 0
        with self.pool.connection() as conn:
            rows = jobs.unfinished_jobs(conn)
        for row in rows:
            job_id, runner = str(row["id"]), row["runner"] or ""
            if self.launcher.reattach(job_id, runner, self._on_exit):
                continue
            if row["state"] == "queued" and runner == self.launcher.runner_tag(job_id) != "":
                # Inserted but (perhaps) never created: the launcher de-duplicates by name.
                self.launcher.launch(job_id, dict(row["labels"]), self._on_exit)
                continue
            self._on_exit(job_id, "interrupted: the training process is gone (service restart)")
            failed += 1
        return failed

    def get(self, job_id: str) -> JobStatus:
        job_id = parse_uuid(job_id, "job id")
        with self.pool.connection() as conn:
            row = jobs.get_job(conn, job_id)
        if row is None:
            raise NotFound(f"training job {job_id} not found")
        return JobStatus.from_row(row)

    def cancel(self, job_id: str) -> JobStatus:
        status = self.get(job_id)
        if status.finished:
            return status
        with self.pool.connection() as conn:
            jobs.request_cancel(conn, job_id)
            row = jobs.get_job(conn, job_id)
        self.launcher.stop(job_id, (row or {}).get("runner") or "")
        return self.get(job_id)

    def shutdown(self) -> None:
        self.launcher.shutdown()
