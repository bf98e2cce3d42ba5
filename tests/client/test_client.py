"""The SDK over a real socket: both services on one channel, and errors mapped to RpcError."""

import pytest

from muxs import Client, RpcError, RunningServer, StatusCode
from muxs.client import parse_target


async def test_one_channel_reaches_both_services(live_server: RunningServer) -> None:
    async with Client(live_server.target) as client:
        assert (await client.say_hello("you")).message == "Hello, you!"
        assert (await client.write("f.txt", "text")).code == 0
        assert (await client.read("f.txt")).text == "text"


async def test_refusals_arrive_with_their_status_over_the_wire(live_server: RunningServer) -> None:
    async with Client(live_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.read("../etc/passwd")
    assert caught.value.status is StatusCode.PERMISSION_DENIED
    assert str(caught.value) == "PERMISSION_DENIED: ../etc/passwd leads outside the root"


async def test_an_unreachable_server_is_unavailable(closed_port: int) -> None:
    async with Client(f"127.0.0.1:{closed_port}") as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert f"127.0.0.1:{closed_port}" in caught.value.message


async def test_an_expired_deadline_is_deadline_exceeded(silent_port: int) -> None:
    async with Client(f"127.0.0.1:{silent_port}", timeout=0.2) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
        assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(RpcError) as caught:
            await client.read("f.txt", timeout=0.1)
        assert caught.value.status is StatusCode.DEADLINE_EXCEEDED


async def call_of_kind(client: Client, kind: str) -> object:
    if kind == "unary":
        return await client.say_hello("x")
    if kind == "server stream":
        return [reply async for reply in client.lots_of_replies("x")]
    if kind == "client stream":
        return await client.lots_of_greetings(["a", "b"])
    return [reply async for reply in client.bidi_hello(["a", "b"])]


@pytest.mark.parametrize("kind", ["unary", "server stream", "client stream", "bidi"])
async def test_every_call_kind_reports_an_expired_deadline(silent_port: int, kind: str) -> None:
    async with Client(f"127.0.0.1:{silent_port}", timeout=0.2) as client:
        with pytest.raises(RpcError) as caught:
            await call_of_kind(client, kind)
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert caught.value.message == "deadline exceeded"


@pytest.mark.parametrize(
    ("target", "expected"),
    [("127.0.0.1:50051", ("127.0.0.1", 50051)), ("[::1]:80", ("::1", 80)), ("h:1", ("h", 1))],
)
def test_parse_target_accepts_host_port(target: str, expected: tuple[str, int]) -> None:
    assert parse_target(target) == expected


@pytest.mark.parametrize("target", ["nohost", ":50051", "h:", "h:x", "h:0", "h:70000"])
def test_parse_target_refuses_malformed_targets(target: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_target(target)
