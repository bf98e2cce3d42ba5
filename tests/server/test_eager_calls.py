"""The first call a read opens starts in that read's turn of the event loop (Python 3.12+:
an eager task, once the read's events are processed), and a call reset or closed within its
read never starts, as a task cancelled before its first step never ran."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpclib.server
import pytest
from h2.errors import ErrorCodes

from muxs import RunningServer, StatusCode
from muxs._internals import EAGER_TASKS
from muxs.api import HelloReply, HelloRequest
from muxs.server.limits import LimitedServer, _LimitedProtocol
from tests.polling import until
from tests.rawh2 import RawConnection, Reply, grpc_frame, request_headers

SAY_HELLO = "/muxs.Greeter/SayHello"


@pytest.fixture
def started_in_a_read(live_server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each call whose task the server runs, in order: whether its first step ran while
    a read was fed (grpclib's ``request_handler`` is the body of each call's task)."""
    feeding = False
    feed = _LimitedProtocol._feed

    def watched(self: _LimitedProtocol, *args: object) -> None:
        nonlocal feeding
        feeding = True
        try:
            feed(self, *args)  # type: ignore[arg-type]
        finally:
            feeding = False

    monkeypatch.setattr(_LimitedProtocol, "_feed", watched)
    started: list[bool] = []
    request_handler = grpclib.server.request_handler

    async def recorded(*args: Any) -> None:
        started.append(feeding)
        await request_handler(*args)

    monkeypatch.setattr(grpclib.server, "request_handler", recorded)
    return started


def _open(conn: RawConnection, name: str) -> int:
    """A whole SayHello request (headers, message, end), queued in h2, not yet written."""
    stream_id: int = conn.h2.get_next_available_stream_id()
    conn.replies[stream_id] = Reply()
    conn.h2.send_headers(stream_id, request_headers(SAY_HELLO))
    conn.h2.send_data(stream_id, grpc_frame(bytes(HelloRequest(name=name))), end_stream=True)
    return stream_id


def _write(conn: RawConnection) -> None:
    """What h2 has queued, in one write: the server reads it in one read."""
    conn.write_raw(conn.h2.data_to_send())


def _protocol(server: RunningServer) -> Iterator[_LimitedProtocol]:
    assert isinstance(server.server, LimitedServer)
    return iter(server.server.connections)


async def test_the_first_call_a_read_opens_starts_in_its_turn_the_next_in_the_next(
    live_server: RunningServer, started_in_a_read: list[bool]
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        streams = [_open(conn, "first"), _open(conn, "second")]
        _write(conn)
        replies = [await conn.reply(stream_id) for stream_id in streams]
    assert [reply.grpc_status for reply in replies] == [StatusCode.OK.value] * 2
    assert [reply.messages() for reply in replies] == [
        [bytes(HelloReply(message=f"Hello, {name}!"))] for name in ("first", "second")
    ]
    assert started_in_a_read == [EAGER_TASKS, False]


async def test_a_call_reset_in_the_read_that_opens_it_never_starts(
    live_server: RunningServer, started_in_a_read: list[bool]
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        reset = _open(conn, "reset")
        conn.h2.reset_stream(reset, ErrorCodes.CANCEL)
        _write(conn)
        (protocol,) = _protocol(live_server)
        await until(lambda: protocol.calls_open == 0 and protocol.streams_held == 0)
        answered = _open(conn, "after")  # the connection still serves
        _write(conn)
        reply = await conn.reply(answered)
    assert reply.grpc_status == StatusCode.OK.value
    assert started_in_a_read == [EAGER_TASKS]  # "after" only


async def test_a_call_whose_connection_ends_in_the_read_that_opens_it_never_starts(
    live_server: RunningServer, started_in_a_read: list[bool]
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        _open(conn, "closed")
        conn.h2.close_connection()
        _write(conn)
        await conn.wait_closed()
    server = live_server.server
    assert isinstance(server, LimitedServer)
    await until(lambda: not server.connections)
    assert started_in_a_read == []
