"""The gRPC bootstrap on real loopback sockets: health, reflection, error mapping, retries."""

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from marrowscope.core.errors import InvalidArgument, NotFound
from marrowscope.core.rpc import GrpcService, check_health, open_channel
from marrowscope.core.settings import GrpcServerSettings
from marrowscope.v1 import training_pb2, training_pb2_grpc

pytestmark = pytest.mark.integration
SERVICE = "marrowscope.v1.TrainingService"


class FlakyTraining(training_pb2_grpc.TrainingServiceServicer):
    """Fails the first GetTrainingJob with UNAVAILABLE, then answers; maps domain errors."""

    def __init__(self) -> None:
        self.calls = 0

    async def GetTrainingJob(self, request, context):  # type: ignore[no-untyped-def]
        self.calls += 1
        if request.job_id == "missing":
            raise NotFound("training job missing not found")
        if request.job_id == "bad":
            raise InvalidArgument("job id 'bad' is not a UUID")
        if request.job_id == "crash":
            raise RuntimeError("secret internals")
        if self.calls == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return training_pb2.TrainingJob(id=request.job_id)

    async def CancelTraining(self, request, context):  # type: ignore[no-untyped-def]
        await asyncio.sleep(8)
        return training_pb2.TrainingJob(id=request.job_id)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_health_reflection_errors_retries_and_deadlines() -> None:
    async def scenario() -> None:
        servicer = FlakyTraining()
        settings = GrpcServerSettings(
            port=0, grace_seconds=0.5, GRPC_ALLOW_PLAINTEXT=True, GRPC_REFLECTION=True
        )
        service = GrpcService(
            settings,
            [SERVICE],
            lambda s: training_pb2_grpc.add_TrainingServiceServicer_to_server(servicer, s),
        )
        await service.start()
        try:
            assert await check_health(service.address) == "SERVING"
            assert await check_health(service.address, SERVICE) == "SERVING"
            async with grpc.aio.insecure_channel(service.address) as channel:
                stub = reflection_pb2_grpc.ServerReflectionStub(channel)
                call = stub.ServerReflectionInfo(timeout=5)
                await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
                reply = await call.read()
                await call.done_writing()
                names = {s.name for s in reply.list_services_response.service}
                assert SERVICE in names and "grpc.health.v1.Health" in names
            channel = open_channel(service.address, SERVICE, ["GetTrainingJob"], deadline_s=3.0)
            stub = training_pb2_grpc.TrainingServiceStub(channel)
            # Retried transparently after the first UNAVAILABLE.
            job = await stub.GetTrainingJob(training_pb2.GetTrainingJobRequest(job_id="j1"))
            assert job.id == "j1" and servicer.calls == 2
            for job_id, code, text in [
                ("missing", grpc.StatusCode.NOT_FOUND, "not found"),
                ("bad", grpc.StatusCode.INVALID_ARGUMENT, "not a UUID"),
                ("crash", grpc.StatusCode.INTERNAL, "request id"),
            ]:
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await stub.GetTrainingJob(training_pb2.GetTrainingJobRequest(job_id=job_id))
                assert error.value.code() == code and text in error.value.details()
                assert "secret internals" not in error.value.details()
            # The channel's default deadline applies to every method.
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.CancelTraining(training_pb2.CancelTrainingRequest(job_id="slow"))
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            await channel.close()
        finally:
            await service.stop()
        assert await check_health(service.address) == "UNREACHABLE"

    run(scenario())


def test_graceful_shutdown_reports_not_serving() -> None:
    async def scenario() -> None:
        service = GrpcService(
            GrpcServerSettings(port=0, grace_seconds=0.2, GRPC_ALLOW_PLAINTEXT=True),
            [SERVICE],
            lambda s: None,
        )
        await service.start()
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await service.health.enter_graceful_shutdown()
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await service.stop()

    run(scenario())
