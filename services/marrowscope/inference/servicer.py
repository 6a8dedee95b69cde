"""gRPC transport for the inference service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from marrowscope.core import messages
from marrowscope.core.errors import InvalidArgument
from marrowscope.v1 import common_pb2, inference_pb2, inference_pb2_grpc

from .classifier import CellPrediction, Classifier, LoadedModel

STREAM_IN_FLIGHT = 3  # chunks of one stream being decoded or classified at once
SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


def _prediction(p: CellPrediction, version: str) -> common_pb2.Prediction:
    if p.error:
        return common_pb2.Prediction(
            cell_id=p.cell_id, object_key=p.object_key, model_version=version, error=p.error
        )
    return common_pb2.Prediction(
        cell_id=p.cell_id,
        object_key=p.object_key,
        probabilities=p.probabilities.tolist(),
        top1_class=p.top1_class,
        top1_probability=p.top1_probability,
        top2_class=p.top2_class,
        top2_probability=p.top2_probability,
        margin=p.margin,
        entropy=p.entropy,
        model_version=version,
        ood_score=p.ood_score,
    )


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier

    async def Classify(
        self, request: inference_pb2.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ClassifyResponse:
        cells = [(c.cell_id, c.object_key) for c in request.cells]
        if any(not key for _, key in cells):
            raise InvalidArgument("every cell needs an object_key")
        predictions, record = await asyncio.to_thread(
            self.classifier.classify, cells, request.model_version
        )
        return inference_pb2.ClassifyResponse(
            predictions=[_prediction(p, record.name) for p in predictions],
            model_version=record.name,
        )

    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[inference_pb2.ClassifyRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[inference_pb2.ClassifyResponse]:
        """Answers chunk by chunk, in order; a few chunks are in flight at once so decoding
        the next chunk overlaps the model run of this one."""
        in_flight: asyncio.Queue[asyncio.Task | None] = asyncio.Queue(maxsize=STREAM_IN_FLIGHT)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await in_flight.put(asyncio.create_task(self.Classify(request, context)))
            finally:
                await in_flight.put(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await in_flight.get()) is not None:
                yield await task
            await reader  # surfaces an error raised while reading the stream
        finally:
            reader.cancel()

    @staticmethod
    def _serving(model: LoadedModel) -> inference_pb2.ServingModel:
        return inference_pb2.ServingModel(
            model=messages.model_version(model.record), execution_provider=model.provider
        )

    async def GetServingModel(
        self, request: inference_pb2.GetServingModelRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ServingModel:
        """The production model (what patient reports use), loading it if needed."""
        return self._serving(await asyncio.to_thread(self.classifier.model, "production"))

    async def LoadModel(
        self, request: inference_pb2.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> inference_pb2.ServingModel:
        """Warm a version (empty: production) for the requests that name it; switches nothing
        for anyone else."""
        version = request.model_version or "production"
        return self._serving(await asyncio.to_thread(self.classifier.warm, version))
