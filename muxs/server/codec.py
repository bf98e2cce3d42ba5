"""The codec the server decodes requests with: protobuf's wire rules, then betterproto2.

betterproto2 decodes leniently: a field that arrives with the wrong wire type is stored as
it comes (an integer in a string field) and a length past the end of the data is cut short,
so a handler could see values its types rule out.
``check_wire`` first walks the bytes with protobuf's rules, reading each message type's
fields from betterproto2's public field metadata; a request that breaks them, or that
betterproto2 cannot decode (invalid UTF-8 in a string), is INTERNAL, as gRPC answers a
request it cannot parse. Messages are then decoded as the SDK's channel decodes them
(``muxs.encoding``). A ``HelloRequest`` or a ``Chunk`` that holds only its two fields, well
formed (what ``check_wire`` passes, read in one walk), is decoded by ``muxs.encoding``
without the check.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, NamedTuple

import betterproto2
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from muxs.encoding import MessageCodec, plain_chunk, plain_request
from muxs_api.muxs import Chunk, HelloRequest

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_WIRE_TYPE = {
    **dict.fromkeys(betterproto2.WIRE_VARINT_TYPES, _VARINT),
    **dict.fromkeys(betterproto2.WIRE_FIXED_64_TYPES, _I64),
    **dict.fromkeys(betterproto2.WIRE_LEN_DELIM_TYPES, _LEN),
    **dict.fromkeys(betterproto2.WIRE_FIXED_32_TYPES, _I32),
}
_MAX_FIELD_NUMBER = 2**29 - 1


class WireError(ValueError):
    """The bytes are not a valid encoding of the message type."""


class _Field(NamedTuple):
    name: str
    wire_type: int
    packable: bool  # repeated and of a type that may be packed
    message_type: type[betterproto2.Message] | None  # a nested message's type


@functools.cache
def _fields(message_type: type[betterproto2.Message]) -> dict[int, _Field]:
    """``message_type``'s fields by number, from its dataclass fields' betterproto2 metadata."""
    assert dataclasses.is_dataclass(message_type)  # every betterproto2 message is one
    hints = typing.get_type_hints(message_type)
    fields = {}
    for field in dataclasses.fields(message_type):
        meta = betterproto2.FieldMetadata.get(field)
        nested = next(
            (
                hint
                for hint in (hints[field.name], *typing.get_args(hints[field.name]))
                if isinstance(hint, type) and issubclass(hint, betterproto2.Message)
            ),
            None,
        )
        fields[meta.number] = _Field(
            field.name,
            _WIRE_TYPE[meta.proto_type],
            bool(meta.repeated) and meta.proto_type in betterproto2.PACKED_TYPES,
            nested if meta.proto_type == betterproto2.TYPE_MESSAGE else None,
        )
    return fields


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(pos, min(pos + 10, len(data))):
        value |= (data[index] & 0x7F) << shift
        if not data[index] & 0x80:
            return value, index + 1
        shift += 7
    raise WireError("a varint is truncated or longer than 10 bytes")


def check_wire(data: bytes, message_type: type[betterproto2.Message]) -> None:
    """Raise ``WireError`` unless ``data`` follows protobuf's wire format for ``message_type``.

    Known fields must have their type's wire type (or be packed, when repeated); unknown
    fields may have any valid wire type except the deprecated groups.
    """
    fields = _fields(message_type)
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if not 1 <= number <= _MAX_FIELD_NUMBER:
            raise WireError(f"field number {number} is out of range")
        if wire_type == _VARINT:
            _, end = _varint(data, pos)
        elif wire_type == _LEN:
            length, pos = _varint(data, pos)
            end = pos + length
        elif wire_type in (_I64, _I32):
            end = pos + (8 if wire_type == _I64 else 4)
        else:
            raise WireError(f"field {number} has wire type {wire_type}, which muxs does not accept")
        if end > len(data):
            raise WireError(f"field {number} runs past the end of the message")
        field = fields.get(number)
        if field is not None:
            packed = wire_type == _LEN and field.packable
            if wire_type != field.wire_type and not packed:
                raise WireError(
                    f"field {field.name!r} has wire type {wire_type}, not {field.wire_type}"
                )
            if field.message_type is not None:
                check_wire(data[pos:end], field.message_type)
        pos = end


class Codec(MessageCodec):
    """The SDK's codec with muxs's requests checked by ``check_wire`` (see module doc).

    The messages of the standard services (health, reflection) are protobuf's own, which
    parse strictly already.
    """

    def decode(self, data: bytes, message_type: Any) -> Any:
        # A HelloRequest's or a Chunk's two fields, well formed, are what check_wire passes
        # (and what betterproto2 decodes); anything else is checked.
        if message_type is HelloRequest:
            request = plain_request(data)
            if request is not None:
                return request
        elif message_type is Chunk:
            chunk = plain_chunk(data)
            if chunk is not None:
                return chunk
        elif not issubclass(message_type, betterproto2.Message):  # health and reflection
            return super().decode(data, message_type)
        try:
            check_wire(data, message_type)
            return super().decode(data, message_type)
        except WireError as exc:
            problem = f"the request is not a valid muxs.{message_type.__name__}: {exc}"
        except Exception:
            problem = f"the request is not a valid muxs.{message_type.__name__}"
        raise GRPCError(Status.INTERNAL, problem) from None
