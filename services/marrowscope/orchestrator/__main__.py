"""Run the orchestrator: ``python -m marrowscope.orchestrator``."""

import asyncio

from marrowscope.core.clients import ServiceClients
from marrowscope.core.runtime import (
    open_resources,
    prepare_process,
    serve,
)
from marrowscope.v1 import orchestrator_pb2_grpc

from .datasets import DatasetImporter, segmentation_cropper
from .repository import CampaignRepository, metric_gauges
from .runner import CampaignRunner
from .servicer import SERVICE_NAME, OrchestratorServicer
from .settings import OrchestratorSettings


def main() -> None:
    prepare_process("orchestrator", OrchestratorSettings)
    settings = OrchestratorSettings()
    resources = open_resources()
    campaigns = CampaignRepository(resources.pool)
    clients = ServiceClients(resources.peers)
    runner = CampaignRunner(
        campaigns,
        clients,
        settings.curation_token.get_secret_value(),
        settings.review_poll_seconds,
        settings.classify_chunk,
        settings.training_deadline_s,
    )
    importer = DatasetImporter(
        resources.pool, resources.store, segmentation_cropper(clients.segmentation)
    )
    servicer = OrchestratorServicer(campaigns, runner, importer)

    async def resume() -> None:
        for campaign_id in await asyncio.to_thread(campaigns.running_campaigns):
            runner.start(campaign_id)

    async def close() -> None:
        await runner.stop_all()
        await clients.close()

    serve(
        settings,
        [SERVICE_NAME],
        lambda server: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
            servicer, server
        ),
        on_stop=close,
        resources=resources,
        collectors=metric_gauges(resources.pool),
        on_start=resume,
    )


if __name__ == "__main__":
    main()
