"""The flood budgets of ``muxs.server.budgets``, on a clock the test moves."""

from __future__ import annotations

import random

import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from muxs.server.budgets import (
    DATA_BYTES_PER_WORK,
    DATA_FRAME_WORK,
    EARNED_PER_BYTES,
    EARNED_PER_STREAM,
    EARNED_PER_WRITE,
    PREFACE,
    Budget,
    FloodGuard,
    Frame,
    FrameScanner,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_budget_allows_its_size_then_refuses() -> None:
    budget = Budget(3, 10.0, Clock())
    assert [budget.spend() for _ in range(4)] == [True, True, True, False]


def test_a_budget_refills_at_size_per_window() -> None:
    clock = Clock()
    budget = Budget(10, 10.0, clock)
    assert all(budget.spend() for _ in range(10))
    clock.now = 2.0  # two tokens back, not more
    assert [budget.spend() for _ in range(3)] == [True, True, False]
    clock.now = 1000.0  # never more than its size
    assert sum(budget.spend() for _ in range(20)) == 10


def test_earned_tokens_are_kept_until_spent_beside_the_bucket() -> None:
    """A burst of replies earns more than the bucket holds; the client's burst of window
    updates that answers it, later, spends them all, then the bucket's."""
    clock = Clock()
    budget = Budget(2, 10.0, clock)
    budget.earn(500)
    clock.now = 1000.0
    assert sum(budget.spend() for _ in range(600)) == 502


def scan(scanner: FrameScanner, data: bytes) -> list[Frame]:
    """Every frame header of ``data``, scanned in as many turns as it takes."""
    frames, view = [], memoryview(data)
    while view:
        span, taken = scanner.take_turn(view, 1 << 62)
        frames += taken
        view = view[span:]
    return frames


def over_budget(guard: FloodGuard, data: bytes) -> str | None:
    return guard.over_budget(scan(guard.scanner, data))


def test_the_scanner_reads_every_frame_header_however_the_bytes_are_cut() -> None:
    stream = PREFACE + PING + SETTINGS_ACK + data(b"x" * 100, end=True) + RESET
    expected = [(0x6, 0, 8, 0), (0x4, 1, 0, 0), (0x0, 1, 100, 1), (0x3, 0, 4, 1)]
    for size in (1, 2, 7, 9, 10, 33, len(stream)):
        scanner = FrameScanner()
        pieces = [stream[at : at + size] for at in range(0, len(stream), size)]
        assert [frame for piece in pieces for frame in scan(scanner, piece)] == expected


def turns(stream: bytes, work: int, *, scanned: int = 0) -> list[int]:
    """The bytes of each turn when ``stream`` (a client's, from its preface) is fed ``work``
    a turn, after its first ``scanned`` bytes were fed in one piece."""
    scanner, view, spans = FrameScanner(), memoryview(stream)[scanned:], []
    scan(scanner, stream[:scanned])
    while view:
        span, _ = scanner.take_turn(view, work)
        spans.append(span)
        view = view[span:]
    return spans


@pytest.mark.parametrize("work", [1, 9, 100, 1000, 16384])
def test_the_frames_of_each_turn_are_every_frame_once(work: int) -> None:
    stream = PREFACE + PING + SETTINGS_ACK + data(b"x" * 40000) + (PRIORITY + RESET) * 50
    scanner, view, frames = FrameScanner(), memoryview(stream), []
    while view:
        span, taken = scanner.take_turn(view, work)
        frames += taken
        view = view[span:]
    assert frames == scan(FrameScanner(), stream)
    assert (scanner.frames_completed, scanner.mid_frame) == (104, False)


def test_a_turn_spans_its_work_in_bytes_of_control_frames() -> None:
    """A flood of control frames, however cut, is fed exactly ``work`` bytes a turn."""
    flood = PREFACE + (PING + PRIORITY + RESET) * 200
    for scanned in (0, 5, len(PREFACE), len(PREFACE) + 3):
        spans = turns(flood, 1000, scanned=scanned)
        assert spans[:-1] == [1000] * (len(spans) - 1)
        assert 0 < spans[-1] <= 1000
        assert sum(spans) == len(flood) - scanned


def test_a_turn_spans_more_of_an_uploads_data() -> None:
    """A DATA frame's header counts ``DATA_FRAME_WORK`` and its payload a
    ``DATA_BYTES_PER_WORK``th: 16 KiB frames are fed 16 a turn where 1 fitted in 16 KiB."""
    frame = data(b"x" * 16384)
    per_frame = DATA_FRAME_WORK + 16384 // DATA_BYTES_PER_WORK
    spans = turns(PREFACE + frame * 64, 16 * per_frame, scanned=len(PREFACE))
    assert spans == [16 * len(frame)] * 4


def test_a_turn_cuts_a_large_data_frame_by_its_work() -> None:
    frame = data(b"x" * (1 << 20))
    spans = turns(PREFACE + frame, 1000, scanned=len(PREFACE))
    assert spans[0] == 9 + (1000 - DATA_FRAME_WORK) * DATA_BYTES_PER_WORK
    assert spans[1] == 1000 * DATA_BYTES_PER_WORK
    assert sum(spans) == len(frame)


@pytest.mark.parametrize(
    ("work", "spans"), [(74, [649] * 3), (73, [585] * 3 + [192]), (75, [650, 650, 647])]
)
def test_a_data_frame_is_taken_whole_exactly_when_its_work_fits(
    work: int, spans: list[int]
) -> None:
    """A 640-byte DATA frame is 74 work (64 for its header, 10 for its payload): turns of
    74 take one each, of 73 cut each (9 + 9 * 64 bytes, then the rest with the next), of 75
    one and a byte of the next frame's header."""
    assert DATA_FRAME_WORK + 640 // DATA_BYTES_PER_WORK == 74
    assert turns(PREFACE + data(b"x" * 640) * 3, work, scanned=len(PREFACE)) == spans


def _mixed_stream(rng: random.Random) -> bytes:
    """A client's frames: DATA of many sizes (empty, padded, ending), among control frames."""
    frames = [PREFACE]
    for _ in range(rng.randrange(1, 60)):
        kind = rng.random()
        if kind < 0.7:
            size = rng.choice((0, 1, 63, 64, 65, 640, 3000, 16384, 40000))
            flags = ["END_STREAM"] if rng.random() < 0.1 else []
            padding = rng.choice((0, 0, 0, 1, 5))
            flags += ["PADDED"] if padding else []
            frame = DataFrame(rng.choice((1, 3)), b"x" * size, flags=flags, pad_length=padding - 1)
            frames.append(frame.serialize())
        else:
            frames.append(rng.choice((PING, RESET, PRIORITY, SETTINGS_ACK)))
    return b"".join(frames)


def test_whole_data_frames_are_scanned_as_the_scanners_loop_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spans, frames and state of every turn, with whole DATA frames skipped a frame a
    step and with the scanner's general loop alone, for streams cut anywhere and any work."""

    def general_loop_only(
        self: FrameScanner, data: memoryview, pos: int, spent: int, work: int, frames: object
    ) -> tuple[int, int]:
        return pos, spent

    def turns_of(stream: bytes, cuts: list[int], work: int) -> list[tuple[object, ...]]:
        scanner, start = FrameScanner(), 0
        seen: list[tuple[object, ...]] = []
        for cut in [*cuts, len(stream)]:
            view = memoryview(stream)[start:cut]
            while view:
                span, frames = scanner.take_turn(view, work)
                seen.append((span, frames, scanner.frames_completed, scanner.mid_frame))
                view = view[span:]
            start = cut
        return seen

    for seed in range(300):
        rng = random.Random(seed)
        stream = _mixed_stream(rng)
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(4))))
        work = rng.choice((1, 8, 9, 73, 74, 75, 1000, 16384, 1 << 30))
        fast = turns_of(stream, cuts, work)
        with monkeypatch.context() as patched:
            patched.setattr(FrameScanner, "_skip_whole_data_frames", general_loop_only)
            assert fast == turns_of(stream, cuts, work), seed


def test_a_turn_ends_after_a_settings_acknowledgement() -> None:
    """h2 takes the frame size the ACK acknowledges from its next ``receive_data``: a larger
    DATA frame fed with the ACK would be refused as overlong."""
    stream = PREFACE + PING + SETTINGS_ACK + data(b"x" * 40000)
    assert turns(stream, 16384, scanned=len(PREFACE)) == [len(PING + SETTINGS_ACK), 40009]


def test_empty_data_frames_count_their_headers_as_data_frame_work() -> None:
    spans = turns(PREFACE + data(b"") * 100, 10 * DATA_FRAME_WORK, scanned=len(PREFACE))
    assert spans == [10 * 9] * 10


def test_the_scanner_knows_what_is_unfinished() -> None:
    """A frame cut short, and a header block begun (HEADERS, CONTINUATION) until it ends."""
    scanner = FrameScanner()
    scan(scanner, PREFACE + PING[:12])
    assert (scanner.mid_frame, scanner.frames_completed) == (True, 1)  # the preface
    scan(scanner, PING[12:])
    assert (scanner.mid_frame, scanner.frames_completed) == (False, 2)
    scan(scanner, HeadersFrame(1, b"").serialize())
    assert (scanner.mid_frame, scanner.in_header_block) == (False, True)
    scan(scanner, ContinuationFrame(1, b"", flags=["END_HEADERS"]).serialize())
    assert (scanner.in_header_block, scanner.frames_completed) == (False, 4)


PING = PingFrame(0, b"12345678").serialize()
SETTINGS_ACK = SettingsFrame(0, flags=["ACK"]).serialize()
RESET = RstStreamFrame(1, error_code=8).serialize()
PRIORITY = PriorityFrame(1, depends_on=3).serialize()


def data(body: bytes, *, end: bool = False, padded: bool = False) -> bytes:
    frame = DataFrame(1, body, flags=["END_STREAM"] if end else [])
    if padded:
        frame.flags.add("PADDED")
        frame.pad_length = 4
    return frame.serialize()


def guard(*, resets: int = 0, control_frames: int = 0) -> FloodGuard:
    guard = FloodGuard(resets=resets, control_frames=control_frames, window=10.0, clock=Clock())
    assert over_budget(guard, PREFACE) is None
    return guard


@pytest.mark.parametrize(
    "frame",
    [
        PING,
        SettingsFrame(0).serialize(),
        PriorityFrame(1, depends_on=0).serialize(),
        WindowUpdateFrame(0, window_increment=1).serialize(),
        WindowUpdateFrame(7, window_increment=1).serialize(),  # on a stream long closed
        data(b""),
        data(b"", padded=True),
        (1).to_bytes(3, "big") + bytes([0xFA, 0, 0, 0, 0, 0]) + b"x",  # of an unknown type
    ],
    ids=["ping", "settings", "priority", "window", "window-closed", "empty", "padded", "unknown"],
)
def test_control_frames_spend_the_control_budget(frame: bytes) -> None:
    flooded = guard(resets=5, control_frames=2)
    assert [over_budget(flooded, frame) for _ in range(3)] == [None, None, "control_frame_budget"]


def test_resets_spend_the_reset_budget_only() -> None:
    flooded = guard(resets=1, control_frames=1)
    assert over_budget(flooded, RESET * 2) == "reset_budget"
    assert over_budget(guard(resets=1, control_frames=1), RESET + PING) is None


def test_calls_going_forward_spend_nothing() -> None:
    calm = guard(resets=1, control_frames=1)
    headers = HeadersFrame(1, b"\x82", flags=["END_HEADERS"]).serialize()
    acks = SETTINGS_ACK + PingFrame(0, b"12345678", flags=["ACK"]).serialize()
    assert over_budget(calm, (headers + data(b"x") + data(b"", end=True) + acks) * 10) is None


def test_what_the_server_writes_earns_control_frames_back() -> None:
    pinged = guard(resets=1, control_frames=2)
    assert over_budget(pinged, PING * 2) is None
    pinged.wrote(EARNED_PER_BYTES - 1, 0)  # not yet a token
    assert over_budget(pinged, PING) == "control_frame_budget"
    pinged.wrote(3 * EARNED_PER_BYTES, 0)  # three tokens
    assert [over_budget(pinged, PING) for _ in range(4)] == [None] * 3 + ["control_frame_budget"]


WINDOW_UPDATES = (
    WindowUpdateFrame(0, window_increment=20).serialize()
    + WindowUpdateFrame(1, window_increment=20).serialize()
)


def test_a_stream_opened_earns_its_window_updates() -> None:
    """A grpcio client updates its stream's and its connection's window as each reply
    comes: calls back to back are never over budget, however many."""
    caller = guard(control_frames=2)
    headers = HeadersFrame(1, b"\x82", flags=["END_HEADERS"]).serialize()
    assert EARNED_PER_STREAM >= 2
    for _ in range(1000):
        assert over_budget(caller, headers + data(b"x", end=True) + WINDOW_UPDATES) is None
    assert over_budget(caller, WINDOW_UPDATES) is None  # the bucket's own two, still there
    assert over_budget(caller, WINDOW_UPDATES) == "control_frame_budget"


def test_the_servers_own_writes_earn_control_frames_and_its_answers_none() -> None:
    """One reply message a write: a bidi stream's client updates its windows for each."""
    streaming = guard(control_frames=1)
    for writes in range(1, 1001):
        streaming.wrote(0, writes)
        assert over_budget(streaming, WindowUpdateFrame(1, window_increment=20).serialize()) is None
    assert EARNED_PER_WRITE >= 2
    pinged, writes = guard(control_frames=EARNED_PER_WRITE), 0
    for _ in range(EARNED_PER_WRITE):
        assert over_budget(pinged, PING) is None
        writes += 1  # the PING's answer, written
        assert pinged.answered(PingFrame(0, b"12345678", flags=["ACK"]).serialize()) is None
    pinged.wrote(0, writes)
    assert over_budget(pinged, PING) == "control_frame_budget"


def test_data_frames_the_peers_window_cut_short_earn_nothing() -> None:
    """Data Dribble (CVE-2019-9511): each WINDOW_UPDATE of a byte is answered with a DATA
    frame of a byte (two writes, ten bytes). Counted as the server's own writes, each frame
    earned more than its WINDOW_UPDATE spent; cut short by the window, they earn nothing."""
    a_byte = WindowUpdateFrame(1, window_increment=1).serialize()
    for cut_short, outcome in ((False, None), (True, "control_frame_budget")):
        dribbled, writes = guard(control_frames=10), 0
        for _ in range(10):
            assert over_budget(dribbled, a_byte) is None
            writes += 2
            if cut_short:
                dribbled.cut_short(2)
            dribbled.wrote(5 * writes, writes)
        assert over_budget(dribbled, a_byte) == outcome


CLOSED_ON_1 = RstStreamFrame(1, error_code=0x5).serialize()  # h2's answer: STREAM_CLOSED


def test_small_data_on_a_stream_answered_as_closed_spends_the_control_budget() -> None:
    flooded = guard(control_frames=3)
    assert over_budget(flooded, data(b"x") * 2) is None
    assert flooded.answered(CLOSED_ON_1 * 2) is None  # two tokens of three
    assert over_budget(flooded, data(b"x") * 2) is None
    assert flooded.answered(CLOSED_ON_1 * 2) == "control_frame_budget"


def test_data_on_streams_not_answered_as_closed_spends_nothing() -> None:
    calm = guard(control_frames=1)
    other_reset = RstStreamFrame(3, error_code=0x5).serialize()
    for replies in (b"", RstStreamFrame(1, error_code=0x8).serialize(), other_reset, PING):
        assert over_budget(calm, data(b"x") * 5) is None
        assert calm.answered(replies) is None


def test_full_data_frames_on_a_closed_stream_spend_nothing() -> None:
    """They cost the server what an upload costs; only a message's last frame is small."""
    uploaded = guard(control_frames=1)
    assert over_budget(uploaded, data(b"x" * EARNED_PER_BYTES) * 5) is None
    assert uploaded.answered(CLOSED_ON_1 * 5) is None


def test_a_budget_of_zero_is_no_limit() -> None:
    unlimited = guard()
    assert over_budget(unlimited, (RESET + PING) * 10_000) is None


def test_the_scanner_counts_a_header_block_from_its_frame_headers() -> None:
    scanner = FrameScanner()
    first = HeadersFrame(1, data=b"h" * 100)
    more = ContinuationFrame(1, data=b"c" * 50)
    more.flags.add("END_HEADERS")
    announced = ContinuationFrame(1, data=b"x" * 1000).serialize()[:9]  # its body to come
    work = 1 << 20  # every byte in one turn
    scanner.take_turn(memoryview(PREFACE + first.serialize() + more.serialize()), work)
    assert (scanner.header_block_bytes, scanner.in_header_block) == (150, False)
    scanner.take_turn(memoryview(first.serialize() + announced), work)
    assert (scanner.header_block_bytes, scanner.in_header_block) == (1100, True)
