"""``muxs.testing.pair``: the server's whole pipeline, in one process, with no listener."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from pathlib import Path

import pytest
from grpclib.exceptions import GRPCError

from muxs import (
    CallContext,
    CallInfo,
    ConfigError,
    HostedService,
    RpcError,
    ServerProceed,
    ServerSettings,
    StatusCode,
)
from muxs.server.context import current
from muxs.testing import pair
from tests.polling import until
from tests.server.orders import Order, OrderRequest, Orders, OrdersStub

TOKEN = "muxs_test-pair"
BEARER = {"authorization": f"Bearer {TOKEN}"}


def auth_settings(tmp_path: Path, scopes: list[str]) -> ServerSettings:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        f'[[token]]\nsha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n'
        f'subject = "alice"\nscopes = {scopes!r}\n'.replace("'", '"')
    )
    (tmp_path / "root").mkdir()
    return ServerSettings(root=tmp_path / "root", auth_tokens=tokens)


class Stalling(Orders):
    """``Get`` waits until it is cancelled, telling the test how long it had left."""

    def __init__(self) -> None:
        super().__init__()
        self.remaining: list[float | None] = []

    async def get(self, message: OrderRequest) -> Order:
        self.remaining.append(current().time_remaining())
        await asyncio.Event().wait()
        raise AssertionError("never set")


@pytest.mark.both_loops
async def test_a_pair_serves_muxs_and_your_own_services_without_listening(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_listening(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pair must not listen")

    monkeypatch.setattr(socket.socket, "listen", no_listening)
    async with pair(services=[Orders()]) as running:
        placed = await OrdersStub(running.channel).place(Order(item="tea", quantity=2))
        got = await OrdersStub(running.channel).get(OrderRequest(id=placed.id))
        hello = await running.client.say_hello("x")
        health = await running.client.check_health("orders.Orders")
    assert got == Order(id="1", item="tea", quantity=2)
    assert (hello.message, health) == ("Hello, x!", "SERVING")


@pytest.mark.both_loops
async def test_every_call_kind_and_a_file_round_trip(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: many DATA frames, flow control included
    async with pair(settings=ServerSettings(root=tmp_path), timeout=30) as running:
        client = running.client
        replies = [(r.message, r.index) async for r in client.lots_of_replies("x", 3)]
        many = await client.lots_of_greetings(["a", "b"])
        both = [reply.message async for reply in client.bidi_hello(["c"])]
        await client.write_bytes("blob.bin", data)
        read = await client.read_bytes("blob.bin")
    assert replies == [("Hello, x!", 1), ("Hello, x!", 2), ("Hello, x!", 3)]
    assert (many.message, both) == ("Hello, a and b!", ["Hello, c!"])
    assert read == data
    assert (tmp_path / "blob.bin").read_bytes() == data


async def test_an_interceptor_runs_and_metadata_goes_both_ways(tmp_path: Path) -> None:
    seen: list[tuple[str, object]] = []

    async def echo_request_id(call: CallContext, proceed: ServerProceed) -> None:
        call.add_header("x-seen", str(call.metadata.get("x-request-id")))
        call.add_trailer("x-trace-bin", b"\x00\x01")
        try:
            await proceed()
        finally:
            seen.append((call.path, call.status))

    async with pair(
        settings=ServerSettings(root=tmp_path),
        interceptors=[echo_request_id],
        metadata={"x-request-id": "r-1"},
    ) as running:
        info = CallInfo()
        await running.client.say_hello("x", call_info=info)
    assert info.headers["x-seen"] == "r-1"
    assert info.trailers["x-trace-bin"] == b"\x00\x01"
    assert seen == [("/muxs.Greeter/SayHello", StatusCode.OK)]


async def test_an_interceptor_refusal_reaches_the_client_with_its_status(tmp_path: Path) -> None:
    async def closed(call: CallContext, proceed: ServerProceed) -> None:
        raise GRPCError(StatusCode.FAILED_PRECONDITION, "closed for the night")

    async with pair(settings=ServerSettings(root=tmp_path), interceptors=[closed]) as running:
        with pytest.raises(RpcError) as refused:
            await running.client.say_hello("x")
    assert refused.value.status is StatusCode.FAILED_PRECONDITION
    assert "closed for the night" in str(refused.value)


async def test_auth_refuses_with_the_exact_statuses(tmp_path: Path) -> None:
    settings = auth_settings(tmp_path, ["greeter", "orders:read"])
    orders = HostedService(Orders(), scopes={"Get": "orders:read"}, scope="orders:write")
    async with pair(services=[orders], settings=settings, token=TOKEN) as running:
        assert (await running.client.say_hello("x")).message == "Hello, x!"
        with pytest.raises(GRPCError) as not_found:
            await OrdersStub(running.channel).get(OrderRequest(id="7"))  # the pair's token
        with pytest.raises(GRPCError) as no_scope:
            await OrdersStub(running.channel).place(Order(item="tea"))
        anonymous = running.connect_channel()
        with pytest.raises(GRPCError) as no_token:
            await OrdersStub(anonymous).get(OrderRequest(id="7"))
        with pytest.raises(RpcError) as bad_token:
            await running.connect(token="muxs_not-a-token").say_hello("x")
    assert not_found.value.status is StatusCode.NOT_FOUND  # past auth, to the handler
    assert no_scope.value.status is StatusCode.PERMISSION_DENIED
    assert no_token.value.status is StatusCode.UNAUTHENTICATED
    assert bad_token.value.status is StatusCode.UNAUTHENTICATED


async def test_a_method_without_a_declared_scope_is_refused_while_auth_is_on(
    tmp_path: Path,
) -> None:
    settings = auth_settings(tmp_path, ["greeter"])
    async with pair(services=[Orders()], settings=settings) as running:
        with pytest.raises(GRPCError) as refused:
            await OrdersStub(running.channel, metadata=BEARER).get(OrderRequest(id="1"))
    assert refused.value.status is StatusCode.PERMISSION_DENIED


async def test_max_call_seconds_ends_a_call_with_deadline_exceeded(tmp_path: Path) -> None:
    stalling = Stalling()
    settings = ServerSettings(root=tmp_path, max_call_seconds=0.05)
    async with pair(services=[stalling], settings=settings) as running:
        with pytest.raises(GRPCError) as ended:
            await OrdersStub(running.channel).get(OrderRequest(id="1"))
    assert ended.value.status is StatusCode.DEADLINE_EXCEEDED


async def test_the_clients_deadline_reaches_the_handler(tmp_path: Path) -> None:
    stalling = Stalling()
    async with pair(services=[stalling], settings=ServerSettings(root=tmp_path)) as running:
        with pytest.raises(TimeoutError):  # grpclib's client raises its own deadline's end
            await OrdersStub(running.channel).get(OrderRequest(id="1"), timeout=0.05)
    assert len(stalling.remaining) == 1
    remaining = stalling.remaining[0]
    assert remaining is not None
    assert 0 < remaining <= 0.05


async def test_the_wire_limits_apply(tmp_path: Path) -> None:
    settings = ServerSettings(root=tmp_path, max_message_bytes=1024)
    async with pair(services=[Orders()], settings=settings) as running:
        with pytest.raises(GRPCError) as too_big:
            await OrdersStub(running.channel).place(Order(item="t" * 2000))
    assert too_big.value.status is StatusCode.RESOURCE_EXHAUSTED


async def test_the_access_log_sees_the_calls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxs.access_log")
    async with pair(settings=ServerSettings(root=tmp_path)) as running:
        await running.client.say_hello("x")
    lines = [r.getMessage() for r in caplog.records if r.name == "muxs.access_log"]
    assert any("/muxs.Greeter/SayHello" in line and "OK" in line for line in lines)


async def test_the_metrics_count_the_calls_with_no_endpoint_served(tmp_path: Path) -> None:
    settings = ServerSettings(root=tmp_path, metrics_port=0)
    async with pair(services=[Orders()], settings=settings) as running:
        with pytest.raises(GRPCError):
            await OrdersStub(running.channel).get(OrderRequest(id="7"))
        metrics = running.lifecycle.metrics
        assert metrics is not None
        assert running.lifecycle.metrics_port is None
    labels = {"grpc_service": "orders.Orders", "grpc_method": "Get", "grpc_type": "unary"}
    handled = metrics.registry.get_sample_value(
        "grpc_server_handled_total", {**labels, "grpc_code": "NOT_FOUND"}
    )
    assert handled == 1


class Gated(Orders):
    """``Get`` waits for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = False
        self.release = asyncio.Event()

    async def get(self, message: OrderRequest) -> Order:
        self.entered = True
        await self.release.wait()
        return Order(id=message.id)


async def test_leaving_the_block_drains_calls_in_flight(tmp_path: Path) -> None:
    gated = Gated()
    async with pair(services=[gated], settings=ServerSettings(root=tmp_path)) as running:
        call = asyncio.ensure_future(OrdersStub(running.channel).get(OrderRequest(id="1")))
        await until(lambda: gated.entered)
        asyncio.get_running_loop().call_soon(gated.release.set)  # while the block drains
    assert (await call) == Order(id="1")


def test_tls_settings_are_refused_with_the_option_named(tmp_path: Path) -> None:
    settings = ServerSettings(
        root=tmp_path, tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem"
    )

    async def enter() -> None:
        async with pair(settings=settings):
            raise AssertionError("served")

    with pytest.raises(ConfigError) as refused:
        asyncio.run(enter())
    assert refused.value.option == "tls_cert"
