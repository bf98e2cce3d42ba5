"""muxs's fast paths against the libraries' own, on random input (hypothesis).

- ``receive_data_directly`` (DATA frames taken straight from a read, runs of them on one
  stream as one ``DataRun``): against h2 taking every frame through its own buffer and
  ``_receive_frame``, with muxs's one documented difference (``_stream_error``: a malformed
  request resets its stream instead of the connection), and against h2's ``receive_data``
  itself up to its first error. Random client frames, valid and crafted (padding, empty
  frames, lying or bogus ``content-length``, frames on closed and idle streams, windows run
  out, frames over the frame size, header blocks cut by other frames), cut at random
  points: each piece's events, errors, answers on the wire, windows and states compared.
- ``DirectFrameBuffer`` (the SDK's frames built straight from their bytes): against h2's
  ``FrameBuffer`` and hyperframe's parse, frames well-formed or not, cut at random points.
- ``_DecodingOnce`` and ``_decode_known_headers`` (header blocks decoded once per table
  state): against hpack's ``Decoder`` and h2's ``_decode_headers``, on blocks of a client's
  encoder (whose table grows, is resized and evicts) and random bytes.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import hpack
import hyperframe.exceptions
from h2.settings import SettingCodes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxs import _internals
from muxs.frame_layout import FRAME_HEADER
from tests.test_internals import (
    REQUEST,
    _described,
    _expanded,
    _frames_both_ways,
    _random_frame,
    _receiving_state,
)

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: The streams frames are sent on: the client's (odd), one of the server's (even), the
#: connection (0, for DATA and HEADERS a protocol error).
STREAM_IDS = st.sampled_from([1, 3, 5, 7, 9, 11, 13, 2, 0])
PAYLOAD_SIZES = st.sampled_from([0, 1, 2, 9, 100, 1000, 16383, 16384, 16385, 40000])
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE, CONTINUATION = (
    0x0,
    0x1,
    0x2,
    0x3,
    0x4,
    0x6,
    0x8,
    0x9,
)
END_STREAM, ACK, END_HEADERS, PADDED = 0x1, 0x1, 0x4, 0x8


def raw_frame(kind: int, flags: int, stream_id: int, body: bytes) -> bytes:
    return FRAME_HEADER.pack(len(body) >> 8, len(body) & 0xFF, kind, flags, stream_id) + body


def literal_block(headers: list[tuple[str, str]]) -> bytes:
    """An HPACK block of literals never indexed (it leaves the server's table as it is)."""
    block = b""
    for name, value in headers:
        block += b"\x10" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()
    return block


def crafted(draw: st.DrawFn) -> bool:
    """Whether the next frame is crafted (one in eight): most are what clients send, so
    that the streams go on long enough to reach the fast paths."""
    return draw(st.integers(0, 7)) == 0


@st.composite
def data_frames(draw: st.DrawFn, opened: list[int]) -> bytes:
    """A DATA frame on a request's stream, within the frame size, perhaps padded or ending
    it; crafted: on any stream, over the frame size, with bad padding or unknown flags."""
    hostile = crafted(draw)
    stream_id = draw(STREAM_IDS if hostile or not opened else st.sampled_from(opened))
    size = draw(PAYLOAD_SIZES if hostile else st.sampled_from([0, 1, 9, 100, 1000, 16384]))
    flags = draw(st.sampled_from([0, 0, 0, END_STREAM, PADDED, PADDED | END_STREAM]))
    body = b"d" * size
    if flags & PADDED:
        pad = draw(st.sampled_from([0, 1, 7, 255]))
        body = bytes([pad]) + b"d" * max(0, size - pad - 1) + bytes(pad)
        if hostile:
            body = bytes([pad]) + b"d" * size  # padding announced and missing
    if hostile and draw(st.booleans()):
        flags |= 0xF6  # flags DATA does not define
    return raw_frame(DATA, flags, stream_id, body[:16384] if not hostile else body)


@st.composite
def trailers(draw: st.DrawFn, opened: list[int]) -> bytes:
    """Trailers ending a request's stream; crafted: on any stream, not ending it, or with
    a pseudo-header."""
    hostile = crafted(draw)
    stream_id = draw(STREAM_IDS if hostile or not opened else st.sampled_from(opened))
    headers = [("x-trailer", "1")]
    flags = END_HEADERS | END_STREAM
    if hostile:
        headers = draw(st.sampled_from([headers, [(":path", "/x")], []]))
        flags = END_HEADERS | draw(st.sampled_from([END_STREAM, 0]))
    return raw_frame(HEADERS, flags, stream_id, literal_block(headers))


@st.composite
def control_frames(draw: st.DrawFn, opened: list[int]) -> bytes:
    """Window updates, pings, resets, priorities, settings and unknown frames; crafted: on
    any stream, an increment of 0 or past the largest window, a header block cut by
    another frame."""
    hostile = crafted(draw)
    stream_id = draw(STREAM_IDS if hostile or not opened else st.sampled_from(opened))
    increments = [1, 100, 65535, 2**31 - 1, 0] if hostile else [1, 100, 65535]
    increment = draw(st.sampled_from(increments)).to_bytes(4, "big")
    frames = [
        raw_frame(WINDOW_UPDATE, 0, stream_id, increment),
        raw_frame(WINDOW_UPDATE, 0, 0, increment),
        raw_frame(PING, 0, 0, b"12345678"),
        raw_frame(PING, ACK, 0, b"12345678"),
        raw_frame(RST_STREAM, 0, stream_id, (8).to_bytes(4, "big")),
        raw_frame(PRIORITY, 0, stream_id, bytes(4) + b"\x10"),
        raw_frame(SETTINGS, 0, 0, b""),
        raw_frame(SETTINGS, ACK, 0, b""),
        raw_frame(0xFA, 0, stream_id, b"unknown"),
    ]
    if hostile:  # a header block left open, then a frame of another kind
        frames.append(raw_frame(HEADERS, 0, 15, literal_block([("x", "y")])))
    return draw(st.sampled_from(frames))


#: What a client stream is made of, by weight.
OPERATIONS = ["request"] * 2 + ["run"] * 3 + ["data"] * 2 + ["trailers", "control", "control"]


@st.composite
def client_streams(draw: st.DrawFn) -> bytes:
    """A client's preface and requests (from h2's client: its HPACK table in step), and
    frames around them, mostly what clients send, some crafted."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    sent: bytes = client.data_to_send()
    opened: list[int] = []
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from(OPERATIONS)) if opened else "request"
        if kind == "request":
            stream_id = client.get_next_available_stream_id()
            opened.append(stream_id)
            length = draw(st.sampled_from([None, None, "0", "100", "17000", "many"]))
            extra = [] if length is None else [("content-length", length)]
            ends = draw(st.integers(0, 3)) == 0
            client.send_headers(stream_id, REQUEST + extra, end_stream=ends)
            sent += client.data_to_send()
        elif kind == "run":  # frames a run takes at once: unflagged, on one request
            stream_id = draw(st.sampled_from(opened))
            sizes = [0, 1, 9, 100, 1000, 16384]
            for size in draw(st.lists(st.sampled_from(sizes), min_size=1, max_size=6)):
                sent += raw_frame(DATA, 0, stream_id, b"r" * size)
        elif kind == "data":
            sent += draw(data_frames(opened))
        elif kind == "trailers":
            sent += draw(trailers(opened))
        else:
            sent += draw(control_frames(opened))
    return sent


def server(frame_size: int | None) -> h2.connection.H2Connection:
    """A server connection; with ``frame_size``, one that has asked its client for it (in
    effect once the client's SETTINGS ACK comes)."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    connection.initiate_connection()
    if frame_size is not None:
        connection.update_settings({SettingCodes.MAX_FRAME_SIZE: frame_size})
    connection.data_to_send()
    return connection


def received_by_h2s_frames(connection: h2.connection.H2Connection, data: bytes) -> list[Any]:
    """What ``receive_data_directly`` must do with ``data``: every frame through h2's buffer
    and ``_receive_frame``, with muxs's stream errors, and h2's ending of the connection."""
    connection.incoming_buffer.max_frame_size = connection.max_inbound_frame_size
    events: list[Any] = []
    try:
        _internals._receive_through_buffer(connection, memoryview(data), events)
    except hyperframe.exceptions.InvalidPaddingError as exc:
        connection._terminate_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
        raise h2.exceptions.ProtocolError("Received frame with invalid padding.") from exc
    except h2.exceptions.ProtocolError as exc:
        connection._terminate_connection(exc.error_code)
        raise
    return events


def outcome(receive: Any, connection: h2.connection.H2Connection, data: bytes) -> list[Any]:
    """The events of ``receive(connection, data)`` described, or its ProtocolError."""
    try:
        return [_described(event) for event in _expanded(receive(connection, data))]
    except h2.exceptions.ProtocolError as exc:
        return [(type(exc).__name__, str(exc), exc.error_code)]


def failed(described: list[Any]) -> bool:
    return bool(described) and described[-1][0].endswith("Error")


#: The errors h2 raises for a malformed request, which muxs makes a stream error of.
MALFORMED = ("ProtocolError", "InvalidBodyLengthError")


@PROPERTY_SETTINGS
@given(
    sent=client_streams(),
    cuts=st.lists(st.integers(1, 1 << 17), max_size=12),
    frame_size=st.sampled_from([None, 16384, 1 << 20]),
)
def test_data_received_directly_is_what_h2_makes_of_it(
    sent: bytes, cuts: list[int], frame_size: int | None
) -> None:
    by_h2, by_frames, by_muxs = server(frame_size), server(frame_size), server(frame_size)
    ends = sorted(cuts)
    pieces = [sent[start:end] for start, end in zip([0, *ends], [*ends, None], strict=True)]
    h2_failed = False
    for data in filter(None, pieces):
        ours = outcome(_internals.receive_data_directly, by_muxs, data)
        expected = outcome(received_by_h2s_frames, by_frames, data)
        assert ours == expected
        assert by_muxs.data_to_send() == by_frames.data_to_send()
        assert _receiving_state(by_muxs, failed(ours)) == _receiving_state(by_frames, failed(ours))
        if not h2_failed:  # h2's own receive_data, up to its first error
            theirs = outcome(h2.connection.H2Connection.receive_data, by_h2, data)
            h2_failed = failed(theirs)
            if not h2_failed:
                assert ours == theirs
                assert _receiving_state(by_muxs) == _receiving_state(by_h2)
            elif theirs[-1][0] not in MALFORMED:
                assert ours[-1] == theirs[-1]
            # Else h2 may have found a request malformed, and muxs reset only its stream (as
            # the reference does), and took the rest of the piece, which h2 never read.
            by_h2.data_to_send()
        if failed(ours):
            break


@PROPERTY_SETTINGS
@given(
    rng=st.randoms(use_true_random=False),
    count=st.integers(1, 12),
    cuts=st.lists(st.integers(1, 1 << 15), max_size=12),
)
def test_frames_parsed_directly_are_hyperframes_frames(
    rng: Any, count: int, cuts: list[int]
) -> None:
    sent = b"".join(_random_frame(rng) for _ in range(count))
    ends = sorted({cut for cut in cuts if cut < len(sent)})
    pieces = [end - start for start, end in zip([0, *ends], [*ends, len(sent)], strict=True)]
    theirs, ours = _frames_both_ways(sent, pieces)
    assert ours == theirs


def _requests(draw: st.DrawFn) -> list[list[tuple[str, str]]]:
    value = st.sampled_from(["a", "b", "x" * 40, "é", "tok" * 30])
    extra = st.lists(st.tuples(st.sampled_from(["x-a", "x-b", "authorization"]), value))
    return [REQUEST + draw(extra) for _ in range(draw(st.integers(1, 12)))]


@st.composite
def header_blocks(draw: st.DrawFn) -> list[bytes]:
    """A client encoder's blocks (its table growing, evicting and resized) and crafted ones."""
    encoder = hpack.Encoder()
    encoder.header_table_size = draw(st.sampled_from([4096, 256, 64, 0]))
    blocks = []
    for headers in _requests(draw):
        if draw(st.integers(0, 9)) == 0:
            encoder.header_table_size = draw(st.sampled_from([4096, 200, 0]))
        if draw(st.integers(0, 9)) == 0:
            blocks.append(draw(st.binary(max_size=20)))  # bytes HPACK may not decode
        else:
            blocks.append(encoder.encode(headers, huffman=draw(st.booleans())))
        if draw(st.integers(0, 3)) == 0:
            blocks.append(blocks[-1])  # the same block again
    return blocks


def decoded(decoder: hpack.Decoder, block: bytes, text: Any) -> Any:
    """``block`` decoded as h2 decodes it (raw, then as text), or the error."""
    try:
        headers = decoder.decode(block, raw=True)
    except _internals.CompressionError as exc:
        return ("HPACKError", type(exc.__cause__).__name__)
    except (hpack.HPACKError, IndexError, TypeError, UnicodeDecodeError) as exc:
        return ("HPACKError", type(exc).__name__)
    text_headers = [tuple(header) for header in text(headers, "utf-8")]
    return ("decoded", [tuple(header) for header in headers], text_headers)


@PROPERTY_SETTINGS
@given(blocks=header_blocks(), size_limit=st.sampled_from([4096, 100]))
def test_blocks_decoded_once_are_what_hpack_and_h2_decode(
    blocks: list[bytes], size_limit: int
) -> None:
    theirs, ours = hpack.Decoder(), _internals._DecodingOnce(65536)
    for decoder in (theirs, ours):
        decoder.max_allowed_table_size = size_limit
    for block in blocks:
        expected = decoded(theirs, block, _internals._h2_decode_headers)
        assert decoded(ours, block, _internals._decode_known_headers) == expected
        if expected[0] == "HPACKError":  # h2 ends the connection
            break
        assert ours.header_table.dynamic_entries == theirs.header_table.dynamic_entries
