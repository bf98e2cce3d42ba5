"""gRPC message compression (gRPC's compression spec): ``gzip`` and ``deflate``.

A message whose 5-byte prefix has the compressed flag set is compressed with the call's
``grpc-encoding``: ``gzip`` is RFC 1952, ``deflate`` is zlib's format (RFC 1950), as grpc
core writes them. A gzip message may be several gzip members one after the other (RFC 1952;
grpc-go and Python's ``gzip`` read them all): it inflates to their outputs joined, within
the one limit; anything after the last member is corrupt. ``inflate`` never holds more than
``limit`` + 1 bytes of what it decompresses: a gzip bomb (a few KiB that inflate to GiBs) is
refused as soon as its output passes the limit, with memory flat.

``frame`` writes a message compressed when that gains: a body under ``MIN_COMPRESSED_BYTES``
(gzip's header and trailer alone are 18 bytes; muxs's greetings and statuses are tens of
bytes) or one that compression would not make smaller is sent as it is, with the flag clear.

A large message is (de)compressed in a worker thread (``muxs.threads``), so that the event
loop goes on serving other calls meanwhile (zlib lets go of the GIL): a body of
``OFF_LOOP_BYTES`` or more is compressed there, and a message is inflated there past its
first ``OFF_LOOP_BYTES``. Below that a trip to a thread (about 0.1 ms) would cost more than
the work. The thread works ``PIECE_BYTES`` per zlib call and joins the pieces once, at the
end: zlib lets go of the GIL for each call, and the thread holds it between calls only
briefly, never for a copy of the whole message, so the loop is never kept waiting long.

Both sides use it: the server's request reader (``muxs.server.limits``) and reply writer
(``muxs.server.reply_compression``), and the SDK's calls (``muxs.call_compression``).
"""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable

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
#: The most bytes one zlib call makes inflating: the thread gets back the GIL, which zlib
#: lets go of, after each piece and holds it only briefly. zlib's first output block: a piece
#: that fills it is returned without a copy.
PIECE_BYTES = 32 * 1024
#: The most bytes one zlib call takes compressing (what it makes is a fraction of it, in
#: zlib's first output block): fewer trips for the GIL than ``PIECE_BYTES`` would take.
COMPRESS_PIECE_BYTES = 256 * 1024
#: The input an inflater is first given at the start of a gzip member after the first
#: (doubled each call, up to ``PIECE_BYTES``): zlib copies what is left of a call's input past
#: a member's end, so tiny members cost a small copy each.
_FIRST_TAKE = 4096
#: The most gzip members a message may have (RFC 1952 allows any number): each costs 3 to
#: 15 microseconds however small it is, so 4 MiB of empty 20-byte members would cost
#: about a second, a hundred times the inflation of a 4 MiB message; 1024 cost at most that.
MAX_GZIP_MEMBERS = 1024
#: The first bytes of a gzip member (RFC 1952's ID1 and ID2).
_GZIP = b"\x1f\x8b"


class TooLarge(ValueError):
    """A compressed message inflates to more than the limit."""


class TooManyMembers(ValueError):
    """A gzip message has more than ``MAX_GZIP_MEMBERS`` members."""


class Corrupt(ValueError):
    """A compressed message is not valid in its encoding (truncated, or garbage)."""


def supports(encoding: str) -> bool:
    """Whether muxs decompresses messages compressed with ``encoding``."""
    return encoding in _WBITS


async def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """``data`` decompressed with ``encoding`` (one ``supports`` says yes to): its first
    ``OFF_LOOP_BYTES`` (and its first gzip member) on the event loop, the rest in a worker
    thread, ``PIECE_BYTES`` at a time.

    Raises ``TooLarge`` once the output passes ``limit`` bytes (without producing more),
    ``TooManyMembers`` past ``MAX_GZIP_MEMBERS``, ``Corrupt`` for data that is not whole
    compressed streams of ``encoding`` (one for deflate, one or more gzip members).
    """
    if not data:
        return b""
    inflation = _Inflation(data, encoding, limit)
    inflation.run(OFF_LOOP_BYTES)
    if not inflation.done:
        return await run_blocking(_inflate_rest, inflation)
    return inflation.message()


def _inflate_rest(inflation: _Inflation) -> bytes:
    """The rest of ``inflation``, run to its end, and the whole message (joined here: a join
    of 1 MiB or more lets go of the GIL)."""
    inflation.run()
    return inflation.message()


class _Inflation:
    """One compressed message being inflated, in pieces: each zlib call takes at most
    ``PIECE_BYTES`` of input (``_FIRST_TAKE`` at first in members after the first) and makes
    at most ``PIECE_BYTES`` of output. The
    pieces are joined once, at the end: no copy of the growing message, and between zlib
    calls (which let go of the GIL) the thread holds the GIL only briefly, so the event loop
    is never kept waiting long for it."""

    def __init__(self, data: bytes, encoding: str, limit: int) -> None:
        self._data = memoryview(data)
        self._encoding = encoding
        self._limit = limit
        self._pieces: list[bytes] = []
        self._size = 0
        self._position = 0
        self._members = 1
        self._inflater = zlib.decompressobj(_WBITS[encoding])
        self._take = PIECE_BYTES
        self.done = False

    def run(self, budget: int | None = None) -> None:
        """Inflate until the end, or (with a ``budget``) until ``budget`` bytes more of input
        or of output, or the end of a gzip member that more follow."""
        if budget is None:
            while not self.done:
                self._step(PIECE_BYTES, PIECE_BYTES)
            return
        given = made = 0
        while not self.done and given < budget and made < budget:
            position, size = self._position, self._size
            if self._step(budget - given, budget - made):
                return
            given += self._position - position
            made += self._size - size

    def message(self) -> bytes:
        """The message inflated (once ``done``)."""
        return self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)

    def _step(self, most_in: int, most_out: int) -> bool:
        """One zlib call, given at most ``most_in`` bytes and making at most ``most_out``;
        whether it ended a member that more follow."""
        inflater = self._inflater
        given = self._data[self._position : self._position + min(self._take, most_in)]
        try:
            piece = inflater.decompress(given, min(self._limit + 1 - self._size, most_out))
        except zlib.error as exc:
            raise Corrupt(f"the message is not valid {self._encoding} data ({exc})") from None
        # What zlib left of ``given``: past the stream's end, or past ``most_out`` (at the end,
        # CPython 3.11-3.13's unconsumed_tail holds unused_data's bytes too: count them once).
        left = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
        used = len(given) - len(left)
        self._position += used
        # Twice what a call took when ``most_out`` stopped it (zlib copies what it leaves).
        self._take = max(_FIRST_TAKE, min(2 * (used if left else self._take), PIECE_BYTES))
        if piece:
            self._pieces.append(piece)
            self._size += len(piece)
            if self._size > self._limit:
                raise TooLarge(f"the message inflates to more than {self._limit} bytes")
        if inflater.eof:
            return self._next_member()
        if not used and not piece:
            raise Corrupt(f"the message is cut short inside its {self._encoding} data")
        return False

    def _next_member(self) -> bool:
        """At the end of a stream: done if it ends the message, else the next gzip member
        (True); anything else after it is ``Corrupt``."""
        left = len(self._data) - self._position
        if not left:
            self.done = True
            return False
        if self._encoding != "gzip" or self._data[self._position : self._position + 2] != _GZIP:
            last = "gzip member" if self._encoding == "gzip" else "deflate stream"
            raise Corrupt(f"the message has {left} bytes after its last {last}")
        self._members += 1
        if self._members > MAX_GZIP_MEMBERS:
            raise TooManyMembers(f"the message has more than {MAX_GZIP_MEMBERS} gzip members")
        self._inflater = zlib.decompressobj(_WBITS[self._encoding])
        self._take = _FIRST_TAKE
        return True


def compress(data: bytes | memoryview, encoding: str) -> list[bytes]:
    """``data`` compressed with ``encoding`` (one ``supports`` says yes to), in pieces: zlib
    is given ``COMPRESS_PIECE_BYTES`` at a time (it lets go of the GIL for each), and what it
    makes is kept as it comes, never copied into one growing buffer."""
    compressor = zlib.compressobj(wbits=_WBITS[encoding])
    view = memoryview(data)
    pieces = [
        compressor.compress(view[start : start + COMPRESS_PIECE_BYTES])
        for start in range(0, len(view), COMPRESS_PIECE_BYTES)
    ]
    pieces.append(compressor.flush())
    return pieces


def frame(body: bytes | memoryview, encoding: str) -> bytes:
    """A message as gRPC sends it, its 5-byte prefix then its body: compressed with
    ``encoding`` (flag set) if the body is ``MIN_COMPRESSED_BYTES`` or more and that makes
    it smaller, else as it is."""
    if len(body) >= MIN_COMPRESSED_BYTES:
        pieces = compress(body, encoding)
        size = sum(map(len, pieces))
        if size < len(body):
            # One join of bytes: one copy, which lets go of the GIL from 1 MiB.
            return b"".join([b"\x01", size.to_bytes(4, "big"), *pieces])
    return b"\x00" + len(body).to_bytes(4, "big") + body


class CompressingWriter:
    """A stream's ``send_data`` that compresses each message it sends with ``encoding``
    (``frame``). grpclib's ``send_message`` writes a message as one ``send_data(prefix + body)``.
    """

    def __init__(self, send_data: Callable[..., Awaitable[None]], encoding: str) -> None:
        #: The ``send_data`` it sends each message through, compressed or not.
        self.send_data = send_data
        self._encoding = encoding

    async def __call__(self, data: bytes, end_stream: bool = False) -> None:
        if data[:1] == b"\x00" and len(data) >= 5 + MIN_COMPRESSED_BYTES:
            body = memoryview(data)[5:]
            if len(body) < OFF_LOOP_BYTES:
                data = frame(body, self._encoding)
            else:
                data = await run_blocking(frame, body, self._encoding)
        await self.send_data(data, end_stream=end_stream)
