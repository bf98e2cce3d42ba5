"""How messages are built, encoded and decoded: betterproto's codec, with two fast paths.

- Every muxs message decodes into an instance made without betterproto's ``__init__``.
  ``FromString`` is ``cls().parse(data)``, and ``cls()`` sets each field through
  ``__setattr__`` hooks: about 18 us for a message of two fields, more than grpclib spends
  receiving it. ``blank(cls)`` makes the same instance (every field unset) directly, about
  20 times faster; betterproto's own parser then reads the data into it.
- ``Chunk``, which carries file data: betterproto spends more on it than grpclib spends
  sending it: about 0.03 ms to construct one, 0.1 ms to encode one of 64 KiB in Python (a
  buffer, a copy per field, another at the end; its rust codec, the ``rust-codec`` extra,
  takes 0.95 ms) and 0.06-0.1 ms to decode one. ``Chunk`` is therefore built, encoded and
  decoded here, with the same results as betterproto's: the same bytes, and a message in
  the state betterproto's is in once its fields are read.

Both rely on betterproto's instance state, which is why betterproto is pinned to one
release; the tests compare every result with betterproto's, for every message type
(docs/PERFORMANCE.md). Imported by ``muxs.api``, so it applies wherever muxs is used.
"""

from __future__ import annotations

import inspect
from typing import TypeVar

import betterproto

import muxs_api.muxs
from muxs_api.muxs import Chunk

M = TypeVar("M", bound=betterproto.Message)

#: Every message type of the muxs proto.
MESSAGE_TYPES: tuple[type[betterproto.Message], ...] = tuple(
    cls
    for _, cls in inspect.getmembers(muxs_api.muxs, inspect.isclass)
    if issubclass(cls, betterproto.Message) and cls.__module__ == muxs_api.muxs.__name__
)
_FILENAME_KEY = 0x0A  # field 1, length-delimited
_DATA_KEY = 0x12  # field 2, length-delimited


def blank(message_type: type[M]) -> M:
    """``message_type()``, without betterproto's per-field hooks."""
    meta = message_type._betterproto  # type: ignore[arg-type]  # typed for instances only
    message = object.__new__(message_type)
    state = object.__getattribute__(message, "__dict__")
    state.update(dict.fromkeys(meta.meta_by_field_name, betterproto.PLACEHOLDER))
    state.update(
        _serialized_on_wire=False,
        _unknown_fields=b"",
        _group_current=dict.fromkeys(meta.oneof_field_by_group),
    )
    return message


def _from_string(message_type: type[M], data: bytes) -> M:
    """``message_type.FromString(data)``, parsed into a ``blank`` instance."""
    return blank(message_type).parse(data)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _chunk(filename: str, data: bytes) -> Chunk:
    """A ``Chunk`` in the state betterproto's ``__init__`` leaves when given both fields."""
    chunk = blank(Chunk)
    state = object.__getattribute__(chunk, "__dict__")
    state.update(filename=filename, data=data, _serialized_on_wire=True)
    return chunk


def new_chunk(data: bytes, filename: str = "") -> Chunk:
    """``Chunk(filename=filename, data=data)``, built about 20 times faster."""
    return _chunk(filename, data)


def encode_chunk(chunk: Chunk) -> bytes:
    """``chunk`` as betterproto encodes it: set fields in field order, then unknown fields."""
    parts: list[bytes] = []
    filename = chunk.filename.encode("utf-8")
    if filename:
        parts += (bytes((_FILENAME_KEY,)), _varint(len(filename)), filename)
    data = chunk.data
    if data:
        parts += (bytes((_DATA_KEY,)), _varint(len(data)), data)
    parts.append(chunk._unknown_fields)
    return b"".join(parts)


def decode_chunk(data: bytes) -> Chunk:
    """A ``Chunk`` from its encoding: here when it holds only its two fields, else betterproto."""
    values: dict[int, bytes] = {}
    position, end = 0, len(data)
    while position < end:
        key = data[position]
        if key not in (_FILENAME_KEY, _DATA_KEY):
            return _from_string(Chunk, data)
        size, shift = 0, 0
        while True:  # the field's length, a varint
            position += 1
            if position >= end or shift > 28:
                return _from_string(Chunk, data)
            size |= (data[position] & 0x7F) << shift
            shift += 7
            if data[position] < 0x80:
                break
        position += 1
        if position + size > end:
            return _from_string(Chunk, data)
        values[key] = data[position : position + size]  # the last occurrence wins
        position += size
    # An absent field is its default at once: betterproto's state once the field is read
    # (reading a field betterproto left unset costs about 5 us, a set one about 1 us).
    return _chunk(values.get(_FILENAME_KEY, b"").decode("utf-8"), values.get(_DATA_KEY, b""))


# setattr (noqa: B010), because assigning to a method is a mypy error.
for _message_type in MESSAGE_TYPES:
    setattr(_message_type, "FromString", classmethod(_from_string))  # noqa: B010
setattr(Chunk, "__bytes__", encode_chunk)  # noqa: B010
setattr(Chunk, "FromString", staticmethod(decode_chunk))  # noqa: B010
