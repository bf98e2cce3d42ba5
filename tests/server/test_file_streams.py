"""ReadStream and WriteStream: bytes of any size, atomic, and no trace when a call fails."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor

from muxs import Client, RpcError, ServerSettings, StatusCode, serve
from muxs.api import Chunk, FileControllerStub
from muxs.server.serving import build_services
from muxs.server.storage import TEMP_PREFIX, AtomicFile, FileStore, LocalRoot, Root

pytestmark = pytest.mark.usefixtures("storage")


def temp_files(root_dir: Path) -> list[str]:
    return [p.name for p in root_dir.rglob(f"{TEMP_PREFIX}*")]


@asynccontextmanager
async def in_memory(settings: ServerSettings, root: FileStore) -> AsyncIterator[Client]:
    """A client on an in-memory server; leaving it waits until every handler has finished."""
    async with ChannelFor(build_services(settings, root)) as channel:
        yield Client("in-memory:0", channel=channel)


class WatchedRoot(Root):
    """A real root that tells the test when a write has created its temp file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.write_started = threading.Event()

    def open_for_replace(self, name: str, *, create_dirs: bool = True) -> AtomicFile:
        new = super().open_for_replace(name, create_dirs=create_dirs)
        self.write_started.set()
        return new


async def stalled(sent: asyncio.Event | None = None, chunks: int = 1) -> AsyncIterator[bytes]:
    """``chunks`` chunks, then (after setting ``sent``) nothing ever again."""
    for _ in range(chunks):
        yield b"a" * 65536
    if sent is not None:
        sent.set()
    await asyncio.Event().wait()


@pytest.fixture
def watched_root(root_dir: Path) -> Iterator[WatchedRoot]:
    root = WatchedRoot(root_dir)
    yield root
    root.close()


async def test_bytes_round_trip_in_many_chunks_with_their_sha256(
    client: Client, root_dir: Path
) -> None:
    data = os.urandom(300_000) + b"\xff\xfe not UTF-8"
    status = await client.write_bytes("bin/blob", data)
    assert status.code == 0
    assert status.sha256 == hashlib.sha256(data).hexdigest()
    assert (root_dir / "bin" / "blob").read_bytes() == data
    assert await client.read_bytes("bin/blob") == data
    assert temp_files(root_dir) == []


async def test_read_stream_sends_64_kib_chunks(client: Client, root_dir: Path) -> None:
    (root_dir / "f").write_bytes(b"x" * (3 * 65536 + 10))
    sizes = [len(data) async for data in client.read_chunks("f")]
    assert sizes == [65536, 65536, 65536, 10]


async def test_the_chunk_size_is_a_setting(root_dir: Path, settings: ServerSettings) -> None:
    (root_dir / "f").write_bytes(b"x" * 5000)
    async with in_memory(replace(settings, chunk_bytes=2048), LocalRoot(Root(root_dir))) as client:
        assert [len(data) async for data in client.read_chunks("f")] == [2048, 2048, 904]


async def test_reads_of_many_chunks_keep_the_chunk_size(
    root_dir: Path, settings: ServerSettings
) -> None:
    data = os.urandom(5 * 1024 * 1024 + 7)  # several blocks of reads, each a multiple of 3000
    (root_dir / "f").write_bytes(data)
    async with in_memory(replace(settings, chunk_bytes=3000), LocalRoot(Root(root_dir))) as client:
        chunks = [data async for data in client.read_chunks("f")]
    assert {len(chunk) for chunk in chunks[:-1]} == {3000}
    assert b"".join(chunks) == data


async def test_a_write_of_many_chunks_lands_whole_with_its_sha256(
    client: Client, root_dir: Path
) -> None:
    data = os.urandom(5 * 1024 * 1024 + 7)  # several batches of writes
    status = await client.write_bytes("f", data)
    assert status.sha256 == hashlib.sha256(data).hexdigest()
    assert (root_dir / "f").read_bytes() == data
    assert temp_files(root_dir) == []


def test_a_write_of_parts_lands_whole_however_writev_takes_them(
    root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More parts than one writev takes (IOV_MAX), empty ones among them, and a writev
    that writes at most 1000 bytes a call, cutting parts anywhere."""
    parts = tuple(bytes([index % 256]) * (index * 37 % 300) for index in range(3000))
    writev = os.writev

    def short_writev(fd: int, buffers: list[bytes | memoryview]) -> int:
        assert len(buffers) <= os.sysconf("SC_IOV_MAX")
        return writev(fd, [b"".join(buffers)[:1000]])

    root = Root(root_dir)
    try:
        with root.open_for_replace("f") as new:
            monkeypatch.setattr(os, "writev", short_writev)
            new.write(*parts)
            monkeypatch.setattr(os, "writev", writev)
            new.write(*parts)
            new.commit()
        data = b"".join(parts) * 2
        assert (new.size, new.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert (root_dir / "f").read_bytes() == data
    finally:
        root.close()


async def test_an_empty_file_round_trips(client: Client, root_dir: Path) -> None:
    (root_dir / "old").write_bytes(b"old")
    status = await client.write_bytes("old", b"")
    assert status.sha256 == hashlib.sha256(b"").hexdigest()
    assert (root_dir / "old").read_bytes() == b""
    assert await client.read_bytes("old") == b""


async def test_unary_write_reports_the_sha256(client: Client) -> None:
    status = await client.write("t.txt", "héllo")
    assert status.sha256 == hashlib.sha256("héllo".encode()).hexdigest()


async def test_write_chunks_takes_an_async_iterable(client: Client, root_dir: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one ", b"two ", b"three"):
            yield part

    await client.write_chunks("f", chunks())
    assert (root_dir / "f").read_bytes() == b"one two three"


@pytest.mark.parametrize(
    "chunks",
    [
        [],
        [Chunk(data=b"no name")],
        [Chunk(filename="f", data=b"a"), Chunk(filename="g", data=b"b")],
    ],
    ids=["no chunks", "unnamed first chunk", "named second chunk"],
)
async def test_malformed_write_streams_are_invalid_argument(
    settings: ServerSettings, storage: LocalRoot, root_dir: Path, chunks: list[Chunk]
) -> None:
    async with ChannelFor(build_services(settings, storage)) as channel:
        with pytest.raises(GRPCError) as caught:
            await FileControllerStub(channel).write_stream(chunks)
    assert caught.value.status is StatusCode.INVALID_ARGUMENT
    assert sorted(os.listdir(root_dir)) == []


@pytest.fixture
def small_files(settings: ServerSettings) -> ServerSettings:
    return replace(settings, max_file_bytes=100_000)


async def test_writes_over_the_file_limit_are_resource_exhausted(
    small_files: ServerSettings, storage: LocalRoot, root_dir: Path
) -> None:
    (root_dir / "f").write_bytes(b"old")
    async with in_memory(small_files, storage) as client:
        with pytest.raises(RpcError) as caught:
            await client.write_bytes("f", b"x" * 100_001)
        assert caught.value.status is StatusCode.RESOURCE_EXHAUSTED
        assert "100000-byte file limit" in caught.value.message
        assert (await client.write_bytes("f", b"x" * 100_000)).code == 0
    assert (root_dir / "f").stat().st_size == 100_000
    assert temp_files(root_dir) == []


async def test_a_long_write_over_the_file_limit_is_resource_exhausted(
    settings: ServerSettings, storage: LocalRoot, root_dir: Path
) -> None:
    (root_dir / "f").write_bytes(b"old")
    limit = 3 * 1024 * 1024 + 5  # past the first batches of writes, inside a chunk
    async with in_memory(replace(settings, max_file_bytes=limit), storage) as client:
        with pytest.raises(RpcError) as caught:
            await client.write_bytes("f", b"x" * (limit + 1))
        assert caught.value.status is StatusCode.RESOURCE_EXHAUSTED
        assert (await client.write_bytes("f", b"x" * limit)).code == 0
    assert (root_dir / "f").stat().st_size == limit
    assert temp_files(root_dir) == []


async def test_reads_over_the_file_limit_are_failed_precondition(
    small_files: ServerSettings, storage: LocalRoot, root_dir: Path
) -> None:
    (root_dir / "big").write_bytes(b"x" * 100_001)
    async with in_memory(small_files, storage) as client:
        with pytest.raises(RpcError) as caught:
            await client.read_bytes("big")
    assert caught.value.status is StatusCode.FAILED_PRECONDITION
    assert "100000-byte file limit" in caught.value.message


async def test_an_upload_whose_source_fails_leaves_no_trace(
    settings: ServerSettings, watched_root: WatchedRoot, root_dir: Path
) -> None:
    (root_dir / "f").write_bytes(b"old")

    async def failing() -> AsyncIterator[bytes]:
        yield b"a" * 65536
        await asyncio.to_thread(watched_root.write_started.wait, 10)
        raise ValueError("the source broke")

    async with in_memory(settings, LocalRoot(watched_root)) as client:
        with pytest.raises(ValueError, match="the source broke"):
            await client.write_chunks("f", failing())
    assert watched_root.write_started.is_set()
    assert (root_dir / "f").read_bytes() == b"old"
    assert temp_files(root_dir) == []


async def test_a_write_stream_past_its_deadline_leaves_no_trace(
    settings: ServerSettings, watched_root: WatchedRoot, root_dir: Path
) -> None:
    (root_dir / "f").write_bytes(b"old")
    async with in_memory(settings, LocalRoot(watched_root)) as client:
        with pytest.raises(RpcError) as caught:
            await client.write_chunks("f", stalled(), timeout=1)
    assert caught.value.status is StatusCode.DEADLINE_EXCEEDED
    assert watched_root.write_started.is_set()
    assert (root_dir / "f").read_bytes() == b"old"
    assert temp_files(root_dir) == []


async def test_a_cancelled_write_stream_leaves_no_trace(
    settings: ServerSettings, watched_root: WatchedRoot, root_dir: Path
) -> None:
    (root_dir / "f").write_bytes(b"old")
    async with in_memory(settings, LocalRoot(watched_root)) as client:
        upload = asyncio.create_task(client.write_chunks("f", stalled()))
        await asyncio.to_thread(watched_root.write_started.wait, 10)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
    assert (root_dir / "f").read_bytes() == b"old"
    assert temp_files(root_dir) == []


async def test_a_write_stream_whose_connection_breaks_leaves_no_trace(
    settings: ServerSettings, root_dir: Path
) -> None:
    (root_dir / "f").write_bytes(b"old")
    sent = asyncio.Event()
    async with serve(settings=settings) as running:
        client = Client(running.target)
        upload = asyncio.create_task(client.write_chunks("f", stalled(sent, chunks=8)))
        await sent.wait()
        client.close()
        with pytest.raises(RpcError) as caught:
            await upload
        assert caught.value.status is StatusCode.UNAVAILABLE
    assert (root_dir / "f").read_bytes() == b"old"
    assert temp_files(root_dir) == []


async def test_a_read_stream_left_early_is_cancelled(client: Client, root_dir: Path) -> None:
    (root_dir / "big").write_bytes(b"x" * (50 * 65536))
    async with client.read_chunks("big") as chunks:
        assert len(await anext(chunks)) == 65536
    assert await client.read_bytes("big") == b"x" * (50 * 65536)
