"""Compression of the SDK's calls (``Client(compression=...)``).

grpclib's client has no compression (its issue #199), so each HTTP/2 stream of a muxs
channel (a ``muxs._internals.ClientStream``) is fitted before its request is sent
(``muxs._internals.on_new_streams``): its
request headers say ``grpc-accept-encoding`` (and ``grpc-encoding`` with compression on),
request messages are compressed when that gains (``muxs.compression.CompressingWriter``), and
compressed replies are inflated within ``MAX_REPLY_BYTES`` before grpclib reads them
(``ReplyReader``): a reply that inflates past it is RESOURCE_EXHAUSTED, memory flat; so is a
reply whose length prefix claims more, before its body is read (grpclib alone would buffer
whatever a prefix claims, up to 4 GiB, as the server sends it).

A call's own ``compression=`` overrides the client's: the call sends its request headers
inside ``compressing(...)``, and grpclib makes the call's HTTP/2 stream in that same task,
where ``fit_stream`` reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar

from grpclib.exceptions import GRPCError
from grpclib.protocol import Stream

from muxs._internals import (
    ClientStream,
    add_request_headers,
    read_requests_with,
    send_replies_with,
)
from muxs.compression import (
    ACCEPT_ENCODING,
    CompressingWriter,
    Corrupt,
    TooLarge,
    TooManyMembers,
    inflate,
    supports,
)
from muxs.errors import ConfigError, StatusCode

#: The most bytes a compressed reply may inflate to (16 times gRPC's default message limit).
MAX_REPLY_BYTES = 64 * 1024 * 1024
#: The values of ``compression=``: an encoding, or None (or ``identity``) for uncompressed
#: requests.
COMPRESSIONS = ("gzip", "deflate", "identity", None)


class UseClientDefault:
    """A call's ``compression=`` when it gives none: the client's applies (None would
    mean uncompressed). After httpx's sentinel of the same name."""

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = UseClientDefault()

#: The compression of the call whose request headers are being sent (unset: the client's).
_call_compression: ContextVar[str | None] = ContextVar("muxs_call_compression")


def checked_compression(compression: str | None) -> str | None:
    """``compression`` if muxs can compress with it (``identity`` as None), else
    ``ConfigError``."""
    if compression not in COMPRESSIONS:
        raise ConfigError("compression", f"{compression!r} is not gzip, deflate, identity or None")
    return None if compression == "identity" else compression


def compressing(
    compression: str | UseClientDefault | None,
) -> contextlib.AbstractContextManager[None]:
    """Within it, a new stream's requests use ``compression`` (a checked one), not the
    client's, unless it is ``USE_CLIENT_DEFAULT``."""
    if isinstance(compression, UseClientDefault):
        return _UNCHANGED
    return _compressing_with(compression)


_UNCHANGED = contextlib.nullcontext()


@contextlib.contextmanager
def _compressing_with(compression: str | None) -> Iterator[None]:
    token = _call_compression.set(compression)
    try:
        yield
    finally:
        _call_compression.reset(token)


class ReplyReader:
    """A client stream's ``recv_data`` that refuses a reply whose prefix claims more than
    ``limit`` bytes and inflates compressed replies (in the response's ``grpc-encoding``)
    within ``limit`` before grpclib reads them: grpclib reads a message as ``recv_data(5)``
    (the prefix), then its body, and refuses a compressed one."""

    def __init__(
        self, stream: Stream, recv_data: Callable[[int], Awaitable[bytes]], limit: int
    ) -> None:
        self._stream = stream
        self._recv_data = recv_data
        self._limit = limit
        self._in_body = False
        self._inflated: bytes | None = None

    async def __call__(self, size: int) -> bytes:
        if self._inflated is not None:
            message, self._inflated = self._inflated, None
            return message
        data = await self._recv_data(size)
        if not self._in_body and int.from_bytes(data[1:5], "big") > self._limit:
            raise GRPCError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"a reply of {int.from_bytes(data[1:5], 'big')} bytes is over the client's "
                f"limit of {self._limit}",
            )
        if self._in_body or not data or not data[0]:
            self._in_body = not self._in_body and bool(data)
            return data
        encoding = dict(self._stream.headers or ()).get("grpc-encoding", "identity")
        if not supports(encoding):
            raise GRPCError(
                StatusCode.INTERNAL, f"a reply is compressed with {encoding!r}, which muxs lacks"
            )
        body = await self._recv_data(int.from_bytes(data[1:5], "big"))
        try:
            self._inflated = await inflate(body, encoding, self._limit)
        except (TooLarge, TooManyMembers) as exc:
            raise GRPCError(StatusCode.RESOURCE_EXHAUSTED, f"a reply is too large: {exc}") from None
        except Corrupt as exc:
            raise GRPCError(StatusCode.INTERNAL, f"a reply is corrupt: {exc}") from None
        return b"\x00" + len(self._inflated).to_bytes(4, "big")


def fit_stream(compression: str | None) -> Callable[[ClientStream], None]:
    """What fits each new stream of a channel whose requests use ``compression`` (unless
    the call gives its own, ``compressing``)."""
    accept = ("grpc-accept-encoding", ACCEPT_ENCODING)
    headers = {
        encoding: [accept, ("grpc-encoding", encoding)] if encoding else [accept]
        for encoding in ("gzip", "deflate", None)
    }

    def fit(stream: ClientStream) -> None:
        encoding = _call_compression.get(compression)
        add_request_headers(stream, headers[encoding])
        if encoding is not None:
            send_replies_with(stream, lambda send_data: CompressingWriter(send_data, encoding))
        read_requests_with(
            stream, lambda recv_data: ReplyReader(stream, recv_data, MAX_REPLY_BYTES)
        )

    return fit
