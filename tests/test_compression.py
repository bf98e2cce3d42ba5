"""``muxs.compression``: large messages (de)compressed in a worker thread, small ones inline."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from muxs import compression, threads
from muxs.compression import OFF_LOOP_BYTES, CompressingWriter, Corrupt, TooLarge, inflate

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
    assert trips == (["_inflate_more"] if in_thread else [])


@pytest.mark.parametrize("limit", [OFF_LOOP_BYTES - 1, OFF_LOOP_BYTES, 2 * 1024 * 1024])
async def test_a_large_message_past_the_limit_is_too_large(limit: int) -> None:
    with pytest.raises(TooLarge, match=f"more than {limit} bytes"):
        await inflate(gzip.compress(BIG), "gzip", limit)


async def test_a_bomb_is_refused_once_past_the_limit(trips: list[str]) -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)
    with pytest.raises(TooLarge):
        await inflate(bomb, "gzip", 4 * 1024 * 1024)
    assert trips == ["_inflate_more"]


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
