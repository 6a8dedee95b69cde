"""Training limits through the training service's real gRPC surface on loopback: requests
beyond a configured limit and more jobs in flight than max_concurrent_jobs are refused, and a
retried request id still gets its job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import grpc
import psycopg
import pytest

from marrowscope.core.db import (
    DictPool,
    apply_migrations,
    create_database,
    drop_database,
    open_pool,
)
from marrowscope.core.rpc import GrpcService
from marrowscope.core.settings import DatabaseSettings, GrpcServerSettings
from marrowscope.training.launchers import OnExit
from marrowscope.training.service import TrainingService, check_hyper_parameters
from marrowscope.training.servicer import SERVICE_NAME, TrainingServicer
from marrowscope.training.settings import TrainingSettings
from marrowscope.training.trainer import HyperParameters
from marrowscope.v1 import common_pb2, training_pb2, training_pb2_grpc

pytestmark = pytest.mark.integration


class PendingLauncher:
    """Starts nothing: every job stays queued, as a Job whose pod waits for a node would."""

    def __init__(self) -> None:
        self.launched: list[str] = []

    def runner_tag(self, job_id: str) -> str:
        return ""

    def launch(self, job_id: str, labels: dict[str, str], on_exit: OnExit) -> None:
        self.launched.append(job_id)

    def reattach(self, job_id: str, runner: str, on_exit: OnExit) -> bool:
        return False

    def stop(self, job_id: str, runner: str) -> None:
        pass

    def shutdown(self) -> None:
        pass


@pytest.fixture()
def jobs_pool(pg_admin_dsn: str) -> Iterator[DictPool]:
    """A database of its own: jobs other tests leave queued would count against the limit."""
    name = f"marrowscope_limits_{uuid.uuid4().hex[:8]}"
    create_database(pg_admin_dsn, name)
    dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=name)
    with psycopg.connect(dsn) as conn:
        apply_migrations(conn)
    pool = open_pool(DatabaseSettings(dsn=dsn, pool_max_size=4, apply_migrations=False))
    yield pool
    pool.close()
    drop_database(pg_admin_dsn, name)


def start_request(request_id: str, **hyper: int) -> training_pb2.StartTrainingRequest:
    cells = [
        common_pb2.LabeledCell(
            cell_id=str(uuid.uuid4()), object_key=f"crops/{i}.png", class_code=code
        )
        for i, code in enumerate(["MB", "LY"] * 2)
    ]
    values = {"epochs": 3, "batch_size": 4, "input_size": 64, "width": 8, **hyper}
    return training_pb2.StartTrainingRequest(
        request_id=request_id,
        taxonomy="paper17",
        teacher=cells,
        validation=cells[:2],
        hyper_parameters=training_pb2.HyperParameters(**values),
    )


def test_limits_refuse_big_requests_and_too_many_jobs(jobs_pool: DictPool) -> None:
    launcher = PendingLauncher()
    settings = TrainingSettings(
        port=0,
        max_concurrent_jobs=2,
        max_epochs=50,
        max_batch_size=64,
        max_width=16,
        max_input_size=128,
    )
    service = TrainingService(jobs_pool, settings, launcher)

    async def scenario() -> None:
        server = GrpcService(
            GrpcServerSettings(port=0, GRPC_ALLOW_PLAINTEXT=True),
            [SERVICE_NAME],
            lambda s: training_pb2_grpc.add_TrainingServiceServicer_to_server(
                TrainingServicer(service), s
            ),
        )
        await server.start()
        try:
            async with grpc.aio.insecure_channel(server.address) as channel:
                stub = training_pb2_grpc.TrainingServiceStub(channel)

                # One over each limit: refused, naming the limit and the setting to raise.
                for field, value, limit, variable in [
                    ("epochs", 51, 50, "MARROWSCOPE_TRAINING_MAX_EPOCHS"),
                    ("batch_size", 65, 64, "MARROWSCOPE_TRAINING_MAX_BATCH_SIZE"),
                    ("width", 17, 16, "MARROWSCOPE_TRAINING_MAX_WIDTH"),
                    ("input_size", 129, 128, "MARROWSCOPE_TRAINING_MAX_INPUT_SIZE"),
                ]:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.StartTraining(start_request(f"big-{field}", **{field: value}))
                    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    details = refused.value.details() or ""
                    assert f"{field} {value}" in details and f"limit of {limit}" in details
                    assert variable in details, details
                assert launcher.launched == []

                # At every limit exactly: accepted.
                at_limits = start_request(
                    "first", epochs=50, batch_size=64, width=16, input_size=128
                )
                first = await stub.StartTraining(at_limits)
                assert first.total_epochs == 50
                second = await stub.StartTraining(start_request("second"))

                # A third job while two are queued: RESOURCE_EXHAUSTED, nothing launched.
                with pytest.raises(grpc.aio.AioRpcError) as busy:
                    await stub.StartTraining(start_request("third"))
                assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                details = busy.value.details() or ""
                assert "MARROWSCOPE_TRAINING_MAX_CONCURRENT_JOBS" in details
                assert first.id in details and second.id in details
                assert launcher.launched == [first.id, second.id]

                # A retried request id still gets its job, at the limit too.
                again = await stub.StartTraining(at_limits)
                assert again.id == first.id and len(launcher.launched) == 2

                # A finished job frees its slot: of two racing starts exactly one gets it.
                await stub.CancelTraining(training_pb2.CancelTrainingRequest(job_id=first.id))
                raced = await asyncio.gather(
                    stub.StartTraining(start_request("third")),
                    stub.StartTraining(start_request("fourth")),
                    return_exceptions=True,
                )
                started = [r for r in raced if isinstance(r, training_pb2.TrainingJob)]
                failed = [r for r in raced if isinstance(r, grpc.aio.AioRpcError)]
                assert len(started) == 1 and len(failed) == 1, raced
                assert failed[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert launcher.launched == [first.id, second.id, started[0].id]
        finally:
            await server.stop()
            service.shutdown()

    asyncio.run(scenario())


def test_default_limits_allow_the_documented_recipes() -> None:
    """The paper's recipe, the CLI's defaults and the README's benchmark commands pass."""
    defaults = TrainingSettings()
    assert defaults.max_concurrent_jobs == 1
    for hyper in [
        HyperParameters(),  # the trainer's defaults
        HyperParameters(epochs=250, batch_size=32, input_size=96, width=32),  # the paper
        HyperParameters(epochs=30, batch_size=32, input_size=96, width=16),  # `train`
        HyperParameters(epochs=50, batch_size=64, input_size=64, width=16),  # README
        HyperParameters(epochs=2, batch_size=8, input_size=32, width=4),  # the e2e tests
    ]:
        check_hyper_parameters(hyper, defaults)
