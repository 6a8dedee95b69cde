"""The demo: a short CST+AL campaign on generated cells, answered by a simulated expert or,
with ``--expert ui``, by a person in the curation web UI."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from marrowscope.cli.simulated_expert import SimulatedExpert
from marrowscope.core.clients import ServiceClients
from marrowscope.core.objectstore import ObjectStore
from marrowscope.core.synthetic import iter_cells, synthetic_classes
from marrowscope.v1 import curation_pb2, orchestrator_pb2

from .datasets import import_synthetic

ROUND_STATE = {v: k for k, v in orchestrator_pb2.RoundState.items()}


def round_table(campaign: orchestrator_pb2.Campaign) -> str:
    header = (
        f"{'round':>5} {'teacher':>7} {'sampled':>7} {'CST':>5} {'AL':>5} {'decided':>7} "
        f"{'added':>5} {'test acc':>8} {'mean rec':>8}  state"
    )
    lines = [header, "-" * len(header)]
    for r in campaign.rounds:
        lines.append(
            f"{r.number:>5} {r.teacher_count:>7} {r.sampled:>7} {r.cst_candidates:>5} "
            f"{r.al_candidates:>5} {r.decided:>7} {r.added:>5} {r.test_accuracy:>8.3f} "
            f"{r.test_mean_recall:>8.3f}  {ROUND_STATE[r.state].removeprefix('ROUND_STATE_').lower()}"
        )
    return "\n".join(lines)


async def run_demo(
    clients: ServiceClients,
    store: ObjectStore,
    admin_token: str,
    per_class: int = 40,
    rounds: int = 3,
    epochs: int = 10,
    method: str = "CST_AL",
    seed: int = 0,
    ui_url: str = "",
) -> orchestrator_pb2.Campaign:
    """Run a campaign to its end. With ``ui_url`` a person is the expert (in the web UI);
    otherwise the simulated expert answers through the curation API."""
    classes = synthetic_classes()
    dataset = f"synthetic-demo-{seed}"
    print(f"generating {per_class * len(classes)} synthetic cells ({len(classes)} classes)...")
    truth = await import_synthetic(
        iter_cells(per_class, seed=seed), per_class * len(classes), dataset, store, clients
    )
    admin = (("authorization", f"Bearer {admin_token}"),)
    started = int(time.time())  # each demo run is a new campaign, even on an existing stack
    expert_name = f"{'expert' if ui_url else 'simulated-expert'}-{started}"
    created = await clients.curation.CreateUser(
        curation_pb2.CreateUserRequest(name=expert_name, role=curation_pb2.ROLE_EXPERT),
        metadata=admin,
    )
    campaign = await clients.orchestrator.CreateCampaign(
        orchestrator_pb2.CreateCampaignRequest(
            request_id=f"demo-{dataset}-{method}-{rounds}-{epochs}-{started}",
            name=f"demo {method}",
            method=orchestrator_pb2.CampaignMethod.Value(f"CAMPAIGN_METHOD_{method}"),
            dataset=dataset,
            taxonomy="paper17",
            parameters=orchestrator_pb2.CampaignParameters(
                initial_per_class=8,
                validation_per_class=5,
                test_per_class=10,
                sample_size=200,
                rounds=rounds,
                epochs=epochs,
                input_size=64,
                seed=seed,
            ),
        )
    )
    print(f"campaign {campaign.id}: {method}, {rounds} rounds, pool of {campaign.pool_size} cells")
    await clients.orchestrator.StartCampaign(
        orchestrator_pb2.CampaignIdRequest(campaign_id=campaign.id)
    )
    expert = SimulatedExpert(
        stub=clients.curation,
        token=created.token,
        truth={c: code for c, (_, code) in truth.items()},
        classes=classes,
        error_rate=0.02,
        too_difficult_rate=0.03,
        seed=seed,
    )
    done = asyncio.Event()
    if ui_url:
        print(
            f"\nYou are the expert. Open {ui_url}/ui/ and sign in with this token:\n  {created.token}\n"
            "Each round waits in 'reviewing' until its CST and AL tasks are decided (Ctrl-C stops).\n"
        )
        worker: asyncio.Task[Any] = asyncio.create_task(done.wait())
    else:
        worker = asyncio.create_task(expert.work_until(done, campaign.id))
    last_line = ""
    async for update in clients.orchestrator.WatchCampaign(
        orchestrator_pb2.CampaignIdRequest(campaign_id=campaign.id), timeout=3600
    ):
        campaign = update
        if campaign.rounds:
            r = campaign.rounds[-1]
            line = (
                f"  round {r.number}: {ROUND_STATE[r.state].removeprefix('ROUND_STATE_').lower()}"
            )
            if line != last_line:
                print(line, file=sys.stderr)
                last_line = line
    done.set()
    await worker
    if ui_url:
        return campaign
    print(
        f"simulated expert: {expert.stats.decisions} decisions "
        f"({expert.stats.confirmed} confirmed, {expert.stats.corrected} corrected, "
        f"{expert.stats.labelled} labelled, {expert.stats.too_difficult} too difficult)"
    )
    return campaign
