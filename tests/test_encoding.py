"""``muxs.encoding``: file chunks cross the codec exactly as betterproto2 would encode and
decode them, replies to greetings are encoded as betterproto2 would, and no message class is
patched."""

from __future__ import annotations

import dataclasses
import inspect

import betterproto2
import pytest
from betterproto2 import Message
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_pb2 import HealthCheckRequest

import muxs
import muxs.server.codec  # (the server's codec: imported to show it patches nothing)
from muxs import StatusCode
from muxs.encoding import (
    MessageCodec,
    decode_chunk,
    decode_reply,
    decode_request,
    encode_chunk,
    encode_reply,
    encode_request,
)
from muxs_api.muxs import Chunk, HelloReply, HelloRequest, Number
from tests.interop.test_message_properties import MESSAGE_TYPES

DATA = bytes(range(256)) * 300  # a length that takes a 3-byte varint


def fields_of(
    cls: type[Chunk] | type[HelloReply] | type[HelloRequest],
) -> dict[str, tuple[int, str, bool | None]]:
    metadata = {
        field.name: betterproto2.FieldMetadata.get(field) for field in dataclasses.fields(cls)
    }
    return {name: (meta.number, meta.proto_type, meta.repeated) for name, meta in metadata.items()}


def test_a_chunk_has_the_fields_muxs_encoding_knows() -> None:
    assert fields_of(Chunk) == {
        "filename": (1, betterproto2.TYPE_STRING, False),
        "data": (2, betterproto2.TYPE_BYTES, False),
    }


def test_a_reply_has_the_fields_muxs_encoding_knows() -> None:
    """A field added to HelloReply in the proto fails here until ``encode_reply`` sends it."""
    assert fields_of(HelloReply) == {
        "message": (1, betterproto2.TYPE_STRING, False),
        "index": (2, betterproto2.TYPE_UINT32, False),
    }


@pytest.mark.parametrize(
    "reply",
    [
        HelloReply(),
        HelloReply(message="Hello, you!"),
        HelloReply(index=1),
        HelloReply(message="Hello, é 文件!", index=127),
        HelloReply(message="x" * 200, index=128),
        HelloReply(message="y", index=2**32 - 1),
    ],
    ids=repr,
)
def test_a_reply_encodes_as_betterproto2_encodes_it(reply: HelloReply) -> None:
    assert encode_reply(reply) == bytes(reply)
    assert MessageCodec().encode(reply, HelloReply) == bytes(reply)


def test_a_request_has_the_fields_muxs_encoding_knows() -> None:
    """A field added to HelloRequest in the proto fails here until ``encode_request`` sends it."""
    assert fields_of(HelloRequest) == {
        "name": (1, betterproto2.TYPE_STRING, False),
        "count": (2, betterproto2.TYPE_UINT32, False),
    }


@pytest.mark.parametrize(
    "request_",
    [
        HelloRequest(),
        HelloRequest(name="you"),
        HelloRequest(count=1),
        HelloRequest(name="é 文件", count=128),
        HelloRequest(name="n" * 300, count=2**32 - 1),
    ],
    ids=repr,
)
def test_a_request_encodes_as_betterproto2_encodes_it(request_: HelloRequest) -> None:
    assert encode_request(request_) == bytes(request_)
    assert MessageCodec().encode(request_, HelloRequest) == bytes(request_)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(HelloReply(message="Hello, you!", index=3)),
        bytes(HelloReply(message="x" * 200, index=2**32 - 1)),
        bytes(HelloReply(message="é 文件")),
        b"\x10\x05\x0a\x01a\x10\x07",  # out of order, index twice: the last wins
        b"\x0a\x01a\x18\x01",  # a field muxs's proto lacks
        b"\x08\x05",  # field 1 as a varint
        b"\x0a\x05ab",  # a length past the end: betterproto2 cuts it short
        b"\x10\x80\x80\x80\x80\x10",  # an index past 32 bits
        b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a 10-byte varint
    ],
    ids=repr,
)
def test_a_reply_decodes_as_betterproto2_decodes_it(data: bytes) -> None:
    assert decode_reply(data) == HelloReply.parse(data)
    assert MessageCodec().decode(data, HelloReply) == HelloReply.parse(data)


REQUESTS = [
    b"",
    bytes(HelloRequest(name="you")),
    bytes(HelloRequest(name="x" * 200, count=2**32 - 1)),
    bytes(HelloRequest(name="é 文件", count=3)),
    b"\x10\x05\x0a\x01a\x10\x07",  # out of order, count twice: the last wins
    b"\x0a\x01a\x18\x01",  # a field muxs's proto lacks
    b"\x08\x05",  # field 1 as a varint
    b"\x0a\x05ab",  # a length past the end
    b"\x10\x80\x80\x80\x80\x10",  # a count past 32 bits
    b"\x10\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a 10-byte varint
    b"\x0a\x02\xff\xfe",  # not UTF-8
    b"\x10",  # a varint cut short
]


@pytest.mark.parametrize("data", REQUESTS[:-2], ids=repr)
def test_a_request_decodes_as_betterproto2_decodes_it(data: bytes) -> None:
    assert decode_request(data) == HelloRequest.parse(data)
    assert MessageCodec().decode(data, HelloRequest) == HelloRequest.parse(data)


def checked(data: bytes) -> HelloRequest | str:
    """What the server's codec made of a request before its HelloRequest path: the wire
    check, then betterproto2 (or the INTERNAL message it answers)."""
    try:
        muxs.server.codec.check_wire(data, HelloRequest)
        return HelloRequest.parse(data)
    except Exception as exc:
        return type(exc).__name__


@pytest.mark.parametrize("data", REQUESTS, ids=repr)
def test_the_server_decodes_a_request_as_its_wire_check_and_betterproto2_do(data: bytes) -> None:
    expected = checked(data)
    codec = muxs.server.codec.Codec()
    if isinstance(expected, HelloRequest):
        assert codec.decode(data, HelloRequest) == expected
    else:
        with pytest.raises(GRPCError) as caught:
            codec.decode(data, HelloRequest)
        assert caught.value.status is StatusCode.INTERNAL
        assert str(caught.value.message).startswith("the request is not a valid muxs.HelloRequest")


@pytest.mark.parametrize(
    ("data", "error"),
    [(b"\x0a\x02\xff\xfe", UnicodeDecodeError), (b"\x10", EOFError), (b"\x10\x80", EOFError)],
    ids=repr,
)
def test_a_malformed_reply_fails_as_betterproto2_fails(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        HelloReply.parse(data)
    with pytest.raises(error):
        decode_reply(data)


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
def test_no_message_class_is_patched(cls: type[betterproto2.Message]) -> None:
    """muxs and its codecs are imported: each message's codec is still betterproto2's own."""
    for name in ("FromString", "parse", "__bytes__", "SerializeToString"):
        assert inspect.getattr_static(cls, name) is inspect.getattr_static(Message, name)


@pytest.mark.parametrize(
    "chunk",
    [
        Chunk(),
        Chunk(data=b"x"),
        Chunk(data=DATA),
        Chunk(filename="a.bin"),
        Chunk(filename="dir/é 文件.bin", data=DATA),
        Chunk(filename="f" * 200, data=b"\0" * 127),
        Chunk(filename="f", data=b"\0" * 128),
    ],
    ids=repr,
)
def test_a_chunk_encodes_as_betterproto2_encodes_it(chunk: Chunk) -> None:
    assert encode_chunk(chunk) == bytes(chunk)
    assert MessageCodec().encode(chunk, Chunk) == bytes(chunk)


CHUNKS = [
    b"",
    b"\x12\x00",
    bytes(Chunk(data=DATA)),
    bytes(Chunk(filename="a.bin")),
    bytes(Chunk(filename="dir/é.bin", data=DATA)),
    b"\x12\x01b\x0a\x01a",  # fields out of order
    b"\x12\x01x\x12\x01y\x0a\x01f\x0a\x01g",  # repeated: the last one wins
    b"\x12\x81\x00z",  # a length with a redundant varint byte
    b"\x18\x07\x12\x01d",  # an unknown field: betterproto2 keeps it
    b"\x12\x05abc",  # a length past the end
    b"\x12\xff\xff\xff\xff\x0f",  # a huge length
    b"\x0a\x02\xc3(",  # a filename that is not UTF-8
    b"\x12",  # a truncated length
]


@pytest.mark.parametrize("encoded", CHUNKS, ids=repr)
def test_a_chunk_decodes_as_betterproto2_decodes_it(encoded: bytes) -> None:
    try:
        expected = Chunk.parse(encoded)
    except Exception as exc:  # betterproto2 refuses it: so does muxs
        with pytest.raises(type(exc)):
            decode_chunk(encoded)
        return
    decoded = MessageCodec().decode(encoded, Chunk)
    assert type(decoded) is Chunk
    assert decoded == expected
    assert bytes(decoded) == bytes(expected)  # unknown fields included


@pytest.mark.parametrize("encoded", CHUNKS, ids=repr)
def test_the_server_decodes_a_chunk_as_its_wire_check_and_betterproto2_do(encoded: bytes) -> None:
    try:
        muxs.server.codec.check_wire(encoded, Chunk)
        expected = Chunk.parse(encoded)
    except Exception:
        with pytest.raises(GRPCError) as caught:
            muxs.server.codec.Codec().decode(encoded, Chunk)
        assert caught.value.status is StatusCode.INTERNAL
        assert str(caught.value.message).startswith("the request is not a valid muxs.Chunk")
        return
    decoded = muxs.server.codec.Codec().decode(encoded, Chunk)
    assert decoded == expected
    assert bytes(decoded) == bytes(expected)


def test_other_messages_keep_their_own_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    codec = MessageCodec()
    request = HelloRequest(name="codec")
    assert codec.decode(codec.encode(request, HelloRequest), HelloRequest) == request
    health = HealthCheckRequest(service="muxs.Greeter")
    assert codec.decode(codec.encode(health, HealthCheckRequest), HealthCheckRequest) == health

    def refuse(message: betterproto2.Message) -> bytes:
        raise AssertionError("encoded by betterproto2")

    monkeypatch.setattr(betterproto2.Message, "__bytes__", refuse)
    assert codec.encode(Chunk(data=b"xyz"), Chunk) == b"\x12\x03xyz"
    with pytest.raises(AssertionError, match="encoded by betterproto2"):
        codec.encode(Number(value=2.0), Number)
    assert codec.encode(HelloReply(message="hi"), HelloReply) == b"\x0a\x02hi"


def test_a_message_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="Message must be of type"):
        MessageCodec().encode(HelloReply(), Chunk)


def test_a_chunk_is_sent_without_fields_muxs_does_not_know() -> None:
    """Only a chunk decoded by betterproto2 holds them; muxs never sends one it received."""
    received = Chunk.parse(b"\x18\x07\x12\x01d")
    assert bytes(received) == b"\x12\x01d\x18\x07"
    assert encode_chunk(received) == b"\x12\x01d"


def test_a_well_formed_reply_is_decoded_without_betterproto2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(cls: type[HelloReply], data: bytes) -> HelloReply:
        raise AssertionError("decoded by betterproto2")

    monkeypatch.setattr(HelloReply, "parse", classmethod(refuse))
    data = b"\x0a\x0bHello, you!\x10\x07"
    assert MessageCodec().decode(data, HelloReply) == HelloReply(message="Hello, you!", index=7)
    with pytest.raises(AssertionError, match="decoded by betterproto2"):
        decode_reply(data + b"\x18\x01")
