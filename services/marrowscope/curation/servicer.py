"""gRPC transport for the curation service. Every call is authenticated by bearer token."""

from __future__ import annotations

import asyncio

import grpc

from marrowscope.core import messages
from marrowscope.v1 import curation_pb2, curation_pb2_grpc

from .service import (
    CurationService,
    Decision,
    DecisionInput,
    NewTask,
    QueueInfo,
    ReviewBatchRequest,
    Task,
    User,
)

SERVICE_NAME = curation_pb2.DESCRIPTOR.services_by_name["CurationService"].full_name
KINDS = {curation_pb2.TASK_KIND_CST: "CST", curation_pb2.TASK_KIND_AL: "AL"}
KIND_ENUM = {v: k for k, v in KINDS.items()}
ACTIONS = {
    curation_pb2.DECISION_ACTION_CONFIRM: "confirm",
    curation_pb2.DECISION_ACTION_CORRECT: "correct",
    curation_pb2.DECISION_ACTION_LABEL: "label",
    curation_pb2.DECISION_ACTION_TOO_DIFFICULT: "too_difficult",
}
ACTION_ENUM = {v: k for k, v in ACTIONS.items()}
ROLES = {
    curation_pb2.ROLE_EXPERT: "expert",
    curation_pb2.ROLE_ADMIN: "admin",
    curation_pb2.ROLE_SERVICE: "service",
}
ROLE_ENUM = {v: k for k, v in ROLES.items()}
REQUESTERS = {
    curation_pb2.BATCH_REQUESTER_CAMPAIGN_ROUND: "campaign_round",
    curation_pb2.BATCH_REQUESTER_ANALYSIS_JOB: "analysis_job",
}
STATES = {
    "open": curation_pb2.TASK_STATE_OPEN,
    "claimed": curation_pb2.TASK_STATE_CLAIMED,
    "decided": curation_pb2.TASK_STATE_DECIDED,
}


def bearer_token(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if (
            key == "authorization"
            and isinstance(value, str)
            and value.lower().startswith("bearer ")
        ):
            return value[7:].strip()
    return ""


def task_message(task: Task) -> curation_pb2.ReviewTask:
    return curation_pb2.ReviewTask(
        id=task.id,
        campaign_id=task.queue_id,  # on the wire the queue and batch keep their old names
        round_id=task.batch_id,
        round_number=task.round_number,
        cell_id=task.cell_id,
        object_key=task.object_key,
        kind=KIND_ENUM[task.kind],
        proposed_class=task.proposed_class,
        top_classes=[
            curation_pb2.ClassScore(class_code=c, probability=p) for c, p in task.top_classes
        ],
        state=STATES[task.state],
        claimed_by=task.claimed_by,
        lease_expires_at=messages.timestamp(task.lease_expires_at),
    )


def decision_message(d: Decision) -> curation_pb2.Decision:
    return curation_pb2.Decision(
        id=d.id,
        client_decision_id=d.client_decision_id,
        task_id=d.task_id,
        cell_id=d.cell_id,
        action=ACTION_ENUM.get(d.action, curation_pb2.DECISION_ACTION_UNSPECIFIED),
        class_code=d.class_code,
        user=d.user,
        decided_at=messages.timestamp(d.decided_at),
        undone=d.undone,
    )


class CurationServicer(curation_pb2_grpc.CurationServiceServicer):
    def __init__(self, service: CurationService) -> None:
        self.service = service

    async def _user(self, context: grpc.aio.ServicerContext) -> User:
        return await asyncio.to_thread(self.service.authenticate, bearer_token(context))

    async def CreateReviewTasks(
        self, request: curation_pb2.CreateReviewTasksRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.CreateReviewTasksResponse:
        user = await self._user(context)
        tasks = [
            NewTask(
                t.cell_id,
                t.object_key,
                KINDS.get(t.kind, ""),
                t.proposed_class,
                [(c.class_code, c.probability) for c in t.top_classes],
            )
            for t in request.tasks
        ]
        queue = request.queue
        batch = ReviewBatchRequest(
            queue_id=request.campaign_id,
            batch_id=request.round_id,
            requester=REQUESTERS.get(request.requester, ""),
            round_number=request.round_number,
            queue=QueueInfo(
                name=queue.name, kind=queue.kind, taxonomy=queue.taxonomy, dataset=queue.dataset
            )
            if request.HasField("queue")
            else None,
        )
        created, present = await asyncio.to_thread(self.service.create_tasks, user, batch, tasks)
        return curation_pb2.CreateReviewTasksResponse(created=created, already_present=present)

    async def ClaimTasks(
        self, request: curation_pb2.ClaimTasksRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.ClaimTasksResponse:
        user = await self._user(context)
        tasks = await asyncio.to_thread(
            self.service.claim,
            user,
            request.campaign_id,
            KINDS.get(request.kind, ""),
            request.proposed_class,
            request.limit,
            request.lease_seconds,
        )
        return curation_pb2.ClaimTasksResponse(tasks=[task_message(t) for t in tasks])

    async def ReleaseTasks(
        self, request: curation_pb2.ReleaseTasksRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.ReleaseTasksResponse:
        user = await self._user(context)
        released = await asyncio.to_thread(self.service.release, user, list(request.task_ids))
        return curation_pb2.ReleaseTasksResponse(released=released)

    async def SubmitDecisions(
        self, request: curation_pb2.SubmitDecisionsRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.SubmitDecisionsResponse:
        user = await self._user(context)
        inputs = [
            DecisionInput(
                d.client_decision_id, d.task_id, ACTIONS.get(d.action, ""), d.class_code, d.reason
            )
            for d in request.decisions
        ]
        decided = await asyncio.to_thread(self.service.submit, user, inputs)
        return curation_pb2.SubmitDecisionsResponse(
            decisions=[decision_message(d) for d in decided]
        )

    async def UndoDecision(
        self, request: curation_pb2.UndoDecisionRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.Decision:
        user = await self._user(context)
        undone = await asyncio.to_thread(
            self.service.undo, user, request.client_decision_id, request.reason
        )
        return decision_message(undone)

    async def ListDecisions(
        self, request: curation_pb2.ListDecisionsRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.ListDecisionsResponse:
        user = await self._user(context)
        decided = await asyncio.to_thread(
            self.service.list_decisions,
            user,
            request.campaign_id,
            request.round_id,
            request.include_undone,
        )
        return curation_pb2.ListDecisionsResponse(decisions=[decision_message(d) for d in decided])

    async def GetProgress(
        self, request: curation_pb2.GetProgressRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.Progress:
        user = await self._user(context)
        rows = await asyncio.to_thread(
            self.service.progress, user, request.campaign_id, request.round_id
        )
        return curation_pb2.Progress(
            counts=[
                curation_pb2.ProgressCount(
                    round_id=r.batch_id,
                    class_code=r.class_code,
                    kind=KIND_ENUM[r.kind],
                    open=r.open,
                    claimed=r.claimed,
                    decided=r.decided,
                )
                for r in rows
            ],
            open=sum(r.open for r in rows),
            claimed=sum(r.claimed for r in rows),
            decided=sum(r.decided for r in rows),
        )

    async def CreateUser(
        self, request: curation_pb2.CreateUserRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.CreateUserResponse:
        actor = await self._user(context)
        user, token = await asyncio.to_thread(
            self.service.create_user, actor, request.name, ROLES.get(request.role, "")
        )
        return curation_pb2.CreateUserResponse(
            user=curation_pb2.User(name=user.name, role=ROLE_ENUM[user.role]), token=token
        )

    async def WhoAmI(
        self, request: curation_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext
    ) -> curation_pb2.User:
        user = await self._user(context)
        return curation_pb2.User(name=user.name, role=ROLE_ENUM[user.role])
