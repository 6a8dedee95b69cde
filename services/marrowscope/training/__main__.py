"""Run the training service: ``python -m marrowscope.training``."""

import logging

from marrowscope.core.runtime import (
    open_resources,
    prepare_process,
    serve,
)
from marrowscope.v1 import training_pb2_grpc

from .gate import GateTolerance
from .launchers import JobLauncher, LocalProcessLauncher
from .promotion import ModelAliases
from .repository import metric_gauges
from .service import TrainingService
from .servicer import SERVICE_NAME, TrainingServicer
from .settings import KubeJobSettings, TrainingSettings


def main() -> None:
    prepare_process("training", TrainingSettings, KubeJobSettings)
    settings = TrainingSettings()
    resources = open_resources()
    launcher: JobLauncher
    if settings.runner == "kubernetes":
        from .kube import KubernetesJobLauncher  # the kubernetes client only where it is used

        launcher = KubernetesJobLauncher(KubeJobSettings())
    else:
        launcher = LocalProcessLauncher(settings.job_log_dir)
    service = TrainingService(resources.pool, settings, launcher)
    interrupted = service.recover()
    if interrupted:
        logging.getLogger(__name__).warning(
            "%d interrupted training job(s) marked failed", interrupted
        )
    tolerance = GateTolerance(
        accuracy_drop=settings.gate_max_accuracy_drop,
        macro_f1_drop=settings.gate_max_macro_f1_drop,
        recall_drop=settings.gate_max_recall_drop,
        ece_increase=settings.gate_max_ece_increase,
    )
    aliases = ModelAliases(resources.pool, settings.clinical_taxonomy, resources.store, tolerance)
    servicer = TrainingServicer(service, aliases)

    async def close() -> None:
        service.shutdown()

    serve(
        settings,
        [SERVICE_NAME],
        lambda server: training_pb2_grpc.add_TrainingServiceServicer_to_server(servicer, server),
        on_stop=close,
        resources=resources,
        collectors=metric_gauges(resources.pool),
    )


if __name__ == "__main__":
    main()
