"""Concurrent writers to one path: the last rename wins, and no content is ever interleaved."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from muxs import Client
from muxs.server.storage import TEMP_PREFIX

CHUNK = 65536


async def chunks(
    fill: bytes, count: int, release: asyncio.Event | None = None
) -> AsyncIterator[bytes]:
    """``count`` chunks of ``fill``, yielding to other tasks between them; the last one only
    once ``release`` is set."""
    for index in range(count):
        if index == count - 1 and release is not None:
            await release.wait()
        yield fill * CHUNK
        await asyncio.sleep(0)


async def test_the_write_that_commits_last_wins(client: Client, root_dir: Path) -> None:
    for first, second in ((b"A", b"B"), (b"B", b"A")):
        releases = {first: asyncio.Event(), second: asyncio.Event()}
        writers = {
            fill: asyncio.create_task(client.write_chunks("f", chunks(fill, 8, releases[fill])))
            for fill in (b"A", b"B")
        }
        releases[first].set()
        await writers[first]
        assert (root_dir / "f").read_bytes() == first * 8 * CHUNK
        releases[second].set()
        await writers[second]
        assert (root_dir / "f").read_bytes() == second * 8 * CHUNK


async def test_many_writers_and_readers_never_see_a_mix(client: Client, root_dir: Path) -> None:
    versions = {bytes([ord("a") + n]) * CHUNK * 6 for n in range(8)}
    versions.add(b"initial")
    (root_dir / "f").write_bytes(b"initial")
    writing = True
    seen: list[bytes] = []

    async def reader() -> None:
        while writing:
            seen.append(await client.read_bytes("f"))

    async def unary_writer(fill: bytes) -> None:
        await client.write("f", (fill * CHUNK * 6).decode())

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    streamed = [client.write_chunks("f", chunks(bytes([ord("a") + n]), 6)) for n in range(6)]
    unary = [unary_writer(bytes([ord("a") + n])) for n in (6, 7)]
    statuses = await asyncio.gather(*streamed, *unary)
    writing = False
    await asyncio.gather(*readers)
    assert len(statuses) == 8
    assert (root_dir / "f").read_bytes() in versions
    assert seen
    assert set(seen) <= versions
    assert [name for name in os.listdir(root_dir) if name.startswith(TEMP_PREFIX)] == []


async def test_a_reader_keeps_the_version_it_opened(client: Client, root_dir: Path) -> None:
    (root_dir / "f").write_bytes(b"o" * CHUNK * 20)
    async with client.read_chunks("f") as stream:
        first = await anext(stream)
        await client.write_bytes("f", b"n" * CHUNK * 20)
        rest = [data async for data in stream]
    assert b"".join([first, *rest]) == b"o" * CHUNK * 20
    assert await client.read_bytes("f") == b"n" * CHUNK * 20
