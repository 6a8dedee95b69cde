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
from marrowscope.core.db import DictConnection, DictPool
from marrowscope.core.errors import InvalidArgument, NotFound, ResourceExhausted
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


# Hyper-parameter -> the TrainingSettings field that caps it.
_LIMITS = (
    ("epochs", "max_epochs"),
    ("batch_size", "max_batch_size"),
    ("width", "max_width"),
    ("input_size", "max_input_size"),
)


def check_hyper_parameters(hyper: HyperParameters, settings: TrainingSettings) -> None:
    """Refuse hyper-parameters the trainer cannot run or that exceed the service's limits
    (a job's memory and time grow with each); the message names the setting to raise."""
    if hyper.epochs < 1 or hyper.batch_size < 2:
        raise InvalidArgument("epochs must be >= 1 and batch_size >= 2")
    if hyper.width < 1:
        raise InvalidArgument("width must be >= 1 (channels of the first stage)")
    if hyper.input_size < 32:
        raise InvalidArgument("input_size must be at least 32 pixels")
    for name, setting in _LIMITS:
        value, limit = getattr(hyper, name), getattr(settings, setting)
        if value > limit:
            raise InvalidArgument(
                f"{name} {value} is over the training service's limit of {limit} "
                f"({setting}; raise it with MARROWSCOPE_TRAINING_{setting.upper()})"
            )


class TrainingService:
    """Starts, watches and cancels training jobs (the domain behind the gRPC servicer)."""

    def __init__(self, pool: DictPool, settings: TrainingSettings, launcher: JobLauncher) -> None:
        self.pool = pool
        self.settings = settings
        self.launcher = launcher

    def start(self, request: JobRequest) -> JobStatus:
        """Start a job for ``request``, or return the job its request id started before.

        Raises InvalidArgument for a request the trainer cannot run or beyond the configured
        limits, and ResourceExhausted while ``max_concurrent_jobs`` jobs are queued or
        running (retry later with the same request id)."""
        if not request.request_id:
            raise InvalidArgument("request_id is required (it makes StartTraining idempotent)")
        with self.pool.connection() as conn:
            existing = jobs.job_of_request(conn, request.request_id)
        if existing is not None:  # a retry returns its job, even if limits changed since
            return JobStatus.from_row(existing)
        check_hyper_parameters(request.hyper, self.settings)
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
        with self.pool.connection() as conn, conn.transaction():
            jobs.lock_job_starts(conn)  # count and insert as one step
            row = jobs.job_of_request(conn, request.request_id)
            if row is None:
                self._check_capacity(conn)
                row = jobs.insert_job(
                    conn, job_id, request.request_id, spec, request.labels, hyper.epochs, runner
                )
        if row["id"] != job_id:  # a concurrent retry: the job exists already
            return JobStatus.from_row(row)
        status = JobStatus.from_row(row)
        try:
            self.launcher.launch(status.id, status.labels, self._on_exit)
        except Exception as exc:
            # Not left queued: a job that never runs would hold a max_concurrent_jobs slot.
            self._on_exit(status.id, f"the job could not be launched: {exc}")
            raise
        return status

    def _check_capacity(self, conn: DictConnection) -> None:
        """Refuse a new job while ``max_concurrent_jobs`` are queued or running. Refused, not
        queued: jobs start as soon as they are accepted (there is no dispatcher to hold them)."""
        active = jobs.unfinished_jobs(conn)
        limit = self.settings.max_concurrent_jobs
        if len(active) >= limit:
            shown = ", ".join(str(r["id"]) for r in active[:5])
            raise ResourceExhausted(
                f"the training service runs at most {limit} job(s) at once "
                f"(max_concurrent_jobs; raise it with MARROWSCOPE_TRAINING_MAX_CONCURRENT_JOBS); "
                f"in flight: {shown}; retry when one has finished"
            )

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
