"""Run the curation service: ``python -m marrowscope.curation``.

One process serves the gRPC API and, beside it on ``MARROWSCOPE_CURATION_HTTP_PORT``, the
HTTP API with the experts' web UI (uvicorn in the same event loop).
"""

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from marrowscope.core.clients import ServiceClients
from marrowscope.core.runtime import (
    open_resources,
    prepare_process,
    serve,
)
from marrowscope.v1 import curation_pb2_grpc

from .service import CurationService, metric_gauges
from .servicer import SERVICE_NAME, CurationServicer
from .settings import CurationSettings
from .web import create_web_app
from .workbench import Workbench


class EmbeddedUvicorn(uvicorn.Server):
    """uvicorn inside the gRPC service's event loop: the gRPC runner owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def main() -> None:
    prepare_process("curation", CurationSettings)
    settings = CurationSettings()
    resources = open_resources()
    service = CurationService(resources.pool, settings.default_lease_seconds, settings.max_claim)
    if settings.admin_token.get_secret_value():
        service.ensure_user("admin", "admin", settings.admin_token.get_secret_value())
    if settings.service_token.get_secret_value():
        service.ensure_user(
            "marrowscope-services", "service", settings.service_token.get_secret_value()
        )
    servicer = CurationServicer(service)
    clients = ServiceClients(resources.peers)
    web = create_web_app(
        service,
        Workbench(resources.pool, service),
        resources.store,
        clients,
        settings,
    )
    http = EmbeddedUvicorn(
        uvicorn.Config(
            web, host=settings.host, port=settings.http_port, log_config=None, access_log=False
        )
    )
    tasks: list[asyncio.Task[None]] = []

    async def start_http() -> None:
        tasks.append(asyncio.create_task(http.serve()))

    async def stop_http() -> None:
        http.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await clients.close()

    serve(
        settings,
        [SERVICE_NAME],
        lambda server: curation_pb2_grpc.add_CurationServiceServicer_to_server(servicer, server),
        on_start=start_http,
        on_stop=stop_http,
        resources=resources,
        collectors=metric_gauges(resources.pool),
    )


if __name__ == "__main__":
    main()
