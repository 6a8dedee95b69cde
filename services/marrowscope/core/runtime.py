"""What every service's ``__main__`` does: open the shared resources, serve, close cleanly."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import grpc
from prometheus_client import REGISTRY
from prometheus_client.registry import Collector
from pydantic_settings import BaseSettings

from . import metrics
from .db import DictPool, open_pool
from .errors import InvalidArgument
from .logs import LogSettings, configure_logging
from .objectstore import ObjectStore, open_store
from .rpc import GrpcService
from .settings import DatabaseSettings, GrpcServerSettings, ObjectStoreSettings, PeerSettings
from .settings_check import refuse_unknown_settings

log = logging.getLogger(__name__)
# Allocations above this go straight to mmap and back to the OS when freed (glibc).
LARGE_ALLOCATION_BYTES = 4 * 1024 * 1024


def return_large_allocations_to_the_os() -> bool:
    """Make glibc serve allocations of 4 MiB and more with mmap, so freed images leave the
    process. By default it raises that threshold after the first large free and then keeps
    freed buffers in per-thread arenas: decoding a 40 M pixel field on eight threads left
    660 MB resident for good (bench/lis_upload_memory.py). False off glibc (nothing done)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_mmap_threshold = -3  # <malloc.h>; setting it also stops the dynamic adjustment
    return bool(libc.mallopt(m_mmap_threshold, LARGE_ALLOCATION_BYTES))


@dataclass
class Resources:
    """Connections a service shares between its requests."""

    pool: DictPool
    store: ObjectStore
    peers: PeerSettings

    def close(self) -> None:
        self.pool.close()
        self.store.close()  # the S3 store's threads and sockets


def prepare_process(service: str, *settings_classes: type[BaseSettings]) -> None:
    """What every service does first: logging, memory return, settings check, build info."""
    configure_logging(service)
    return_large_allocations_to_the_os()
    check_settings(*settings_classes)
    metrics.mark_service(service)


def check_settings(*classes: type[BaseSettings]) -> None:
    """Stop the process with a message naming each misspelt ``MARROWSCOPE_*`` variable under
    the prefixes of ``classes`` and of the shared settings (database, store, logs)."""
    shared = (DatabaseSettings, ObjectStoreSettings, PeerSettings, LogSettings)
    try:
        refuse_unknown_settings(os.environ, [*shared, *classes])
    except InvalidArgument as exc:
        raise SystemExit(f"marrowscope: {exc}") from None


def open_resources(
    db: DatabaseSettings | None = None,
    store: ObjectStoreSettings | None = None,
    peers: PeerSettings | None = None,
) -> Resources:
    return Resources(
        pool=open_pool(db or DatabaseSettings()),
        store=open_store(store or ObjectStoreSettings()),
        peers=peers or PeerSettings(),
    )


def serve(
    settings: GrpcServerSettings,
    service_names: Iterable[str],
    register: Callable[[grpc.aio.Server], None],
    on_stop: Callable[[], Awaitable[None]] | None = None,
    on_start: Callable[[], Awaitable[None]] | None = None,
    resources: Resources | None = None,
    collectors: Iterable[Collector] = (),
) -> None:
    """Run a gRPC service until SIGTERM/SIGINT, then ``on_stop`` and close ``resources``.
    ``collectors``: the service's own metrics (read when Prometheus scrapes)."""

    async def stop() -> None:
        if on_stop is not None:
            await on_stop()
        if resources is not None:
            await asyncio.to_thread(resources.close)

    if resources is not None:  # once per process: the pool its requests share
        REGISTRY.register(metrics.PoolStats(resources.pool))
    for collector in collectors:
        REGISTRY.register(collector)

    async def main() -> None:
        service = GrpcService(settings, service_names, register)
        if settings.metrics_port:
            metrics.serve_metrics(settings.metrics_port, settings.host)
        if on_start is not None:
            await on_start()
        await service.run_until_signalled(stop)

    asyncio.run(main())
