"""File chunks are built, encoded and decoded by muxs.encoding exactly as betterproto would."""

from __future__ import annotations

import dataclasses
from io import BytesIO

import betterproto
import pytest

import muxs.api  # noqa: F401  (applies muxs.encoding)
from muxs.encoding import decode_chunk, new_chunk
from muxs_api.muxs import Chunk, HelloReply

DATA = bytes(range(256)) * 300  # a length that takes a 3-byte varint


def betterproto_bytes(message: betterproto.Message) -> bytes:
    """betterproto's own Python encoding."""
    with BytesIO() as stream:
        message.dump(stream)
        return stream.getvalue()


def betterproto_parse(data: bytes) -> Chunk:
    """betterproto's own decoding."""
    return Chunk().parse(data)


def state(chunk: Chunk) -> dict[str, object]:
    """Everything a message holds, once each of its fields has been read."""
    for name in ("filename", "data"):
        getattr(chunk, name)  # betterproto fills in an unset field when it is read
    return dict(vars(chunk))


def test_a_chunk_has_the_fields_muxs_encoding_knows() -> None:
    metadata = {field.name: field.metadata["betterproto"] for field in dataclasses.fields(Chunk)}
    assert {name: (meta.number, meta.proto_type) for name, meta in metadata.items()} == {
        "filename": (1, betterproto.TYPE_STRING),
        "data": (2, betterproto.TYPE_BYTES),
    }


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
def test_a_chunk_encodes_as_betterproto_encodes_it(chunk: Chunk) -> None:
    assert bytes(chunk) == betterproto_bytes(chunk)


def test_unknown_fields_are_encoded_after_the_known_ones() -> None:
    chunk = betterproto_parse(b"\x18\x07" + bytes(Chunk(filename="f", data=b"d")))
    assert chunk._unknown_fields == b"\x18\x07"
    assert bytes(chunk) == betterproto_bytes(chunk)


def test_a_chunk_never_encodes_through_the_patched_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(message: betterproto.Message) -> bytes:
        raise AssertionError("encoded by the codec betterproto installs on Message")

    monkeypatch.setattr(betterproto.Message, "__bytes__", refuse)
    assert bytes(Chunk(data=b"xyz")) == b"\x12\x03xyz"
    with pytest.raises(AssertionError):
        bytes(HelloReply(message="other messages keep betterproto's codec"))


@pytest.mark.parametrize(
    ("data", "filename"),
    [(b"", ""), (DATA, ""), (b"", "a.bin"), (DATA, "dir/é.bin")],
)
def test_new_chunk_is_betterprotos_chunk(data: bytes, filename: str) -> None:
    fast, slow = new_chunk(data, filename), Chunk(filename=filename, data=data)
    assert fast == slow
    assert state(fast) == state(slow)
    assert fast.to_dict() == slow.to_dict()
    assert bytes(fast) == bytes(slow)


def test_new_chunk_builds_a_message_that_stays_mutable() -> None:
    chunk = new_chunk(b"data")
    chunk.filename = "later.bin"
    assert bytes(chunk) == bytes(Chunk(filename="later.bin", data=b"data"))


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"\x12\x00",
        bytes(Chunk(data=DATA)),
        bytes(Chunk(filename="a.bin")),
        bytes(Chunk(filename="dir/é.bin", data=DATA)),
        b"\x12\x01b\x0a\x01a",  # fields out of order
        b"\x12\x01x\x12\x01y\x0a\x01f\x0a\x01g",  # repeated: the last one wins
        b"\x12\x81\x00z",  # a length with a redundant varint byte
        b"\x18\x07\x12\x01d",  # an unknown field: betterproto keeps it
        b"\x12\x05abc",  # a length past the end
        b"\x12\xff\xff\xff\xff\x0f",  # a huge length
        b"\x0a\x02\xc3(",  # a filename that is not UTF-8
        b"\x12",  # a truncated length
    ],
)
def test_a_chunk_decodes_as_betterproto_decodes_it(encoded: bytes) -> None:
    try:
        expected = betterproto_parse(encoded)
    except Exception as exc:  # betterproto refuses it: so does muxs
        # (betterproto's rust codec raises RuntimeError where its Python raises UnicodeDecodeError)
        with pytest.raises((type(exc), UnicodeDecodeError)):
            Chunk.FromString(encoded)
        return
    decoded = Chunk.FromString(encoded)
    assert type(decoded) is Chunk
    assert state(decoded) == state(expected)


def test_decode_chunk_is_chunk_from_string() -> None:
    assert Chunk.FromString is decode_chunk
