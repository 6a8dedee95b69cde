"""The segmentation service on a loopback gRPC port for a test, and a stub to call it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from marrowscope.core.rpc import GrpcService, open_channel
from marrowscope.core.settings import GrpcServerSettings
from marrowscope.segmentation.service import SegmentationService
from marrowscope.segmentation.servicer import SERVICE_NAME, SegmentationServicer
from marrowscope.v1 import segmentation_pb2_grpc


@asynccontextmanager
async def segmentation_stub(
    service: SegmentationService,
) -> AsyncIterator[segmentation_pb2_grpc.SegmentationServiceStub]:
    server = GrpcService(
        GrpcServerSettings(port=0, grace_seconds=0.5, GRPC_ALLOW_PLAINTEXT=True),
        [SERVICE_NAME],
        lambda s: segmentation_pb2_grpc.add_SegmentationServiceServicer_to_server(
            SegmentationServicer(service), s
        ),
    )
    await server.start()
    try:
        async with open_channel(server.address, SERVICE_NAME) as channel:
            yield segmentation_pb2_grpc.SegmentationServiceStub(channel)
    finally:
        await server.stop()
