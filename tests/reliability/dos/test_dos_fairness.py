"""Fairness under a sustained flood, on asyncio and uvloop: one connection floods PINGs,
SETTINGS and Rapid Resets without end (its budgets off, so it is never cut off) while
another client calls SayHello; every call is answered, and the server feeds no more of the
flood to h2 while a call is in flight than ``TURN_BYTES`` for each turn of the event loop
that call takes (uvloop hands over a socket's whole backlog at once: fed whole, it held
the loop while other connections waited, ~30 s for one SayHello).

Counted, not timed: the bytes of the flood the server fed to h2 and the turns of the event
loop (a callback that reschedules itself counts each) between each call's start and its
reply. The bound, per call: a SayHello takes a handful of turns (measured first, without
the flood: ``quiet``; 5 on asyncio, 3 on uvloop, the same with the flood), it may take up
to ``SLACK`` times as many during the flood (the attacker's writes share this process),
and in each turn the flood gets at most one feed of ``TURN_BYTES``: a window of n counted
turns overlaps n + 1 (the turns the call starts and ends in are partly inside it), so at
most ``TURN_BYTES * (n + 1)`` bytes. Without the cap one feed takes what the socket holds:
the test then fails (2 to 4 times the bound per call measured, with the attacker's writes,
which share this process, as the limit). Wall-clock latencies are bench/fairness.py's
(docs/RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from muxs import Client, ServerSettings, serve
from muxs.server.budgets import Frame
from muxs.server.limits import TURN_BYTES, LimitedServer, _LimitedProtocol
from tests.polling import until
from tests.reliability.dos.attacks import PING, SETTINGS, Attacker
from tests.reliability.test_misbehaving import OTHERS_DEADLINE

pytestmark = pytest.mark.both_loops

SAY_HELLO = "/muxs.Greeter/SayHello"
CALLS = 20
#: How many times the turns of a quiet SayHello a call may take during the flood.
SLACK = 3
#: Each write of the attacker: far more than one turn's feed, so a backlog is always waiting.
PINGS_PER_BATCH, SETTINGS_PER_BATCH, RESETS_PER_BATCH = 3000, 500, 50


class Turns:
    """Counts the turns of the running event loop (one callback per turn)."""

    def __init__(self) -> None:
        self.count = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


@contextmanager
def counting_turns() -> Iterator[Turns]:
    turns = Turns()
    try:
        yield turns
    finally:
        turns.stop()


@contextmanager
def counting_fed_bytes(protocol: _LimitedProtocol) -> Iterator[list[int]]:
    """``[n]``: the bytes of ``protocol``'s peer fed to h2 so far (each feed is one piece)."""
    fed = [0]
    feed = protocol._feed

    def counted(data: bytes, frames: list[Frame]) -> None:
        fed[0] += len(data)
        feed(data, frames)

    protocol._feed = counted  # type: ignore[method-assign]
    try:
        yield fed
    finally:
        del protocol._feed


@dataclasses.dataclass
class Call:
    turns: int
    flood_bytes: int


async def calls(client: Client, turns: Turns, fed: list[int]) -> list[Call]:
    """``CALLS`` SayHellos, one at a time: the turns and flood bytes each took."""
    made = []
    for number in range(CALLS):
        turns_before, fed_before = turns.count, fed[0]
        assert (await client.say_hello(f"good {number}")).message == f"Hello, good {number}!"
        made.append(Call(turns.count - turns_before, fed[0] - fed_before))
    return made


def flood(attacker: Attacker) -> bytes:
    """One write of the sustained flood: PINGs, SETTINGS and streams reset at once."""
    resets = attacker.reset_streams(SAY_HELLO, RESETS_PER_BATCH)
    return PING * PINGS_PER_BATCH + SETTINGS * SETTINGS_PER_BATCH + resets


def serving(server: LimitedServer, attacker: Attacker) -> _LimitedProtocol:
    """The server's side of ``attacker``'s connection."""
    (protocol,) = [
        connection
        for connection in server.connections
        if connection.connection.get_peer().addr() == attacker.address
    ]
    return protocol


async def test_a_sustained_flood_gets_one_turn_at_a_time(settings: ServerSettings) -> None:
    unlimited = dataclasses.replace(settings, reset_budget=0, control_frame_budget=0)
    async with (
        serve(settings=unlimited) as server,
        Client(server.target, timeout=OTHERS_DEADLINE) as client,
    ):
        assert isinstance(server.server, LimitedServer)
        limited = server.server
        await client.say_hello("warm-up")  # its connection is open
        with counting_turns() as turns:
            quiet = await calls(client, turns, [0])
            attacker = await Attacker.open(server)
            await until(lambda: len(limited.connections) == 2)
            with counting_fed_bytes(serving(limited, attacker)) as fed:
                flooding = asyncio.create_task(attacker.flood(lambda: flood(attacker)))
                await until(lambda: fed[0] > 4 * TURN_BYTES)  # the flood is under way
                during = await calls(client, turns, fed)
                assert not attacker.closed.is_set()  # sustained: never cut off
            flooding.cancel()
            await attacker.aclose()
    turns_allowed = SLACK * max(call.turns for call in quiet)
    assert all(call.turns <= turns_allowed for call in during), (quiet, during)
    assert all(call.flood_bytes <= TURN_BYTES * (call.turns + 1) for call in during), during
    assert sum(call.flood_bytes for call in during) > 0  # the flood was fed meanwhile
