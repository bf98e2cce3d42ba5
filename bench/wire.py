"""The gRPC wire, by hand: message framing, a raw-bytes codec, and the few protobuf fields the
benchmark's own servers read and write (no betterproto, no muxs)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from grpclib.encoding.base import CodecBase

_LENGTH_DELIMITED = 2
_VARINT = 0


class RawCodec(CodecBase):
    """Messages are ``bytes`` already encoded: grpclib frames them and nothing else."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        assert isinstance(message, bytes)
        return message

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


def frame(message: bytes) -> bytes:
    """One length-prefixed gRPC message, as it travels in a DATA frame (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, value: bytes | int) -> bytes:
    """One protobuf field: bytes/str payloads length-delimited, ints as varints."""
    if isinstance(value, int):
        return varint(number << 3 | _VARINT) + varint(value)
    return varint(number << 3 | _LENGTH_DELIMITED) + varint(len(value)) + value


def fields(message: bytes) -> Iterator[tuple[int, bytes | int]]:
    """``(number, value)`` of each varint or length-delimited field of ``message``."""
    view = memoryview(message)
    position = 0

    def read_varint() -> int:
        nonlocal position
        value = shift = 0
        while True:
            byte = view[position]
            position += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    while position < len(view):
        key = read_varint()
        if key & 7 == _VARINT:
            yield key >> 3, read_varint()
        elif key & 7 == _LENGTH_DELIMITED:
            size = read_varint()
            yield key >> 3, bytes(view[position : position + size])
            position += size
        else:
            raise ValueError(f"wire type {key & 7} is not used by the benchmark's messages")
