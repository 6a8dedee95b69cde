"""gRPC bootstrap shared by every service.

Server: grpc.aio with grpc.health.v1, mutual TLS, graceful shutdown on SIGTERM/SIGINT and an
interceptor that checks the caller's certificate against ``core.access`` (UNAUTHENTICATED /
PERMISSION_DENIED), gives each call a request id (for the logs) and maps domain errors to
status codes with their message. Unknown exceptions become INTERNAL with the request id, never
a stack trace. Reflection only when enabled.

Client: channels that give every call a default deadline (the caller's own wins) and retry
idempotent methods on UNAVAILABLE; fast reconnects so a restarted peer is found again quickly.
Both sides count calls and their duration by method and status (``core.metrics``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import access, metrics
from .errors import MarrowscopeError
from .logs import REQUEST_ID_HEADER, new_request_id, request_id_var
from .pki import TlsMaterial
from .settings import GrpcServerSettings

log = logging.getLogger(__name__)


def status_code_of(error: MarrowscopeError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and value:
            return value[:64]
    return new_request_id()


def peer_identity(context: grpc.aio.ServicerContext) -> str | None:
    """The common name of the caller's verified client certificate; None without TLS."""
    for name in context.auth_context().get("x509_common_name") or ():
        return name.decode() if isinstance(name, bytes) else str(name)
    return None


async def _authorize(context: grpc.aio.ServicerContext, method: str) -> None:
    if access.is_open(method):
        return
    identity = peer_identity(context)
    if identity is None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            f"{method} needs a client certificate signed by the Marrowscope CA",
        )
    if not access.allowed(method, identity):
        log.warning("refused %s to %r (not in its allow-list)", method, identity)
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED, f"identity {identity!r} may not call {method}"
        )


async def _fail(context: grpc.aio.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, MarrowscopeError):
        code = status_code_of(exc)
        log.info("%s -> %s: %s", method, code.name, exc)
        await context.abort(code, str(exc))
    log.exception("%s failed", method)
    await context.abort(
        grpc.StatusCode.INTERNAL, f"internal error in {method} (request id {request_id_var.get()})"
    )


def _count(context: grpc.aio.ServicerContext, method: str, started: float, failed: bool) -> None:
    """The call in the server metrics: its status (aborted with, or OK / CANCELLED)."""
    code = context.code()
    name = code.name if isinstance(code, grpc.StatusCode) else ("CANCELLED" if failed else "OK")
    metrics.GRPC_SERVER_CALLS.labels(method, name).inc()
    metrics.GRPC_SERVER_SECONDS.labels(method).observe(time.perf_counter() - started)


def _wrap_unary(
    behavior: Callable[..., Awaitable[Any]], method: str, enforce_access: bool
) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = request_id_var.set(_request_id(context))
        started, failed = time.perf_counter(), True
        try:
            if enforce_access:
                await _authorize(context, method)
            reply = await behavior(request, context)
            failed = False
            return reply
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await _fail(context, exc, method)
        finally:
            _count(context, method, started, failed)
            request_id_var.reset(token)

    return wrapper


def _wrap_stream(
    behavior: Callable[..., AsyncIterator[Any]], method: str, enforce_access: bool
) -> Callable[..., Any]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        token = request_id_var.set(_request_id(context))
        started, failed = time.perf_counter(), True
        try:
            if enforce_access:
                await _authorize(context, method)
            async for item in behavior(request, context):
                yield item
            failed = False
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as exc:
            await _fail(context, exc, method)
        finally:
            _count(context, method, started, failed)
            request_id_var.reset(token)

    return wrapper


class DomainErrorInterceptor(grpc.aio.ServerInterceptor):
    """Access checks (when ``enforce_access``), request ids and domain-error -> status
    mapping for every method of the server."""

    def __init__(self, enforce_access: bool = True) -> None:
        self.enforce_access = enforce_access

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, self.enforce_access),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method, self.enforce_access),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method, self.enforce_access),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(handler.stream_stream, method, self.enforce_access),
            handler.request_deserializer,
            handler.response_serializer,
        )


class GrpcService:
    """A running grpc.aio server with health checks, mutual TLS and per-method access control.

    Without TLS material it refuses to start unless ``allow_plaintext`` is set; in plaintext
    nobody can be identified, so access is not checked (development only, logged loudly)."""

    def __init__(
        self,
        settings: GrpcServerSettings,
        service_names: Iterable[str],
        register: Callable[[grpc.aio.Server], None],
        extra_interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.settings = settings
        self.service_names = list(service_names)
        tls = settings.tls()
        if tls is None and not settings.allow_plaintext:
            raise ValueError(
                "gRPC needs mutual TLS: set GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE and "
                "GRPC_TLS_CA_FILE (marrowscope up and the Helm chart make them), or "
                "GRPC_ALLOW_PLAINTEXT=true on a development machine"
            )
        options = [
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ]
        self.server = grpc.aio.server(
            interceptors=[
                DomainErrorInterceptor(enforce_access=tls is not None),
                *extra_interceptors,
            ],
            options=options,
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        register(self.server)
        if settings.reflection:
            reflection.enable_server_reflection(
                [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
            )
        bind = f"{settings.host}:{settings.port}"
        if tls is not None:
            assert tls.cert is not None and tls.key is not None  # settings.tls() checks
            credentials = grpc.ssl_server_credentials(
                [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
            )
            self.port = self.server.add_secure_port(bind, credentials)
        else:
            log.warning(
                "serving %s WITHOUT TLS (GRPC_ALLOW_PLAINTEXT): every caller is trusted",
                ", ".join(self.service_names),
            )
            self.port = self.server.add_insecure_port(bind)

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def start(self) -> None:
        await self.server.start()
        for name in ["", *self.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving %s on %s", ", ".join(self.service_names), self.address)

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight calls finish for the grace period, then stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.grace_seconds)

    async def run_until_signalled(
        self, on_stop: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down (grace %.1fs)", self.settings.grace_seconds)
        await self.stop()
        if on_stop is not None:
            await on_stop()


# ---------------------------------------------------------------------------- client side


def service_config(service: str, idempotent_methods: Iterable[str]) -> str:
    """A gRPC service config that balances calls over every resolved address and retries
    idempotent methods on UNAVAILABLE.

    Deadlines are not set here: a config timeout caps every longer per-call deadline, and on
    this grpc build it fires up to ~1.5 s early (C-core applies it against a cached clock).
    ``CallDefaults`` gives each call an exact default deadline instead.
    """
    # Round robin over every address the name resolves to: behind a headless Service that
    # is every replica (a single address, as on loopback, behaves as pick_first).
    balancing: list[dict[str, dict[str, str]]] = [{"round_robin": {}}]
    names = [{"service": service, "method": m} for m in idempotent_methods]
    if not names:
        return json.dumps({"loadBalancingConfig": balancing})
    retry = {
        "maxAttempts": 4,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    return json.dumps(
        {
            "loadBalancingConfig": balancing,
            "methodConfig": [{"name": names, "retryPolicy": retry}],
        }
    )


class CallDefaults(
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
):
    """Every outgoing call gets the current request id (``x-request-id``) and, unless the
    caller set one, the default deadline. ``long_methods`` (watch streams, bulk streams) get
    no default: their callers choose a deadline that fits the job."""

    def __init__(self, deadline_s: float, long_methods: Iterable[str] = ()) -> None:
        self.deadline_s = deadline_s
        self.long_methods = frozenset(long_methods)
        self._watchers: set[asyncio.Future[None]] = set()  # keeps the metric tasks alive

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if REQUEST_ID_HEADER not in metadata:
            current = request_id_var.get()
            metadata.add(REQUEST_ID_HEADER, current if current != "-" else new_request_id())
        timeout = details.timeout
        if timeout is None and _method(details).rsplit("/", 1)[-1] not in self.long_methods:
            timeout = self.deadline_s
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        """A streaming call: counted by a task when it ends, whatever the caller does with it."""
        details = self._details(details)
        call = await continuation(details, request)
        self._watchers.add(task := asyncio.ensure_future(_count_client(call, _method(details))))
        task.add_done_callback(self._watchers.discard)
        return call

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        # Most calls: counted inline, no task. Awaiting a finished call again (the caller
        # does) gives the same reply or error.
        details = self._details(client_call_details)
        started = time.perf_counter()
        call = await continuation(details, request)
        try:
            await call
            code = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            _record_client(_method(details), code, started)
            raise
        _record_client(_method(details), code, started)
        return call

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request)

    async def intercept_stream_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request_iterator)

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request_iterator)


def _method(details: Any) -> str:
    return details.method.decode() if isinstance(details.method, bytes) else str(details.method)


def _record_client(method: str, code: Any, started: float) -> None:
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    metrics.GRPC_CLIENT_CALLS.labels(method, name).inc()
    metrics.GRPC_CLIENT_SECONDS.labels(method).observe(time.perf_counter() - started)


async def _count_client(call: Any, method: str) -> None:
    started = time.perf_counter()
    try:
        code = await call.code()
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
    _record_client(method, code, started)


def open_channel(
    address: str,
    service: str,
    idempotent_methods: Iterable[str] = (),
    deadline_s: float = 10.0,
    long_methods: Iterable[str] = (),
    tls: TlsMaterial | None = None,
    tls_server_name: str = "",
) -> grpc.aio.Channel:
    """A channel to ``service`` at ``address``: mutual TLS when ``tls`` is given (the CA to
    trust and this process's certificate to present), plaintext otherwise.
    ``tls_server_name``: the name the server's certificate must carry (its identity), when it
    is not the host in ``address``."""
    options = [
        ("grpc.service_config", service_config(service, idempotent_methods)),
        ("grpc.enable_retries", 1),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]
    interceptors = [CallDefaults(deadline_s, long_methods)]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    if tls is not None:
        return grpc.aio.secure_channel(
            address, channel_credentials(tls), options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


def channel_credentials(tls: TlsMaterial) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )


async def check_health(
    address: str,
    service: str = "",
    timeout_s: float = 2.0,
    tls: TlsMaterial | None = None,
    tls_server_name: str = "",
) -> str:
    """grpc.health.v1 Check: the status name, or 'UNREACHABLE' when nothing answers.
    ``tls_server_name``: the name in the server certificate when ``address`` is not it."""
    options = [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
    channel = (
        grpc.aio.secure_channel(address, channel_credentials(tls), options)
        if tls is not None
        else grpc.aio.insecure_channel(address)
    )
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
