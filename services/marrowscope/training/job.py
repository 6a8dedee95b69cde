"""One training job, run out of the serving process: ``python -m marrowscope.training.job ID``.

It claims the queued job row (so a job is never run twice), loads and preprocesses the images,
trains, exports ONNX, checks parity, uploads the artifacts and registers the model version.
Progress and the end state go to the job's row, which the service streams to clients.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psycopg
from psycopg.rows import dict_row

from marrowscope.core.db import DictConnection
from marrowscope.core.logs import configure_logging
from marrowscope.core.model_registry import (
    NewModelVersion,
    model_version_on,
    register_model_version,
)
from marrowscope.core.objectstore import ObjectStore, open_store
from marrowscope.core.preprocess import InputSpecData, decode_for_model
from marrowscope.core.settings import DatabaseSettings, ObjectStoreSettings
from marrowscope.core.taxonomy import load_taxonomy

from . import repository as jobs
from .trainer import Cancelled, EpochResult, HyperParameters, train

log = logging.getLogger("marrowscope.training.job")


def training_set_hash(teacher: list[list[str]]) -> str:
    """Hash of (image content address, class) pairs: the same data gives the same hash."""
    lines = sorted(f"{key}\t{code}" for _, key, code in teacher)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def load_arrays(
    store: ObjectStore, cells: list[list[str]], codes: list[str], spec: InputSpecData
) -> tuple[np.ndarray, np.ndarray]:
    def one(cell: list[str]) -> np.ndarray:
        return decode_for_model(store.get(cell[1]), spec)

    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(one, cells))
    x = np.stack(images) if images else np.zeros((0, 3, spec.size, spec.size), np.uint8)
    y = np.array([codes.index(c[2]) for c in cells], dtype=np.int64)
    return x, y


def run_job(job_id: str, conn: DictConnection, store: ObjectStore) -> str:
    """Run the job; return its end state."""
    spec_json = jobs.start_running(conn, job_id, f"local:{os.getpid()}")
    if spec_json is None:
        log.warning("job %s is not queued (already run or cancelled); nothing to do", job_id)
        return "skipped"
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)

    def should_stop() -> bool:
        return stop_requested or jobs.cancel_requested(conn, job_id)

    def on_epoch(result: EpochResult) -> None:
        jobs.record_epoch(conn, job_id, result.epoch, result.to_json())
        log.info(
            "epoch %d loss %.3f acc %.3f val acc %.3f (%.1fs)",
            result.epoch,
            result.train_loss,
            result.train_accuracy,
            result.validation_accuracy,
            result.seconds,
        )

    try:
        taxonomy = load_taxonomy(spec_json["taxonomy"])
        hyper = HyperParameters(**spec_json["hyper"])
        spec = InputSpecData(size=hyper.input_size)
        x_train, y_train = load_arrays(store, spec_json["teacher"], taxonomy.codes, spec)
        x_val, y_val = load_arrays(store, spec_json["validation"], taxonomy.codes, spec)
        parent_id = spec_json.get("parent") or None
        parent_state = None
        if parent_id:
            parent = model_version_on(conn, parent_id)
            parent_state = store.get(parent.weights_key)
        trained = train(
            x_train,
            y_train,
            x_val,
            y_val,
            len(taxonomy.codes),
            spec,
            hyper,
            parent_state=parent_state,
            on_epoch=on_epoch,
            should_stop=should_stop,
        )
        with conn.transaction():
            version_id = register_model_version(
                conn,
                store,
                NewModelVersion(
                    onnx_bytes=trained.onnx_bytes,
                    weights_bytes=trained.state_dict_bytes,
                    taxonomy=taxonomy.name,
                    class_codes=taxonomy.codes,
                    architecture=hyper.architecture,
                    input_spec=spec,
                    training_set_hash=training_set_hash(spec_json["teacher"]),
                    parent_id=parent_id,
                    metrics={**trained.metrics, "teacher_count": float(len(x_train))},
                    learning_curve=[e.to_json() for e in trained.curve],
                    training_job_id=job_id,
                    demo=bool(spec_json.get("demo", False)),
                ),
            )
            jobs.finish(conn, job_id, jobs.JobState.SUCCEEDED, model_version_id=version_id)
        log.info("registered model version %s", version_id)
        return "succeeded"
    except Cancelled:
        jobs.finish(conn, job_id, jobs.JobState.CANCELLED)
        return "cancelled"
    except Exception as exc:
        log.exception("training job failed")
        jobs.finish(conn, job_id, jobs.JobState.FAILED, error=f"{exc.__class__.__name__}: {exc}")
        return "failed"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m marrowscope.training.job JOB_ID", file=sys.stderr)
        return 2
    configure_logging("training-job")
    store = open_store(ObjectStoreSettings())
    with psycopg.connect(DatabaseSettings().dsn, autocommit=True, row_factory=dict_row) as conn:
        state = run_job(argv[0], conn, store)
    print(json.dumps({"job": argv[0], "state": state}))
    return 0 if state in ("succeeded", "cancelled", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
