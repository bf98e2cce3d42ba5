"""Messages that carry file data encode in betterproto's Python, whatever else is installed."""

from __future__ import annotations

import betterproto
import pytest

import muxs.api  # noqa: F401  (applies muxs.encoding)
from muxs_api.muxs import Chunk, HelloReply


def test_a_chunk_round_trips() -> None:
    chunk = Chunk(filename="a.bin", data=bytes(range(256)) * 300)
    assert Chunk().parse(bytes(chunk)) == chunk


def test_a_chunk_never_encodes_through_the_patched_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(message: betterproto.Message) -> bytes:
        raise AssertionError("encoded by the codec betterproto installs on Message")

    monkeypatch.setattr(betterproto.Message, "__bytes__", refuse)
    assert bytes(Chunk(data=b"xyz")) == b"\x12\x03xyz"
    with pytest.raises(AssertionError):
        bytes(HelloReply(message="other messages keep betterproto's codec"))
