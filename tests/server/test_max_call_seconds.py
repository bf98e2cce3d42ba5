"""``max_call_seconds``: the server's own deadline, for calls whose client sent none."""

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from muxs import (
    Client,
    ConfigError,
    RpcError,
    RunningServer,
    ServerSettings,
    StatusCode,
    serve,
)
from muxs.server.config import load_settings
from tests.probe import COUNT, NAME, CallProbe, read_all

LIMIT = 0.3
GENEROUS_LIMIT = 600.0
MESSAGE = "the call ran past this server's limit of 0.3 seconds"


@pytest.fixture
def settings(root_dir: Path) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, root=root_dir, max_call_seconds=LIMIT)


async def never() -> AsyncIterator[str]:
    yield "a"
    await asyncio.Event().wait()


async def test_a_stream_without_a_deadline_ends_at_the_servers_limit(
    live_server: RunningServer, probe: CallProbe
) -> None:
    async with (
        Client(live_server.target) as client,
        client.lots_of_replies(NAME, COUNT) as replies,
    ):
        await anext(replies)
        assert await probe.finished() == ["DEADLINE_EXCEEDED"]
        with pytest.raises(RpcError) as caught:
            await read_all(replies)  # what was in flight, then the status
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert caught.value.message == MESSAGE
    assert probe.sent < COUNT


async def greet_all(client: Client, names: AsyncIterator[str]) -> object:
    return await client.lots_of_greetings(names)


async def chat(client: Client, names: AsyncIterator[str]) -> object:
    return await read_all(client.bidi_hello(names))


@pytest.mark.parametrize("call", [greet_all, chat])
async def test_stalled_request_streams_end_at_the_servers_limit(
    live_server: RunningServer,
    probe: CallProbe,
    call: Callable[[Client, AsyncIterator[str]], Awaitable[object]],
) -> None:
    async with Client(live_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await call(client, never())
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert caught.value.message == MESSAGE
    assert await probe.finished() == ["DEADLINE_EXCEEDED"]


async def test_a_shorter_client_deadline_still_wins(
    live_server: RunningServer, probe: CallProbe
) -> None:
    async with Client(live_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.lots_of_greetings(never(), timeout=0.1)
    assert caught.value.message == "deadline exceeded"  # the SDK's own, not the server's limit
    assert await probe.finished() == ["cancelled"]


async def test_calls_within_the_limit_are_untouched(settings: ServerSettings) -> None:
    # LIMIT could cut even these calls short on a loaded machine: here, one they cannot reach.
    async with (
        serve(settings=replace(settings, max_call_seconds=GENEROUS_LIMIT)) as running,
        Client(running.target) as client,
    ):
        assert (await client.say_hello("you")).message == "Hello, you!"
        assert len([r async for r in client.lots_of_replies("you", 100)]) == 100


def test_the_limit_is_off_by_default() -> None:
    assert ServerSettings().max_call_seconds is None
    assert load_settings({}, {"MUXS_MAX_CALL_SECONDS": "none"}).settings.max_call_seconds is None
    assert load_settings({}, {"MUXS_MAX_CALL_SECONDS": "2.5"}).settings.max_call_seconds == 2.5


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_the_limit_must_be_a_positive_number_of_seconds(value: float) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(max_call_seconds=value)
    assert caught.value.option == "max_call_seconds"
    assert caught.value.problem == f"{value} is not a positive number of seconds"
