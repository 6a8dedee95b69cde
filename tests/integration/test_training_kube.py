"""Training jobs as Kubernetes Jobs: the real ``kubernetes`` client over real HTTP against a
loopback API server (no cluster here), and the training service's real gRPC surface."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest

from marrowscope.core.rpc import GrpcService
from marrowscope.core.settings import GrpcServerSettings
from marrowscope.training.kube import KubernetesJobLauncher, build_api, job_name
from marrowscope.training.service import TrainingService
from marrowscope.training.servicer import SERVICE_NAME, TrainingServicer
from marrowscope.training.settings import KubeJobSettings, TrainingSettings
from marrowscope.v1 import common_pb2, training_pb2, training_pb2_grpc
from tests.deploy.fake_kube_api import FakeKubeApi

pytestmark = pytest.mark.integration
NAMESPACE = "lab"


def kube_settings(url: str) -> KubeJobSettings:
    return KubeJobSettings(
        namespace=NAMESPACE,
        image="registry.lab/marrowscope-gpu:0.1.0",
        gpus=1,
        backoff_limit=2,
        active_deadline_s=7200,
        ttl_after_finished_s=600,
        api_host=url,
        poll_s=0.1,
        secret_env={"MARROWSCOPE_DB_DSN": "lab-db:dsn"},
        env_from_configmaps=["lab-config"],
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        image_pull_secrets=["lab-registry"],
    )


def start_request(request_id: str) -> training_pb2.StartTrainingRequest:
    cells = [
        common_pb2.LabeledCell(
            cell_id=str(uuid.uuid4()), object_key=f"crops/{i}.png", class_code=code
        )
        for i, code in enumerate(["MB", "LY"] * 2)
    ]
    return training_pb2.StartTrainingRequest(
        request_id=request_id,
        taxonomy="paper17",
        teacher=cells,
        validation=cells[:2],
        hyper_parameters=training_pb2.HyperParameters(epochs=3, batch_size=4, input_size=64),
        labels={"campaign": "c0ffee00-0000-4000-8000-000000000001", "round": "2"},
    )


def test_jobs_are_created_watched_deduplicated_and_cancelled(db_pool) -> None:  # type: ignore[no-untyped-def]
    with FakeKubeApi() as api:
        launcher = KubernetesJobLauncher(kube_settings(api.url))
        service = TrainingService(db_pool, TrainingSettings(port=0), launcher)

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
                    request = start_request(f"req-{uuid.uuid4()}")
                    first = await stub.StartTraining(request)
                    again = await stub.StartTraining(request)  # a retried request
                    assert again.id == first.id
                    assert api.count("POST") == 1 and len(api.jobs) == 1

                    job = api.jobs[(NAMESPACE, job_name(first.id))]
                    spec = job["spec"]
                    assert spec["backoffLimit"] == 2
                    assert spec["activeDeadlineSeconds"] == 7200
                    assert spec["ttlSecondsAfterFinished"] == 600
                    labels = job["metadata"]["labels"]
                    assert labels["marrowscope.io/campaign"] == request.labels["campaign"]
                    assert labels["marrowscope.io/training-job"] == first.id
                    pod = spec["template"]["spec"]
                    container = pod["containers"][0]
                    assert container["image"] == "registry.lab/marrowscope-gpu:0.1.0"
                    assert container["command"][-1] == first.id
                    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
                    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {
                        "name": "lab-db",
                        "key": "dsn",
                    }
                    assert pod["restartPolicy"] == "Never" and pod["tolerations"]
                    assert pod["securityContext"]["runAsNonRoot"] is True
                    # A restricted namespace admits it; a private registry serves it.
                    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
                    assert pod["imagePullSecrets"] == [{"name": "lab-registry"}]

                    # The Job controller gives up (deadline): the status stream reports it.
                    api.set_condition(
                        NAMESPACE,
                        job_name(first.id),
                        "Failed",
                        "DeadlineExceeded",
                        "Job was active longer than specified",
                    )
                    states = [
                        m
                        async for m in stub.WatchTrainingJob(
                            training_pb2.GetTrainingJobRequest(job_id=first.id), timeout=20
                        )
                    ]
                    assert states[-1].state == training_pb2.TRAINING_JOB_STATE_FAILED
                    assert "DeadlineExceeded" in states[-1].error

                    # Hyper-parameters the trainer cannot run are refused before any Job.
                    bad = start_request(f"req-{uuid.uuid4()}")
                    bad.hyper_parameters.lr_schedule = "step"
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.StartTraining(bad)
                    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                    assert "lr_schedule" in (refused.value.details() or "")
                    assert api.count("POST") == 1

                    # Cancel deletes the Job of a job that is still running.
                    second = await stub.StartTraining(start_request(f"req-{uuid.uuid4()}"))
                    assert len(api.jobs) == 2
                    await stub.CancelTraining(training_pb2.CancelTrainingRequest(job_id=second.id))
                    assert (NAMESPACE, job_name(second.id)) not in api.jobs
                    assert api.count("DELETE") == 1
            finally:
                await server.stop()
                service.shutdown()

        asyncio.run(scenario())


def test_launch_twice_creates_one_job_and_restart_relaunches_only_missing_ones(db_pool) -> None:  # type: ignore[no-untyped-def]
    with FakeKubeApi() as api:
        launcher = KubernetesJobLauncher(kube_settings(api.url), build_api(kube_settings(api.url)))
        job_id = str(uuid.uuid4())
        exits: list[tuple[str, str | None]] = []
        launcher.launch(job_id, {}, lambda j, why: exits.append((j, why)))
        launcher.launch(job_id, {}, lambda j, why: exits.append((j, why)))  # 409: same Job
        assert api.count("POST") == 2 and len(api.jobs) == 1
        api.set_condition(NAMESPACE, job_name(job_id), "Complete", "Completed", "")
        deadline = time.monotonic() + 10
        while len(exits) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exits == [(job_id, None), (job_id, None)]  # complete: nothing to fail
        launcher.shutdown()

        # A restart finds one queued job whose Job was never created and one whose Job runs.
        service = TrainingService(
            db_pool, TrainingSettings(port=0), KubernetesJobLauncher(kube_settings(api.url))
        )
        with db_pool.connection() as conn:
            ids = [str(uuid.uuid4()), str(uuid.uuid4())]
            for i in ids:
                conn.execute(
                    "INSERT INTO training_jobs (id, request_id, spec, runner) VALUES (%s, %s, '{}', %s)",
                    (i, f"req-{i}", f"k8s:{job_name(i)}"),
                )
        service.launcher.launch(ids[1], {}, service._on_exit)
        posts = api.count("POST")
        assert service.recover() == 0
        assert api.count("POST") == posts + 1  # only the missing one
        assert {(NAMESPACE, job_name(i)) for i in ids} <= set(api.jobs)
        service.shutdown()
