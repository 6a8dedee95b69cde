"""Stubs for calling Marrowscope services, with deadlines and retries from one place.

Only methods that are safe to repeat are retried (on UNAVAILABLE); the server makes the
non-obvious ones idempotent (StartTraining by request id, SubmitDecisions by client decision id,
CreateCampaign by request id).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from marrowscope.v1 import (
    curation_pb2_grpc,
    inference_pb2_grpc,
    orchestrator_pb2_grpc,
    segmentation_pb2_grpc,
    training_pb2_grpc,
)

from .pki import TlsMaterial
from .rpc import open_channel
from .settings import PeerSettings

IDEMPOTENT_METHODS = {
    "segmentation": (
        "marrowscope.v1.SegmentationService",
        ["Segment", "CropCenterCell"],
    ),
    "inference": ("marrowscope.v1.InferenceService", ["Classify", "GetServingModel", "LoadModel"]),
    "training": (
        "marrowscope.v1.TrainingService",
        [
            "StartTraining",
            "GetTrainingJob",
            "CancelTraining",
            "ListModelVersions",
            "GetModelVersion",
        ],
    ),
    "curation": (
        "marrowscope.v1.CurationService",
        [
            "CreateReviewTasks",
            "SubmitDecisions",
            "UndoDecision",
            "ReleaseTasks",
            "ListDecisions",
            "GetProgress",
            "WhoAmI",
        ],
    ),
    "orchestrator": (
        "marrowscope.v1.OrchestratorService",
        [
            "CreateCampaign",
            "StartCampaign",
            "PauseCampaign",
            "GetCampaign",
            "ListCampaigns",
            "ImportCells",
        ],
    ),
}


# Streams that last as long as a job: callers give them their own deadline.
LONG_METHODS = {
    "segmentation": ["SegmentStream"],
    "inference": ["ClassifyStream"],
    "training": ["WatchTrainingJob"],
    "orchestrator": ["WatchCampaign"],
}


def channel_to(
    name: str, address: str, deadline_s: float, tls: TlsMaterial | None = None
) -> grpc.aio.Channel:
    service, methods = IDEMPOTENT_METHODS[name]
    # With TLS, the peer must present the certificate of the service we mean to reach.
    return open_channel(
        address,
        service,
        methods,
        deadline_s,
        LONG_METHODS.get(name, ()),
        tls=tls,
        tls_server_name=name if tls is not None else "",
    )


@dataclass
class ServiceClients:
    """Stubs for the services a component talks to (open only the ones you need)."""

    peers: PeerSettings
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tls = self.peers.tls()  # read the PEM files once

    def _channel(self, name: str) -> grpc.aio.Channel:
        if name not in self.channels:
            address = getattr(self.peers, f"{name}_addr")
            self.channels[name] = channel_to(name, address, self.peers.default_deadline_s, self.tls)
        return self.channels[name]

    def address(self, name: str) -> str:
        return str(getattr(self.peers, f"{name}_addr"))

    @property
    def segmentation(self) -> segmentation_pb2_grpc.SegmentationServiceStub:
        return segmentation_pb2_grpc.SegmentationServiceStub(self._channel("segmentation"))

    @property
    def inference(self) -> inference_pb2_grpc.InferenceServiceStub:
        return inference_pb2_grpc.InferenceServiceStub(self._channel("inference"))

    @property
    def training(self) -> training_pb2_grpc.TrainingServiceStub:
        return training_pb2_grpc.TrainingServiceStub(self._channel("training"))

    @property
    def curation(self) -> curation_pb2_grpc.CurationServiceStub:
        return curation_pb2_grpc.CurationServiceStub(self._channel("curation"))

    @property
    def orchestrator(self) -> orchestrator_pb2_grpc.OrchestratorServiceStub:
        return orchestrator_pb2_grpc.OrchestratorServiceStub(self._channel("orchestrator"))

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
        self.channels.clear()
