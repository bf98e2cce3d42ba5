"""What one connection's peer may make the server do, per time window (HTTP/2 flood budgets).

Each budget is a token bucket of ``size`` tokens, refilled at ``size / window`` per
second; a peer that spends a token from an empty bucket is over budget, and
``muxs.server.limits`` answers with GOAWAY ENHANCE_YOUR_CALM and closes its connection.

- ``reset_budget``: RST_STREAM frames the client sends: CVE-2023-44487 (Rapid Reset), and
  the streams the server resets for a frame of the client's that makes only its stream
  malformed (a lying ``content-length``, a window overflow, a malformed header or trailers):
  CVE-2025-8671 (MadeYouReset), the same work without a reset of the client's.
- ``control_frame_budget``: frames that make the server work or answer without a call
  going forward: PING (CVE-2019-9512), SETTINGS (CVE-2019-9515), PRIORITY
  (CVE-2019-9513), WINDOW_UPDATE, empty DATA frames (CVE-2019-9518) and frames of
  unknown types, and DATA frames of less than ``EARNED_PER_BYTES`` on streams closed to
  the peer (h2 answers each with RST_STREAM STREAM_CLOSED and gives the connection's
  window back, so nothing else stops them). A well-behaved client sends these in answer
  to what the server sends it: window updates for its stream and its connection as each
  reply arrives (grpcio two a unary call, one a message of a bidi stream), BDP pings
  while it downloads. So each stream the peer opens earns ``EARNED_PER_STREAM`` tokens
  back, each write of the server's own ``EARNED_PER_WRITE`` and every
  ``EARNED_PER_BYTES`` bytes it writes one (as Envoy allows window updates per stream
  opened and per DATA frame sent, over the connection's life). Writes that answer the
  peer's frames earn nothing: h2's answers to control frames, and DATA frames the peer's
  flow-control window cut short (``cut_short``: a peer granting a byte at a time, Data
  Dribble, CVE-2019-9511, gets a frame per WINDOW_UPDATE, and pays for each). Earned
  tokens are kept until spent, not capped at the budget's size: a client under a loaded
  server reads a burst of replies and answers it with a burst of window updates, and they
  cannot be earned faster than the server chooses to write. The DATA a client had in
  flight when the server ended a call early is mostly full frames, and only a message's
  last frame is small.

``FrameScanner.take_turn`` also says how much of a backlog one turn of the event loop feeds
(``muxs.server.limits``): a turn's work is counted in bytes that h2 parses, and a DATA
frame's payload is copied, not parsed.

The scanner also bounds a request's header block (HEADERS and its CONTINUATION frames),
which h2 buffers whole before it decodes it: frames of up to 1 MiB (the server's
SETTINGS_MAX_FRAME_SIZE) and 64 CONTINUATIONs (h2's bound) would let one unfinished block
hold 64 MiB. A block whose frames announce more than ``MAX_HEADER_BLOCK_BYTES`` is refused
(``muxs.server.limits``: GOAWAY ENHANCE_YOUR_CALM) from the frame header that crosses it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from h2.connection import H2Connection

from muxs.frame_layout import ACK, END_STREAM, FRAME_HEADER, PADDED

#: The server writing this many bytes to a connection earns its peer one control frame.
EARNED_PER_BYTES = 4096
#: A stream the peer opens (a HEADERS frame) earns it this many control frames.
EARNED_PER_STREAM = 2
#: A write of the server's own (a reply's frames) earns its peer this many control frames.
EARNED_PER_WRITE = 2
#: What a client sends first, before its first frame (RFC 9113 section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: The most bytes a request's header block may take on the wire: twice the header list size
#: h2 advertises (SETTINGS_MAX_HEADER_LIST_SIZE, 64 KiB). An HPACK encoding is no larger
#: than the list it encodes (each header counts its name, value and 32 bytes in the list),
#: so a block within the advertised size is never refused.
MAX_HEADER_BLOCK_BYTES = 2 * H2Connection.DEFAULT_MAX_HEADER_LIST_SIZE

_HEADER = 9
_DATA, _PRIORITY, _RST_STREAM, _SETTINGS, _PING, _WINDOW_UPDATE = 0x0, 0x2, 0x3, 0x4, 0x6, 0x8
_HEADERS, _PUSH_PROMISE, _CONTINUATION = 0x1, 0x5, 0x9
_LAST_KNOWN_TYPE = _CONTINUATION
_END_HEADERS = 0x4
_STREAM_CLOSED_CODE = (0x5).to_bytes(4, "big")
#: A frame as the scanner reads it from its header: type, flags, length, stream id.
Frame = tuple[int, int, int, int]
#: What a DATA frame's header counts in ``FrameScanner.take_turn``: more than its 9 bytes,
#: as each DATA frame is an event, a buffered piece and an acknowledgement.
DATA_FRAME_WORK = 64
#: A DATA frame's payload counts one byte of work in ``take_turn`` per this many bytes.
DATA_BYTES_PER_WORK = 64


class Budget:
    """A token bucket: ``size`` tokens, refilled at ``size / window`` per second."""

    def __init__(self, size: int, window: float, clock: Callable[[], float]) -> None:
        self.size = size
        self._rate = size / window
        self._clock = clock
        self._tokens = float(size)
        self._since = clock()
        #: Tokens ``earn`` gave, spent before the bucket's: kept whole, not capped at
        #: ``size``, as each stands for work the server chose to do (a reply written), and a
        #: client answers a burst of replies with a burst of window updates, later.
        self._earned = 0.0

    def spend(self) -> bool:
        """Take a token; False if there was none (the peer is over budget)."""
        if self._earned >= 1:
            self._earned -= 1
            return True
        now = self._clock()
        self._tokens = min(self.size, self._tokens + (now - self._since) * self._rate)
        self._since = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def earn(self, tokens: float) -> None:
        """Give ``tokens`` the peer may spend on top of the bucket's."""
        self._earned += tokens


class FrameScanner:
    """The type, flags and length of each frame of a client's byte stream, fed in pieces.

    Only the 9-byte frame headers are read (h2 parses the frames themselves), so that
    every frame is counted, also those h2 drops without an event (on closed streams).
    """

    def __init__(self) -> None:
        self._head = b""
        self._skip = len(PREFACE)
        self._kind = -1  # the type of the frame whose body is being skipped (-1: the preface)
        #: How many frames have been received whole (header and body).
        self.frames_completed = 0
        #: Whether a header block (HEADERS, then CONTINUATION frames) has begun and not ended.
        self.in_header_block = False
        #: The bytes the frames of the last header block announced, as far as it has come.
        self.header_block_bytes = 0

    @property
    def mid_frame(self) -> bool:
        """Whether the peer has sent part of a frame (or of its preface), not the rest."""
        return bool(self._head or self._skip)

    def take_turn(self, data: memoryview, work: int) -> tuple[int, list[Frame]]:
        """Scan as many bytes of ``data`` (what comes after the bytes scanned so far) as
        hold ``work`` bytes of work, at least one; return how many, and ``(type, flags,
        length, stream id)`` of each frame whose header ends in them. Every byte counts,
        except that a DATA frame's header counts ``DATA_FRAME_WORK`` and its payload one
        per ``DATA_BYTES_PER_WORK``. Input with no DATA frame (a flood of control frames)
        is taken exactly ``work`` bytes a turn, except that a turn ends after a SETTINGS
        acknowledgement: h2 applies the frame size it acknowledges from its next
        ``receive_data`` on (a larger frame in the same piece is refused as overlong).
        """
        frames: list[Frame] = []
        pos, spent, end = 0, 0, len(data)
        while pos < end and spent < work:
            if not (self._skip or self._head):
                pos, spent = self._skip_whole_data_frames(data, pos, spent, work, frames)
                if pos == end or spent >= work:
                    break
            if self._skip:  # a body (or the preface)
                share = DATA_BYTES_PER_WORK if self._kind == _DATA else 1
                step = min(self._skip, end - pos, (work - spent) * share)
                pos += step
                self._skip -= step
                spent += -(-step // share)
                if not self._skip:
                    self.frames_completed += 1  # the preface counts as one: it is progress too
                continue
            needed = _HEADER - len(self._head)
            step = min(needed, end - pos, work - spent)
            if step == _HEADER:
                high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(data, pos)
            else:
                self._head += data[pos : pos + step]
                if step < needed:
                    pos += step
                    break
                high, low, kind, flags, stream_id = FRAME_HEADER.unpack(self._head)
                self._head = b""
            pos += step
            length = high << 8 | low
            frames.append((kind, flags, length, stream_id & 0x7FFFFFFF))
            if kind == _DATA:
                spent += DATA_FRAME_WORK - _HEADER + step
                if 0 < length <= min(end - pos, (work - spent) * DATA_BYTES_PER_WORK):
                    # The body is all here and within the work: skipped at once (as the
                    # loop's next pass would).
                    pos += length
                    spent += -(-length // DATA_BYTES_PER_WORK)
                    self._kind, self._skip = kind, 0
                    self.frames_completed += 1
                    continue
            self._kind, self._skip = kind, length
            if kind in (_HEADERS, _PUSH_PROMISE, _CONTINUATION):
                self.in_header_block = not flags & _END_HEADERS
                self.header_block_bytes = length + (
                    self.header_block_bytes if kind == _CONTINUATION else 0
                )
            if not length:
                self.frames_completed += 1
            if kind == _SETTINGS and flags & ACK:
                break  # h2 takes a new SETTINGS_MAX_FRAME_SIZE from its next receive_data
            if kind != _DATA:
                spent += step
        return pos, frames

    def _skip_whole_data_frames(
        self, data: memoryview, pos: int, spent: int, work: int, frames: list[Frame]
    ) -> tuple[int, int]:
        """From a frame's start at ``pos``: the DATA frames (none empty) whose header and body
        are all in ``data`` and within the turn's work, skipped a frame a step, with the spans,
        work and frames ``take_turn``'s loop gives them (without its other branches); return
        the position and the work spent after them."""
        end, taken = len(data), 0
        while end - pos >= _HEADER and work - spent >= _HEADER:
            high, low, kind, flags, stream_id = FRAME_HEADER.unpack_from(data, pos)
            length = high << 8 | low
            if kind != _DATA or not 0 < length <= end - pos - _HEADER:
                break
            if length > (work - spent - DATA_FRAME_WORK) * DATA_BYTES_PER_WORK:
                break
            frames.append((_DATA, flags, length, stream_id & 0x7FFFFFFF))
            pos += _HEADER + length
            spent += DATA_FRAME_WORK + -(-length // DATA_BYTES_PER_WORK)
            taken += 1
        if taken:
            self._kind = _DATA
            self.frames_completed += taken
        return pos, spent


class FloodGuard:
    """One connection's budgets; ``over_budget`` is asked about the frames of every turn.

    A size of 0 turns that budget off.
    """

    def __init__(
        self, *, resets: int, control_frames: int, window: float, clock: Callable[[], float]
    ) -> None:
        sizes = {"reset_budget": resets, "control_frame_budget": control_frames}
        self.budgets = {name: Budget(size, window, clock) for name, size in sizes.items() if size}
        #: The frames of the peer's byte stream, as far as they have come.
        self.scanner = FrameScanner()
        self._bytes_credited = 0
        self._writes_credited = 0
        #: The writes that answered the peer's frames (they earn nothing): h2's answers, and
        #: the DATA frames its flow-control window cut short.
        self._answers = 0
        #: The small DATA frames (not counted yet) of the last ``over_budget``, per stream.
        self._small_data: Counter[int] = Counter()

    def over_budget(self, frames: list[Frame]) -> str | None:
        """The name of the budget ``frames`` (the scanner's, of one turn) exceed, or None."""
        self._small_data.clear()
        control = self.budgets.get("control_frame_budget")
        for kind, flags, length, stream_id in frames:
            if kind == _HEADERS and control is not None:
                control.earn(EARNED_PER_STREAM)
            name = _budget_of(kind, flags, length)
            if not name and kind == _DATA and length < EARNED_PER_BYTES:
                self._small_data[stream_id] += 1
            budget = self.budgets.get(name)
            if budget is not None and not budget.spend():
                return name
        return None

    def reset_by_server(self) -> str | None:
        """The server reset a stream for the peer's error: the name of the budget that
        spends (``reset_budget``) if it is over, or None."""
        budget = self.budgets.get("reset_budget")
        return "reset_budget" if budget is not None and not budget.spend() else None

    def answered(self, replies: bytes) -> str | None:
        """``replies`` are h2's answers (whole frames) to the frames ``over_budget`` was
        last asked about: the small DATA frames on each stream they reset STREAM_CLOSED
        were sent on a closed stream and spend a control token each. The server writes
        ``replies`` in one write, which earns nothing."""
        if replies:
            self._answers += 1
        control = self.budgets.get("control_frame_budget")
        if control is None or not self._small_data:
            return None
        for stream_id in streams_closed_to_the_peer(replies):
            for _ in range(self._small_data.pop(stream_id, 0)):
                if not control.spend():
                    return "control_frame_budget"
        return None

    def cut_short(self, writes: int) -> None:
        """The server wrote a DATA frame (in ``writes`` writes) that the peer's flow-control
        window made smaller than the frame size and the data left: an answer to the peer's
        WINDOW_UPDATE (or SETTINGS), which earns nothing per write (its bytes earn as any).
        A peer granting a byte at a time would otherwise earn more with each frame than
        its WINDOW_UPDATE spent (Data Dribble, CVE-2019-9511)."""
        self._answers += writes

    def wrote(self, total_bytes: int, total_writes: int) -> None:
        """The server has written ``total_bytes`` to the connection so far, in
        ``total_writes`` writes (its answers among them): earn tokens."""
        control = self.budgets.get("control_frame_budget")
        earned = (total_bytes - self._bytes_credited) // EARNED_PER_BYTES
        self._bytes_credited += earned * EARNED_PER_BYTES
        own_writes = total_writes - self._answers
        earned += (own_writes - self._writes_credited) * EARNED_PER_WRITE
        self._writes_credited = own_writes
        if control is not None and earned:
            control.earn(earned)


def streams_closed_to_the_peer(replies: bytes) -> list[int]:
    """The streams that whole frames ``replies`` reset with STREAM_CLOSED: h2's answer to a
    frame the peer sent on a stream closed to it (RFC 9113 section 5.1)."""
    streams, pos = [], 0
    while pos + _HEADER <= len(replies):
        length = int.from_bytes(replies[pos : pos + 3], "big")
        body = pos + _HEADER
        if replies[pos + 3] == _RST_STREAM and replies[body : body + 4] == _STREAM_CLOSED_CODE:
            streams.append(int.from_bytes(replies[pos + 5 : body], "big") & 0x7FFFFFFF)
        pos = body + length
    return streams


def _budget_of(kind: int, flags: int, length: int) -> str:
    """Which budget a frame spends ("" for none)."""
    if kind == _RST_STREAM:
        return "reset_budget"
    if kind in (_PING, _SETTINGS):
        return "" if flags & ACK else "control_frame_budget"
    if kind in (_PRIORITY, _WINDOW_UPDATE) or kind > _LAST_KNOWN_TYPE:
        return "control_frame_budget"
    # A DATA frame that carries nothing (or only padding) and does not end its stream
    # moves nothing forward (CVE-2019-9518).
    if kind == _DATA and not flags & END_STREAM and (not length or flags & PADDED):
        return "control_frame_budget"
    return ""
