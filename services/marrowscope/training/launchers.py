"""Where a training job's process runs: a local subprocess, or a Kubernetes Job (``kube.py``).

The job itself (``job.py``) is the same in both cases and reports epochs and its end state
through PostgreSQL; a launcher only starts it, notices when it ends without having reported
(crash, OOM kill, deadline) and stops it on cancel.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

# Called once when a job's process has ended: (job id, why it failed, or None if it exited
# cleanly). The service marks the job failed if the process did not record an end state.
OnExit = Callable[[str, str | None], None]


class JobLauncher(Protocol):
    def runner_tag(self, job_id: str) -> str:
        """What is recorded in ``training_jobs.runner`` before launch ('' = set by the job)."""
        ...

    def launch(self, job_id: str, labels: dict[str, str], on_exit: OnExit) -> None: ...

    def reattach(self, job_id: str, runner: str, on_exit: OnExit) -> bool:
        """After a service restart: keep watching a job still running; False if it is gone."""
        ...

    def stop(self, job_id: str, runner: str) -> None: ...

    def shutdown(self) -> None: ...


class LocalProcessLauncher:
    """Each job is ``python -m marrowscope.training.job ID`` in its own session."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def runner_tag(self, job_id: str) -> str:
        return ""  # the job records local:<pid> itself

    def launch(self, job_id: str, labels: dict[str, str], on_exit: OnExit) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"training-job-{job_id}.log"
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "marrowscope.training.job", job_id],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives this service's restart and signals
                env=os.environ.copy(),
            )
        with self._lock:
            self._processes[job_id] = process

        def reap() -> None:
            code = process.wait()
            with self._lock:
                self._processes.pop(job_id, None)
            on_exit(job_id, f"training process exited with code {code}; see {log_path}")

        threading.Thread(target=reap, daemon=True).start()
        log.info("launched training job %s (pid %d)", job_id, process.pid)

    def reattach(self, job_id: str, runner: str, on_exit: OnExit) -> bool:
        # A process from before the restart is not our child: we can see it, not wait on it.
        pid = int(runner.split(":")[1]) if runner.startswith("local:") else 0
        return bool(pid) and _alive(pid)

    def stop(self, job_id: str, runner: str) -> None:
        with self._lock:
            process = self._processes.get(job_id)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)

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
