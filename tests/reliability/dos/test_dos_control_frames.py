"""Control-frame floods: PING (CVE-2019-9512), SETTINGS (CVE-2019-9515), PRIORITY
(CVE-2019-9513), WINDOW_UPDATE, empty DATA frames (CVE-2019-9518), unknown frames, DATA
frames on a stream the peer reset (each answered with RST_STREAM; no GOAWAY came in 60 s
before they were counted), CONTINUATION (CVE-2024-27316), and window granted a byte at a
time (Data Dribble, CVE-2019-9511).

Each flood gets GOAWAY ENHANCE_YOUR_CALM once over ``control_frame_budget`` (CONTINUATION:
h2 ends the connection with PROTOCOL_ERROR after 64 frames of one header block), while
another client's calls are all answered; a peer that floods without reading its replies
is no longer read once the server cannot write to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, Frame, HeadersFrame, WindowUpdateFrame

from muxs import RunningServer, ServerSettings, serve
from muxs.api import Files, HelloRequest
from muxs.server.budgets import EARNED_PER_BYTES
from muxs.server.limits import LimitedServer
from tests.polling import until
from tests.rawh2 import grpc_frame
from tests.reliability.dos.attacks import (
    PING,
    PRIORITY,
    SETTINGS,
    UNKNOWN,
    WAIT,
    WINDOW_UPDATE,
    Attacker,
    assert_calmed_down,
    data_on_a_reset_stream,
    empty_data,
    endless_headers,
    live_streams,
    repeated,
)
from tests.reliability.dos.conftest import CONTROL_FRAME_BUDGET
from tests.reliability.test_misbehaving import Usage, assert_back_to, assert_others_served

pytestmark = pytest.mark.both_loops
LOTS_OF_GREETINGS = "/muxs.Greeter/LotsOfGreetings"
LOTS_OF_REPLIES = "/muxs.Greeter/LotsOfReplies"
READ_STREAM = "/muxs.FileController/ReadStream"
#: The budget window of the window-granting tests: a bucket that refills too slowly to matter.
GRANTING_WINDOW = 600.0
FLOODS: dict[str, Callable[[Attacker], Callable[[], bytes]]] = {
    "ping": lambda _: repeated(PING, 200),
    "settings": lambda _: repeated(SETTINGS, 200),
    "window_update": lambda _: repeated(WINDOW_UPDATE, 200),
    "priority": lambda _: repeated(PRIORITY, 200),
    "unknown": lambda _: repeated(UNKNOWN, 200),
    "empty_data": lambda attacker: repeated(
        empty_data(attacker.open_stream(LOTS_OF_GREETINGS)), 200
    ),
    "data_on_a_reset_stream": lambda attacker: repeated(data_on_a_reset_stream(attacker), 200),
}


@pytest.mark.parametrize("flood", FLOODS)
async def test_a_control_frame_flood_gets_goaway_and_others_are_served(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture, flood: str
) -> None:
    await assert_calmed_down(
        live_server, caplog, FLOODS[flood], "control_frame_budget", CONTROL_FRAME_BUDGET
    )


class WindowGranter:
    """An attacker's call whose stream window is ``grant`` bytes, and ``grant`` more for
    each DATA frame that comes (the connection's window opened wide once), up to ``most``
    frames: a reader granting a little at a time."""

    def __init__(self, attacker: Attacker, grant: int, most: int) -> None:
        self.sizes: list[int] = []
        self.ended = False
        self._grant, self._most = grant, most
        attacker.answer = self._answer
        attacker.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: grant})
        attacker.h2.increment_flow_control_window(2**30)

    def _answer(self, frame: Frame) -> bytes:
        self.ended = self.ended or (isinstance(frame, HeadersFrame) and "END_STREAM" in frame.flags)
        if not isinstance(frame, DataFrame) or len(self.sizes) >= self._most:
            return b""
        self.sizes.append(len(frame.data))
        return WindowUpdateFrame(frame.stream_id, window_increment=self._grant).serialize()


async def test_a_peer_granting_window_a_byte_at_a_time_gets_goaway(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Data Dribble (CVE-2019-9511): the server writes a DATA frame per byte, each an answer
    to a 13-byte WINDOW_UPDATE. Those frames earn the peer nothing (before, their writes
    earned it more than its WINDOW_UPDATEs spent, and one-byte frames came without end), so
    it gets GOAWAY ENHANCE_YOUR_CALM ``control_frame_budget`` while another client is served.
    The budget is counted over ``GRANTING_WINDOW`` (its refill is too slow to matter), so
    that how fast this machine goes does not decide when it is spent."""
    counted = dataclasses.replace(settings, budget_window=GRANTING_WINDOW)
    async with serve(settings=counted) as server:
        baseline, streams = Usage.now(), live_streams()
        attacker = await Attacker.open(server)
        dribble = WindowGranter(attacker, 1, most=2 * CONTROL_FRAME_BUDGET)
        stream_id = attacker.open_stream(LOTS_OF_REPLIES)
        request = grpc_frame(bytes(HelloRequest(name="dribble", count=100_000)))
        attacker.write(DataFrame(stream_id, request, flags=["END_STREAM"]).serialize())
        await assert_others_served(server)
        await until(
            lambda: attacker.closed.is_set() or len(dribble.sizes) >= 2 * CONTROL_FRAME_BUDGET,
            bound=WAIT,
        )
        assert attacker.closed.is_set(), f"{len(dribble.sizes)} DATA frames came and no GOAWAY"
        goaway = await attacker.wait_goaway()
        assert (goaway.error_code, goaway.additional_data) == (
            ErrorCodes.ENHANCE_YOUR_CALM,
            b"control_frame_budget",
        )
        assert set(dribble.sizes) == {1}
        host, port = attacker.address
        await attacker.aclose()
        await assert_back_to(baseline, server)
        await until(lambda: live_streams() <= streams)
    warnings = [r.getMessage() for r in caplog.records if "ENHANCE_YOUR_CALM" in r.getMessage()]
    over = f"over its control_frame_budget of {CONTROL_FRAME_BUDGET} per {GRANTING_WINDOW:g} s"
    assert warnings == [f"GOAWAY ENHANCE_YOUR_CALM to {host}:{port}: {over}"]


async def test_a_reader_granting_four_kib_at_a_time_downloads_within_a_small_budget(
    settings: ServerSettings,
) -> None:
    """A ReadStream of 1 MiB whose reader grants 4 KiB of window for each DATA frame: 256
    frames, each cut short by the window and answered with a WINDOW_UPDATE, under a budget
    of 5 that does not refill. The bytes of each frame earn its WINDOW_UPDATE back (one per
    ``EARNED_PER_BYTES``): a client granting that much at a time (every gRPC client grants
    half a window of 64 KiB or more) is never told to calm down, however long it reads."""
    assert EARNED_PER_BYTES == 4096
    tight = dataclasses.replace(settings, control_frame_budget=5, budget_window=GRANTING_WINDOW)
    async with serve(settings=tight) as server:
        (server.root / "big").write_bytes(bytes(1 << 20))
        attacker = await Attacker.open(server)
        reader = WindowGranter(attacker, EARNED_PER_BYTES, most=1 << 20)
        stream_id = attacker.open_stream(READ_STREAM)
        request = grpc_frame(bytes(Files(filename="big")))
        attacker.write(DataFrame(stream_id, request, flags=["END_STREAM"]).serialize())
        await until(lambda: reader.ended or attacker.closed.is_set(), bound=WAIT)
        assert not attacker.closed.is_set()
        assert reader.ended
        assert sum(reader.sizes) > 1 << 20  # the file and its messages' prefixes
        assert len(reader.sizes) > (1 << 20) // EARNED_PER_BYTES  # a frame per grant or two
        assert max(reader.sizes) <= 2 * EARNED_PER_BYTES
        await attacker.aclose()


async def test_a_continuation_flood_is_cut_short(live_server: RunningServer) -> None:
    baseline = Usage.now()
    attacker = await Attacker.open(live_server)
    flooding = asyncio.create_task(attacker.flood(lambda: endless_headers(1, 100)))
    goaway = await attacker.wait_goaway()
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    await flooding
    await attacker.aclose()
    await assert_back_to(baseline, live_server)
    await assert_others_served(live_server)


@pytest.mark.parametrize("frame", [PING, SETTINGS], ids=["ping", "settings"])
async def test_a_peer_that_does_not_read_its_replies_is_not_read(
    settings: ServerSettings, frame: bytes
) -> None:
    """With no budget to stop it, a flood whose replies are not read stalls: the server
    stops reading once its write buffer is full, so unread replies cannot pile up."""
    async with serve(settings=dataclasses.replace(settings, control_frame_budget=0)) as server:
        assert isinstance(server.server, LimitedServer)
        limited = server.server
        baseline = Usage.now()
        attacker = await Attacker.open(server, read_replies=False)
        await until(lambda: len(limited.connections) == 1)
        (protocol,) = limited.connections
        flooding = asyncio.create_task(attacker.flood(repeated(frame, 500)))
        # The server cannot write to it (its write buffer is over the high-water mark) ...
        await until(lambda: not protocol.connection.write_ready.is_set(), bound=60)
        assert "writes" in protocol.reading_paused_for  # ... so it has stopped reading
        # The replies wait in the socket, not in the server's memory: at most the transport's
        # high-water mark (64 KiB) and the replies to one turn's frames.
        assert protocol.write_buffer_size() < 256 * 1024
        await assert_others_served(server)
        assert protocol.write_buffer_size() < 256 * 1024
        flooding.cancel()
        await attacker.aclose()
    # A server not reading may not see the peer go (uvloop): stopping closes it anyway.
    assert not limited.connections
    await until(lambda: Usage.now().tasks <= baseline.tasks)
    await until(lambda: Usage.now().fds <= baseline.fds)


async def test_a_peer_that_does_not_read_does_not_hold_the_servers_stop(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Its socket never finishes closing (what the server sent it is never taken), which
    would hold the listener's ``wait_closed`` forever on Python 3.12+ (and keep the socket
    open on uvloop): the server aborts it and stops (``WAIT`` guards against a hang)."""
    async with asyncio.timeout(WAIT):
        async with serve(settings=dataclasses.replace(settings, control_frame_budget=0)) as server:
            assert isinstance(server.server, LimitedServer)
            limited = server.server
            attacker = await Attacker.open(server, read_replies=False)
            await until(lambda: len(limited.connections) == 1)
            (protocol,) = limited.connections
            flooding = asyncio.create_task(attacker.flood(repeated(PING, 500)))
            await until(lambda: "writes" in protocol.reading_paused_for, bound=WAIT)
        assert not limited.sockets
        await flooding  # the server's abort (a TCP reset) ends it
        await attacker.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["aborted 1 connection(s) whose peer did not read what it was sent"]
