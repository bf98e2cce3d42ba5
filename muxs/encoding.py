"""The codec muxs's channels send and receive messages with: betterproto2's, with file chunks
encoded and decoded here, and replies to greetings encoded here.

grpclib encodes and decodes every message through its channel's or server's codec (its
public ``codec=`` seam); ``MessageCodec`` is grpclib's protobuf codec (``SerializeToString``
and ``FromString``, which betterproto2's messages and protobuf's both have) except for
``Chunk``, which carries file data: betterproto2 copies that data through a buffer on both
ways, and a chunk of 64 KiB costs it about ten times what ``encode_chunk`` and
``decode_chunk`` take (docs/performance-history.md, "betterproto2: before and after"). They
give betterproto2's results: the same bytes, an equal ``Chunk``; a chunk with fields muxs's
proto lacks is decoded by betterproto2.
``HelloReply``, which server streams send by the thousand, is encoded by ``encode_reply``:
betterproto2 looks up each field's default under a warnings filter on every encode
(docs/PERFORMANCE.md, docs/UPSTREAM.md). The SDK's side of greetings is done here too: a
``HelloRequest`` encoded by ``encode_request``, a ``HelloReply`` decoded by ``decode_reply``
(betterproto2 takes over for anything but the two known fields, well formed); and the
server's: a ``HelloRequest`` decoded by ``decode_request``, a unary call's one message.
The client's channel uses ``MessageCodec``; the server's (``muxs.server.codec``) adds
strict decoding.
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec

from muxs_api.muxs import Chunk, HelloReply, HelloRequest

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


def _text_and_number(text: str, number: int) -> bytes:
    """A greeting's string field 1 and uint32 field 2 as betterproto2 encodes them: set
    fields in field order."""
    encoded = text.encode("utf-8")
    head = _MESSAGE_KEY + _varint(len(encoded)) + encoded if encoded else b""
    return head + _INDEX_KEY + _varint(number) if number else head


def encode_reply(reply: HelloReply) -> bytes:
    """``reply``'s two fields as betterproto2 encodes them."""
    return _text_and_number(reply.message, reply.index)


def encode_request(request: HelloRequest) -> bytes:
    """``request``'s two fields (the same shape as a reply's) as betterproto2 encodes them."""
    return _text_and_number(request.name, request.count)


def decode_reply(data: bytes) -> HelloReply:
    """A ``HelloReply`` from its encoding: here when it holds only its two fields, well
    formed, else betterproto2 (which then decides, or raises, as it always does)."""
    fields = _read_text_and_number(data)
    if fields is None:
        return HelloReply.parse(data)
    return HelloReply(message=fields[0], index=fields[1])


def decode_request(data: bytes) -> HelloRequest:
    """A ``HelloRequest`` from its encoding, as ``decode_reply`` decodes a reply."""
    request = plain_request(data)
    return HelloRequest.parse(data) if request is None else request


def plain_request(data: bytes) -> HelloRequest | None:
    """A ``HelloRequest`` when ``data`` holds only its two fields, well formed; else None."""
    fields = _read_text_and_number(data)
    return None if fields is None else HelloRequest(name=fields[0], count=fields[1])


def _read_text_and_number(data: bytes) -> tuple[str, int] | None:
    """A greeting's string field 1 and uint32 field 2, when ``data`` holds only those, well
    formed (the last occurrence of a field wins); None for anything else, which is left to
    betterproto2."""
    text, number = "", 0
    position, end = 0, len(data)
    try:
        while position < end:
            key = data[position]
            value, shift = 0, 0
            while True:  # a varint: the string's length, or the number
                position += 1
                if shift > 28:
                    return None
                value |= (data[position] & 0x7F) << shift
                shift += 7
                if data[position] < 0x80:
                    break
            position += 1
            if key == _MESSAGE_KEY[0] and position + value <= end:
                text = data[position : position + value].decode("utf-8")
                position += value
            elif key == _INDEX_KEY[0] and value < 2**32:
                number = value
            else:
                return None
    except (IndexError, UnicodeDecodeError):
        return None
    return text, number


def decode_chunk(data: bytes) -> Chunk:
    """A ``Chunk`` from its encoding: here when it holds only its two fields, else betterproto2."""
    chunk = plain_chunk(data)
    return Chunk.parse(data) if chunk is None else chunk


def plain_chunk(data: bytes) -> Chunk | None:
    """A ``Chunk`` when ``data`` holds only its two fields, well formed (the last occurrence
    of a field wins), its file name UTF-8; else None."""
    values: dict[int, bytes] = {}
    position, end = 0, len(data)
    while position < end:
        key = data[position]
        if key not in (_FILENAME_KEY, _DATA_KEY):
            return None
        size, shift = 0, 0
        while True:  # the field's length, a varint
            position += 1
            if position >= end or shift > 28:
                return None
            size |= (data[position] & 0x7F) << shift
            shift += 7
            if data[position] < 0x80:
                break
        position += 1
        if position + size > end:
            return None
        values[key] = data[position : position + size]
        position += size
    try:
        filename = values.get(_FILENAME_KEY, b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
    return Chunk(filename=filename, data=values.get(_DATA_KEY, b""))


class MessageCodec(ProtoCodec):
    """grpclib's protobuf codec, with ``Chunk`` encoded and decoded and ``HelloReply``
    encoded by muxs (module doc)."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if type(message) is message_type:
            if message_type is HelloReply:
                return encode_reply(message)
            if message_type is HelloRequest:
                return encode_request(message)
            if message_type is Chunk:
                return encode_chunk(message)
        return super().encode(message, message_type)

    def decode(self, data: bytes, message_type: Any) -> Any:
        if message_type is Chunk:
            return decode_chunk(data)
        if message_type is HelloReply:
            return decode_reply(data)
        if message_type is HelloRequest:
            return decode_request(data)
        return super().decode(data, message_type)
