"""A simulated expert: answers review tasks from ground truth through the curation API.

No back door: it signs in with its own token, claims tasks, and submits decisions like any UI
client. Error and "too difficult" rates make experiments behave like a human loop; decisions
are counted so expert effort is reported honestly.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field

import grpc

from marrowscope.v1 import curation_pb2, curation_pb2_grpc


@dataclass
class ExpertStats:
    confirmed: int = 0
    corrected: int = 0
    labelled: int = 0
    too_difficult: int = 0

    seconds: float = 0.0  # simulated expert time (see SimulatedExpert.assumed_seconds)

    @property
    def decisions(self) -> int:
        return self.confirmed + self.corrected + self.labelled + self.too_difficult

    def to_json(self) -> dict:
        return {
            "confirmed": self.confirmed,
            "corrected": self.corrected,
            "labelled": self.labelled,
            "too_difficult": self.too_difficult,
            "decisions": self.decisions,
            "simulated_seconds": round(self.seconds, 1),
        }


# Time a human needs per decision, for honest effort accounting: confirming a correct pseudo-label
# on a page of 50 is one glance; correcting or labelling one cell takes a closer look.
ASSUMED_SECONDS = {"confirm": 1.0, "correct": 4.0, "label": 5.0, "too_difficult": 5.0}


@dataclass(kw_only=True)
class SimulatedExpert:
    stub: curation_pb2_grpc.CurationServiceStub
    token: str
    truth: dict[str, str]  # cell id -> class code
    classes: list[str]
    error_rate: float = 0.0
    too_difficult_rate: float = 0.0
    # Per-class overrides of too_difficult_rate (e.g. higher for MY, MMY, BNE, SNE).
    too_difficult_by_class: dict[str, float] = field(default_factory=dict)
    seconds_per_decision: float = 0.0  # real waiting, to mimic a slow human (0 = none)
    assumed_seconds: dict[str, float] = field(default_factory=lambda: dict(ASSUMED_SECONDS))
    seed: int = 0
    batch: int = 100
    stats: ExpertStats = field(default_factory=ExpertStats)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        # Decisions sent but not yet acknowledged are retried with the same client ids, as a
        # UI must do: a retry after a lost answer never creates a second decision.
        self.pending: list[curation_pb2.DecisionInput] = []
        self.acknowledged: list[str] = []
        self.metadata = (("authorization", f"Bearer {self.token}"),)

    def decide(self, task: curation_pb2.ReviewTask) -> curation_pb2.DecisionInput:
        truth = self.truth[task.cell_id]
        decision = curation_pb2.DecisionInput(client_decision_id=str(uuid.uuid4()), task_id=task.id)
        rate = self.too_difficult_by_class.get(truth, self.too_difficult_rate)
        if self.rng.random() < rate:
            decision.action = curation_pb2.DECISION_ACTION_TOO_DIFFICULT
            self.stats.too_difficult += 1
            self.stats.seconds += self.assumed_seconds["too_difficult"]
            return decision
        answer = truth
        if self.rng.random() < self.error_rate:
            answer = self.rng.choice([c for c in self.classes if c != truth])
        if task.kind == curation_pb2.TASK_KIND_CST:
            if answer == task.proposed_class:
                decision.action = curation_pb2.DECISION_ACTION_CONFIRM
                self.stats.confirmed += 1
                self.stats.seconds += self.assumed_seconds["confirm"]
            else:
                decision.action = curation_pb2.DECISION_ACTION_CORRECT
                decision.class_code = answer
                self.stats.corrected += 1
                self.stats.seconds += self.assumed_seconds["correct"]
        else:
            decision.action = curation_pb2.DECISION_ACTION_LABEL
            decision.class_code = answer
            self.stats.labelled += 1
            self.stats.seconds += self.assumed_seconds["label"]
        return decision

    async def work_once(self, campaign_id: str = "") -> int:
        """Send any unacknowledged decisions again (same ids), else claim one batch and decide
        it; return how many decisions were acknowledged."""
        if not self.pending:
            claimed = await self.stub.ClaimTasks(
                curation_pb2.ClaimTasksRequest(campaign_id=campaign_id, limit=self.batch),
                metadata=self.metadata,
            )
            if not claimed.tasks:
                return 0
            self.pending = [self.decide(t) for t in claimed.tasks]
            if self.seconds_per_decision:
                await asyncio.sleep(self.seconds_per_decision * len(self.pending))
        try:
            await self.stub.SubmitDecisions(
                curation_pb2.SubmitDecisionsRequest(decisions=self.pending), metadata=self.metadata
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                # The leases ran out while we could not reach the service: these tasks went
                # back to the queue, so these decisions were never made.
                self.pending = []
            raise
        self.acknowledged.extend(d.client_decision_id for d in self.pending)
        done, self.pending = len(self.pending), []
        return done

    async def work_until(
        self, done: asyncio.Event, campaign_id: str = "", idle_s: float = 0.5
    ) -> None:
        while not done.is_set():
            try:
                if await self.work_once(campaign_id) == 0:
                    await asyncio.sleep(idle_s)
            except grpc.aio.AioRpcError as exc:
                retriable = (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.FAILED_PRECONDITION,
                )
                if exc.code() not in retriable:
                    raise
                await asyncio.sleep(idle_s)
