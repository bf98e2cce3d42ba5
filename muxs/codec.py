"""The codec the server decodes requests with: protobuf's wire rules, then betterproto.

betterproto 2.0.0b7 decodes leniently: a field that arrives with the wrong wire type is
stored as it comes (an integer in a string field, a list in a scalar), a length past the
end of the data is cut short and invalid wire types are skipped, so a handler could see
values its types rule out. ``check_wire`` first walks the bytes with protobuf's rules;
a request that breaks them, or that betterproto cannot decode (invalid UTF-8 in a
string), is INTERNAL, as gRPC answers a request it cannot parse. (``muxs.encoding`` makes
the decoding itself cheaper.)
"""

from __future__ import annotations

from typing import Any

import betterproto
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_WIRE_TYPE = {
    **dict.fromkeys(betterproto.WIRE_VARINT_TYPES, _VARINT),
    **dict.fromkeys(betterproto.WIRE_FIXED_64_TYPES, _I64),
    **dict.fromkeys(betterproto.WIRE_LEN_DELIM_TYPES, _LEN),
    **dict.fromkeys(betterproto.WIRE_FIXED_32_TYPES, _I32),
}
_MAX_FIELD_NUMBER = 2**29 - 1


class WireError(ValueError):
    """The bytes are not a valid encoding of the message type."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(pos, min(pos + 10, len(data))):
        value |= (data[index] & 0x7F) << shift
        if not data[index] & 0x80:
            return value, index + 1
        shift += 7
    raise WireError("a varint is truncated or longer than 10 bytes")


def _metadata(message_type: type[betterproto.Message]) -> betterproto.ProtoClassMetadata:
    # betterproto's classproperty is typed for instances only.
    return message_type._betterproto  # type: ignore[arg-type]


def check_wire(data: bytes, message_type: type[betterproto.Message]) -> None:
    """Raise ``WireError`` unless ``data`` follows protobuf's wire format for ``message_type``.

    Known fields must have their type's wire type (or be packed, when repeated); unknown
    fields may have any valid wire type except the deprecated groups.
    """
    meta = _metadata(message_type)
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
        name = meta.field_name_by_number.get(number)
        if name is not None:
            _check_field(data, pos, end, wire_type, message_type, name)
        pos = end


def _check_field(
    data: bytes,
    start: int,
    end: int,
    wire_type: int,
    message_type: type[betterproto.Message],
    name: str,
) -> None:
    """The field ``name`` at ``data[start:end]`` (only a nested message's bytes are copied)."""
    meta = _metadata(message_type)
    proto_type = meta.meta_by_field_name[name].proto_type
    expected = _WIRE_TYPE[proto_type]
    packed = (
        wire_type == _LEN
        and proto_type in betterproto.PACKED_TYPES
        and meta.default_gen[name] is list
    )
    if wire_type != expected and not packed:
        raise WireError(f"field {name!r} has wire type {wire_type}, not {expected}")
    nested = meta.cls_by_field.get(name)
    if isinstance(nested, type) and issubclass(nested, betterproto.Message):
        check_wire(data[start:end], nested)


class Codec(ProtoCodec):
    """grpclib's protobuf codec with muxs's requests checked by ``check_wire`` (see module doc).

    The messages of the standard services (health, reflection) are protobuf's own, which
    parse strictly already.
    """

    def decode(self, data: bytes, message_type: Any) -> Any:
        if not issubclass(message_type, betterproto.Message):  # health and reflection
            return super().decode(data, message_type)
        try:
            check_wire(data, message_type)
            return super().decode(data, message_type)
        except WireError as exc:
            problem = f"the request is not a valid muxs.{message_type.__name__}: {exc}"
        except Exception:
            problem = f"the request is not a valid muxs.{message_type.__name__}"
        raise GRPCError(Status.INTERNAL, problem) from None
