"""``muxs.compression``: large messages (de)compressed in a worker thread, in pieces, small ones
inline; gzip messages of several members."""

from __future__ import annotations

import gzip
import itertools
import os
import threading
import zlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from muxs import compression, threads
from muxs.compression import (
    COMPRESS_PIECE_BYTES,
    MAX_GZIP_MEMBERS,
    OFF_LOOP_BYTES,
    PIECE_BYTES,
    CompressingWriter,
    Corrupt,
    TooLarge,
    TooManyMembers,
    inflate,
)

COMPRESS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress}
BIG = b"".join(b"%d muxs line\n" % index for index in range(400_000))[: 4 * 1024 * 1024]


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function ``muxs.compression`` runs in a worker thread."""
    seen: list[str] = []
    real = threads.run_blocking

    async def counting(func: Callable[..., Any], /, *args: Any) -> Any:
        seen.append(func.__name__)
        return await real(func, *args)

    monkeypatch.setattr(compression, "run_blocking", counting)
    return seen


@pytest.mark.parametrize("encoding", COMPRESS)
@pytest.mark.parametrize(
    ("size", "in_thread"),
    [(1000, False), (OFF_LOOP_BYTES + 1, True), (len(BIG), True)],
)
async def test_a_message_is_inflated_in_a_thread_past_its_first_64_kib(
    trips: list[str], encoding: str, size: int, in_thread: bool
) -> None:
    message = BIG[:size]
    assert await inflate(COMPRESS[encoding](message), encoding, len(BIG)) == message
    assert trips == (["_inflate_rest"] if in_thread else [])


@pytest.mark.parametrize("limit", [OFF_LOOP_BYTES - 1, OFF_LOOP_BYTES, 2 * 1024 * 1024])
async def test_a_large_message_past_the_limit_is_too_large(limit: int) -> None:
    with pytest.raises(TooLarge, match=f"more than {limit} bytes"):
        await inflate(gzip.compress(BIG), "gzip", limit)


async def test_a_bomb_is_refused_once_past_the_limit(trips: list[str]) -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)
    with pytest.raises(TooLarge):
        await inflate(bomb, "gzip", 4 * 1024 * 1024)
    assert trips == ["_inflate_rest"]


@pytest.mark.parametrize(
    "data",
    [gzip.compress(BIG)[:-100], gzip.compress(BIG) + b"trailing", gzip.compress(BIG)[:50_000]],
    ids=["truncated", "trailing bytes", "cut in its first 64 KiB"],
)
async def test_a_large_broken_message_is_corrupt(data: bytes) -> None:
    with pytest.raises(Corrupt):
        await inflate(data, "gzip", 2 * len(BIG))


async def test_garbage_past_the_first_64_kib_is_corrupt() -> None:
    data = gzip.compress(BIG)
    cut = len(data) // 2
    with pytest.raises(Corrupt, match="not valid gzip data"):
        await inflate(data[:cut] + os.urandom(len(data) - cut), "gzip", 2 * len(BIG))


@pytest.mark.parametrize(("size", "in_thread"), [(2000, False), (OFF_LOOP_BYTES, True)])
async def test_a_large_message_is_compressed_in_a_thread(
    trips: list[str], size: int, in_thread: bool
) -> None:
    sent: list[bytes] = []

    async def send_data(data: bytes, end_stream: bool = False) -> None:
        sent.append(data)

    await CompressingWriter(send_data, "gzip")(b"\x00" + size.to_bytes(4, "big") + BIG[:size])
    [data] = sent
    assert data[0] == 1
    assert gzip.decompress(data[5:]) == BIG[:size]
    assert trips == (["frame"] if in_thread else [])


# --- in pieces ------------------------------------------------------------------------------


class ZlibCall(SimpleNamespace):
    """One call of a zlib (de)compressor: its thread, the bytes given, the most it may make
    (inflating; 0 for none), the bytes made."""

    thread: int
    given: int
    most: int
    made: int


class Recording:
    """A (de)compressor that records each call it is given (``ZlibCall``)."""

    def __init__(self, real: Any, calls: list[ZlibCall]) -> None:
        self._real = real
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _record(self, data: Any, most: int, made: bytes) -> bytes:
        self._calls.append(
            ZlibCall(thread=threading.get_ident(), given=len(data), most=most, made=len(made))
        )
        return made

    def decompress(self, data: Any, max_length: int = 0) -> bytes:
        return self._record(data, max_length, self._real.decompress(data, max_length))

    def compress(self, data: Any) -> bytes:
        return self._record(data, 0, self._real.compress(data))


@pytest.fixture
def zlib_calls(monkeypatch: pytest.MonkeyPatch) -> list[ZlibCall]:
    """Every call of a (de)compressor ``muxs.compression`` makes."""
    calls: list[ZlibCall] = []
    recording = SimpleNamespace(
        decompressobj=lambda *args: Recording(zlib.decompressobj(*args), calls),
        compressobj=lambda **kwargs: Recording(zlib.compressobj(**kwargs), calls),
        error=zlib.error,
    )
    monkeypatch.setattr(compression, "zlib", recording)
    return calls


@pytest.mark.parametrize("encoding", COMPRESS)
async def test_a_large_message_is_inflated_in_pieces_past_its_first_64_kib_in_a_thread(
    zlib_calls: list[ZlibCall], encoding: str
) -> None:
    assert await inflate(COMPRESS[encoding](BIG), encoding, len(BIG)) == BIG
    loop = threading.get_ident()
    assert sum(call.made for call in zlib_calls if call.thread == loop) <= OFF_LOOP_BYTES
    in_thread = [call for call in zlib_calls if call.thread != loop]
    assert len({call.thread for call in in_thread}) == 1
    assert len(in_thread) >= (len(BIG) - OFF_LOOP_BYTES) // PIECE_BYTES
    assert all(0 < call.most <= PIECE_BYTES and call.given <= PIECE_BYTES for call in in_thread)


async def test_a_large_message_is_compressed_in_pieces_in_a_thread(
    zlib_calls: list[ZlibCall],
) -> None:
    sent: list[bytes] = []

    async def send_data(data: bytes, end_stream: bool = False) -> None:
        sent.append(data)

    await CompressingWriter(send_data, "gzip")(b"\x00" + len(BIG).to_bytes(4, "big") + BIG)
    assert gzip.decompress(sent[0][5:]) == BIG
    assert {call.thread for call in zlib_calls} == {zlib_calls[0].thread} != {threading.get_ident()}
    pieces = len(BIG) // COMPRESS_PIECE_BYTES
    assert [call.given for call in zlib_calls] == [COMPRESS_PIECE_BYTES] * pieces


# --- gzip members ---------------------------------------------------------------------------


def members(data: bytes, count: int) -> bytes:
    """``data`` gzipped as ``count`` members, one after the other (the first ones empty when
    ``data`` is shorter than ``count``)."""
    size = -(-len(data) // count)
    cuts = [max(0, len(data) - size * (count - index)) for index in range(count + 1)]
    return b"".join(gzip.compress(data[start:end]) for start, end in itertools.pairwise(cuts))


@pytest.mark.parametrize("count", [2, 3, 100])
@pytest.mark.parametrize("size", [0, 1000, OFF_LOOP_BYTES + 1, len(BIG)])
async def test_a_message_of_several_gzip_members_inflates_to_them_joined(
    size: int, count: int
) -> None:
    data = members(BIG[:size], count)
    assert gzip.decompress(data) == BIG[:size]
    assert await inflate(data, "gzip", len(BIG)) == BIG[:size]


async def test_a_second_member_is_inflated_in_a_thread(trips: list[str]) -> None:
    assert await inflate(members(b"ab", 2), "gzip", 2) == b"ab"
    assert trips == ["_inflate_rest"]


async def test_members_past_the_limit_together_are_too_large() -> None:
    data = members(BIG[:1000], 2)
    assert await inflate(data, "gzip", 1000) == BIG[:1000]
    with pytest.raises(TooLarge, match="inflates to more than 999 bytes"):
        await inflate(data, "gzip", 999)


async def test_a_bomb_in_members_is_refused_once_past_the_limit(trips: list[str]) -> None:
    member = gzip.compress(bytes(1024 * 1024), compresslevel=9)
    with pytest.raises(TooLarge, match=f"more than {4 * 1024 * 1024} bytes"):
        await inflate(member * 64, "gzip", 4 * 1024 * 1024)


async def test_the_most_gzip_members_are_inflated_and_one_more_is_too_many() -> None:
    empty = gzip.compress(b"")
    assert await inflate(empty * MAX_GZIP_MEMBERS, "gzip", 1) == b""
    with pytest.raises(TooManyMembers, match=f"more than {MAX_GZIP_MEMBERS} gzip members"):
        await inflate(empty * (MAX_GZIP_MEMBERS + 1), "gzip", 1)


@pytest.mark.parametrize(
    ("data", "encoding", "message"),
    [
        (gzip.compress(b"x") + b"trailing", "gzip", "8 bytes after its last gzip member"),
        (members(b"xy", 2) + bytes(4), "gzip", "4 bytes after its last gzip member"),
        (members(BIG, 2) + b"\x1f", "gzip", "1 bytes after its last gzip member"),
        (gzip.compress(b"x") + b"\x1f\x8bgarbage", "gzip", "not valid gzip data"),
        (gzip.compress(b"x") + gzip.compress(b"y")[:-1], "gzip", "cut short inside its gzip"),
        (zlib.compress(b"x") * 2, "deflate", "after its last deflate stream"),
    ],
    ids=["garbage", "zero padding", "half a magic", "a bad member", "a cut member", "deflate"],
)
async def test_anything_after_the_last_member_is_corrupt(
    data: bytes, encoding: str, message: str
) -> None:
    with pytest.raises(Corrupt, match=message):
        await inflate(data, encoding, 2 * len(BIG))
