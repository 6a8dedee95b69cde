"""Run the LIS API: ``python -m marrowscope.lis_api``."""

import sys

import uvicorn
from prometheus_client import REGISTRY
from pydantic import ValidationError

from marrowscope.core.clients import ServiceClients
from marrowscope.core.db import open_pool
from marrowscope.core.metrics import PoolStats
from marrowscope.core.objectstore import open_store
from marrowscope.core.runtime import prepare_process
from marrowscope.core.settings import DatabaseSettings, ObjectStoreSettings, PeerSettings

from .app import create_app
from .settings import LisApiSettings


def main() -> None:
    prepare_process("lis_api", LisApiSettings)
    try:
        settings = LisApiSettings()
    except ValidationError as exc:  # say what is wrong and how to fix it, no traceback
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        sys.exit(f"the LIS API does not start: {problems}")
    try:
        clients = ServiceClients(PeerSettings())
    except ValueError as exc:  # TLS to the peers half set or missing
        sys.exit(f"the LIS API does not start: {exc}")
    pool = open_pool(DatabaseSettings(), name="lis_api")
    REGISTRY.register(PoolStats(pool))
    store = open_store(ObjectStoreSettings())
    app = create_app(settings, store, clients, pool)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            timeout_graceful_shutdown=5,
        )
    finally:
        pool.close()
        store.close()  # the S3 store's threads and sockets


if __name__ == "__main__":
    main()
