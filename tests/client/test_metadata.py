"""Metadata in the SDK: sent per call and client-wide, checked before it goes, and the
server's headers and trailers read back through ``CallInfo`` and ``RpcError``."""

from __future__ import annotations

import asyncio

import pytest

import muxs
from muxs import CallInfo, Client, ConfigError, RpcError, StatusCode, SyncClient
from tests.echo import EchoGreeter

BLOB = bytes(range(256))


async def test_a_calls_metadata_reaches_the_server_and_its_trailers_come_back(
    echo_target: str,
) -> None:
    info = CallInfo()
    sent: dict[str, str | bytes] = {"x-request-id": "r1", "x-blob-bin": BLOB}
    async with Client(echo_target, timeout=10) as client:
        reply = await client.say_hello("you", metadata=sent, call_info=info)
    assert reply.message == "Hello, you!"
    assert info.status is StatusCode.OK
    assert info.headers["x-echo-request-id"] == "r1"
    assert info.headers["x-echo-blob-bin"] == BLOB  # -bin as bytes both ways
    assert info.trailers.get_all("x-request-id") == ["r1"]
    assert info.trailers["x-blob-bin"] == BLOB


async def test_client_wide_metadata_is_merged_and_a_call_replaces_its_keys(
    echo_target: str,
) -> None:
    info = CallInfo()
    defaults = [("x-tenant", "a"), ("x-request-id", "default")]
    async with Client(echo_target, timeout=10, metadata=defaults) as client:
        await client.say_hello("you", metadata=[("x-request-id", "mine")], call_info=info)
    assert info.trailers.get_all("x-tenant") == ["a"]
    assert info.trailers.get_all("x-request-id") == ["mine"]


async def test_a_streams_trailers_arrive_when_it_ends(echo_target: str) -> None:
    info = CallInfo()
    async with Client(echo_target, timeout=10) as client:
        replies = client.lots_of_replies("x", 3, metadata={"x-k": "v"}, call_info=info)
        assert [r.index async for r in replies] == [1, 2, 3]
    assert info.headers["x-echo-k"] == "v"
    assert info.trailers["x-k"] == "v"
    assert info.status is StatusCode.OK


async def test_the_sync_client_takes_metadata_and_fills_call_info(echo_target: str) -> None:
    info = CallInfo()

    def calls() -> None:  # in a thread: the server runs on this test's loop
        with SyncClient(echo_target, timeout=10, metadata={"x-tenant": "b"}) as client:
            assert client.say_hello("you", metadata={"x-blob-bin": b"\0"}, call_info=info)
            assert [r.index for r in client.lots_of_replies("x", 2)] == [1, 2]

    await asyncio.to_thread(calls)
    assert info.trailers["x-tenant"] == "b"
    assert info.trailers["x-blob-bin"] == b"\0"


async def test_an_error_carries_the_servers_trailers(live_server: muxs.RunningServer) -> None:
    info = CallInfo()
    async with Client(live_server.target, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await client.read("missing.txt", call_info=info)
    assert caught.value.status is StatusCode.NOT_FOUND
    assert info.status is StatusCode.NOT_FOUND
    assert caught.value.trailers == info.trailers


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ({"X-Upper": "v"}, "keys are lowercase"),
        ({"bad key": "v"}, "is not made of"),
        ({"grpc-timeout": "1S"}, "reserved"),
        ({"content-type": "x"}, "reserved"),
        ({"x-blob-bin": "text"}, "must be bytes"),
        ({"x-text": b"bytes"}, "must be str"),
        ({"x-text": "caf\u00e9"}, "not printable ASCII"),
        ({"x-text": "a\nb"}, "not printable ASCII"),
        ([("x-only-key",)], "is not a (key, value) pair"),
    ],
)
async def test_invalid_metadata_is_refused_before_the_call_is_sent(
    echo_target: str, echo_greeter: EchoGreeter, metadata: object, problem: str
) -> None:
    async with Client(echo_target, timeout=10) as client:
        with pytest.raises(ConfigError) as caught:
            await client.say_hello("you", metadata=metadata)  # type: ignore[arg-type]
    assert caught.value.option == "metadata"
    assert problem in caught.value.problem
    assert echo_greeter.calls == 0


async def test_invalid_client_wide_metadata_is_refused_at_construction() -> None:
    with pytest.raises(ConfigError, match="keys are lowercase"):
        Client("127.0.0.1:1", metadata={"Bad": "v"})
