"""gRPC transport for the orchestrator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict

import grpc

from marrowscope.core import messages
from marrowscope.core.errors import FailedPrecondition
from marrowscope.v1 import common_pb2, orchestrator_pb2, orchestrator_pb2_grpc

from .datasets import DatasetImporter
from .repository import (
    CampaignParameters,
    CampaignRecord,
    CampaignRepository,
    CampaignState,
    RoundState,
)
from .runner import CampaignRunner

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
METHODS = {
    orchestrator_pb2.CAMPAIGN_METHOD_ST: "ST",
    orchestrator_pb2.CAMPAIGN_METHOD_CST: "CST",
    orchestrator_pb2.CAMPAIGN_METHOD_AL: "AL",
    orchestrator_pb2.CAMPAIGN_METHOD_CST_AL: "CST_AL",
    orchestrator_pb2.CAMPAIGN_METHOD_RANDOM: "RANDOM",
}
METHOD_ENUM = {v: k for k, v in METHODS.items()}
CAMPAIGN_STATES = {
    state: orchestrator_pb2.CampaignState.Value(f"CAMPAIGN_STATE_{state.name}")
    for state in CampaignState
}
ROUND_STATES = {
    state: orchestrator_pb2.RoundState.Value(f"ROUND_STATE_{state.name}") for state in RoundState
}
WATCH_POLL_S = 1.0


def parameters_from_message(m: orchestrator_pb2.CampaignParameters) -> CampaignParameters:
    defaults = asdict(CampaignParameters())
    given = {name: getattr(m, name) for name in defaults if getattr(m, name)}
    return CampaignParameters(**{**defaults, **given})


def campaign_message(c: CampaignRecord) -> orchestrator_pb2.Campaign:
    p = c.parameters
    return orchestrator_pb2.Campaign(
        id=c.id,
        name=c.name,
        method=METHOD_ENUM[c.method],
        dataset=c.dataset,
        taxonomy=c.taxonomy,
        state=CAMPAIGN_STATES[c.state],
        pool_size=c.pool_size,
        labelled_count=c.labelled_count,
        error=c.error,
        created_at=messages.timestamp(c.created_at),
        parameters=orchestrator_pb2.CampaignParameters(
            **{**asdict(p), "cst_threshold": p.threshold_for(c.method)}
        ),
        rounds=[
            orchestrator_pb2.Round(
                id=r.id,
                number=r.number,
                state=ROUND_STATES[r.state],
                model_version=r.model_version_id,
                teacher_count=r.teacher_count,
                sampled=r.sampled,
                cst_candidates=r.cst_candidates,
                al_candidates=r.al_candidates,
                decided=r.decided,
                added=r.added,
                test_accuracy=r.metrics.get("accuracy", 0.0),
                test_mean_recall=r.metrics.get("mean_recall", 0.0),
                metrics_json=json.dumps(r.metrics),
                training_job_id=r.training_job_id,
                error=r.error,
                started_at=messages.timestamp(r.started_at),
                finished_at=messages.timestamp(r.finished_at),
            )
            for r in c.rounds
        ],
    )


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(
        self, campaigns: CampaignRepository, runner: CampaignRunner, importer: DatasetImporter
    ) -> None:
        self.campaigns = campaigns
        self.runner = runner
        self.importer = importer

    async def ImportCells(
        self, request: orchestrator_pb2.ImportCellsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ImportCellsResponse:
        imported = await self.importer.import_cells(
            request.dataset,
            request.taxonomy or "paper17",
            [(c.object_key, c.reference_label) for c in request.cells],
            request.crop_center_cell,
        )
        return orchestrator_pb2.ImportCellsResponse(
            cells=[
                common_pb2.CellRef(cell_id=c.cell_id, object_key=c.object_key) for c in imported
            ],
            created=sum(c.created for c in imported),
        )

    async def CreateCampaign(
        self, request: orchestrator_pb2.CreateCampaignRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.Campaign:
        record = await asyncio.to_thread(
            self.campaigns.create,
            request.request_id,
            request.name,
            METHODS.get(request.method, ""),
            request.dataset,
            request.taxonomy or "paper17",
            parameters_from_message(request.parameters),
        )
        return campaign_message(record)

    async def StartCampaign(
        self, request: orchestrator_pb2.CampaignIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.Campaign:
        record = await asyncio.to_thread(self.campaigns.get, request.campaign_id)
        if record.state in (CampaignState.COMPLETED, CampaignState.FAILED):
            raise FailedPrecondition(f"campaign {record.id} is {record.state}; create a new one")
        await asyncio.to_thread(self.campaigns.set_state, record.id, CampaignState.RUNNING)
        self.runner.start(record.id)
        return campaign_message(await asyncio.to_thread(self.campaigns.get, record.id))

    async def PauseCampaign(
        self, request: orchestrator_pb2.CampaignIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.Campaign:
        record = await asyncio.to_thread(self.campaigns.get, request.campaign_id)
        if record.state == CampaignState.RUNNING:
            await asyncio.to_thread(self.campaigns.set_state, record.id, CampaignState.PAUSED)
        return campaign_message(await asyncio.to_thread(self.campaigns.get, record.id))

    async def GetCampaign(
        self, request: orchestrator_pb2.CampaignIdRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.Campaign:
        return campaign_message(await asyncio.to_thread(self.campaigns.get, request.campaign_id))

    async def ListCampaigns(
        self, request: orchestrator_pb2.ListCampaignsRequest, context: grpc.aio.ServicerContext
    ) -> orchestrator_pb2.ListCampaignsResponse:
        records = await asyncio.to_thread(self.campaigns.all_campaigns)
        return orchestrator_pb2.ListCampaignsResponse(
            campaigns=[campaign_message(r) for r in records]
        )

    async def WatchCampaign(
        self, request: orchestrator_pb2.CampaignIdRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[orchestrator_pb2.Campaign]:
        last = None
        while True:
            record = await asyncio.to_thread(self.campaigns.get, request.campaign_id)
            message = campaign_message(record)
            key = message.SerializeToString(deterministic=True)
            if key != last:
                last = key
                yield message
            if record.state in (
                CampaignState.COMPLETED,
                CampaignState.FAILED,
                CampaignState.PAUSED,
            ):
                return
            await asyncio.sleep(WATCH_POLL_S)
