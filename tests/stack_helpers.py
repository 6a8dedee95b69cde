"""The local stack as a test fixture (every service a process on loopback, real PostgreSQL,
S3 over HTTP) and a helper that starts a small CST+AL campaign on it. Used by the e2e and the
browser tests; each test module that imports ``running_stack`` gets its own stack."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from PIL import Image

from marrowscope.cli import stack
from marrowscope.cli.bootstrap import ensure_model
from marrowscope.cli.datasets import import_synthetic
from marrowscope.cli.simulated_expert import SimulatedExpert
from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import create_database, drop_database
from marrowscope.core.objectstore import S3ObjectStore
from marrowscope.core.settings import ObjectStoreSettings
from marrowscope.core.synthetic import iter_cells, make_field
from marrowscope.v1 import curation_pb2, orchestrator_pb2

from .conftest import free_port_block


@contextlib.contextmanager
def local_stack(
    pg_admin_dsn: str,
    s3_endpoint: str,
    home: Path,
    pg_address: str = "",
    extra_env: dict[str, str] | None = None,
) -> Iterator[dict]:
    """Start the local stack on a fresh database and bucket; the context of its tests.
    ``pg_address`` (host:port): how the services reach PostgreSQL, when not directly (a
    proxy a test can cut); ``s3_endpoint`` likewise. ``dsn`` in the context is always direct.
    ``extra_env``: more settings for every service."""
    db = f"marrowscope_e2e_{uuid.uuid4().hex[:8]}"
    create_database(pg_admin_dsn, db)
    dsn = psycopg.conninfo.make_conninfo(pg_admin_dsn, dbname=db)
    services_dsn = dsn
    if pg_address:
        host, port = pg_address.rsplit(":", 1)
        services_dsn = psycopg.conninfo.make_conninfo(dsn, host=host, port=port)
    store_env = {
        "MARROWSCOPE_STORE_BACKEND": "s3",
        "MARROWSCOPE_STORE_ENDPOINT": s3_endpoint,
        "MARROWSCOPE_STORE_ACCESS_KEY": "test",
        "MARROWSCOPE_STORE_SECRET_KEY": "testsecret",
        "MARROWSCOPE_STORE_BUCKET": f"e2e-{uuid.uuid4().hex[:8]}",
        "MARROWSCOPE_ORCHESTRATOR_REVIEW_POLL_SECONDS": "0.5",
        "MARROWSCOPE_TRAINING_TORCH_THREADS": "2",
        **(extra_env or {}),
    }
    saved = {k: os.environ.get(k) for k in store_env}
    os.environ.update(store_env)
    paths = stack.StackPaths(home)
    try:
        base = free_port_block(len(stack.PORT_NAMES))  # services, curation HTTP, metrics
        state = stack.up(paths, dsn=services_dsn, port_base=base)
        store = S3ObjectStore(ObjectStoreSettings())
        peers = stack.peer_settings(state)  # the operator's certificate, as the CLI uses

        async def bootstrap() -> str:
            clients = ServiceClients(peers)
            try:
                return await ensure_model(clients, store, per_class=10, epochs=3, quiet=True)
            finally:
                await clients.close()

        model = asyncio.run(bootstrap())
        yield {
            "paths": paths,
            "state": state,
            "store": store,
            "peers": peers,
            "dsn": dsn,
            "model": model,
            "secrets": stack.load_secrets(paths),
        }
    finally:
        stack.down(paths)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        drop_database(pg_admin_dsn, db)


@pytest.fixture(scope="module")
def running_stack(pg_admin_dsn: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with local_stack(pg_admin_dsn, s3_endpoint, tmp_path_factory.mktemp("stack")) as ctx:
        yield ctx


async def start_campaign(
    ctx: dict,
    clients: ServiceClients,
    dataset: str,
    expert_name: str,
    seed: int,
    parameters: orchestrator_pb2.CampaignParameters,
    seed_expert: int = 0,
    **expert_options: float,
) -> tuple[orchestrator_pb2.Campaign, SimulatedExpert]:
    """Import 8 synthetic cells per class as ``dataset``, create an expert user, create and
    start a CST+AL campaign on it; returns the campaign and a simulated expert for it."""
    truth = await import_synthetic(iter_cells(8, seed=seed), 8 * 17, dataset, ctx["store"], clients)
    admin = (("authorization", f"Bearer {ctx['secrets']['admin_token']}"),)
    user = await clients.curation.CreateUser(
        curation_pb2.CreateUserRequest(name=expert_name, role=curation_pb2.ROLE_EXPERT),
        metadata=admin,
    )
    campaign = await clients.orchestrator.CreateCampaign(
        orchestrator_pb2.CreateCampaignRequest(
            request_id=dataset,
            method=orchestrator_pb2.CAMPAIGN_METHOD_CST_AL,
            dataset=dataset,
            parameters=parameters,
        )
    )
    await clients.orchestrator.StartCampaign(
        orchestrator_pb2.CampaignIdRequest(campaign_id=campaign.id)
    )
    expert = SimulatedExpert(
        stub=clients.curation,
        token=user.token,
        truth={c: code for c, (_, code) in truth.items()},
        classes=sorted({code for _, code in truth.values()}),
        seed=seed_expert,
        **expert_options,  # type: ignore[arg-type]
    )
    return campaign, expert


async def finish_campaign(
    clients: ServiceClients,
    campaign: orchestrator_pb2.Campaign,
    expert: SimulatedExpert,
    timeout: float = 240,
) -> orchestrator_pb2.Campaign:
    """Let the simulated expert work the campaign's review tasks until the campaign ends;
    the campaign as it ended."""
    done = asyncio.Event()
    worker = asyncio.create_task(expert.work_until(done, campaign.id, idle_s=0.2))
    async for update in clients.orchestrator.WatchCampaign(
        orchestrator_pb2.CampaignIdRequest(campaign_id=campaign.id), timeout=timeout
    ):
        campaign = update
    done.set()
    await worker
    return campaign


async def poll_until_campaign_ends(
    clients: ServiceClients, campaign: orchestrator_pb2.Campaign, timeout_s: float
) -> orchestrator_pb2.Campaign:
    """The campaign once it completed or failed (or as it stood at ``timeout_s``), asking every
    0.5 s; an orchestrator that is being restarted is waited for."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            campaign = await clients.orchestrator.GetCampaign(
                orchestrator_pb2.CampaignIdRequest(campaign_id=campaign.id), timeout=5
            )
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.5)  # the orchestrator is being restarted
            continue
        if campaign.state in (
            orchestrator_pb2.CAMPAIGN_STATE_COMPLETED,
            orchestrator_pb2.CAMPAIGN_STATE_FAILED,
        ):
            break
        await asyncio.sleep(0.5)
    return campaign


def lis_client(ctx: dict) -> httpx.Client:
    """An HTTP client of the stack's LIS API with its bootstrap key (every scope)."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{ctx['state']['ports']['lis_api']}",
        headers={"Authorization": f"Bearer {ctx['secrets']['lis_api_key']}"},
        timeout=60,
    )


def field_jpeg(index: int, seed: int = 5) -> bytes:
    """A generated smear field as the microscope's JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(make_field(index, seed=seed).rgb).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()
