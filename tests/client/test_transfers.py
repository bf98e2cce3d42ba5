"""The SDK's upload and download: local files, progress callbacks, nothing half-written."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import pytest

from muxs import Client, RpcError, RunningServer, StatusCode, threads
from muxs.threads import BATCH_BYTES, _see_and_read, open_blocking
from muxs.transfers import Progress, no_progress, open_local, read_local

T = TypeVar("T")


@pytest.fixture
def local(tmp_path: Path) -> Path:
    """A local directory, apart from the server's root."""
    path = tmp_path / "local"
    path.mkdir()
    return path


async def test_upload_then_download_with_progress(
    client: Client, root_dir: Path, local: Path
) -> None:
    data = os.urandom(200_000)
    (local / "src.bin").write_bytes(data)
    sent: list[tuple[int, int]] = []
    status = await client.upload(
        local / "src.bin", "dir/copy.bin", progress=lambda done, total: sent.append((done, total))
    )
    assert status.sha256 == hashlib.sha256(data).hexdigest()
    assert (root_dir / "dir" / "copy.bin").read_bytes() == data
    assert [done for done, _ in sent] == [0, 65536, 131072, 196608, 200_000]
    assert {total for _, total in sent} == {200_000}
    received: list[tuple[int, int]] = []
    size = await client.download(
        "dir/copy.bin",
        local / "back.bin",
        progress=lambda done, total: received.append((done, total)),
    )
    assert size == 200_000
    assert (local / "back.bin").read_bytes() == data
    assert received[0] == (0, 200_000)
    assert received[-1] == (200_000, 200_000)
    assert sorted(os.listdir(local)) == ["back.bin", "src.bin"]


async def test_an_empty_file_round_trips(client: Client, local: Path) -> None:
    (local / "empty").touch()
    await client.upload(local / "empty", "empty")
    assert await client.download("empty", local / "back") == 0
    assert (local / "back").read_bytes() == b""


async def test_a_failed_download_leaves_the_local_file_as_it_was(
    client: Client, local: Path
) -> None:
    (local / "keep.txt").write_text("mine")
    with pytest.raises(RpcError) as caught:
        await client.download("missing", local / "keep.txt")
    assert caught.value.status is StatusCode.NOT_FOUND
    assert (local / "keep.txt").read_text() == "mine"
    assert os.listdir(local) == ["keep.txt"]


async def test_uploading_a_missing_local_file_raises_before_any_call(
    client: Client, root_dir: Path, local: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        await client.upload(local / "missing", "f")
    assert os.listdir(root_dir) == []


async def test_a_large_upload_refused_at_its_first_chunk_is_the_servers_status(
    live_server: RunningServer, local: Path
) -> None:
    # The server answers while the client still sends: the rest meets a closed stream.
    (local / "big").write_bytes(b"x" * (8 << 20))
    async with Client(live_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.upload(local / "big", "../escape")
    assert caught.value.status is StatusCode.PERMISSION_DENIED


async def test_a_refused_upload_is_the_servers_status(client: Client, local: Path) -> None:
    (local / "src").write_bytes(b"x")
    with pytest.raises(RpcError) as caught:
        await client.upload(local / "src", "../escape")
    assert caught.value.status is StatusCode.PERMISSION_DENIED


async def test_an_upload_is_hashed_off_the_loop_each_batch_once_its_chunks_are_handed_on(
    local: Path,
) -> None:
    data = os.urandom(BATCH_BYTES + 70_000)
    (local / "src.bin").write_bytes(data)
    hashed_on: list[threading.Thread] = []
    sha256 = hashlib.sha256()
    hashed = 0

    class Recording:
        def update(self, batch: bytes) -> None:
            nonlocal hashed
            hashed_on.append(threading.current_thread())
            sha256.update(batch)
            hashed += len(batch)

    yielded = 0
    with closing(await open_blocking(open_local, local / "src.bin")) as opened:
        async for chunk in read_local(opened, no_progress, Recording()):  # type: ignore[arg-type]
            assert hashed <= yielded  # the batch of this chunk is not hashed yet
            assert data[yielded : yielded + len(chunk)] == chunk
            yielded += len(chunk)
    assert yielded == hashed == len(data)
    assert sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    # the first chunk (read as the file opened), a batch, the rest: each in the trip after it
    assert len(hashed_on) == 3
    assert threading.main_thread() not in hashed_on


@pytest.mark.parametrize("progress", [no_progress, lambda done, total: None])
async def test_an_upload_opens_its_file_and_reads_its_first_chunk_in_one_thread_trip(
    client: Client, local: Path, monkeypatch: pytest.MonkeyPatch, progress: Progress
) -> None:
    (local / "src").write_bytes(b"z" * 1000)
    trips: list[object] = []
    in_thread = threads._in_thread

    def counted(func: Callable[..., T], /, *args: object, **kwargs: object) -> asyncio.Future[T]:
        if func.__module__ in {"muxs.transfers", "muxs.threads"}:
            trips.append(func)  # the client's (the in-memory server's are in muxs.server)
        return in_thread(func, *args, **kwargs)

    monkeypatch.setattr(threads, "_in_thread", counted)
    await client.upload(local / "src", "f", progress=progress)
    # open, stat and read the first chunk; hash it and find the end
    assert trips == [open_local, _see_and_read]
