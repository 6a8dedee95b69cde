"""Every gRPC method of every proto, called through real mutual TLS on loopback by every
identity: the allow-list of ``core.access`` lets exactly the listed callers through, refuses
the rest with PERMISSION_DENIED, and nobody without a certificate of the CA gets a call in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from marrowscope.core import access
from marrowscope.core.pki import IDENTITIES, LocalPki, TlsMaterial, ensure_local_pki
from marrowscope.core.rpc import GrpcService, channel_credentials, check_health, open_channel
from marrowscope.core.settings import GrpcServerSettings
from marrowscope.v1 import (
    curation_pb2,
    inference_pb2,
    orchestrator_pb2,
    segmentation_pb2,
    training_pb2,
)

pytestmark = pytest.mark.integration
PROTOS = (segmentation_pb2, inference_pb2, training_pb2, curation_pb2, orchestrator_pb2)


def all_methods() -> Iterator[MethodDescriptor]:
    for module in PROTOS:
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _answering_handlers() -> list[grpc.GenericRpcHandler]:
    """Every method answers with an empty reply: a call that gets one passed the checks."""
    handlers = []
    for module in PROTOS:
        for service in module.DESCRIPTOR.services_by_name.values():
            table: dict[str, grpc.RpcMethodHandler] = {}
            for method in service.methods:
                request = message_factory.GetMessageClass(method.input_type)
                reply = message_factory.GetMessageClass(method.output_type)
                table[method.name] = _handler(method, request, reply)
            handlers.append(grpc.method_handlers_generic_handler(service.full_name, table))
    return handlers


def _handler(method: MethodDescriptor, request: Any, reply: Any) -> grpc.RpcMethodHandler:
    ser, de = reply.SerializeToString, request.FromString

    async def unary(req: Any, ctx: Any) -> Any:
        return reply()

    async def consume(reqs: AsyncIterator[Any], ctx: Any) -> Any:
        async for _ in reqs:
            pass
        return reply()

    async def stream(req: Any, ctx: Any) -> AsyncIterator[Any]:
        yield reply()

    async def both(reqs: AsyncIterator[Any], ctx: Any) -> AsyncIterator[Any]:
        async for _ in reqs:
            yield reply()

    kind = (method.client_streaming, method.server_streaming)
    make: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
        (False, False): lambda: grpc.unary_unary_rpc_method_handler(unary, de, ser),
        (True, False): lambda: grpc.stream_unary_rpc_method_handler(consume, de, ser),
        (False, True): lambda: grpc.unary_stream_rpc_method_handler(stream, de, ser),
        (True, True): lambda: grpc.stream_stream_rpc_method_handler(both, de, ser),
    }
    return make[kind]()


async def call(channel: grpc.aio.Channel, method: MethodDescriptor) -> grpc.StatusCode:
    """Call ``method`` with an empty request; the status it ends with."""
    request = message_factory.GetMessageClass(method.input_type)()
    reply = message_factory.GetMessageClass(method.output_type)
    path = path_of(method)
    ser, de = request.SerializeToString, reply.FromString
    try:
        if method.client_streaming and method.server_streaming:
            multi = channel.stream_stream(path, ser, de)(iter([request]), timeout=5)
            async for _ in multi:
                pass
        elif method.client_streaming:
            await channel.stream_unary(path, ser, de)(iter([request]), timeout=5)
        elif method.server_streaming:
            async for _ in channel.unary_stream(path, ser, de)(request, timeout=5):
                pass
        else:
            await channel.unary_unary(path, ser, de)(request, timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return ensure_local_pki(tmp_path_factory.mktemp("pki"))


def server_settings(pki: LocalPki, identity: str, **extra: Any) -> GrpcServerSettings:
    return GrpcServerSettings(
        host="127.0.0.1",
        port=0,
        grace_seconds=0.2,
        GRPC_TLS_CA_FILE=pki.ca_file,
        GRPC_TLS_CERT_FILE=pki.cert_file(identity),
        GRPC_TLS_KEY_FILE=pki.key_file(identity),
        **extra,
    )


def secure(address: str, tls: TlsMaterial) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, channel_credentials(tls))


def test_every_method_is_allowed_to_its_callers_only(pki: LocalPki) -> None:
    async def scenario() -> dict[tuple[str, str], grpc.StatusCode]:
        service = GrpcService(
            server_settings(pki, "segmentation"),
            [],
            lambda server: server.add_generic_rpc_handlers(_answering_handlers()),
        )
        await service.start()
        results: dict[tuple[str, str], grpc.StatusCode] = {}
        try:
            for identity in IDENTITIES:
                async with secure(service.address, pki.material(identity)) as channel:
                    for method in all_methods():
                        results[(identity, path_of(method))] = await call(channel, method)
        finally:
            await service.stop()
        return results

    results = asyncio.run(scenario())
    methods = [path_of(m) for m in all_methods()]
    assert len(methods) == len(access.ACCESS_POLICY) >= 30
    for (identity, method), code in results.items():
        expected = (
            grpc.StatusCode.OK
            if identity in access.ACCESS_POLICY[method]
            else grpc.StatusCode.PERMISSION_DENIED
        )
        assert code == expected, f"{identity} -> {method}: {code.name}, expected {expected.name}"
    # The rules that matter most, spelled out.
    assert results[("lis-api", "/marrowscope.v1.InferenceService/LoadModel")].name == (
        "PERMISSION_DENIED"
    )
    assert results[("curation", "/marrowscope.v1.TrainingService/StartTraining")].name == (
        "PERMISSION_DENIED"
    )
    assert results[("orchestrator", "/marrowscope.v1.InferenceService/LoadModel")].name == "OK"


def test_callers_without_a_certificate_of_the_ca_get_no_call_in(
    pki: LocalPki, tmp_path: Path
) -> None:
    stranger = ensure_local_pki(tmp_path / "other-ca", ["admin"])  # same name, other CA
    load_model = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].methods_by_name[
        "LoadModel"
    ]

    async def scenario() -> None:
        service = GrpcService(
            server_settings(pki, "inference"),
            [],
            lambda server: server.add_generic_rpc_handlers(_answering_handlers()),
        )
        await service.start()
        try:
            no_cert = TlsMaterial(pki.ca_file.read_bytes())
            async with secure(service.address, no_cert) as channel:
                assert await call(channel, load_model) == grpc.StatusCode.UNAVAILABLE
            async with secure(service.address, stranger.material("admin")) as channel:
                assert await call(channel, load_model) == grpc.StatusCode.UNAVAILABLE
            async with grpc.aio.insecure_channel(service.address) as channel:
                assert await call(channel, load_model) == grpc.StatusCode.UNAVAILABLE
            async with secure(service.address, pki.material("admin")) as channel:
                assert await call(channel, load_model) == grpc.StatusCode.OK
            # Health stays open to any identity of the CA (probes use the pod's own).
            for identity in ("segmentation", "lis-api"):
                assert await check_health(service.address, tls=pki.material(identity)) == "SERVING"
            assert await check_health(service.address) == "UNREACHABLE"
            # Reflection is off unless enabled.
            async with secure(service.address, pki.material("admin")) as channel:
                stub = reflection_pb2_grpc.ServerReflectionStub(channel)
                info = stub.ServerReflectionInfo(timeout=5)
                await info.write(reflection_pb2.ServerReflectionRequest(list_services=""))
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await info.read()
                assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        finally:
            await service.stop()

    asyncio.run(scenario())


def test_a_server_without_tls_refuses_to_start_unless_plaintext_is_chosen(
    pki: LocalPki,
) -> None:
    with pytest.raises(ValueError, match="mutual TLS"):
        GrpcService(GrpcServerSettings(port=0), [], lambda server: None)
    half = GrpcServerSettings(port=0, GRPC_TLS_CERT_FILE=pki.cert_file("training"))
    with pytest.raises(ValueError, match="GRPC_TLS_CA_FILE"):
        GrpcService(half, [], lambda server: None)


def test_callers_check_they_reach_the_service_they_mean(pki: LocalPki) -> None:
    """A peer that presents another service's certificate, or a client-only one (the LIS
    API's), is not taken for the service the caller dials: the channel names the identity
    it expects (as ServiceClients does) and the handshake fails otherwise."""
    classify = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].methods_by_name[
        "Classify"
    ]

    async def reach(server_identity: str, expected: str) -> grpc.StatusCode:
        service = GrpcService(
            server_settings(pki, server_identity),
            [],
            lambda server: server.add_generic_rpc_handlers(_answering_handlers()),
        )
        await service.start()
        try:
            async with open_channel(
                service.address,
                "marrowscope.v1.InferenceService",
                tls=pki.material("admin"),
                tls_server_name=expected,
            ) as channel:
                return await call(channel, classify)
        finally:
            await service.stop()

    async def scenario() -> None:
        assert await reach("inference", "inference") == grpc.StatusCode.OK
        assert await reach("curation", "inference") == grpc.StatusCode.UNAVAILABLE
        assert await reach("lis-api", "inference") == grpc.StatusCode.UNAVAILABLE

    asyncio.run(scenario())
