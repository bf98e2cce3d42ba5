"""muxs.otel: the SDK's client spans and the server's spans, parent and child in one process,
with the RPC semantic conventions' names, attributes and statuses (nothing exported)."""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib.exceptions import GRPCError
from opentelemetry.trace import SpanKind
from opentelemetry.trace import StatusCode as SpanStatus

import muxs
from muxs import CallContext, ServerProceed, ServerSettings, StatusCode
from muxs.otel import client_interceptor, server_interceptor
from tests.polling import until
from tests.spans import Spans, is_child

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def spans() -> Spans:
    return Spans()


@pytest.fixture
async def traced(settings: ServerSettings, spans: Spans) -> AsyncIterator[muxs.Client]:
    """A client and a server, both traced into ``spans``."""
    interceptors = [server_interceptor(spans.provider)]
    async with muxs.serve(settings=settings, interceptors=interceptors) as running:
        client_side = [client_interceptor(spans.provider)]
        async with muxs.Client(running.target, timeout=10, interceptors=client_side) as client:
            yield client


async def test_a_call_makes_a_client_span_and_its_child_server_span(
    traced: muxs.Client, spans: Spans
) -> None:
    assert (await traced.say_hello("you")).message == "Hello, you!"
    client, server = spans.one(SpanKind.CLIENT), spans.one(SpanKind.SERVER)
    assert is_child(server, client)
    for span in (client, server):
        assert span.name == "muxs.Greeter/SayHello"
        assert span.status.status_code is SpanStatus.UNSET
        assert span.attributes is not None
        assert span.attributes["rpc.system"] == "grpc"
        assert span.attributes["rpc.service"] == "muxs.Greeter"
        assert span.attributes["rpc.method"] == "SayHello"
        assert span.attributes["rpc.grpc.status_code"] == 0
    assert client.attributes is not None
    assert server.attributes is not None
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["server.port"] == int(traced.target.rpartition(":")[2])
    assert server.attributes["network.peer.address"] == "127.0.0.1"
    assert isinstance(server.attributes["network.peer.port"], int)


async def test_a_clients_error_is_an_error_on_the_client_only(
    traced: muxs.Client, spans: Spans
) -> None:
    with pytest.raises(muxs.RpcError):
        await traced.square(-1)  # INVALID_ARGUMENT: the client's doing
    client, server = spans.one(SpanKind.CLIENT), spans.one(SpanKind.SERVER)
    assert client.status.status_code is SpanStatus.ERROR
    assert "negative" in str(client.status.description)
    assert server.status.status_code is SpanStatus.UNSET
    for span in (client, server):
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == StatusCode.INVALID_ARGUMENT.value


async def lose_data(call: CallContext, proceed: ServerProceed) -> None:
    raise GRPCError(StatusCode.DATA_LOSS, "lost")


async def test_a_servers_error_is_an_error_on_both_sides(
    settings: ServerSettings, spans: Spans
) -> None:
    interceptors = [server_interceptor(spans.provider), lose_data]
    async with muxs.serve(settings=settings, interceptors=interceptors) as running:
        client_side = [client_interceptor(spans.provider)]
        async with muxs.Client(running.target, timeout=10, interceptors=client_side) as client:
            with pytest.raises(muxs.RpcError) as raised:
                await client.say_hello("you")
    assert raised.value.status is StatusCode.DATA_LOSS
    for span in (spans.one(SpanKind.CLIENT), spans.one(SpanKind.SERVER)):
        assert span.status.status_code is SpanStatus.ERROR
        assert span.status.description == "lost"
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == StatusCode.DATA_LOSS.value


async def test_a_stream_is_one_span_per_side(traced: muxs.Client, spans: Spans) -> None:
    assert [r.index async for r in traced.lots_of_replies("you", count=3)] == [1, 2, 3]
    client, server = spans.one(SpanKind.CLIENT), spans.one(SpanKind.SERVER)
    assert client.name == server.name == "muxs.Greeter/LotsOfReplies"
    assert is_child(server, client)


async def test_the_client_span_is_the_child_of_the_callers_span(
    traced: muxs.Client, spans: Spans
) -> None:
    with spans.provider.get_tracer("test").start_as_current_span("caller"):
        await traced.say_hello("you")
    (caller,) = [s for s in spans.ended() if s.name == "caller"]
    client, server = spans.one(SpanKind.CLIENT), spans.one(SpanKind.SERVER)
    assert is_child(client, caller)
    assert is_child(server, client)


async def test_a_retry_sends_one_traceparent(settings: ServerSettings, spans: Spans) -> None:
    seen: list[list[str]] = []

    async def record(call: CallContext, proceed: ServerProceed) -> None:
        seen.append(call.metadata.getall("traceparent"))  # type: ignore[attr-defined]
        await proceed()

    async def twice(call: muxs.ClientCall, proceed: muxs.Proceed) -> None:
        await proceed(call)
        await proceed(call)

    async with muxs.serve(settings=settings, interceptors=[record]) as running:
        client_side = [twice, client_interceptor(spans.provider)]
        async with muxs.Client(running.target, timeout=10, interceptors=client_side) as client:
            await client.say_hello("you")
    assert [len(values) for values in seen] == [1, 1]
    assert seen[0] != seen[1]  # a span per attempt, behind the retrying interceptor


async def test_the_sync_clients_span_is_the_child_of_the_callers_span(
    live_server: muxs.RunningServer, spans: Spans
) -> None:
    def call_in_a_span() -> None:
        client_side = [client_interceptor(spans.provider)]
        tracer = spans.provider.get_tracer("test")
        with (
            muxs.SyncClient(live_server.target, timeout=10, interceptors=client_side) as client,
            tracer.start_as_current_span("caller"),
        ):
            client.say_hello("you")

    await asyncio.to_thread(call_in_a_span)  # the caller's thread, not the server's loop
    (caller,) = [s for s in spans.ended() if s.name == "caller"]
    assert is_child(spans.one(SpanKind.CLIENT), caller)


async def test_spans_started_inside_the_call_are_children_of_the_server_span(
    settings: ServerSettings, spans: Spans
) -> None:
    async def inner_span(call: CallContext, proceed: ServerProceed) -> None:
        with spans.provider.get_tracer("app").start_as_current_span("inner"):
            await proceed()

    interceptors = [server_interceptor(spans.provider), inner_span]
    async with (
        muxs.serve(settings=settings, interceptors=interceptors) as running,
        muxs.Client(running.target, timeout=10) as client,
    ):
        await client.say_hello("you")
    (inner,) = [s for s in spans.ended() if s.name == "inner"]
    assert is_child(inner, spans.one(SpanKind.SERVER))


async def test_the_readmes_example_runs(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## Tracing (OpenTelemetry)") :]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ")], re.DOTALL)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert stdout.decode().splitlines() == [
        "SERVER muxs.Greeter/SayHello 0 child of the client's",
        "CLIENT muxs.Greeter/SayHello 0 root",
    ]


async def test_a_passed_deadline_is_an_error_on_both_sides(
    traced: muxs.Client, spans: Spans
) -> None:
    async def never() -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield "unreachable"

    with pytest.raises(muxs.RpcError) as raised:
        await traced.lots_of_greetings(never(), timeout=0.2)
    assert raised.value.status is StatusCode.DEADLINE_EXCEEDED
    await until(lambda: any(s.kind is SpanKind.SERVER for s in spans.ended()))
    for span in (spans.one(SpanKind.CLIENT), spans.one(SpanKind.SERVER)):
        assert span.status.status_code is SpanStatus.ERROR
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == StatusCode.DEADLINE_EXCEEDED.value


def test_without_the_extra_the_import_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "muxs.otel")
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(
        ImportError, match=r"^muxs.otel needs OpenTelemetry: pip install 'muxs\[otel\]'$"
    ):
        importlib.import_module("muxs.otel")


async def test_message_events_number_each_direction(settings: ServerSettings, spans: Spans) -> None:
    interceptors = [server_interceptor(spans.provider, message_events=True)]
    async with (
        muxs.serve(settings=settings, interceptors=interceptors) as running,
        muxs.Client(running.target, timeout=10) as client,
    ):
        assert [r.index async for r in client.lots_of_replies("you", count=2)] == [1, 2]
    events = [(e.name, dict(e.attributes or {})) for e in spans.one(SpanKind.SERVER).events]
    assert events == [
        ("message", {"message.type": "RECEIVED", "message.id": 1}),
        ("message", {"message.type": "SENT", "message.id": 1}),
        ("message", {"message.type": "SENT", "message.id": 2}),
    ]


async def test_no_message_events_unless_asked(traced: muxs.Client, spans: Spans) -> None:
    await traced.say_hello("you")
    assert spans.one(SpanKind.SERVER).events == ()
