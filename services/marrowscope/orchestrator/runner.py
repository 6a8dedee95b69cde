"""The round loop of a campaign: train -> evaluate -> predict a pool sample -> select ->
expert review -> absorb decisions -> next round.

Each step commits its result and the round's next state before the next step starts; a
restarted orchestrator calls ``run`` again and continues from the stored state. Training is
idempotent by the round id, review tasks by (round, cell), absorption by decision id.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc

from marrowscope.core import messages
from marrowscope.core.clients import ServiceClients
from marrowscope.core.errors import FailedPrecondition
from marrowscope.core.evaluation import evaluate
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.v1 import (
    common_pb2,
    curation_pb2,
    inference_pb2,
    training_pb2,
)

from .repository import CampaignRecord, CampaignRepository, CampaignState, RoundRecord, RoundState
from .selection import Scored, Thresholds, balance, strategy_for

log = logging.getLogger(__name__)


class CampaignRunner:
    def __init__(
        self,
        campaigns: CampaignRepository,
        clients: ServiceClients,
        curation_token: str,
        review_poll_seconds: float = 2.0,
        classify_chunk: int = 256,
        training_deadline_s: float = 6 * 3600.0,
    ) -> None:
        self.campaigns = campaigns
        self.clients = clients
        self.metadata = (("authorization", f"Bearer {curation_token}"),)
        self.review_poll_seconds = review_poll_seconds
        self.classify_chunk = classify_chunk
        self.training_deadline_s = training_deadline_s
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, campaign_id: str) -> None:
        running = self.tasks.get(campaign_id)
        if running is None or running.done():
            self.tasks[campaign_id] = asyncio.create_task(self._guarded(campaign_id))

    async def stop_all(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    async def _guarded(self, campaign_id: str) -> None:
        try:
            await self.run(campaign_id)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            # A peer is down: stay 'running' and retry later rather than fail the campaign.
            log.warning("campaign %s waits for %s: %s", campaign_id, exc.code().name, exc.details())
            await asyncio.sleep(self.review_poll_seconds * 5)
            self.tasks.pop(campaign_id, None)
            self.start(campaign_id)
        except Exception as exc:
            log.exception("campaign %s failed", campaign_id)
            await asyncio.to_thread(
                self.campaigns.set_state, campaign_id, CampaignState.FAILED, str(exc)
            )

    async def _campaign(self, campaign_id: str) -> CampaignRecord:
        return await asyncio.to_thread(self.campaigns.get, campaign_id)

    async def run(self, campaign_id: str) -> None:
        campaign = await self._campaign(campaign_id)
        previous_model = ""
        for number in range(1, campaign.parameters.rounds + 1):
            campaign = await self._campaign(campaign_id)
            if campaign.state != CampaignState.RUNNING:
                return
            round_ = await asyncio.to_thread(self.campaigns.open_round, campaign_id, number)
            if round_.state != RoundState.DONE:
                await self._run_round(campaign, round_, previous_model)
                round_ = await asyncio.to_thread(self.campaigns.open_round, campaign_id, number)
            previous_model = round_.model_version_id
        await asyncio.to_thread(self.campaigns.set_state, campaign_id, CampaignState.COMPLETED)
        log.info("campaign %s completed", campaign_id)

    async def _run_round(self, campaign: CampaignRecord, round_: RoundRecord, parent: str) -> None:
        update = self.campaigns.update_round
        if round_.state == RoundState.TRAINING:
            job_id, model, teacher_count = await self._train(campaign, round_, parent)
            await asyncio.to_thread(
                update,
                round_.id,
                training_job_id=job_id,
                model_version_id=model,
                teacher_count=teacher_count,
                state=RoundState.EVALUATING,
            )
            round_.model_version_id, round_.state = model, RoundState.EVALUATING
        if round_.state == RoundState.EVALUATING:
            metrics = await self._evaluate(campaign, round_.model_version_id)
            labelled = await asyncio.to_thread(
                self.campaigns.labelled, campaign.id, campaign.taxonomy
            )
            metrics["labelled_per_class"] = dict(Counter(c.class_code for c in labelled))
            await asyncio.to_thread(update, round_.id, metrics=metrics, state=RoundState.PREDICTING)
            round_.state, round_.metrics = RoundState.PREDICTING, metrics
        if round_.state == RoundState.PREDICTING:
            await self._predict_and_select(campaign, round_)
            round_ = await asyncio.to_thread(self.campaigns.open_round, campaign.id, round_.number)
        if round_.state == RoundState.REVIEWING:
            if not await self._wait_for_review(campaign, round_):
                return  # paused: the round stays in review
            await asyncio.to_thread(update, round_.id, state=RoundState.ABSORBING)
            round_.state = RoundState.ABSORBING
        if round_.state == RoundState.ABSORBING:
            decisions = await self._decisions(campaign.id, round_.id)
            absorbed = await asyncio.to_thread(
                self.campaigns.absorb, campaign.id, campaign.taxonomy, round_.number, decisions
            )
            current = await asyncio.to_thread(self.campaigns.open_round, campaign.id, round_.number)
            await asyncio.to_thread(
                update,
                round_.id,
                decided=len(decisions),
                added=absorbed.added,
                metrics={**current.metrics, **absorbed.to_json()},
                state=RoundState.DONE,
                finished_at=datetime.now(UTC),
            )

    async def _train(
        self, campaign: CampaignRecord, round_: RoundRecord, parent: str
    ) -> tuple[str, str, int]:
        params = campaign.parameters
        labelled = await asyncio.to_thread(self.campaigns.labelled, campaign.id, campaign.taxonomy)
        teacher = balance(labelled, params.class_cap)
        validation = await asyncio.to_thread(
            self.campaigns.reference_set, campaign.id, "validation", campaign.taxonomy
        )
        request = training_pb2.StartTrainingRequest(
            request_id=f"round:{round_.id}",
            taxonomy=campaign.taxonomy,
            teacher=messages.labeled_cells(
                (c.cell_id, c.object_key, c.class_code) for c in teacher
            ),
            validation=messages.labeled_cells(
                (c.cell_id, c.object_key, c.class_code) for c in validation
            ),
            parent_model_version=parent,
            hyper_parameters=training_pb2.HyperParameters(
                epochs=params.epochs,
                batch_size=params.batch_size,
                input_size=params.input_size,
                seed=params.seed + round_.number,
                augment=True,
                width=params.width,
            ),
            labels={"campaign": campaign.id, "round": str(round_.number)},
        )
        job = await self.clients.training.StartTraining(request)
        log.info("round %d: training job %s on %d cells", round_.number, job.id, len(teacher))
        async for status in self._watch(job.id):
            job = status
        if job.state != training_pb2.TRAINING_JOB_STATE_SUCCEEDED:
            raise FailedPrecondition(f"training job {job.id} ended without a model: {job.error}")
        return job.id, job.model_version, len(teacher)

    async def _watch(self, job_id: str) -> AsyncIterator[training_pb2.TrainingJob]:
        stream = self.clients.training.WatchTrainingJob(
            training_pb2.GetTrainingJobRequest(job_id=job_id), timeout=self.training_deadline_s
        )
        async for status in stream:
            yield status

    async def _classify(
        self, cells: list[tuple[str, str]], model: str
    ) -> list[common_pb2.Prediction]:
        """Stream ``cells`` through the inference service; unreadable cells are left out."""
        await self.clients.inference.LoadModel(inference_pb2.LoadModelRequest(model_version=model))
        requests = [
            inference_pb2.ClassifyRequest(
                cells=[
                    common_pb2.CellRef(cell_id=c, object_key=k)
                    for c, k in cells[start : start + self.classify_chunk]
                ],
                model_version=model,
            )
            for start in range(0, len(cells), self.classify_chunk)
        ]
        predictions: list[common_pb2.Prediction] = []
        stream = self.clients.inference.ClassifyStream(iter(requests), timeout=600)
        async for response in stream:
            predictions.extend(response.predictions)
        failed = [p for p in predictions if p.error]
        if failed:
            log.warning(
                "%d of %d cells could not be classified (first: %s)",
                len(failed),
                len(predictions),
                failed[0].error,
            )
        return [p for p in predictions if not p.error]

    async def _evaluate(self, campaign: CampaignRecord, model: str) -> dict:
        test = await asyncio.to_thread(
            self.campaigns.reference_set, campaign.id, "test", campaign.taxonomy
        )
        predictions = await self._classify([(c.cell_id, c.object_key) for c in test], model)
        truth = {c.cell_id: c.class_code for c in test}
        return evaluate(
            [truth[p.cell_id] for p in predictions],
            [p.top1_class for p in predictions],
            load_taxonomy(campaign.taxonomy),
        )

    async def _predict_and_select(self, campaign: CampaignRecord, round_: RoundRecord) -> None:
        params = campaign.parameters
        pool = await asyncio.to_thread(self.campaigns.pool_cells, campaign.id)
        rng = random.Random(params.seed * 1000 + round_.number)
        sample = rng.sample(pool, min(params.sample_size, len(pool)))
        predictions = await self._classify(sample, round_.model_version_id)
        scored = [
            Scored(
                cell_id=p.cell_id,
                object_key=p.object_key,
                top1_class=p.top1_class,
                top1_probability=p.top1_probability,
                margin=p.margin,
                top_classes=[
                    (p.top1_class, p.top1_probability),
                    (p.top2_class, p.top2_probability),
                ],
            )
            for p in predictions
        ]
        thresholds = Thresholds(params.threshold_for(campaign.method), params.al_margin)
        selection = strategy_for(campaign.method, thresholds).select(scored, rng)
        if selection.unchecked:  # plain self-training: no expert, pseudo-labels go straight in
            decisions = [
                (None, s.cell_id, "unchecked", s.top1_class, "self-training")
                for s in selection.unchecked
            ]
            absorbed = await asyncio.to_thread(
                self.campaigns.absorb, campaign.id, campaign.taxonomy, round_.number, decisions
            )
            await asyncio.to_thread(
                self.campaigns.update_round,
                round_.id,
                sampled=len(sample),
                cst_candidates=len(selection.unchecked),
                added=absorbed.added,
                metrics={**round_.metrics, **absorbed.to_json()},
                state=RoundState.DONE,
                finished_at=datetime.now(UTC),
            )
            return
        tasks = [
            curation_pb2.NewReviewTask(
                cell_id=s.cell_id,
                object_key=s.object_key,
                kind=kind,
                proposed_class=s.top1_class if kind == curation_pb2.TASK_KIND_CST else "",
                top_classes=[
                    curation_pb2.ClassScore(class_code=c, probability=p) for c, p in s.top_classes
                ],
            )
            for kind, group in (
                (curation_pb2.TASK_KIND_CST, selection.cst),
                (curation_pb2.TASK_KIND_AL, selection.al),
            )
            for s in group
        ]
        # Curation keeps its own copy of the queue: it reads no orchestrator table.
        queue = curation_pb2.ReviewQueue(
            name=campaign.name,
            kind=campaign.method,
            taxonomy=campaign.taxonomy,
            dataset=campaign.dataset,
        )
        for start in range(0, len(tasks), 500):
            await self.clients.curation.CreateReviewTasks(
                curation_pb2.CreateReviewTasksRequest(
                    campaign_id=campaign.id,
                    round_id=round_.id,
                    tasks=tasks[start : start + 500],
                    queue=queue,
                    requester=curation_pb2.BATCH_REQUESTER_CAMPAIGN_ROUND,
                    round_number=round_.number,
                ),
                metadata=self.metadata,
            )
        await asyncio.to_thread(
            self.campaigns.update_round,
            round_.id,
            sampled=len(sample),
            cst_candidates=len(selection.cst),
            al_candidates=len(selection.al),
            state=RoundState.REVIEWING if tasks else "absorbing",
        )
        log.info(
            "round %d: %d CST and %d AL tasks for experts",
            round_.number,
            len(selection.cst),
            len(selection.al),
        )

    async def _wait_for_review(self, campaign: CampaignRecord, round_: RoundRecord) -> bool:
        """Experts may take days: poll progress until every task of the round is decided."""
        while True:
            progress = await self.clients.curation.GetProgress(
                curation_pb2.GetProgressRequest(campaign_id=campaign.id, round_id=round_.id),
                metadata=self.metadata,
            )
            if progress.open + progress.claimed == 0:
                return True
            current = await self._campaign(campaign.id)
            if current.state != CampaignState.RUNNING:
                return False
            await asyncio.sleep(self.review_poll_seconds)

    async def _decisions(self, campaign_id: str, round_id: str) -> list:
        response = await self.clients.curation.ListDecisions(
            curation_pb2.ListDecisionsRequest(campaign_id=campaign_id, round_id=round_id),
            metadata=self.metadata,
        )
        actions = {
            curation_pb2.DECISION_ACTION_TOO_DIFFICULT: "too_difficult",
            curation_pb2.DECISION_ACTION_CONFIRM: "confirm",
            curation_pb2.DECISION_ACTION_CORRECT: "correct",
            curation_pb2.DECISION_ACTION_LABEL: "label",
        }
        return [
            (d.id, d.cell_id, actions[d.action], d.class_code, d.user) for d in response.decisions
        ]
