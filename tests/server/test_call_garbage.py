"""A call's objects are freed as the call ends, by reference counting: none is left in a
reference cycle for the garbage collector (which would then run every few calls)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from grpclib.events import RecvRequest, listen

from muxs import Client, RunningServer
from tests.polling import until


@pytest.fixture
def no_garbage_collection() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.mark.usefixtures("no_garbage_collection")
async def test_a_unary_calls_http2_stream_is_freed_as_the_call_ends(
    live_server: RunningServer,
) -> None:
    streams: list[weakref.ref[Any]] = []

    async def on_request(event: RecvRequest) -> None:
        handler = event.method_func

        async def observed(stream: Any) -> None:
            streams.append(weakref.ref(stream._stream))  # grpclib's HTTP/2 stream
            await handler(stream)

        event.method_func = observed

    listen(live_server.server, RecvRequest, on_request)
    async with Client(live_server.target) as client:
        for name in ("a", "b", "c"):
            assert (await client.say_hello(name)).message == f"Hello, {name}!"
        assert len(streams) == 3
        await until(lambda: all(stream() is None for stream in streams))
