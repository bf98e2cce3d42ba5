"""Traces cross grpcio and muxs both ways, each side instrumented by its own library: a grpcio
client traced by opentelemetry-instrumentation-grpc calls muxs, whose server span is the child of
the client's; muxs's SDK calls a grpcio server traced the same way, whose span is the child of the
SDK's (the W3C ``traceparent`` each side sends). Nothing is exported."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.instrumentation.grpc import client_interceptor as grpcio_client_interceptor
from opentelemetry.instrumentation.grpc import server_interceptor as grpcio_server_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

import muxs
from muxs import ServerSettings
from muxs.otel import client_interceptor, server_interceptor
from tests.spans import Spans, is_child


@pytest.fixture
def spans() -> Spans:
    return Spans()


def rpc_attributes(span: ReadableSpan) -> dict[str, object]:
    """The span's ``rpc.*`` attributes both libraries set."""
    shared = ("rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code")
    return {key: (span.attributes or {}).get(key) for key in shared}


def grpcio_say_hello(target: str, pb: tuple[Any, Any], spans: Spans) -> str:
    """SayHello through a grpcio channel traced by opentelemetry-instrumentation-grpc: the
    channel ``GrpcInstrumentorClient`` makes, without patching grpc globally (and with our
    provider: the instrumentor's channels take the global one)."""
    pb2, pb2_grpc = pb
    interceptor = grpcio_client_interceptor(tracer_provider=spans.provider)
    with grpc.insecure_channel(target) as plain:
        channel = intercept_channel(plain, interceptor)
        reply = pb2_grpc.GreeterStub(channel).SayHello(pb2.HelloRequest(name="grpcio"), timeout=10)
    return str(reply.message)


async def test_a_traced_grpcio_clients_span_is_the_parent_of_muxss(
    settings: ServerSettings, pb: tuple[Any, Any], spans: Spans
) -> None:
    interceptors = [server_interceptor(spans.provider)]
    async with muxs.serve(settings=settings, interceptors=interceptors) as running:
        message = await asyncio.to_thread(grpcio_say_hello, running.target, pb, spans)
    assert message == "Hello, grpcio!"
    grpcio_span, muxs_span = spans.one(SpanKind.CLIENT), spans.one(SpanKind.SERVER)
    assert grpcio_span.instrumentation_scope is not None
    assert grpcio_span.instrumentation_scope.name == "opentelemetry.instrumentation.grpc"
    assert is_child(muxs_span, grpcio_span)
    assert muxs_span.name == "muxs.Greeter/SayHello"  # the instrumentation's: with a leading /
    assert rpc_attributes(muxs_span) == rpc_attributes(grpcio_span)


@pytest.fixture
def grpcio_server(pb: tuple[Any, Any], spans: Spans) -> Iterator[str]:
    """``host:port`` of a grpcio server hosting a Greeter, traced by
    opentelemetry-instrumentation-grpc (``GrpcInstrumentorServer``'s interceptor)."""
    pb2, pb2_grpc = pb

    class Greeter(pb2_grpc.GreeterServicer):  # type: ignore[misc,name-defined]
        def SayHello(self, request: Any, context: grpc.ServicerContext) -> Any:
            return pb2.HelloReply(message=f"Hello from grpcio, {request.name}!")

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        interceptors=[grpcio_server_interceptor(tracer_provider=spans.provider)],
    )
    pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()


async def test_muxss_client_span_is_the_parent_of_a_traced_grpcio_servers(
    grpcio_server: str, spans: Spans
) -> None:
    client_side = [client_interceptor(spans.provider)]
    async with muxs.Client(grpcio_server, timeout=10, interceptors=client_side) as client:
        assert (await client.say_hello("muxs")).message == "Hello from grpcio, muxs!"
    muxs_span, grpcio_span = spans.one(SpanKind.CLIENT), spans.one(SpanKind.SERVER)
    assert grpcio_span.instrumentation_scope is not None
    assert grpcio_span.instrumentation_scope.name == "opentelemetry.instrumentation.grpc"
    assert is_child(grpcio_span, muxs_span)
    assert muxs_span.name == "muxs.Greeter/SayHello"  # the instrumentation's: with a leading /
    assert rpc_attributes(muxs_span) == rpc_attributes(grpcio_span)
