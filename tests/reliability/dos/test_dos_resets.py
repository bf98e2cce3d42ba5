"""Rapid Reset (CVE-2023-44487): streams opened and reset at once, as fast as a socket goes.

The abuser is sent GOAWAY ENHANCE_YOUR_CALM once over ``reset_budget``; another client's
calls are all answered meanwhile, and nothing the reset streams held is kept: every grpclib
stream is freed after each attack, and over rounds of the attack at the default budget
the memory Python holds for live objects stays flat (a leak grows it round after round).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, WindowUpdateFrame

from muxs import RunningServer, ServerSettings, serve
from muxs.api import HelloRequest
from tests.rawh2 import grpc_frame, request_headers
from tests.reliability.dos.attacks import Attacker, allocated_blocks, assert_calmed_down
from tests.reliability.dos.conftest import RESET_BUDGET

pytestmark = pytest.mark.both_loops
SAY_HELLO = "/muxs.Greeter/SayHello"
HELLO = grpc_frame(bytes(HelloRequest(name="x")))
ROUNDS = 4
#: How many more memory blocks than after the first round later rounds may hold. With the
#: reset streams kept (grpclib swept them only every tenth call and tenth connection), each
#: round kept thousands of objects (asyncio's RSS grew 8 MiB a round, 84 -> 107 MiB over
#: four). RSS itself was the check until it failed on loaded machines: a round that met a
#: larger backlog raised the allocator's high-water mark by up to 11 MiB without a leak.
#: Blocks varied by about 200 over rounds; keeping one StreamReset event a reset stream
#: grew them by about 1,400 a round.
BLOCKS_SLACK = 1_000
WINDOW = 60.0


def rapid_reset(attacker: Attacker) -> Callable[[], bytes]:
    """Batches of 500 SayHellos, each reset as soon as it is opened."""
    return lambda: attacker.reset_streams(SAY_HELLO, 500)


async def test_rapid_reset_gets_goaway_and_others_are_served(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_calmed_down(live_server, caplog, rapid_reset, "reset_budget", RESET_BUDGET)


async def test_rapid_reset_rounds_leave_memory_flat(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    (default,) = [f.default for f in dataclasses.fields(settings) if f.name == "reset_budget"]
    assert isinstance(default, int)
    blocks = []
    # The default budget, over a window long enough that a loaded machine still sends it
    # (10,000 resets in 10 s were not always reached with several test suites running).
    at_default = dataclasses.replace(settings, reset_budget=default, budget_window=WINDOW)
    async with serve(settings=at_default) as server:
        for _ in range(ROUNDS):
            await assert_calmed_down(server, caplog, rapid_reset, "reset_budget", default, WINDOW)
            blocks.append(allocated_blocks())
    assert max(blocks[1:]) <= blocks[0] + BLOCKS_SLACK, f"blocks after each round: {blocks}"


def made_you_reset(kind: str) -> Callable[[Attacker], Callable[[], bytes]]:
    """Batches of 500 calls the server resets itself, each for a frame of the peer's that
    makes only its stream malformed (MadeYouReset, CVE-2025-8671): costs of a Rapid Reset
    that no RST_STREAM of the peer's pays for."""

    def batch(attacker: Attacker) -> Callable[[], bytes]:
        def frames() -> bytes:
            out = []
            for _ in range(500):
                stream_id = attacker.h2.get_next_available_stream_id()
                if kind == "content-length":
                    headers = request_headers(SAY_HELLO, content_length="1")
                    attacker.h2.send_headers(stream_id, headers)
                    data = DataFrame(stream_id, HELLO, flags=["END_STREAM"])
                    attacker.h2._data_to_send += data.serialize()  # past h2's windows
                elif kind == "window-overflow":
                    attacker.h2.send_headers(stream_id, request_headers(SAY_HELLO))
                    overflow = WindowUpdateFrame(stream_id, window_increment=2**31 - 1)
                    attacker.h2._data_to_send += overflow.serialize()
                else:  # trailers without END_STREAM
                    attacker.h2.send_headers(stream_id, request_headers(SAY_HELLO))
                    attacker.h2._data_to_send += DataFrame(stream_id, HELLO).serialize()
                    trailers = HeadersFrame(stream_id, attacker.h2.encoder.encode([("x", "y")]))
                    trailers.flags.add("END_HEADERS")
                    attacker.h2._data_to_send += trailers.serialize()
                out.append(attacker.h2.data_to_send())
                # The server resets it, unknown to the attacker's h2, which would otherwise
                # walk every stream left open on each new one: a batch as slow as its streams
                # are many, too slow under load to spend the budget within its window.
                del attacker.h2.streams[stream_id]
            return b"".join(out)

        return frames

    return batch


@pytest.mark.parametrize("kind", ["content-length", "window-overflow", "trailers"])
async def test_streams_the_server_resets_for_the_peer_spend_its_reset_budget(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    await assert_calmed_down(
        live_server, caplog, made_you_reset(kind), "reset_budget", RESET_BUDGET
    )
