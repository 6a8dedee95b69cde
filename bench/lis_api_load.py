"""Load on the LIS API over loopback: requests/s and p50 / p99 latency for GET report and for
POST upload of a 704x704 field image.

A real API process (uvicorn, one worker) on a throwaway PostgreSQL database and a folder
object store; the load comes from this process with httpx (asyncio), so on a 2-core machine
client and server share the cores. The report is a real differential of 500 cells; the field
is a real TXL-PBC smear resized to 704x704 (synthetic when ../shared/data is absent).
Writes bench/results/lis_api_load.json.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
from local_services import running_service, throwaway_database  # bench/ helper
from PIL import Image

from marrowscope.core.db import open_pool
from marrowscope.core.settings import DatabaseSettings
from marrowscope.core.synthetic import make_field
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.lis_api.report import ClassifiedCell, Thresholds, build_differential
from marrowscope.lis_api.repository import LisRepository

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MARROWSCOPE_DATA_DIR", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"


def field_704() -> tuple[bytes, str]:
    fields = sorted((DATA / "txl-pbc" / "test" / "images").glob("*.jpg"))
    if fields:
        image, source = (
            Image.open(fields[0]).convert("RGB").resize((704, 704)),
            f"TXL-PBC {fields[0].name}",
        )
    else:
        image, source = Image.fromarray(make_field(0, seed=1).rgb).resize((704, 704)), "synthetic"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue(), source


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) * 1000.0


async def hammer(url: str, requests: int, concurrency: int, send) -> dict[str, float]:  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
        limits=httpx.Limits(max_connections=concurrency),
    ) as client:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                queue.get_nowait()
                started = time.perf_counter()
                response = await send(client)
                latencies.append(time.perf_counter() - started)
                failures += response.status_code >= 400

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "requests": requests,
        "concurrency": concurrency,
        "failures": failures,
        "requests_per_s": round(requests / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
    }


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="lis-bench-"))
    port = 18080
    url = f"http://127.0.0.1:{port}"
    with throwaway_database() as dsn:
        env = {
            **os.environ,
            "MARROWSCOPE_DB_DSN": dsn,
            "MARROWSCOPE_STORE_ROOT": str(workdir / "store"),
            "MARROWSCOPE_LIS_PORT": str(port),
            "MARROWSCOPE_LIS_RATE_LIMIT_PER_S": "1000000",
            "MARROWSCOPE_LIS_RATE_LIMIT_BURST": "1000000",
            "MARROWSCOPE_LIS_MAX_FILES_PER_REQUEST": "20",
            "MARROWSCOPE_LIS_API_KEY_HASHES": json.dumps(
                [hashlib.sha256(KEY.encode()).hexdigest()]
            ),
        }
        with running_service("marrowscope.lis_api", env, url + "/healthz", workdir / "lis.log"):
            measure(url, dsn)
    return 0


def measure(url: str, dsn: str) -> None:
    field, source = field_704()
    headers = {"Authorization": f"Bearer {KEY}"}
    sid = httpx.post(
        url + "/v1/specimens", json={"accession_number": "BENCH-1"}, headers=headers
    ).json()["id"]
    httpx.post(
        f"{url}/v1/specimens/{sid}/images",
        files=[("files", ("f.jpg", field, "image/jpeg"))],
        headers=headers,
    ).raise_for_status()
    # A real 500-cell differential as the report (the analysis itself is not under test).
    pool = open_pool(DatabaseSettings(dsn=dsn, apply_migrations=False))
    store = LisRepository(pool)
    client_id = f"bootstrap-{hashlib.sha256(KEY.encode()).hexdigest()[:12]}"
    job, _ = store.create_job(client_id, sid, None)
    rng = np.random.default_rng(0)
    codes = load_taxonomy("paper17").codes
    cells = [
        ClassifiedCell(
            str(uuid.uuid4()),
            str(rng.choice(codes)),
            float(rng.uniform(0.3, 1)),
            float(rng.uniform(0, 1)),
        )
        for _ in range(500)
    ]
    body = build_differential(cells, load_taxonomy("paper17"), Thresholds())
    body.update(model_version="bench", algorithm_versions=["stain-v3"], images_analysed=1)
    store.add_report(sid, job["id"], "preliminary", body, actor="bench")
    pool.close()

    results = {"field_source": source, "field_bytes": len(field)}
    print(f"field: {source}, 704x704 JPEG, {len(field)} bytes")
    for label, requests, concurrency, send in [
        ("get_report_json", 2000, 16, lambda c: c.get(f"/v1/specimens/{sid}/report")),
        (
            "get_report_fhir",
            1000,
            16,
            lambda c: c.get(f"/v1/specimens/{sid}/report", params={"format": "fhir"}),
        ),
        (
            "post_upload_704",
            300,
            8,
            lambda c: c.post(
                f"/v1/specimens/{sid}/images", files=[("files", ("f.jpg", field, "image/jpeg"))]
            ),
        ),
    ]:
        figures = asyncio.run(hammer(url, requests, concurrency, send))
        results[label] = figures
        print(
            f"{label:>16}: {figures['requests_per_s']:7.1f} req/s  p50 {figures['p50_ms']:6.1f} ms  "
            f"p99 {figures['p99_ms']:6.1f} ms  ({figures['requests']} requests, "
            f"{figures['concurrency']} concurrent, {figures['failures']} failed)"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lis_api_load.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
