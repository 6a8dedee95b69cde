"""Prometheus metrics every service exposes, and how they are served.

Request metrics are counted where every call passes: the gRPC server wrappers (``core.rpc``),
the gRPC client interceptor (``CallDefaults``) and an HTTP middleware (LIS API, curation HTTP).
Domain figures (analysis jobs, review tasks, training jobs, campaigns) are read from the
owning service's tables when Prometheus scrapes, by a collector that service registers.

The metric objects below live in prometheus_client's process-wide registry, as that library
intends: a process is one service, and Prometheus tells services apart by target. Labels are
method names, routes (templates, never a concrete path), status codes and states: never an
id, an accession number or anything about a patient.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from .db import DictPool
from .logs import package_version

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

BUILD_INFO = Gauge(
    "marrowscope_build_info", "1 for the running service, with its version", ["service", "version"]
)
GRPC_SERVER_CALLS = Counter(
    "marrowscope_grpc_server_calls_total", "gRPC calls handled", ["method", "code"]
)
GRPC_SERVER_SECONDS = Histogram(
    "marrowscope_grpc_server_seconds", "gRPC call duration", ["method"], buckets=LATENCY_BUCKETS
)
GRPC_CLIENT_CALLS = Counter(
    "marrowscope_grpc_client_calls_total", "gRPC calls made to peers", ["method", "code"]
)
GRPC_CLIENT_SECONDS = Histogram(
    "marrowscope_grpc_client_seconds",
    "gRPC calls to peers, until their status",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "marrowscope_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "marrowscope_http_request_seconds",
    "HTTP request duration",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
OBJECTSTORE_SECONDS = Histogram(
    "marrowscope_objectstore_seconds",
    "S3 calls by operation, waiting for the store's thread pool included",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_BATCH_SIZE = Histogram(
    "marrowscope_inference_batch_size",
    "cells per model call of the micro-batcher",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
INFERENCE_MODEL_SECONDS = Histogram(
    "marrowscope_inference_model_seconds", "one batched model call", buckets=LATENCY_BUCKETS
)


def mark_service(service: str) -> None:
    """Set ``marrowscope_build_info`` for this process."""
    BUILD_INFO.labels(service=service, version=package_version()).set(1)


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 (a pod's port)
    """Serve /metrics on ``port`` (gRPC services, which have no HTTP server of their own)."""
    start_http_server(port, addr=host)


def exposition(*extra: CollectorRegistry) -> bytes:
    """The process's metrics and those of ``extra`` registries, in the text format."""
    return generate_latest(REGISTRY) + b"".join(generate_latest(r) for r in extra)


def metrics_response(*extra: CollectorRegistry) -> Response:
    return Response(exposition(*extra), media_type=CONTENT_TYPE_LATEST)


def registry_of(collectors: Iterable[Collector]) -> CollectorRegistry:
    """A registry of an app's own collectors (one per app, so tests may build several)."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        registry.register(collector)
    return registry


async def count_http(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Middleware: requests and their duration by route template, method and status."""
    started = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        HTTP_REQUESTS.labels(template, request.method, str(status)).inc()
        HTTP_SECONDS.labels(template, request.method).observe(time.perf_counter() - started)


class QueryGauge(Collector):
    """A gauge read from the database when Prometheus scrapes: ``sql`` returns one row per
    series, with a column per label and ``value``. A failing query leaves the series out (and
    is logged) rather than failing the scrape."""

    def __init__(
        self, pool: DictPool, name: str, documentation: str, labels: list[str], sql: str
    ) -> None:
        self.pool, self.name, self.documentation = pool, name, documentation
        self.labels, self.sql = labels, sql

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labels)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        try:
            with self.pool.connection() as conn:
                rows = conn.execute(self.sql.encode()).fetchall()
        except Exception as exc:  # the database is down: say so in the log, scrape the rest
            log.warning("metric %s not read: %s", self.name, exc)
            return [family]
        for row in rows:
            family.add_metric([str(row[label]) for label in self.labels], float(row["value"]))
        return [family]


class PoolStats(Collector):
    """The database pool's state when Prometheus scrapes: its size, idle connections and
    waiting requests (gauges), and requests, their wait and errors since the start."""

    def __init__(self, pool: DictPool) -> None:
        self.pool = pool

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        stats = self.pool.get_stats()
        now = GaugeMetricFamily("marrowscope_db_pool", "the database pool now", labels=["figure"])
        for figure in ("pool_size", "pool_available", "requests_waiting"):
            now.add_metric([figure], float(stats.get(figure, 0)))
        total = CounterMetricFamily(
            "marrowscope_db_pool_events", "the database pool since the start", labels=["event"]
        )
        for event in ("requests_num", "requests_wait_ms", "requests_errors", "connections_errors"):
            total.add_metric([event], float(stats.get(event, 0)))
        return [now, total]
