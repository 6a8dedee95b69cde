"""``marrowscope experiment``: every SSL method on one labelled folder, the paper's Table 1.

Each method runs as its own campaign through the services, from the same seeded initial,
validation and test sets, answered by a simulated expert through the curation API. The results
go to ``--out`` as a table, CSV, JSON, plots and an HTML report (see :mod:`.report`).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from marrowscope.cli.simulated_expert import SimulatedExpert
from marrowscope.core.clients import ServiceClients
from marrowscope.core.datasets import scan_image_folder
from marrowscope.core.objectstore import ObjectStore
from marrowscope.v1 import curation_pb2, orchestrator_pb2

from .ml import register_cells, upload_images

METHODS = {"st": "ST", "cst": "CST", "al": "AL", "cst+al": "CST_AL", "random": "RANDOM"}
ROUND_STATE = {v: k for k, v in orchestrator_pb2.RoundState.items()}


@dataclass(frozen=True, kw_only=True)
class ExperimentOptions:
    data: Path
    mapping: Path | None
    methods: list[str]  # keys of METHODS
    rounds: int
    image_size: int
    epochs: int
    width: int
    initial_per_class: int
    validation_per_class: int
    test_per_class: int
    sample_size: int
    class_cap: int
    seed: int
    expert_error: float
    too_difficult: float
    hard_classes: list[str]
    hard_too_difficult: float
    center_crop: bool


async def import_folder(
    clients: ServiceClients, store: ObjectStore, options: ExperimentOptions
) -> tuple[str, str, dict[str, str], list[str]]:
    """Upload and register the folder once; returns dataset, taxonomy, truth, class codes."""
    folder = scan_image_folder(options.data, options.mapping)
    print(f"{len(folder.images)} images, taxonomy {folder.taxonomy}: {folder.counts()}")
    stored, problems = upload_images(folder.images, store, "uploading")
    for problem in problems:
        print(f"skipped {problem}")
    dataset = f"experiment-{options.data.name}" + ("-centre" if options.center_crop else "")
    cells: list[tuple[str, str, str]] = []
    for start in tqdm(range(0, len(stored), 500), desc="registering cells", unit="batch"):
        cells += await register_cells(
            clients, stored[start : start + 500], dataset, folder.taxonomy, options.center_crop
        )
    truth = {cell_id: code for cell_id, _, code in cells}
    return dataset, folder.taxonomy, truth, sorted(set(truth.values()))


async def run_method(
    clients: ServiceClients,
    admin: tuple,
    dataset: str,
    taxonomy: str,
    truth: dict[str, str],
    classes: list[str],
    method: str,
    options: ExperimentOptions,
) -> dict:
    """One campaign from start to finish with its own simulated expert."""
    name = f"sim-expert-{method.lower()}-{int(time.time())}"
    user = await clients.curation.CreateUser(
        curation_pb2.CreateUserRequest(name=name, role=curation_pb2.ROLE_EXPERT), metadata=admin
    )
    params = orchestrator_pb2.CampaignParameters(
        sample_size=options.sample_size,
        class_cap=options.class_cap,
        initial_per_class=options.initial_per_class,
        validation_per_class=options.validation_per_class,
        test_per_class=options.test_per_class,
        rounds=options.rounds,
        epochs=options.epochs,
        input_size=options.image_size,
        seed=options.seed,
        width=options.width,
    )
    campaign = await clients.orchestrator.CreateCampaign(
        orchestrator_pb2.CreateCampaignRequest(
            request_id=f"experiment:{dataset}:{method}:{params.SerializeToString().hex()}",
            name=f"experiment {method}",
            method=orchestrator_pb2.CampaignMethod.Value(f"CAMPAIGN_METHOD_{method}"),
            dataset=dataset,
            taxonomy=taxonomy,
            parameters=params,
        )
    )
    await clients.orchestrator.StartCampaign(
        orchestrator_pb2.CampaignIdRequest(campaign_id=campaign.id)
    )
    expert = SimulatedExpert(
        stub=clients.curation,
        token=user.token,
        truth=truth,
        classes=classes,
        error_rate=options.expert_error,
        too_difficult_rate=options.too_difficult,
        too_difficult_by_class={c: options.hard_too_difficult for c in options.hard_classes},
        seed=options.seed,
    )
    done = asyncio.Event()
    worker = asyncio.create_task(expert.work_until(done, campaign.id))
    bar = tqdm(total=options.rounds, desc=f"{method:<7}", unit="round")
    started = time.perf_counter()
    try:
        async for update in clients.orchestrator.WatchCampaign(
            orchestrator_pb2.CampaignIdRequest(campaign_id=campaign.id), timeout=24 * 3600
        ):
            campaign = update
            finished = sum(r.state == orchestrator_pb2.ROUND_STATE_DONE for r in campaign.rounds)
            if campaign.rounds:
                last = campaign.rounds[-1]
                bar.set_postfix(
                    acc=f"{last.test_accuracy:.3f}",
                    state=ROUND_STATE[last.state].removeprefix("ROUND_STATE_").lower(),
                )
            bar.update(finished - bar.n)
    finally:
        done.set()
        await worker
        bar.close()
    rounds = []
    for r in campaign.rounds:
        metrics = json.loads(r.metrics_json or "{}")
        rounds.append(
            {
                "round": r.number,
                "teacher_count": r.teacher_count,
                "sampled": r.sampled,
                "cst_candidates": r.cst_candidates,
                "al_candidates": r.al_candidates,
                "decided": r.decided,
                "added": r.added,
                "accuracy": r.test_accuracy,
                "mean_recall": r.test_mean_recall,
                "mean_precision": metrics.get("mean_precision", 0.0),
                "recall": metrics.get("recall", {}),
                "precision": metrics.get("precision", {}),
                "confusion": metrics.get("confusion", []),
                "classes": metrics.get("classes", []),
                "labelled_per_class": metrics.get("labelled_per_class", {}),
                "additions": metrics.get("additions", {}),
                "rejected": metrics.get("rejected", 0),
                "wrong_pseudo_label_fraction": metrics.get("wrong_pseudo_label_fraction"),
                "model_version": r.model_version,
                "simulated_expert_seconds": _round_seconds(metrics, expert.assumed_seconds),
            }
        )
    state = orchestrator_pb2.CampaignState.Name(campaign.state)
    return {
        "method": method,
        "campaign_id": campaign.id,
        "state": state,
        "error": campaign.error,
        "seconds": round(time.perf_counter() - started, 1),
        "expert": expert.stats.to_json(),
        "rounds": rounds,
    }


def _round_seconds(metrics: dict, assumed: dict[str, float]) -> float:
    """The simulated expert time a round's decisions stand for (same rates as the expert)."""
    additions = metrics.get("additions", {})
    seconds = sum(
        assumed.get(action, 0.0) * sum(per_class.values())
        for action, per_class in additions.items()
    )
    return seconds + assumed["too_difficult"] * metrics.get("rejected", 0)


async def run_experiment(
    clients: ServiceClients, store: ObjectStore, admin_token: str, options: ExperimentOptions
) -> dict:
    admin = (("authorization", f"Bearer {admin_token}"),)
    dataset, taxonomy, truth, classes = await import_folder(clients, store, options)
    results = []
    for key in options.methods:
        results.append(
            await run_method(
                clients, admin, dataset, taxonomy, truth, classes, METHODS[key], options
            )
        )
    return {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "dataset": dataset,
        "taxonomy": taxonomy,
        "cells": len(truth),
        "methods": results,
    }
