"""gRPC message compression (gRPC's compression spec): ``gzip`` and ``deflate``.

A message whose 5-byte prefix has the compressed flag set is compressed with the call's
``grpc-encoding``: ``gzip`` is RFC 1952, ``deflate`` is zlib's format (RFC 1950), as grpc
core writes them. ``inflate`` never holds more than ``limit`` + 1 bytes of what it
decompresses: a gzip bomb (a few KiB that inflate to GiBs) is refused as soon as its output
passes the limit, with memory flat.

``frame`` writes a message compressed when that gains: a body under ``MIN_COMPRESSED_BYTES``
(gzip's header and trailer alone are 18 bytes; muxs's greetings and statuses are tens of
bytes) or one that compression would not make smaller is sent as it is, with the flag clear.

A large message is (de)compressed in a worker thread (``muxs.threads``), so that the event
loop goes on serving other calls meanwhile (zlib lets go of the GIL): a body of
``OFF_LOOP_BYTES`` or more is compressed there, and a message is inflated there past its
first ``OFF_LOOP_BYTES``. Below that a trip to a thread (about 0.1 ms) would cost more than
the work.

Both sides use it: the server's request reader (``muxs.server.limits``) and reply writer
(``muxs.server.reply_compression``), and the SDK's calls (``muxs.call_compression``).
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from typing import Protocol

from muxs.threads import run_blocking

#: The encodings muxs decompresses, by their ``grpc-encoding`` name: zlib's ``wbits``.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
#: Every encoding muxs accepts, as its ``grpc-accept-encoding`` header says.
ACCEPT_ENCODING = "gzip,deflate,identity"


#: The smallest message body ``frame`` compresses.
MIN_COMPRESSED_BYTES = 1024
#: Compressing a body this large takes 0.3 to 1.2 ms (compressible to random bytes),
#: inflating to it about 0.07 ms: larger work is done in a worker thread.
OFF_LOOP_BYTES = 64 * 1024


class TooLarge(ValueError):
    """A compressed message inflates to more than the limit."""


class Corrupt(ValueError):
    """A compressed message is not valid in its encoding (truncated, or garbage)."""


def supports(encoding: str) -> bool:
    """Whether muxs decompresses messages compressed with ``encoding``."""
    return encoding in _WBITS


async def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` decompressed with ``encoding`` (one ``supports`` says yes to): its first
    ``OFF_LOOP_BYTES`` on the event loop, the rest in a worker thread.

    Raises ``TooLarge`` once the output passes ``limit`` bytes (without producing more),
    ``Corrupt`` for data that is not one whole compressed stream.
    """
    if not data:
        return b""
    inflater = zlib.decompressobj(_WBITS[encoding])
    room = limit + 1
    message = _inflate_more(inflater, b"", data, min(room, OFF_LOOP_BYTES), encoding)
    more = inflater.unconsumed_tail or len(message) == OFF_LOOP_BYTES
    if more and not inflater.eof and len(message) < room:
        tail = inflater.unconsumed_tail
        message = await run_blocking(
            _inflate_more, inflater, message, tail, room - len(message), encoding
        )
    if len(message) > limit:
        raise TooLarge(f"the message inflates to more than {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise Corrupt(f"the message is not one whole {encoding} stream")
    return message


class _Inflater(Protocol):
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def _inflate_more(inflater: _Inflater, head: bytes, data: bytes, most: int, encoding: str) -> bytes:
    """``head``, then what ``data`` inflates to: ``most`` bytes at most (> 0)."""
    try:
        return head + inflater.decompress(data, most)
    except zlib.error as exc:
        raise Corrupt(f"the message is not valid {encoding} data ({exc})") from None


def compress(data: bytes | memoryview, encoding: str) -> bytes:
    """``data`` compressed with ``encoding`` (one ``supports`` says yes to)."""
    compressor = zlib.compressobj(wbits=_WBITS[encoding])
    return compressor.compress(data) + compressor.flush()


def frame(body: bytes | memoryview, encoding: str) -> bytes:
    """A message as gRPC sends it, its 5-byte prefix then its body: compressed with
    ``encoding`` (flag set) if the body is ``MIN_COMPRESSED_BYTES`` or more and that makes
    it smaller, else as it is."""
    if len(body) >= MIN_COMPRESSED_BYTES:
        compressed = compress(body, encoding)
        if len(compressed) < len(body):
            return b"\x01" + len(compressed).to_bytes(4, "big") + compressed
    return b"\x00" + len(body).to_bytes(4, "big") + body


class CompressingWriter:
    """A stream's ``send_data`` that compresses each message it sends with ``encoding``
    (``frame``). grpclib's ``send_message`` writes a message as one ``send_data(prefix + body)``.
    """

    def __init__(self, send_data: Callable[..., Awaitable[None]], encoding: str) -> None:
        self._send_data = send_data
        self._encoding = encoding

    async def __call__(self, data: bytes, end_stream: bool = False) -> None:
        if data[:1] == b"\x00" and len(data) >= 5 + MIN_COMPRESSED_BYTES:
            body = memoryview(data)[5:]
            if len(body) < OFF_LOOP_BYTES:
                data = frame(body, self._encoding)
            else:
                data = await run_blocking(frame, body, self._encoding)
        await self._send_data(data, end_stream=end_stream)
