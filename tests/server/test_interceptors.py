"""Server interceptors: what they see, refuse, add and observe; how several compose; and the
handler's view of the same call (``muxs.server.context.current()``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality
from grpclib.exceptions import GRPCError

from muxs import (
    CallContext,
    Client,
    RpcError,
    ServerInterceptor,
    ServerProceed,
    ServerSettings,
    StatusCode,
    serve,
)
from muxs.server.context import current
from muxs.server.hosting import HostedService
from tests.server.orders import Order, OrderRequest, Orders, OrdersStub, call
from tests.server.test_own_services import BEARER, tokens_file


@asynccontextmanager
async def channel_to(
    settings: ServerSettings, *interceptors: ServerInterceptor, service: Any = None
) -> AsyncIterator[Channel]:
    services = [service or Orders()]
    async with serve(settings=settings, services=services, interceptors=interceptors) as running:
        channel = Channel("127.0.0.1", running.port)
        try:
            yield channel
        finally:
            channel.close()


async def test_interceptors_compose_in_order(settings: ServerSettings) -> None:
    seen: list[str] = []

    def named(name: str) -> ServerInterceptor:
        async def interceptor(call: CallContext, proceed: ServerProceed) -> None:
            seen.append(f"{name} in")
            await proceed()
            seen.append(f"{name} out")

        return interceptor

    async with channel_to(settings, named("a"), named("b"), named("c")) as channel:
        assert (await call(channel, "Place", Order(item="tea"))).status == StatusCode.OK
    assert seen == ["a in", "b in", "c in", "c out", "b out", "a out"]


async def test_an_interceptor_sees_the_call(settings: ServerSettings) -> None:
    seen: list[tuple[Any, ...]] = []

    async def look(call: CallContext, proceed: ServerProceed) -> None:
        remaining = call.time_remaining()
        seen.append((call.path, call.kind, call.metadata.get("x-tenant"), call.peer.split(":")[0]))
        assert remaining is not None
        assert 0 < remaining <= 30
        await proceed()

    async with channel_to(settings, look) as channel:
        await call(
            channel, "Get", OrderRequest(id="whoami"), metadata={"x-tenant": "t1"}, timeout=30
        )
    assert seen == [("/orders.Orders/Get", "unary", "t1", "127.0.0.1")]


async def test_an_interceptor_sees_the_identity_auth_established(
    settings: ServerSettings, tmp_path: Path
) -> None:
    settings = replace(settings, auth_tokens=tokens_file(tmp_path, ["orders:read"]))
    subjects: list[str | None] = []

    async def look(call: CallContext, proceed: ServerProceed) -> None:
        subjects.append(call.identity.subject)
        assert "authorization" not in call.metadata  # auth removed it once read
        await proceed()

    service = HostedService(Orders(), scope="orders:read")
    async with channel_to(settings, look, service=service) as channel:
        ok = await call(channel, "Get", OrderRequest(id="whoami"), metadata=BEARER)
        refused = await call(channel, "Get", OrderRequest(id="whoami"))
    assert (ok.status, refused.status) == (StatusCode.OK, StatusCode.UNAUTHENTICATED)
    assert subjects == ["reader"]  # the refused call never reached it


async def test_an_interceptor_refuses_with_its_status(settings: ServerSettings) -> None:
    handled: list[str] = []

    async def refuse(call: CallContext, proceed: ServerProceed) -> None:
        if call.metadata.get("x-tenant") != "t1":
            raise GRPCError(StatusCode.PERMISSION_DENIED, "unknown tenant")
        handled.append(call.method)
        await proceed()

    async with channel_to(settings, refuse) as channel:
        refused = await call(channel, "Place", Order(item="tea"))
        accepted = await call(channel, "Place", Order(item="tea"), metadata={"x-tenant": "t1"})
    assert (refused.status, refused.message) == (StatusCode.PERMISSION_DENIED, "unknown tenant")
    assert accepted.status == StatusCode.OK
    assert handled == ["Place"]


async def add_metadata(call: CallContext, proceed: ServerProceed) -> None:
    call.add_header("x-served-by", "muxs-test")
    call.add_trailer("x-request-id", "r-1")
    call.add_trailer("x-cost-bin", b"\x00\x01")
    await proceed()


@pytest.mark.parametrize(
    ("request_", "status"),
    [(OrderRequest(id="whoami"), StatusCode.OK), (OrderRequest(id="nope"), StatusCode.NOT_FOUND)],
)
async def test_headers_and_trailers_are_sent_whatever_the_status(
    settings: ServerSettings, request_: OrderRequest, status: StatusCode
) -> None:
    async with channel_to(settings, add_metadata) as channel:
        reply = await call(channel, "Get", request_)
    assert reply.status == status
    assert reply.headers["x-served-by"] == "muxs-test"
    assert reply.trailers["x-request-id"] == "r-1"
    assert reply.trailers["x-cost-bin"] == b"\x00\x01"


async def test_a_refusal_carries_the_trailers_added_before_it(settings: ServerSettings) -> None:
    async def refuse(call: CallContext, proceed: ServerProceed) -> None:
        raise GRPCError(StatusCode.RESOURCE_EXHAUSTED, "over quota")

    async with channel_to(settings, add_metadata, refuse) as channel:
        reply = await call(channel, "Place", Order(item="tea"))
    assert (reply.status, reply.message) == (StatusCode.RESOURCE_EXHAUSTED, "over quota")
    assert reply.trailers["x-request-id"] == "r-1"


async def test_an_interceptor_observes_the_outcome(settings: ServerSettings) -> None:
    outcomes: list[tuple[str, StatusCode | None, int, int, bool]] = []

    async def observe(call: CallContext, proceed: ServerProceed) -> None:
        try:
            await proceed()
        finally:
            outcomes.append(
                (call.method, call.status, call.received, call.sent, call.elapsed() >= 0)
            )

    async with channel_to(settings, observe) as channel:
        await call(channel, "Place", Order(item="tea"))
        await call(channel, "Place", Order(item="toast"))
        await call(channel, "Get", OrderRequest(id="nope"))
        found = [o.item async for o in OrdersStub(channel).search(OrderRequest(item="t"))]
    assert found == ["tea", "toast"]
    assert outcomes == [
        ("Place", StatusCode.OK, 1, 1, True),
        ("Place", StatusCode.OK, 1, 1, True),
        ("Get", StatusCode.NOT_FOUND, 1, 0, True),
        ("Search", StatusCode.OK, 1, 2, True),
    ]


async def test_an_interceptor_can_watch_a_streams_messages(settings: ServerSettings) -> None:
    messages: list[tuple[str, str, Any]] = []

    async def watch(call: CallContext, proceed: ServerProceed) -> None:
        if call.kind != "unary":
            call.watch_messages(lambda c, way, message: messages.append((c.method, way, message)))
        await proceed()

    async with channel_to(settings, watch) as channel:
        await call(channel, "Place", Order(item="tea"))  # unary: not watched
        [found] = [o async for o in OrdersStub(channel).search(OrderRequest(item="t"))]
    assert messages == [
        ("Search", "received", OrderRequest(item="t")),
        ("Search", "sent", found),
    ]


async def test_an_interceptor_that_fails_is_internal_and_logged(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(call: CallContext, proceed: ServerProceed) -> None:
        await proceed()
        raise RuntimeError("bug")

    async with channel_to(settings, broken) as channel:
        reply = await call(channel, "Place", Order(item="tea"))
    assert reply.status == StatusCode.INTERNAL
    assert reply.message == "internal server error; the server logged the details"
    [record] = [r for r in caplog.records if r.name == "muxs.hooks"]
    assert record.getMessage() == "unexpected error in /orders.Orders/Place"


async def test_interceptors_run_around_muxs_own_services(settings: ServerSettings) -> None:
    paths: list[str] = []

    async def record(call: CallContext, proceed: ServerProceed) -> None:
        paths.append(call.path)
        await proceed()

    async with (
        serve(settings=settings, interceptors=[record]) as running,
        Client(running.target) as client,
    ):
        await client.say_hello("x")
        with pytest.raises(RpcError):
            await client.read("missing.txt")
    assert paths == ["/muxs.Greeter/SayHello", "/muxs.FileController/Read"]


class Inspecting(Orders):
    """Answers ``Get`` with what ``current()`` tells, and adds its own metadata."""

    async def get(self, message: OrderRequest) -> Order:
        call = current()
        call.add_header("x-handler", "yes")
        call.add_trailer("x-handler-trailer", "yes")
        remaining = call.time_remaining()
        return Order(
            id=call.path,
            item=f"{call.metadata.get('x-tenant')!r} {call.peer.split(':')[0]} "
            f"{call.identity.subject}",
            quantity=int(remaining is not None and 0 < remaining <= 30),
        )


async def test_a_handler_reads_its_call_and_adds_metadata(settings: ServerSettings) -> None:
    async with channel_to(settings, service=Inspecting()) as channel:
        reply = await call(channel, "Get", OrderRequest(), metadata={"x-tenant": "t1"}, timeout=30)
    assert reply.reply == Order(id="/orders.Orders/Get", item="'t1' 127.0.0.1 None", quantity=1)
    assert reply.headers["x-handler"] == "yes"
    assert reply.trailers["x-handler-trailer"] == "yes"


async def test_a_handler_sends_its_headers_before_replying(settings: ServerSettings) -> None:
    class Early(Orders):
        async def search(self, message: OrderRequest) -> AsyncIterator[Order]:
            call = current()
            call.add_header("x-total", "0")
            await call.send_headers()
            return
            yield Order()

    async with (
        channel_to(settings, service=Early()) as channel,
        channel.request(
            "/orders.Orders/Search", Cardinality.UNARY_STREAM, OrderRequest, Order
        ) as stream,
    ):
        await stream.send_message(OrderRequest(), end=True)
        await stream.recv_initial_metadata()
        assert stream.initial_metadata is not None
        assert stream.initial_metadata["x-total"] == "0"
        assert await stream.recv_message() is None


def test_current_outside_a_call_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="only available inside a call"):
        current()
