"""The user's own services on muxs's server: hosted beside (or instead of) muxs's, with auth
scopes, health, reflection, access logs and the drain's refusal."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpclib.client import Channel
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1 import reflection_grpc, reflection_pb2

from muxs import (
    Client,
    ConfigError,
    HostedService,
    RpcError,
    RunningServer,
    ServerSettings,
    StatusCode,
    serve,
)
from muxs.server.hosting import ServiceLike
from tests.server.orders import DESCRIPTOR_SET, Order, OrderRequest, Orders, call

TOKEN = "muxs_test-orders-reader"


@asynccontextmanager
async def orders_server(
    settings: ServerSettings, *services: ServiceLike, **options: Any
) -> AsyncIterator[tuple[RunningServer, Channel]]:
    async with serve(settings=settings, services=services or [Orders()], **options) as running:
        channel = Channel("127.0.0.1", running.port)
        try:
            yield running, channel
        finally:
            channel.close()


def tokens_file(tmp_path: Path, scopes: list[str]) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(
        f'[[token]]\nsha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"\n'
        f'subject = "reader"\nscopes = {scopes!r}\n'.replace("'", '"')
    )
    return path


BEARER = {"authorization": f"Bearer {TOKEN}"}


async def test_own_services_are_served_beside_muxs_own(settings: ServerSettings) -> None:
    async with orders_server(settings) as (running, channel):
        placed = await call(channel, "Place", Order(item="tea", quantity=2))
        got = await call(channel, "Get", OrderRequest(id=placed.reply.id))
        async with Client(running.target) as client:
            hello = await client.say_hello("x")
    assert (placed.status, got.reply) == (StatusCode.OK, Order(id="1", item="tea", quantity=2))
    assert hello.message == "Hello, x!"


async def test_builtin_services_can_be_left_out(settings: ServerSettings) -> None:
    async with orders_server(settings, Orders(), builtin_services=False) as (_, channel):
        placed = await call(channel, "Place", Order(item="tea"))
        listed = await ask_reflection(
            channel, reflection_pb2.ServerReflectionRequest(list_services="")
        )
        with pytest.raises(GRPCError) as unknown:
            await HealthStub(channel).Check(HealthCheckRequest(service="muxs.Greeter"))
    assert placed.status == StatusCode.OK
    assert {s.name for s in listed.list_services_response.service} == {
        "orders.Orders",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    assert unknown.value.status == StatusCode.NOT_FOUND


async def test_a_method_the_server_lacks_is_unimplemented_for_grpclib_clients_too(
    settings: ServerSettings,
) -> None:
    # grpclib answers it without content-type, which its own clients took for UNKNOWN.
    async with orders_server(settings, Orders(), builtin_services=False) as (running, channel):
        missing = await call(channel, "Cancel", OrderRequest(id="1"))
        async with Client(running.target) as client:
            with pytest.raises(RpcError) as no_greeter:
                await client.say_hello("x")
    assert missing.status == StatusCode.UNIMPLEMENTED
    assert (no_greeter.value.status, no_greeter.value.message) == (
        StatusCode.UNIMPLEMENTED,
        "Method not found",
    )


async def test_nothing_to_serve_is_a_config_error(settings: ServerSettings) -> None:
    with pytest.raises(ConfigError, match="nothing to serve"):
        async with serve(settings=settings, builtin_services=False):
            pass


def test_a_scope_for_a_method_the_service_lacks_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"orders.Orders has no method Cancel \(it has Get"):
        HostedService(Orders(), scopes={"Cancel": "orders:write"})


async def test_two_services_serving_one_method_is_a_config_error(settings: ServerSettings) -> None:
    with pytest.raises(ConfigError, match=r"two hosted services both serve /orders\.Orders/Get"):
        async with serve(settings=settings, services=[Orders(), Orders()]):
            pass


@pytest.mark.parametrize(
    ("hosted", "method", "metadata", "status"),
    [
        # a bare service declares no scope: refused, token or not
        (False, "Get", BEARER, StatusCode.PERMISSION_DENIED),
        (True, "Get", {}, StatusCode.UNAUTHENTICATED),
        (True, "Get", {"authorization": "Bearer muxs_wrong"}, StatusCode.UNAUTHENTICATED),
        (True, "Get", BEARER, StatusCode.OK),  # orders:read, granted
        (True, "Place", BEARER, StatusCode.PERMISSION_DENIED),  # orders:write, not granted
        (True, "Search", {}, StatusCode.OK),  # public
    ],
)
async def test_own_scopes_are_enforced(
    settings: ServerSettings,
    tmp_path: Path,
    hosted: bool,
    method: str,
    metadata: dict[str, str],
    status: StatusCode,
) -> None:
    granted = ["orders:read"] if hosted else ["greeter"]  # a bare service declares no scope
    settings = replace(settings, auth_tokens=tokens_file(tmp_path, granted))
    service: ServiceLike = Orders()
    if hosted:
        service = HostedService(
            Orders(), scopes={"Get": "orders:read"}, scope="orders:write", public=["Search"]
        )
    async with orders_server(settings, service) as (_, channel):
        if method == "Search":
            from tests.server.orders import OrdersStub

            replies = [o async for o in OrdersStub(channel).search(OrderRequest())]
            assert replies == []
            return
        request = OrderRequest(id="whoami") if method == "Get" else Order(item="tea")
        reply = await call(channel, method, request, metadata=metadata)
    assert reply.status == status
    if status == StatusCode.OK:
        assert reply.reply.item == "reader"  # current().identity inside the handler


def test_a_tokens_file_may_grant_only_known_scopes(tmp_path: Path) -> None:
    from muxs.server.verification.authenticator import Authenticator

    settings = ServerSettings(auth_tokens=tokens_file(tmp_path, ["orders:read"]))
    Authenticator.from_settings(settings, {"/orders.Orders/Get": "orders:read"})
    with pytest.raises(ConfigError, match=r"unknown scope\(s\) orders:read"):
        Authenticator.from_settings(settings)


async def test_each_own_service_has_its_health_entry(settings: ServerSettings) -> None:
    async with orders_server(settings) as (running, channel):
        reply = await HealthStub(channel).Check(HealthCheckRequest(service="orders.Orders"))
        assert reply.status == HealthCheckResponse.SERVING
        running.lifecycle.health.drain()  # as a drain begins
        reply = await HealthStub(channel).Check(HealthCheckRequest(service="orders.Orders"))
        assert reply.status == HealthCheckResponse.NOT_SERVING


async def test_the_drain_refuses_own_services(settings: ServerSettings) -> None:
    async with orders_server(settings) as (running, channel):
        running.lifecycle.calls.refuse_new_calls()
        reply = await call(channel, "Place", Order(item="tea"))
    assert reply.status == StatusCode.UNAVAILABLE


async def ask_reflection(channel: Channel, request: Any) -> Any:
    async with reflection_grpc.ServerReflectionStub(channel).ServerReflectionInfo.open() as stream:
        await stream.send_message(request, end=True)
        return await stream.recv_message()


@pytest.mark.parametrize("as_bytes", [False, True])
async def test_reflection_describes_own_services_from_their_descriptor_set(
    settings: ServerSettings, as_bytes: bool
) -> None:
    descriptors = DESCRIPTOR_SET.read_bytes() if as_bytes else DESCRIPTOR_SET
    service = HostedService(Orders(), descriptor_set=descriptors)
    async with orders_server(settings, service) as (_, channel):
        listed = await ask_reflection(
            channel, reflection_pb2.ServerReflectionRequest(list_services="")
        )
        described = await ask_reflection(
            channel,
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="orders.Orders"),
        )
    names = {s.name for s in listed.list_services_response.service}
    assert {"orders.Orders", "muxs.Greeter"} <= names
    [serialized] = described.file_descriptor_response.file_descriptor_proto
    file = FileDescriptorProto.FromString(serialized)
    assert [m.name for m in file.service[0].method] == ["Get", "Place", "Search"]


async def test_without_a_descriptor_set_reflection_lists_but_cannot_describe(
    settings: ServerSettings,
) -> None:
    async with orders_server(settings) as (_, channel):
        described = await ask_reflection(
            channel,
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="orders.Orders"),
        )
    assert described.error_response.error_code == StatusCode.NOT_FOUND.value


def test_a_descriptor_set_that_is_not_one_is_a_config_error(settings: ServerSettings) -> None:
    from muxs.server.reflection import descriptor_pool

    with pytest.raises(ConfigError, match="not a FileDescriptorSet"):
        descriptor_pool([b"\xff\xff not protobuf"])


async def test_own_calls_are_in_the_access_log(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxs.access_log")
    async with orders_server(settings) as (_, channel):
        await call(channel, "Get", OrderRequest(id="nope"))
    [line] = [r.getMessage() for r in caplog.records if r.name == "muxs.access_log"]
    assert "/orders.Orders/Get" in line
    assert "NOT_FOUND" in line


async def test_own_calls_are_in_the_metrics(settings: ServerSettings) -> None:
    from tests.server.test_metrics import labels, scrape

    async with orders_server(replace(settings, metrics_port=0)) as (running, channel):
        await call(channel, "Place", Order(item="tea"))
        await call(channel, "Get", OrderRequest(id="nope"))
        samples = await scrape(running)
    place = labels("orders.Orders", "Place", "unary", grpc_code="OK")
    get = labels("orders.Orders", "Get", "unary", grpc_code="NOT_FOUND")
    assert samples[("grpc_server_handled_total", place)] == 1
    assert samples[("grpc_server_handled_total", get)] == 1


class Stuck(Orders):
    """``Get`` never answers."""

    async def get(self, message: OrderRequest) -> Order:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_max_call_seconds_bounds_own_calls(settings: ServerSettings) -> None:
    settings = replace(settings, max_call_seconds=0.2)
    async with orders_server(settings, Stuck()) as (_, channel):
        reply = await call(channel, "Get", OrderRequest(id="1"))
    assert reply.status == StatusCode.DEADLINE_EXCEEDED


async def test_the_services_setting_hosts_what_its_factory_returns(
    settings: ServerSettings,
) -> None:
    from muxs.server.config import load_settings
    from tests.server.test_config import flags

    loaded = load_settings(flags("--services", "tests.server.orders:hosted"), {})
    assert loaded.settings.services == "tests.server.orders:hosted"
    settings = replace(settings, services=loaded.settings.services)
    async with serve(settings=settings) as running, Client(running.target) as client:
        channel = Channel("127.0.0.1", running.port)
        try:
            placed = await call(channel, "Place", Order(item="tea"))
        finally:
            channel.close()
        assert (await client.say_hello("x")).message == "Hello, x!"
    assert placed.status == StatusCode.OK


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("tests.server.orders", "'tests.server.orders' is not module:factory"),
        ("tests.server.no_such_module:hosted", "cannot import tests.server.no_such_module"),
        ("tests.server.orders:no_such_factory", "has no callable no_such_factory"),
        ("tests.server.orders:DESCRIPTOR_SET", "has no callable DESCRIPTOR_SET"),
        ("tests.server.orders:Order", "must return a list of services"),
    ],
)
async def test_a_services_setting_that_cannot_be_used_is_a_config_error(
    settings: ServerSettings, value: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        async with serve(settings=replace(settings, services=value)):
            pass
    assert refused.value.option == "services"
    assert problem in refused.value.problem
