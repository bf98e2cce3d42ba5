"""A server may end a call before the client has sent all its requests, then reset the stream
NO_ERROR to stop the rest (RFC 9113 §8.1: the client must not discard the response, as grpc-go
and grpcio's servers do it); the SDK hands over every reply and the trailers' status, whatever
the frames' order in reads, and never waits for requests that can no longer go."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived

from muxs import Client, RpcError, StatusCode
from muxs.api import HelloReply, HelloRequest
from tests.rawh2 import grpc_frame


class _EndingEarly:
    """A Greeter server that, once a call's first request comes, answers two greetings and
    its trailers (``status``), then resets the stream ``code`` (None: leaves it open) — in
    one write, or each frame in a write of its own (``split``)."""

    def __init__(self, status: StatusCode, code: ErrorCodes | None, split: bool) -> None:
        self.status = status
        self.code = code
        self.split = split

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h2 = H2Connection(H2Configuration(client_side=False))
        h2.initiate_connection()
        writer.write(h2.data_to_send())
        answered: set[int] = set()
        try:
            while data := await reader.read(65536):
                for event in h2.receive_data(data):
                    if isinstance(event, DataReceived) and event.stream_id not in answered:
                        answered.add(event.stream_id)
                        name = HelloRequest.parse(event.data[5:]).name
                        await self._answer(h2, writer, event.stream_id, name)
                writer.write(h2.data_to_send())
                await writer.drain()
        finally:
            writer.close()

    async def _answer(
        self, h2: H2Connection, writer: asyncio.StreamWriter, stream_id: int, name: str
    ) -> None:
        h2.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        await self._sent(h2, writer)
        for greeting in (f"Hello {name}", f"Bye {name}"):
            h2.send_data(stream_id, grpc_frame(bytes(HelloReply(greeting))))
            await self._sent(h2, writer)
        trailers = [("grpc-status", str(self.status.value))]
        h2.send_headers(stream_id, trailers, end_stream=True)
        await self._sent(h2, writer)
        if self.code is not None:
            h2.reset_stream(stream_id, self.code)

    async def _sent(self, h2: H2Connection, writer: asyncio.StreamWriter) -> None:
        if self.split:
            writer.write(h2.data_to_send())
            await writer.drain()


@asynccontextmanager
async def _client_of(
    code: ErrorCodes | None, *, status: StatusCode = StatusCode.OK, split: bool = False
) -> AsyncIterator[Client]:
    """A client of an ``_EndingEarly`` server listening on a port of its own."""
    server = await asyncio.start_server(_EndingEarly(status, code, split).handle, "127.0.0.1", 0)
    try:
        async with Client(f"127.0.0.1:{server.sockets[0].getsockname()[1]}") as client:
            yield client
    finally:
        server.close()


async def _names_without_end(first: str) -> AsyncIterator[str]:
    yield first
    await asyncio.Event().wait()  # the client has more to send, later
    yield "never"


@pytest.mark.parametrize("split", [False, True], ids=["one-read", "frame-by-frame"])
async def test_a_reset_after_the_trailers_keeps_every_reply(split: bool) -> None:
    async with _client_of(ErrorCodes.NO_ERROR, split=split) as client:
        replies = [r.message async for r in client.bidi_hello(_names_without_end("ann"))]
    assert replies == ["Hello ann", "Bye ann"]


@pytest.mark.parametrize("code", [ErrorCodes.NO_ERROR, None], ids=["reset", "left-open"])
async def test_a_call_the_server_ends_early_ends_with_its_status(code: ErrorCodes | None) -> None:
    replies: list[str] = []

    async def greet(client: Client) -> None:
        async for reply in client.bidi_hello(_names_without_end("ann")):
            replies.append(reply.message)

    async with _client_of(code, status=StatusCode.FAILED_PRECONDITION) as client:
        with pytest.raises(RpcError) as raised:
            await greet(client)
    assert raised.value.status is StatusCode.FAILED_PRECONDITION
    assert replies == ["Hello ann", "Bye ann"]


async def test_a_server_stream_reset_after_its_trailers_keeps_every_reply() -> None:
    async with _client_of(ErrorCodes.NO_ERROR, split=True) as client:
        replies = [r.message async for r in client.lots_of_replies("ann")]
    assert replies == ["Hello ann", "Bye ann"]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCodes.CANCEL, StatusCode.CANCELLED),
        (ErrorCodes.ENHANCE_YOUR_CALM, StatusCode.RESOURCE_EXHAUSTED),
        (ErrorCodes.INTERNAL_ERROR, StatusCode.INTERNAL),
    ],
)
async def test_a_reset_other_than_no_error_fails_the_call_with_grpcs_status_for_it(
    code: ErrorCodes, status: StatusCode
) -> None:
    async with _client_of(code) as client:
        with pytest.raises(RpcError) as raised:
            [r async for r in client.bidi_hello(_names_without_end("ann"))]
    assert raised.value.status is status
    assert raised.value.message.endswith(f"reset the call's stream ({code.name})")
