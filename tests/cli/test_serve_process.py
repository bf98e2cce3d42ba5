"""``muxs serve`` as a real process: it says where it listens and drains on signals."""

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

from muxs import Client, HelloReply, HelloRequest, RpcError, StatusCode
from muxs.calls import Caller
from muxs.client import parse_target
from muxs.server.storage import TEMP_PREFIX

LISTENING = re.compile(rb"muxs listening on (127\.0\.0\.1:\d+)")

Serving = tuple[asyncio.subprocess.Process, asyncio.StreamReader, str]


@asynccontextmanager
async def muxs_serve(root: Path, *args: str) -> AsyncIterator[Serving]:
    """``muxs serve`` on an ephemeral port of 127.0.0.1: the process, its stderr, its target."""
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(root), *args],
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while line := await process.stderr.readline():
                if match := LISTENING.search(line):
                    break
        assert match, "muxs serve exited before it listened"
        yield process, process.stderr, match.group(1).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_logs_its_address_and_stops_on_signal(tmp_path: Path, signum: int) -> None:
    async with muxs_serve(tmp_path / "data") as (process, stderr, target):
        async with Client(target) as client:
            assert (await client.say_hello("process")).message == "Hello, process!"
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert b"Traceback" not in await stderr.read()


async def test_json_logs_are_one_object_per_line_without_tokens_even_at_debug(
    tmp_path: Path,
) -> None:
    args = ["--log-format", "json", "--log-level", "DEBUG"]
    async with muxs_serve(tmp_path / "data", *args) as (process, stderr, target):
        channel = Channel(*parse_target(target))
        caller = Caller(channel, target, None)
        try:
            reply = await caller.unary_unary(
                "/muxs.Greeter/SayHello",
                HelloRequest(name="you"),
                HelloReply,
                None,
                {"authorization": "Bearer s3cret"},
            )
        finally:
            channel.close()
        assert reply.message == "Hello, you!"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        logged = (await stderr.read()).decode()
    assert "s3cret" not in logged
    entries = [json.loads(line) for line in logged.splitlines()]
    [access] = [entry for entry in entries if entry["logger"] == "muxs.access_log"]
    assert access["method"] == "/muxs.Greeter/SayHello"
    assert access["status"] == "OK"
    assert access["level"] == "INFO"
    assert access["message"].startswith("method=/muxs.Greeter/SayHello ")
    assert {"time", "peer", "code", "duration_ms", "messages_in", "messages_out"} <= set(access)


@pytest.mark.slow
async def test_sigterm_drains_a_stream_in_flight_then_exits_0(tmp_path: Path) -> None:
    root = tmp_path / "data"
    async with muxs_serve(root, "--shutdown-grace", "30") as (process, stderr, target):
        channel = Channel(*parse_target(target))
        client = Client(target, channel=channel)
        outbox: asyncio.Queue[str | None] = asyncio.Queue()

        async def names() -> AsyncIterator[str]:
            while (name := await outbox.get()) is not None:
                yield name

        try:
            assert (await client.write("kept.txt", "before the signal")).code == 0
            async with (
                HealthStub(channel).Watch.open() as watch,
                client.bidi_hello(names()) as replies,
            ):
                await watch.send_message(HealthCheckRequest(service=""), end=True)
                assert (await watch.recv_message()) == HealthCheckResponse(
                    status=HealthCheckResponse.SERVING
                )
                await outbox.put("early")
                assert (await anext(replies)).message == "Hello, early!"

                process.send_signal(signal.SIGTERM)
                # The drain has begun once the watch says so.
                assert (await watch.recv_message()) == HealthCheckResponse(
                    status=HealthCheckResponse.NOT_SERVING
                )
                await watch.cancel()  # a watch would last as long as the connection
                with pytest.raises(RpcError) as same_connection:
                    await client.say_hello("new call, old connection")
                async with Client(target) as other:
                    with pytest.raises(RpcError) as new_connection:
                        await other.say_hello("new call, new connection")

                await outbox.put("late")
                assert (await anext(replies)).message == "Hello, late!"
                await outbox.put(None)
                assert [reply async for reply in replies] == []
        finally:
            channel.close()
        assert same_connection.value.status is StatusCode.UNAVAILABLE
        assert "shutting down" in same_connection.value.message
        assert new_connection.value.status is StatusCode.UNAVAILABLE
        assert await asyncio.wait_for(process.wait(), 30) == 0
        logged = await stderr.read()
    assert b"Traceback" not in logged
    assert b"method=/muxs.Greeter/BidiHello" in logged
    assert sorted(p.name for p in root.iterdir()) == ["kept.txt"]
    assert not list(root.rglob(f"{TEMP_PREFIX}*"))
