"""First start: train a small demo model on generated data so the pipeline can classify at
once. It becomes production only where no production model exists, and every report made
with it carries the DEMO_MODEL flag ("not for clinical use")."""

from __future__ import annotations

from tqdm import tqdm

from marrowscope.core import messages
from marrowscope.core.clients import ServiceClients
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.synthetic import iter_cells, synthetic_classes
from marrowscope.v1 import inference_pb2, training_pb2

from .datasets import import_synthetic

BOOTSTRAP_DATASET = "synthetic-bootstrap"


async def wait_for_job(
    clients: ServiceClients, job: training_pb2.TrainingJob, desc: str, quiet: bool = False
) -> training_pb2.TrainingJob:
    bar = tqdm(total=job.total_epochs, desc=desc, unit="epoch", disable=quiet, leave=False)
    async for status in clients.training.WatchTrainingJob(
        training_pb2.GetTrainingJobRequest(job_id=job.id), timeout=3600
    ):
        bar.n = status.epoch
        bar.refresh()
        job = status
    bar.close()
    return job


async def ensure_model(
    clients: ServiceClients,
    store: ObjectStore,
    per_class: int = 24,
    epochs: int = 8,
    input_size: int = 64,
    width: int = 16,
    quiet: bool = False,
) -> str:
    """The production model's name, warmed in the inference service. Where no version is
    registered at all, a demo model is trained and made production first; where versions
    exist but none is production, nothing is promoted ('' is returned, and the LIS waits until
    someone promotes one)."""
    versions = await clients.training.ListModelVersions(
        training_pb2.ListModelVersionsRequest(limit=1)
    )
    if not versions.model_versions:
        total = per_class * len(synthetic_classes())
        truth = await import_synthetic(
            iter_cells(per_class, seed=7), total, BOOTSTRAP_DATASET, store, clients
        )
        teacher: list[tuple[str, str, str]] = []
        validation: list[tuple[str, str, str]] = []
        seen: dict[str, int] = {}
        for cell_id, (key, code) in sorted(truth.items()):
            seen[code] = seen.get(code, 0) + 1
            target = teacher if seen[code] <= per_class * 3 // 4 else validation
            target.append((cell_id, key, code))
        job = await clients.training.StartTraining(
            training_pb2.StartTrainingRequest(
                request_id="bootstrap-synthetic-v1",
                taxonomy="paper17",
                teacher=messages.labeled_cells(teacher),
                validation=messages.labeled_cells(validation),
                hyper_parameters=training_pb2.HyperParameters(
                    epochs=epochs,
                    batch_size=32,
                    input_size=input_size,
                    seed=7,
                    augment=True,
                    width=width,
                ),
                labels={"purpose": "bootstrap"},
                demo=True,
            )
        )
        job = await wait_for_job(clients, job, "training the first model", quiet)
        if job.state != training_pb2.TRAINING_JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"bootstrap training failed: {job.error or job.state}")
        await clients.training.PromoteModel(
            training_pb2.PromoteModelRequest(
                model_version=job.model_version,
                alias="production",
                actor="marrowscope (first start)",
                reason="no model registered yet: a demo model trained on generated cells",
            )
        )
    aliases = await clients.training.ListModelAliases(training_pb2.ListModelAliasesRequest())
    if not any(change.alias == "production" for change in aliases.current):
        return ""
    serving = await clients.inference.LoadModel(
        inference_pb2.LoadModelRequest(model_version="production"), timeout=60
    )
    return str(serving.model.name)
