"""The experts' workbench with 5,000 open review tasks: latency of what a page load and a page
of decisions cost on the curation HTTP API (a real curation process on loopback).

Queues, progress, a CST page claim (50 tasks), its 50 thumbnails (server-sized, 128 px), and
the confirm-page request (50 decisions); p50 / p99 over repeated pages until the queue is
worked through. Writes bench/results/curation_workbench.json.
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from local_services import running_service, throwaway_database  # bench/ helper
from PIL import Image

from marrowscope.core import cell_registry
from marrowscope.core.db import open_pool
from marrowscope.core.objectstore import open_store
from marrowscope.core.settings import DatabaseSettings, ObjectStoreSettings
from marrowscope.curation.service import (
    CurationService,
    NewTask,
    QueueInfo,
    ReviewBatchRequest,
    User,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TASKS = 5000
PAGE = 50
TOKEN = "bench-admin-token-0123456789"


def crop(seed: int) -> bytes:
    rgb = np.zeros((282, 282, 3), np.uint8)
    rng = np.random.default_rng(seed)
    rgb[80:200, 80:200] = rng.integers(0, 255, (120, 120, 3))
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(values), q)) * 1000, 1)


def main() -> int:
    with throwaway_database() as dsn:
        work, campaign = seed(dsn)
        port, grpc_port = 18181, 18154
        env = {
            **os.environ,
            "MARROWSCOPE_DB_DSN": dsn,
            "MARROWSCOPE_STORE_ROOT": str(work / "store"),
            "MARROWSCOPE_CURATION_PORT": str(grpc_port),
            "MARROWSCOPE_CURATION_HTTP_PORT": str(port),
            "MARROWSCOPE_CURATION_ADMIN_TOKEN": TOKEN,
        }
        url = f"http://127.0.0.1:{port}"
        with running_service("marrowscope.curation", env, url + "/healthz", work / "curation.log"):
            measure(url, campaign)
    return 0


def seed(dsn: str) -> tuple[Path, uuid.UUID]:
    """5,000 open CST tasks over 50 distinct crops; returns the store folder and campaign."""
    work = Path(tempfile.mkdtemp(prefix="curation-bench-"))
    store = open_store(ObjectStoreSettings(root=work / "store"))
    pool = open_pool(DatabaseSettings(dsn=dsn))
    campaign, round_id = uuid.uuid4(), uuid.uuid4()
    keys = [store.put_bytes(f"cells/bench-{i}.png", crop(i), "image/png").key for i in range(PAGE)]
    classes = ["SEG", "BAND", "MC", "LY", "PCEB"]
    with pool.connection() as conn:
        cells = [uuid.uuid4() for _ in range(TASKS)]
        registered = [
            cell_registry.register_cell(
                conn,
                cell_registry.NewCell(
                    origin_key=f"bench:{cell}", object_key=keys[i % PAGE], sha256="x"
                ),
            )[0]
            for i, cell in enumerate(cells)
        ]
    tasks = [
        NewTask(
            str(c),
            keys[i % PAGE],
            "CST",
            classes[i % len(classes)],
            [(classes[i % len(classes)], 0.97)],
        )
        for i, c in enumerate(registered)
    ]
    batch = ReviewBatchRequest(
        queue_id=str(campaign),
        batch_id=str(round_id),
        requester="campaign_round",
        round_number=1,
        queue=QueueInfo(name="bench", kind="CST", taxonomy="paper17", dataset="bench"),
    )
    CurationService(pool).create_tasks(User("bench", "service"), batch, tasks)
    pool.close()

    return work, campaign


def measure(url: str, campaign: uuid.UUID) -> None:
    timings: dict[str, list[float]] = {
        k: [] for k in ("queues", "progress", "claim_page", "thumbnails_page", "confirm_page")
    }
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as http:
        decided = 0
        while decided < TASKS:
            for key, call in (
                ("queues", lambda: http.get("/api/v1/campaigns")),
                ("progress", lambda: http.get(f"/api/v1/campaigns/{campaign}/progress")),
            ):
                started = time.perf_counter()
                call().raise_for_status()
                timings[key].append(time.perf_counter() - started)
            started = time.perf_counter()
            page = http.post(
                f"/api/v1/campaigns/{campaign}/claims", json={"kind": "CST", "limit": PAGE}
            ).json()
            timings["claim_page"].append(time.perf_counter() - started)
            if not page["tasks"]:
                break
            started = time.perf_counter()
            for task in page["tasks"]:
                http.get(task["image_url"], params={"size": 128}).raise_for_status()
            timings["thumbnails_page"].append(time.perf_counter() - started)
            started = time.perf_counter()
            reply = http.post(
                "/api/v1/decisions",
                json={
                    "decisions": [
                        {
                            "client_decision_id": str(uuid.uuid4()),
                            "task_id": t["id"],
                            "action": "confirm",
                        }
                        for t in page["tasks"]
                    ]
                },
            ).json()
            timings["confirm_page"].append(time.perf_counter() - started)
            assert all(r["ok"] for r in reply["results"])
            decided += len(page["tasks"])
    results = {
        "open_tasks_at_start": TASKS,
        "page": PAGE,
        "pages": len(timings["confirm_page"]),
        **{
            k: {
                "p50_ms": ms(v, 50),
                "p99_ms": ms(v, 99),
                "mean_ms": round(statistics.mean(v) * 1000, 1),
            }
            for k, v in timings.items()
        },
    }
    for key in timings:
        print(
            f"{key:>16}: p50 {results[key]['p50_ms']:7.1f} ms  p99 {results[key]['p99_ms']:7.1f} ms"
        )
    print(f"worked through {decided} tasks in {results['pages']} pages of {PAGE}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "curation_workbench.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
