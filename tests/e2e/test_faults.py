"""Fault injection on the local stack (loopback only, bounded): SIGKILL of each service during
LIS analyses and during a campaign, PostgreSQL and the S3 endpoint cut and restored. Each ends
with nothing lost and nothing duplicated, callers are told which peer is down within 5 s, and
the system recovers without restarting anything but the killed process.

The services reach PostgreSQL and S3 through TCP proxies (``tests/tcp_proxy.py``) that a test
cuts and restores: every open connection is reset and new ones are refused, as when the
server restarts, while the data behind it survives. Figures (time to fail fast, time to
recover) are printed; ``pytest -s tests/e2e/test_faults.py`` shows them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from marrowscope.cli import stack
from marrowscope.core.clients import ServiceClients
from marrowscope.v1 import orchestrator_pb2

from ..stack_helpers import (
    field_jpeg,
    lis_client,
    local_stack,
    poll_until_campaign_ends,
    start_campaign,
)
from ..tcp_proxy import TcpProxy

pytestmark = pytest.mark.e2e
FAIL_FAST_S = 5.0


@pytest.fixture(scope="module")
def faulty_stack(
    pg_admin_dsn: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    pg = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)
    pg_proxy = TcpProxy(str(pg.get("host") or "127.0.0.1"), int(pg.get("port") or 5432)).start()
    s3_host, s3_port = s3_endpoint.rsplit(":", 1)
    s3_proxy = TcpProxy(s3_host, int(s3_port)).start()
    home = tmp_path_factory.mktemp("faults")
    try:
        json_logs = {"MARROWSCOPE_LOG_FORMAT": "json"}  # as the chart runs them
        with local_stack(pg_admin_dsn, s3_proxy.address, home, pg_proxy.address, json_logs) as ctx:
            yield {**ctx, "pg_proxy": pg_proxy, "s3_proxy": s3_proxy}
    finally:
        pg_proxy.close()
        s3_proxy.close()


def kill(ctx: dict, service: str) -> None:
    state = stack.read_state(ctx["paths"])
    assert state is not None
    os.kill(state["pids"][service], signal.SIGKILL)


def new_specimen(client: httpx.Client, fields: int = 2) -> str:
    specimen = client.post(
        "/v1/specimens", json={"accession_number": f"F-{uuid.uuid4().hex[:8]}"}
    ).json()
    files = [("files", (f"f{i}.jpg", field_jpeg(i), "image/jpeg")) for i in range(fields)]
    uploaded = client.post(f"/v1/specimens/{specimen['id']}/images", files=files)
    assert uploaded.status_code == 201, uploaded.text
    return str(specimen["id"])


def start_analysis(client: httpx.Client, sid: str) -> str:
    started = client.post(f"/v1/specimens/{sid}/analyses", headers={"Idempotency-Key": sid})
    assert started.status_code == 202, started.text
    return str(started.headers["location"])


def wait_job(ctx: dict, job_url: str, timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    job: dict = {}
    with lis_client(ctx) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(job_url)
                job = response.json() if response.status_code == 200 else job
            except httpx.TransportError:  # the API is being restarted
                pass
            if job.get("state") in ("succeeded", "failed"):
                return job
            time.sleep(0.3)
    return job


def until(predicate_s: object, timeout_s: float) -> float:
    """Seconds until ``predicate_s()`` is true (or ``timeout_s`` + 1 when it never is)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate_s():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.1)
    return timeout_s + 1


def peer_reported_down(ctx: dict, service: str) -> bool:
    """/readyz names ``service`` as not serving (503 for a peer analyses need; curation, which
    only expert review needs, is reported while the API stays ready)."""
    try:
        with lis_client(ctx) as client:
            ready = client.get("/readyz", timeout=FAIL_FAST_S)
    except httpx.TransportError:
        return False
    required = service != "curation"
    return ready.status_code == (503 if required else 200) and (
        ready.json()["services"][service] != "SERVING"
    )


def check_specimen_consistent(ctx: dict, sid: str, job: dict) -> None:
    """One preliminary report, cells counted once, every stored image present."""
    assert job.get("state") == "succeeded", job
    with psycopg.connect(ctx["dsn"]) as conn:
        reports = conn.execute(
            "SELECT version FROM reports WHERE specimen_id = %s ORDER BY version", (sid,)
        ).fetchall()
        jobs = conn.execute(
            "SELECT count(*) FROM analysis_jobs WHERE specimen_id = %s", (sid,)
        ).fetchone()
        segmented = conn.execute(
            """SELECT count(*), count(DISTINCT c.id) FROM cells c
               JOIN field_images f ON f.id = c.field_image_id
               JOIN specimen_images s ON s.object_key = f.object_key WHERE s.specimen_id = %s""",
            (sid,),
        ).fetchone()
        keys = [
            r[0]
            for r in conn.execute(
                "SELECT object_key FROM specimen_images WHERE specimen_id = %s", (sid,)
            ).fetchall()
        ]
    assert [r[0] for r in reports] == [1], reports
    assert jobs is not None and jobs[0] == 1
    assert segmented is not None and segmented[0] == segmented[1] == job["progress"]["cells_found"]
    assert keys and all(ctx["store"].exists(k) for k in keys)


def job_row(ctx: dict, job_url: str) -> dict:
    with lis_client(ctx) as client:
        return dict(client.get(job_url).json())


@pytest.mark.parametrize("victim", ["segmentation", "inference", "curation", "lis_api"])
def test_lis_analysis_survives_kill_9(faulty_stack: dict, victim: str) -> None:
    """A peer killed before the analysis starts: the API names it within 5 s and the job
    waits (segmentation, inference) or goes on without it (curation, needed only for expert
    review); the API itself killed right after accepting the job: the restarted API finishes
    it. Then one report, each cell once, every image stored."""
    ctx = faulty_stack
    with lis_client(ctx) as client:
        sid = new_specimen(client)
        if victim != "lis_api":
            kill(ctx, victim)
            told = until(lambda: peer_reported_down(ctx, victim), FAIL_FAST_S)
            print(f"\nkill -9 {victim}: /readyz names it after {told:.2f} s")
            assert told <= FAIL_FAST_S
        job_url = start_analysis(client, sid)
    killed_at = time.monotonic()
    if victim == "lis_api":
        kill(ctx, victim)
    elif victim == "curation":
        job = wait_job(ctx, job_url, timeout_s=60)  # analyses do not need curation
        assert job.get("state") == "succeeded", job
    else:
        waiting = until(lambda: victim in (job_row(ctx, job_url).get("waiting_reason") or ""), 30)
        print(f"kill -9 {victim}: the job waits, naming it, after {waiting:.2f} s")
        assert waiting <= 30
    stack.restart_service(ctx["paths"], victim)
    job = wait_job(ctx, job_url)
    print(f"kill -9 {victim}: analysis done {time.monotonic() - killed_at:.1f} s after the kill")
    check_specimen_consistent(ctx, sid, job)


def test_postgres_cut_mid_analysis(faulty_stack: dict) -> None:
    ctx = faulty_stack
    with lis_client(ctx) as client:
        sid = new_specimen(client)
        job_url = start_analysis(client, sid)
        time.sleep(0.3)  # let the worker claim it
        ctx["pg_proxy"].cut()
        with psycopg.connect(ctx["dsn"]) as conn:  # direct, not through the proxy
            at_cut = conn.execute(
                "SELECT state, images_done FROM analysis_jobs WHERE specimen_id = %s", (sid,)
            ).fetchone()
        print(f"\nPostgreSQL cut with the job {at_cut}")
        try:
            started = time.monotonic()
            response = client.get(f"/v1/specimens/{sid}", timeout=30)
            elapsed = time.monotonic() - started
            print(f"PostgreSQL cut: {response.status_code} after {elapsed:.2f} s")
            assert response.status_code == 503, response.text
            assert response.json()["service"] == "database"
            assert elapsed <= FAIL_FAST_S
            time.sleep(2)  # down for a while, as a restart is
        finally:
            ctx["pg_proxy"].restore()
        restored_at = time.monotonic()
        recovered = until(lambda: client.get(f"/v1/specimens/{sid}").status_code == 200, 30)
        print(f"PostgreSQL back: the API answers after {recovered:.2f} s")
        assert recovered <= 30
    job = wait_job(ctx, job_url)
    print(f"PostgreSQL back: analysis done after {time.monotonic() - restored_at:.1f} s")
    check_specimen_consistent(ctx, sid, job)


def test_s3_endpoint_cut_and_restored(faulty_stack: dict) -> None:
    ctx = faulty_stack
    with lis_client(ctx) as client:
        sid = client.post("/v1/specimens", json={"accession_number": "F-S3"}).json()["id"]
        with psycopg.connect(ctx["dsn"]) as conn:
            images_before = conn.execute("SELECT count(*) FROM specimen_images").fetchone()
        ctx["s3_proxy"].cut()
        try:
            started = time.monotonic()
            response = client.post(
                f"/v1/specimens/{sid}/images",
                files=[("files", ("f.jpg", field_jpeg(3), "image/jpeg"))],
                timeout=60,
            )
            elapsed = time.monotonic() - started
            print(f"\nS3 cut: upload answered {response.status_code} after {elapsed:.2f} s")
            assert response.status_code == 503, response.text
            assert "object store" in response.json()["detail"]
            assert elapsed <= FAIL_FAST_S
        finally:
            ctx["s3_proxy"].restore()
        with psycopg.connect(ctx["dsn"]) as conn:  # the refused upload left no row behind
            assert conn.execute("SELECT count(*) FROM specimen_images").fetchone() == images_before
        files = [("files", (f"f{i}.jpg", field_jpeg(i), "image/jpeg")) for i in range(2)]
        uploaded = client.post(f"/v1/specimens/{sid}/images", files=files)
        assert uploaded.status_code == 201, uploaded.text
        job_url = start_analysis(client, sid)
    check_specimen_consistent(ctx, sid, wait_job(ctx, job_url))


def test_campaign_survives_kill_9_of_training_and_inference(faulty_stack: dict) -> None:
    """kill -9 the training and the inference service while a campaign trains and scores:
    it completes, with every acknowledged decision stored exactly once."""
    ctx = faulty_stack
    paths = ctx["paths"]
    kills: list[str] = []

    async def chaos(stop: asyncio.Event) -> None:
        for service in ("training", "inference", "training", "inference"):
            await asyncio.sleep(3.0)
            if stop.is_set():
                return
            kill(ctx, service)
            kills.append(service)
            await asyncio.to_thread(stack.restart_service, paths, service)

    async def scenario() -> orchestrator_pb2.Campaign:
        clients = ServiceClients(ctx["peers"])
        try:
            campaign, expert = await start_campaign(
                ctx,
                clients,
                "faults-campaign",
                "faults-expert",
                seed=44,
                parameters=orchestrator_pb2.CampaignParameters(
                    initial_per_class=2,
                    validation_per_class=1,
                    test_per_class=1,
                    sample_size=40,
                    rounds=2,
                    epochs=1,
                    input_size=32,
                    width=8,
                    cst_threshold=0.15,
                ),
                batch=7,
                seed_expert=4,
            )
            stop = asyncio.Event()
            worker = asyncio.create_task(expert.work_until(stop, campaign.id, idle_s=0.2))
            killer = asyncio.create_task(chaos(stop))
            campaign = await poll_until_campaign_ends(clients, campaign, 420)
            stop.set()
            await killer
            await worker
            ctx["acknowledged"] = list(expert.acknowledged)
            return campaign
        finally:
            await clients.close()

    started = time.monotonic()
    campaign = asyncio.run(scenario())
    print(
        f"\ncampaign with {len(kills)} kills ({kills}) ended in {time.monotonic() - started:.0f} s"
    )
    assert kills, "nothing was killed"
    assert campaign.state == orchestrator_pb2.CAMPAIGN_STATE_COMPLETED, campaign.error
    with psycopg.connect(ctx["dsn"]) as conn:
        stored = [
            r[0]
            for r in conn.execute(
                """SELECT d.client_decision_id FROM decisions d
                   JOIN review_tasks t ON t.id = d.task_id
                   WHERE t.queue_id = %s AND d.action <> 'undo'""",
                (campaign.id,),
            ).fetchall()
        ]
        labels_per_cell = conn.execute(
            """SELECT coalesce(max(n), 1) FROM (SELECT count(*) AS n FROM labels
               WHERE campaign_id = %s AND source = 'expert' GROUP BY cell_id) x""",
            (campaign.id,),
        ).fetchone()
        # Each round trained once (its request id is its round), to the end, into its model.
        rounds = conn.execute(
            """SELECT count(*), count(j.id) FILTER (WHERE j.state = 'succeeded'),
                      count(r.model_version_id)
               FROM rounds r LEFT JOIN training_jobs j ON j.request_id = 'round:' || r.id
               WHERE r.campaign_id = %s""",
            (campaign.id,),
        ).fetchone()
    assert sorted(stored) == sorted(ctx["acknowledged"])
    assert len(stored) == len(set(stored)) and labels_per_cell == (1,)
    assert rounds == (2, 2, 2)


def test_every_log_line_is_json_with_the_service_and_request_ids(faulty_stack: dict) -> None:
    """With MARROWSCOPE_LOG_FORMAT=json, every line every service wrote through all the faults
    above parses as JSON, names its service, and requests carry their id."""
    logs = sorted(faulty_stack["paths"].logs.glob("*.log"))
    assert {p.stem for p in logs} >= set(stack.SERVICES)
    lines = 0
    with_request_id = 0
    for path in logs:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{path.name}:{number} is not JSON: {line[:200]}")
            assert entry["service"] and entry["level"] and "message" in entry
            lines += 1
            with_request_id += entry["request_id"] != "-"
    print(f"\n{lines} log lines, {with_request_id} with a request id")
    assert lines > 50 and with_request_id > 0
