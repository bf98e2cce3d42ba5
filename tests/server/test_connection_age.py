"""``max_connection_age`` and its grace, seen from the wire and from the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpclib.client
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, PingFrame, RstStreamFrame

from muxs import Client, RunningServer, ServerSettings
from muxs.api import HelloReply, HelloRequest
from muxs.channel import AnsweringChannel
from muxs.server.limits import LimitedServer, jittered_age
from muxs.server.services.greeter import greeting
from tests.polling import until
from tests.rawh2 import grpc_frame, request_headers

LOTS_OF_GREETINGS = "/muxs.Greeter/LotsOfGreetings"
ANY_STREAM = 2**31 - 1


@pytest.fixture
def settings(root_dir: Path, request: pytest.FixtureRequest) -> ServerSettings:
    return ServerSettings(
        host="127.0.0.1",
        port=0,
        root=root_dir,
        idle_timeout=0,
        keepalive_timeout=5.0,
        max_connection_age=0.3,
        **getattr(request, "param", {}),
    )


class FrameClient:
    """An HTTP/2 client that reads the server's frames one by one (h2 itself stops at a
    GOAWAY) and answers its PINGs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.h2 = H2Connection(H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self._flush()

    @classmethod
    async def open(cls, server: RunningServer) -> FrameClient:
        return cls(*await asyncio.open_connection(server.host, server.port))

    def start(self) -> int:
        stream_id: int = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, request_headers(LOTS_OF_GREETINGS))
        self.h2.send_data(stream_id, grpc_frame(bytes(HelloRequest(name="a"))))
        self._flush()
        return stream_id

    def end(self, stream_id: int) -> None:
        self.h2.end_stream(stream_id)
        self._flush()

    async def frames(self) -> AsyncIterator[Frame]:
        """The server's frames until it closes the connection, PINGs answered."""
        while head := await self._reader.read(9):
            head += await self._reader.readexactly(9 - len(head))
            frame, length = Frame.parse_frame_header(memoryview(head))
            frame.parse_body(memoryview(await self._reader.readexactly(length)))
            if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
                self._writer.write(PingFrame(0, frame.opaque_data, flags=["ACK"]).serialize())
            yield frame

    def _flush(self) -> None:
        self._writer.write(self.h2.data_to_send())

    def close(self) -> None:
        self._writer.close()


async def test_an_old_connection_gets_two_goaways_and_its_call_finishes(
    live_server: RunningServer,
) -> None:
    client = await FrameClient.open(live_server)
    try:
        stream_id = client.start()
        goaways: list[GoAwayFrame] = []
        resets: list[tuple[int, int]] = []
        later = 0
        replies = b""
        async for frame in client.frames():
            if isinstance(frame, GoAwayFrame):
                goaways.append(frame)
                if len(goaways) == 2:  # the final one: the call in flight may end now
                    later = client.start()  # a stream past it is refused
                    client.end(stream_id)
            elif isinstance(frame, RstStreamFrame):
                resets.append((frame.stream_id, frame.error_code))
            elif isinstance(frame, DataFrame) and frame.stream_id == stream_id:
                replies += frame.data
        assert [(g.last_stream_id, g.error_code, g.additional_data) for g in goaways[:2]] == [
            (ANY_STREAM, ErrorCodes.NO_ERROR, b"max_age"),
            (stream_id, ErrorCodes.NO_ERROR, b"max_age"),
        ]
        assert resets == [(later, ErrorCodes.REFUSED_STREAM)]
        assert replies == grpc_frame(bytes(HelloReply(message="Hello, a!")))
    finally:
        client.close()


@pytest.mark.parametrize("settings", [{"max_connection_age_grace": 0.3}], indirect=True)
async def test_a_call_past_the_grace_is_cancelled_and_the_connection_closed(
    live_server: RunningServer,
) -> None:
    server = live_server.server
    assert isinstance(server, LimitedServer)
    client = await FrameClient.open(live_server)
    try:
        client.start()  # never ended
        await until(lambda: len(server.connections) == 1)
        (protocol,) = server.connections
        goaways = [frame async for frame in client.frames() if isinstance(frame, GoAwayFrame)]
        assert [g.additional_data for g in goaways] == [b"max_age"] * 3
        await until(lambda: protocol.calls_open == 0)  # its handler was cancelled
    finally:
        client.close()


async def test_the_sdk_takes_a_new_connection_after_a_max_age_goaway(
    live_server: RunningServer,
) -> None:
    async with Client(live_server.target) as client:
        assert (await client.say_hello("before")).message == "Hello, before!"
        protocol = client._caller.channel._protocol
        assert protocol is not None
        handler = protocol.handler
        assert isinstance(handler, grpclib.client.Handler)
        await until(lambda: handler.connection_lost)  # grpclib's channel read the GOAWAY
        assert (await client.say_hello("after")).message == "Hello, after!"
        assert client._caller.channel._protocol is not protocol


def test_the_age_is_jittered_by_a_tenth() -> None:
    ages = [jittered_age(100.0) for _ in range(200)]
    assert all(90.0 <= age <= 110.0 for age in ages)
    assert max(ages) - min(ages) > 10.0  # connections opened together do not close together


async def test_an_sdk_call_in_flight_at_a_max_age_goaway_finishes(
    live_server: RunningServer,
) -> None:
    server = live_server.server
    assert isinstance(server, LimitedServer)
    names: asyncio.Queue[str | None] = asyncio.Queue()

    async def queued() -> AsyncIterator[str]:
        while (name := await names.get()) is not None:
            yield name

    async with Client(live_server.target) as client:
        call = asyncio.ensure_future(client.lots_of_greetings(queued()))
        names.put_nowait("a")
        await until(lambda: len(server.connections) == 1)
        (old,) = server.connections
        await until(lambda: old.refuses_stream(ANY_STREAM))  # the final GOAWAY is sent
        channel = client._caller.channel
        assert isinstance(channel, AnsweringChannel)
        retired = channel._protocol
        assert retired is not None
        await until(lambda: not channel.reusable(retired))  # the SDK read it
        # A new call goes on a new connection, while the old one's call goes on.
        assert (await client.say_hello("b")).message == "Hello, b!"
        assert channel._protocol is not retired
        assert old.calls_open == 1
        names.put_nowait("c")
        names.put_nowait(None)
        assert (await call).message == greeting(["a", "c"])
        await until(lambda: old not in server.connections)  # closed once its call ended
