"""The ping policy (``muxs.server.pings``): on its own, and seen from the wire."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from h2.errors import ErrorCodes

from muxs import RunningServer, ServerSettings, StatusCode
from muxs.api import HelloReply, HelloRequest
from muxs.server.pings import IDLE_PING_INTERVAL, MAX_STRIKES, PingPolicy
from tests.rawh2 import RawConnection, grpc_frame, request_headers

SAY_HELLO = "/muxs.Greeter/SayHello"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pings_at_the_interval_are_never_struck() -> None:
    clock = Clock()
    policy = PingPolicy(10.0, clock)
    for _ in range(100):
        assert not policy.ping_received(None, calls_open=True)
        clock.now += 10.0
    assert policy.strikes == 0


def test_the_third_strike_is_too_many() -> None:
    clock = Clock()
    policy = PingPolicy(10.0, clock)
    verdicts = []
    for _ in range(MAX_STRIKES + 2):
        verdicts.append(policy.ping_received(None, calls_open=True))
        clock.now += 9.0
    assert verdicts == [False] * (MAX_STRIKES + 1) + [True]


def test_data_sent_clears_the_strikes() -> None:
    clock = Clock()
    policy = PingPolicy(10.0, clock)
    for sent in range(100):  # a BDP ping after every DATA the server sends
        assert not policy.ping_received(sent, calls_open=True)
        clock.now += 0.001
    assert policy.strikes == 0


def test_an_interval_of_zero_allows_any_rate() -> None:
    policy = PingPolicy(0.0, Clock())
    assert not any(policy.ping_received(None, calls_open=True) for _ in range(100))


@pytest.mark.parametrize("permit_without_calls", [False, True])
def test_pings_with_no_call_open_are_held_to_two_hours_unless_permitted(
    permit_without_calls: bool,
) -> None:
    clock = Clock()
    policy = PingPolicy(10.0, clock, permit_without_calls=permit_without_calls)
    verdicts = []
    for _ in range(MAX_STRIKES + 2):
        verdicts.append(policy.ping_received(None, calls_open=False))
        clock.now += 10.0
    assert verdicts == [False] * (MAX_STRIKES + 1) + [not permit_without_calls]


def test_pings_with_no_call_open_two_hours_apart_are_never_struck() -> None:
    clock = Clock()
    policy = PingPolicy(10.0, clock)
    for _ in range(10):
        assert not policy.ping_received(None, calls_open=False)
        clock.now += IDLE_PING_INTERVAL
    assert policy.strikes == 0


def test_an_interval_of_zero_allows_any_rate_with_no_call_open_too() -> None:
    policy = PingPolicy(0.0, Clock())
    assert not any(policy.ping_received(None, calls_open=False) for _ in range(100))


@pytest.fixture
def settings(root_dir: Path, request: pytest.FixtureRequest) -> ServerSettings:
    options = getattr(request, "param", {"min_ping_interval": 60.0})
    return ServerSettings(host="127.0.0.1", port=0, root=root_dir, **options)


def ping(conn: RawConnection, payload: int) -> None:
    conn.h2.ping(payload.to_bytes(8, "big"))
    conn.write_raw(conn.h2.data_to_send())


async def test_pings_faster_than_the_policy_get_too_many_pings(
    live_server: RunningServer,
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        for payload in range(MAX_STRIKES + 2):  # far inside the control-frame budget
            ping(conn, payload)
        await conn.wait_closed()
        assert conn.goaway is not None
        assert conn.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert conn.goaway.additional_data == b"too_many_pings"


async def test_pings_between_replies_are_not_struck(live_server: RunningServer) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        for payload in range(3 * MAX_STRIKES):
            ping(conn, payload)
            reply = await conn.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="x"))))
            assert reply.grpc_status == StatusCode.OK.value
        assert conn.goaway is None


#: Pings paced this far apart, against a policy of a quarter of it: never too soon.
PACE = 0.2
PACED = {"min_ping_interval": PACE / 4}


async def paced_pings(conn: RawConnection) -> None:
    """Ping past the strike limit, each ping ``PACE`` after the previous one (the rate is
    what the policy judges, so it is set by the clock)."""
    for payload in range(MAX_STRIKES + 2):
        if payload:
            await asyncio.sleep(PACE)
        ping(conn, payload)


@pytest.mark.parametrize("settings", [PACED], indirect=True)
async def test_paced_pings_with_no_call_open_get_too_many_pings(
    live_server: RunningServer,
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        await paced_pings(conn)
        await conn.wait_closed()
        assert conn.goaway is not None
        assert conn.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert conn.goaway.additional_data == b"too_many_pings"


@pytest.mark.parametrize("settings", [PACED], indirect=True)
async def test_paced_pings_with_a_call_open_are_not_struck(live_server: RunningServer) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        stream_id = conn.start(request_headers("/muxs.Greeter/LotsOfGreetings"))
        await paced_pings(conn)
        await conn.send(stream_id, grpc_frame(bytes(HelloRequest(name="x"))), end=True)
        reply = await conn.reply(stream_id)
        assert reply.grpc_status == StatusCode.OK.value
        assert HelloReply.parse(reply.messages()[0]).message == "Hello, x!"
        assert conn.goaway is None


@pytest.mark.parametrize(
    "settings", [{**PACED, "keepalive_permit_without_calls": True}], indirect=True
)
async def test_paced_pings_with_no_call_open_are_not_struck_when_permitted(
    live_server: RunningServer,
) -> None:
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        await paced_pings(conn)
        reply = await conn.call(SAY_HELLO, grpc_frame(bytes(HelloRequest(name="x"))))
        assert reply.grpc_status == StatusCode.OK.value  # read after every ping
        assert conn.goaway is None
