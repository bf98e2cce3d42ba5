"""Reply messages compressed for clients that accept it: server-wide
(``ServerSettings.compression``), or as a call chooses (``CallContext.set_compression``).

A call's replies are compressed when the server is configured with an encoding and the
client lists it in ``grpc-accept-encoding`` (grpcio and grpc-js list gzip and deflate; a
client that sends no such header gets plain replies). Each message is compressed on its own
when that gains (``muxs.compression.CompressingWriter``); the response headers say
``grpc-encoding``.

A call may choose otherwise until its response headers are sent (``compress_replies``): the
same rules hold (an encoding its client does not accept means plain replies, small messages
go plain), and a call that does not choose costs nothing more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, Literal, get_args

from grpclib.server import Stream

from muxs._internals import (
    StatelessHeaders,
    http2_stream,
    response_headers_sent,
    send_headers_statelessly_instead,
    send_replies_with,
)
from muxs.compression import ACCEPT_ENCODING, CompressingWriter

#: What a call may compress its replies with (``identity``: not at all).
ReplyCompression = Literal["gzip", "deflate", "identity"]
_REPLY_COMPRESSIONS = frozenset(get_args(ReplyCompression))
#: The headers muxs adds to a call's response headers, by its replies' encoding (None: plain).
RESPONSE_HEADERS: dict[str | None, tuple[tuple[str, str], ...]] = {
    None: (("grpc-accept-encoding", ACCEPT_ENCODING),),
    "gzip": (("grpc-accept-encoding", ACCEPT_ENCODING), ("grpc-encoding", "gzip")),
    "deflate": (("grpc-accept-encoding", ACCEPT_ENCODING), ("grpc-encoding", "deflate")),
}
#: The header blocks of the calls that chose their replies' compression.
_HEADER_BLOCKS = StatelessHeaders()


def reply_encoding(configured: str, headers: Collection[tuple[str, str]]) -> str | None:
    """The encoding of a call's replies: ``configured`` if its client accepts it, else none."""
    if configured == "none":
        return None
    accepted = {
        encoding.strip()
        for name, value in headers
        if name == "grpc-accept-encoding"
        for encoding in value.split(",")
    }
    return configured if configured in accepted else None


def compress_replies(call: Stream[Any, Any], compression: ReplyCompression) -> ReplyCompression:
    """Have ``call`` send its replies compressed with ``compression`` if its client accepts
    it, else plain; what they will be sent with.

    Raises ``ValueError`` for a compression muxs lacks, ``RuntimeError`` once the call's
    response headers are sent (they say how its replies are compressed).
    """
    if compression not in _REPLY_COMPRESSIONS:
        raise ValueError(
            f"{compression!r} is not a reply compression: use gzip, deflate or identity"
        )
    if response_headers_sent(call):
        raise RuntimeError(
            "set_compression() comes too late: the response headers are sent; "
            "choose before the first reply (or send_headers())"
        )
    stream = http2_stream(call)
    # muxs's request reader keeps the request's headers (``limits.RequestReader``).
    request_headers = getattr(stream.recv_data, "request_headers", ())
    encoding = None if compression == "identity" else reply_encoding(compression, request_headers)
    send_replies_with(stream, lambda send_data: _sending_with(send_data, encoding))
    send_headers_statelessly_instead(stream, RESPONSE_HEADERS[encoding], _HEADER_BLOCKS)
    return "identity" if encoding is None else compression


def _sending_with(
    send_data: Callable[..., Awaitable[None]], encoding: str | None
) -> Callable[..., Awaitable[None]]:
    """``send_data`` compressing with ``encoding`` (None: sending plain), whether it
    compressed before or not."""
    if isinstance(send_data, CompressingWriter):
        send_data = send_data.send_data
    return send_data if encoding is None else CompressingWriter(send_data, encoding)
