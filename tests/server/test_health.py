"""Health: grpc.health.v1 overall and per service; the root's writability; drains."""

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.testing import ChannelFor

from muxs import Client, RpcError, RunningServer, ServerSettings, StatusCode
from muxs.server.health import HealthState
from muxs.server.serving import build_services
from muxs.server.storage import LocalRoot

SERVING = HealthCheckResponse.SERVING
NOT_SERVING = HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize("service", ["", "muxs.Greeter", "muxs.FileController"])
async def test_a_started_server_is_serving(live_server: RunningServer, service: str) -> None:
    async with Client(live_server.target) as client:
        assert await client.check_health(service) == "SERVING"


async def test_an_unknown_service_is_not_found(live_server: RunningServer) -> None:
    async with Client(live_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.check_health("muxs.Nope")
    assert caught.value.status is StatusCode.NOT_FOUND


@pytest.fixture
def health(settings: ServerSettings, storage: LocalRoot) -> HealthState:
    """Health of the muxs services, re-checking the root on every Check."""
    return HealthState(build_services(settings, storage), storage, recheck=0)


@pytest.fixture
async def health_channel(health: HealthState) -> AsyncIterator[Channel]:
    async with ChannelFor([health.service]) as channel:
        yield channel


async def check(channel: Channel, service: str) -> int:
    reply = await HealthStub(channel).Check(HealthCheckRequest(service=service))
    assert reply is not None
    return reply.status


async def test_the_file_controller_follows_whether_its_root_is_writable(
    health_channel: Channel, root_dir: Path
) -> None:
    assert await check(health_channel, "muxs.FileController") == SERVING
    os.rmdir(root_dir)  # as root, permissions would not stop a write; a missing root does
    assert await check(health_channel, "muxs.FileController") == NOT_SERVING
    assert await check(health_channel, "muxs.Greeter") == SERVING
    assert await check(health_channel, "") == SERVING
    os.mkdir(root_dir)
    assert await check(health_channel, "muxs.FileController") == SERVING
    assert os.listdir(root_dir) == []  # the probe leaves nothing behind


async def test_a_drain_turns_everything_not_serving_and_watchers_hear_it(
    health: HealthState, health_channel: Channel
) -> None:
    async with HealthStub(health_channel).Watch.open() as watch:
        await watch.send_message(HealthCheckRequest(service="muxs.Greeter"), end=True)
        assert await watch.recv_message() == HealthCheckResponse(status=SERVING)
        health.drain()
        assert await watch.recv_message() == HealthCheckResponse(status=NOT_SERVING)
        await watch.cancel()
    for service in ("", "muxs.Greeter", "muxs.FileController"):
        assert await check(health_channel, service) == NOT_SERVING
