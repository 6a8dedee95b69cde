"""Memory of the LIS API under decompression bombs: 20 concurrent uploads of a 6300x6300 PNG
that compresses to about 130 KB (119 MB of pixels once decoded), then one request carrying
20 of them. Prints the API process's resident memory (peak per phase, sampled every 20 ms,
and the kernel's high-water mark) against the 600 MB target, and what the API answered.

A real API process (uvicorn) on a throwaway PostgreSQL database and a folder object store.
Writes bench/results/lis_upload_memory.json.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from local_services import running_service, throwaway_database  # bench/ helper
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KEY = "bench-key"
TARGET_MB = 600
SIDE = 6300  # 39.7 M pixels: under the 40 M pixel limit, so each bomb is decoded in full


def png_bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (236, 224, 230)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (the peak so far) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def __enter__(self) -> PeakSampler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, memory_mb(self.pid, "VmRSS"))
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()


async def concurrent_uploads(url: str, sid: str, bodies: list[list[bytes]]) -> Counter[int]:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=300
    ) as client:

        async def upload(files: list[bytes]) -> int:
            parts = [("files", (f"bomb{i}.png", f, "image/png")) for i, f in enumerate(files)]
            response = await client.post(f"/v1/specimens/{sid}/images", files=parts)
            return response.status_code

        return Counter(await asyncio.gather(*(upload(b) for b in bodies)))


def main() -> int:
    bomb = png_bomb()
    print(
        f"PNG bomb: {SIDE}x{SIDE}, {len(bomb) / 1024:.0f} KB, {SIDE * SIDE * 3 / 1e6:.0f} MB decoded"
    )
    workdir = Path(tempfile.mkdtemp(prefix="lis-mem-"))
    port = 18081
    url = f"http://127.0.0.1:{port}"
    results: dict[str, object] = {"bomb_bytes": len(bomb), "target_mb": TARGET_MB}
    with throwaway_database() as dsn:
        env = {
            **os.environ,
            "MARROWSCOPE_DB_DSN": dsn,
            "MARROWSCOPE_STORE_BACKEND": "fs",
            "MARROWSCOPE_STORE_ROOT": str(workdir / "store"),
            "MARROWSCOPE_LIS_PORT": str(port),
            "MARROWSCOPE_LIS_RATE_LIMIT_PER_S": "1000000",
            "MARROWSCOPE_LIS_RATE_LIMIT_BURST": "1000000",
            "MARROWSCOPE_LIS_API_KEY_HASHES": json.dumps(
                [hashlib.sha256(KEY.encode()).hexdigest()]
            ),
        }
        log = workdir / "lis.log"
        with running_service("marrowscope.lis_api", env, url + "/healthz", log) as server:
            headers = {"Authorization": f"Bearer {KEY}"}
            sid = httpx.post(
                url + "/v1/specimens", json={"accession_number": "MEM-1"}, headers=headers
            ).json()["id"]
            idle = memory_mb(server.pid, "VmRSS")
            print(f"API idle: {idle:.0f} MB resident")
            results["idle_mb"] = round(idle, 1)
            for phase, bodies in [
                ("20 concurrent uploads of one bomb", [[bomb]] * 20),
                ("one upload of 20 bombs", [[bomb] * 20]),
            ]:
                started = time.perf_counter()
                with PeakSampler(server.pid) as sampler:
                    statuses = asyncio.run(concurrent_uploads(url, sid, bodies))
                seconds = time.perf_counter() - started
                verdict = "under" if sampler.peak < TARGET_MB else "OVER"
                print(
                    f"{phase}: peak {sampler.peak:.0f} MB resident ({verdict} {TARGET_MB} MB), "
                    f"answers {dict(statuses)}, {seconds:.1f} s"
                )
                results[phase] = {
                    "peak_mb": round(sampler.peak, 1),
                    "statuses": dict(statuses),
                    "seconds": round(seconds, 1),
                }
            high_water = memory_mb(server.pid, "VmHWM")
            print(f"high-water mark of the API process: {high_water:.0f} MB")
            results["high_water_mb"] = round(high_water, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lis_upload_memory.json").write_text(json.dumps(results, indent=2))
    return 0 if high_water < TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
