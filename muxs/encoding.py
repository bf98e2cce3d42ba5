"""The codec muxs's channels send and receive messages with: betterproto2's, with file chunks
encoded and decoded here, and replies to greetings encoded here.

grpclib encodes and decodes every message through its channel's or server's codec (its
public ``codec=`` seam); ``MessageCodec`` is grpclib's protobuf codec (``SerializeToString``
and ``FromString``, which betterproto2's messages and protobuf's both have) except for
``Chunk``, which carries file data: betterproto2 copies that data through a buffer on both
ways, and a chunk of 64 KiB costs it about ten times what ``encode_chunk`` and
``decode_chunk`` take (docs/PERFORMANCE.md). They give betterproto2's results: the same
bytes, an equal ``Chunk``; a chunk with fields muxs's proto lacks is decoded by betterproto2.
``HelloReply``, which server streams send by the thousand, is encoded by ``encode_reply``:
betterproto2 looks up each field's default under a warnings filter on every encode
(docs/PERFORMANCE.md, docs/UPSTREAM.md).
The client's channel uses ``MessageCodec``; the server's (``muxs.server.codec``) adds
strict decoding.
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec

from muxs_api.muxs import Chunk, HelloReply

_FILENAME_KEY = 0x0A  # field 1, length-delimited
_DATA_KEY = 0x12  # field 2, length-delimited
_MESSAGE_KEY = b"\x0a"  # HelloReply.message: field 1, length-delimited
_INDEX_KEY = b"\x10"  # HelloReply.index: field 2, varint


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_chunk(chunk: Chunk) -> bytes:
    """``chunk``'s two fields as betterproto2 encodes them: set fields in field order.

    A chunk decoded by betterproto2 keeps fields muxs's proto lacks, which betterproto2 would
    encode again after these two; muxs never sends a chunk it received, so those are not sent.
    """
    parts: list[bytes] = []
    filename = chunk.filename.encode("utf-8")
    if filename:
        parts += (bytes((_FILENAME_KEY,)), _varint(len(filename)), filename)
    data = chunk.data
    if data:
        parts += (bytes((_DATA_KEY,)), _varint(len(data)), data)
    return b"".join(parts)


def encode_reply(reply: HelloReply) -> bytes:
    """``reply``'s two fields as betterproto2 encodes them: set fields in field order."""
    message = reply.message.encode("utf-8")
    head = _MESSAGE_KEY + _varint(len(message)) + message if message else b""
    return head + _INDEX_KEY + _varint(reply.index) if reply.index else head


def decode_chunk(data: bytes) -> Chunk:
    """A ``Chunk`` from its encoding: here when it holds only its two fields, else betterproto2."""
    values: dict[int, bytes] = {}
    position, end = 0, len(data)
    while position < end:
        key = data[position]
        if key not in (_FILENAME_KEY, _DATA_KEY):
            return Chunk.parse(data)
        size, shift = 0, 0
        while True:  # the field's length, a varint
            position += 1
            if position >= end or shift > 28:
                return Chunk.parse(data)
            size |= (data[position] & 0x7F) << shift
            shift += 7
            if data[position] < 0x80:
                break
        position += 1
        if position + size > end:
            return Chunk.parse(data)
        values[key] = data[position : position + size]  # the last occurrence wins
        position += size
    return Chunk(
        filename=values.get(_FILENAME_KEY, b"").decode("utf-8"), data=values.get(_DATA_KEY, b"")
    )


class MessageCodec(ProtoCodec):
    """grpclib's protobuf codec, with ``Chunk`` encoded and decoded and ``HelloReply``
    encoded by muxs (module doc)."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if type(message) is message_type:
            if message_type is HelloReply:
                return encode_reply(message)
            if message_type is Chunk:
                return encode_chunk(message)
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        if message_type is Chunk:
            return decode_chunk(data)
        return super().decode(data, message_type)
