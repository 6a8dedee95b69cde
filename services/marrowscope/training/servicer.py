"""gRPC transport for the training service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from marrowscope.core import messages
from marrowscope.core.errors import InvalidArgument
from marrowscope.core.model_registry import (
    AliasChange,
    ModelVersionRecord,
    list_model_versions,
    resolve,
)
from marrowscope.v1 import common_pb2, training_pb2, training_pb2_grpc

from .promotion import ModelAliases
from .service import JobRequest, JobStatus, TrainingService
from .trainer import LR_SCHEDULES, HyperParameters

SERVICE_NAME = training_pb2.DESCRIPTOR.services_by_name["TrainingService"].full_name
_STATES = {
    "queued": training_pb2.TRAINING_JOB_STATE_QUEUED,
    "running": training_pb2.TRAINING_JOB_STATE_RUNNING,
    "succeeded": training_pb2.TRAINING_JOB_STATE_SUCCEEDED,
    "failed": training_pb2.TRAINING_JOB_STATE_FAILED,
    "cancelled": training_pb2.TRAINING_JOB_STATE_CANCELLED,
}
WATCH_POLL_S = 0.5


def job_message(status: JobStatus) -> training_pb2.TrainingJob:
    return training_pb2.TrainingJob(
        id=status.id,
        state=_STATES[status.state],
        epoch=status.epoch,
        total_epochs=status.total_epochs,
        learning_curve=[messages.epoch_metrics(e) for e in status.learning_curve],
        model_version=status.model_version,
        error=status.error,
        created_at=messages.timestamp(status.created_at),
        updated_at=messages.timestamp(status.updated_at),
        labels=status.labels,
    )


def alias_change_message(change: AliasChange) -> training_pb2.AliasChange:
    return training_pb2.AliasChange(
        alias=change.alias,
        model=messages.model_version(change.version),
        previous_version=change.previous.name if change.previous else "",
        action=change.action,
        actor=change.actor,
        reason=change.reason,
        at=messages.timestamp(change.at),
        forced=change.forced,
    )


def hyper_from_message(message: training_pb2.HyperParameters, width: int) -> HyperParameters:
    """The job's hyper-parameters: unset fields take the paper's defaults; values the trainer
    cannot use are refused here, before a job is queued."""
    defaults = HyperParameters()
    schedule = message.lr_schedule or defaults.lr_schedule
    if schedule not in LR_SCHEDULES:
        raise InvalidArgument(f"lr_schedule {schedule!r} is not one of {', '.join(LR_SCHEDULES)}")
    precise_bn = (
        message.precise_bn_images
        if message.HasField("precise_bn_images")
        else defaults.precise_bn_images
    )
    if precise_bn < 0:
        raise InvalidArgument("precise_bn_images must be 0 (off) or a number of images")
    return HyperParameters(
        epochs=message.epochs or defaults.epochs,
        batch_size=message.batch_size or defaults.batch_size,
        learning_rate=message.learning_rate,
        momentum=message.momentum or defaults.momentum,
        input_size=message.input_size or defaults.input_size,
        seed=message.seed,
        early_stopping_patience=message.early_stopping_patience,
        augment=message.augment,
        architecture=message.architecture or defaults.architecture,
        width=message.width or width,
        lr_schedule=schedule,
        precise_bn_images=precise_bn,
    )


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, service: TrainingService, aliases: ModelAliases | None = None) -> None:
        self.service = service
        self.aliases = aliases or ModelAliases(service.pool, service.settings.clinical_taxonomy)

    async def PromoteModel(
        self, request: training_pb2.PromoteModelRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.AliasChange:
        promotion = await asyncio.to_thread(
            self.aliases.promote,
            request.model_version,
            request.alias,
            request.actor,
            request.reason,
            request.force,
        )
        message = alias_change_message(promotion.change)
        message.comparison = promotion.comparison
        return message

    async def LockEvaluationSet(
        self, request: training_pb2.LockEvaluationSetRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.EvaluationSet:
        taxonomy = request.taxonomy or self.aliases.clinical_taxonomy
        cells, newly = await asyncio.to_thread(
            self.aliases.lock_evaluation_set,
            request.dataset,
            taxonomy,
            request.actor,
            request.reason,
        )
        return training_pb2.EvaluationSet(
            dataset=request.dataset, taxonomy=taxonomy, cells=cells, newly_locked=newly
        )

    async def RollbackModel(
        self, request: training_pb2.RollbackModelRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.AliasChange:
        change = await asyncio.to_thread(
            self.aliases.rollback, request.alias, request.actor, request.reason
        )
        return alias_change_message(change)

    async def ListModelAliases(
        self, request: training_pb2.ListModelAliasesRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.ListModelAliasesResponse:
        current, history = await asyncio.to_thread(
            self.aliases.aliases, request.alias, request.history
        )
        return training_pb2.ListModelAliasesResponse(
            current=[alias_change_message(c) for c in current],
            history=[alias_change_message(c) for c in history],
        )

    async def StartTraining(
        self, request: training_pb2.StartTrainingRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.TrainingJob:
        job = JobRequest(
            request_id=request.request_id,
            taxonomy=request.taxonomy or "paper17",
            teacher=[(c.cell_id, c.object_key, c.class_code) for c in request.teacher],
            validation=[(c.cell_id, c.object_key, c.class_code) for c in request.validation],
            parent_model_version=request.parent_model_version,
            hyper=hyper_from_message(request.hyper_parameters, self.service.settings.model_width),
            labels=dict(request.labels),
            demo=request.demo,
        )
        return job_message(await asyncio.to_thread(self.service.start, job))

    async def GetTrainingJob(
        self, request: training_pb2.GetTrainingJobRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.TrainingJob:
        return job_message(await asyncio.to_thread(self.service.get, request.job_id))

    async def WatchTrainingJob(
        self, request: training_pb2.GetTrainingJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[training_pb2.TrainingJob]:
        last = None
        while True:
            status = await asyncio.to_thread(self.service.get, request.job_id)
            if (status.state, status.epoch, status.updated_at) != last:
                last = (status.state, status.epoch, status.updated_at)
                yield job_message(status)
            if status.finished:
                return
            await asyncio.sleep(WATCH_POLL_S)

    async def CancelTraining(
        self, request: training_pb2.CancelTrainingRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.TrainingJob:
        return job_message(await asyncio.to_thread(self.service.cancel, request.job_id))

    async def ListModelVersions(
        self, request: training_pb2.ListModelVersionsRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.ListModelVersionsResponse:
        records = await asyncio.to_thread(
            list_model_versions, self.service.pool, request.taxonomy, request.limit
        )
        return training_pb2.ListModelVersionsResponse(
            model_versions=[messages.model_version(r) for r in records]
        )

    def _resolve(self, version_or_alias: str) -> ModelVersionRecord:
        with self.service.pool.connection() as conn:
            return resolve(conn, version_or_alias)

    async def GetModelVersion(
        self, request: training_pb2.GetModelVersionRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.ModelVersion:
        record = await asyncio.to_thread(self._resolve, request.id)
        return messages.model_version(record)
