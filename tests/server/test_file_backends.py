"""FileController's contract through the API, on both stores: the local root and an S3 bucket
(on the SeaweedFS the session starts). Disk-only behaviour (symlinks, FIFOs, fsync, temp files)
is tested in the other modules; what differs on S3 is in the README."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from google.rpc.error_details_pb2 import BadRequest
from grpclib.testing import ChannelFor

from muxs import Client, RpcError, ServerSettings, StatusCode
from muxs.server.serving import build_services
from muxs.server.storage import TEMP_PREFIX, FileStore, LocalRoot, Root
from muxs.server.storage.s3 import S3Bucket
from tests.polling import until
from tests.seaweedfs import S3Engine

PART = 5 * 1024 * 1024
Serve = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture(params=["local", "s3"])
def serve_files(request: pytest.FixtureRequest, root_dir: Path) -> Serve:
    """``serve_files(**options)``: a client of FileController on this backend, with options
    (on S3, every server of the test shares one fresh prefix)."""
    prefix = f"t-{secrets.token_hex(6)}"

    @asynccontextmanager
    async def serve(**options: Any) -> AsyncIterator[Client]:
        store: FileStore
        if request.param == "local":
            settings = ServerSettings(root=root_dir, **options)
            store = LocalRoot(Root(root_dir))
        else:
            engine: S3Engine = request.getfixturevalue("s3_engine")
            settings = engine.settings(prefix, s3_part_bytes=PART, s3_parts_in_flight=2, **options)
            store = S3Bucket(settings)
        try:
            async with ChannelFor(build_services(settings, store)) as channel:
                yield Client("in-memory:0", channel=channel)
        finally:
            await store.aclose()

    return serve


async def refusal(call: object) -> RpcError:
    with pytest.raises(RpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def names(client: Client, path: str = "") -> dict[str, tuple[int, bool]]:
    return {info.name: (info.size, info.is_dir) async for info in client.list(path)}


async def test_files_round_trip_with_their_sha256(serve_files: Serve) -> None:
    data = os.urandom(PART + 300_000)  # past one part: a multipart upload on S3
    async with serve_files() as client:
        assert (await client.write("a/b/hello.txt", "hello")).code == 0
        assert (await client.read("a/b/hello.txt")).text == "hello"
        status = await client.write_bytes("blob", data)
        assert status.sha256 == hashlib.sha256(data).hexdigest()
        assert await client.read_bytes("blob") == data
        sizes = [len(chunk) async for chunk in client.read_chunks("blob")]
        assert set(sizes[:-1]) == {65536}
        assert (await client.write_bytes("empty", b"")).sha256 == hashlib.sha256().hexdigest()
        assert await client.read_bytes("empty") == b""
        assert (await client.write("a/b/hello.txt", "again")).code == 0
        assert (await client.read("a/b/hello.txt")).text == "again"


async def test_list_stat_and_delete(serve_files: Serve) -> None:
    async with serve_files() as client:
        await client.write("a.txt", "12345")
        await client.write("sub/b.txt", "")
        await client.write(f"sub/{TEMP_PREFIX}x/c", "")
        assert await names(client) == {"a.txt": (5, False), "sub": (0, True)}
        assert await names(client, "sub") == {"b.txt": (0, False)}  # muxs's names are hidden
        info = await client.stat("a.txt")
        assert (info.size, info.is_dir) == (5, False)
        assert info.mtime > 0
        assert (await client.stat("sub")).is_dir
        assert (await client.stat(".")).is_dir
        assert (await client.delete("a.txt")).code == 0
        missing = await refusal(client.delete("a.txt"))
        assert (missing.status, missing.message) == (StatusCode.NOT_FOUND, "a.txt does not exist")
        assert await names(client) == {"sub": (0, True)}


NOT_A_DIRECTORY = "{} ends in '/' but is a file, not a directory"
NOT_A_FILE_NAME = "{} ends in '/', which names a directory; a file's name does not"


@pytest.mark.parametrize(
    ("call", "status", "message"),
    [
        ("read missing", StatusCode.NOT_FOUND, "missing does not exist"),
        ("stat missing", StatusCode.NOT_FOUND, "missing does not exist"),
        ("list missing", StatusCode.NOT_FOUND, "missing does not exist"),
        ("list file", StatusCode.FAILED_PRECONDITION, "file is a file, not a directory"),
        ("read dir", StatusCode.PERMISSION_DENIED, "dir is a directory, not a file"),
        ("write dir", StatusCode.PERMISSION_DENIED, "dir is a directory, not a file"),
        ("delete dir", StatusCode.PERMISSION_DENIED, "dir is a directory, not a file"),
        ("write .", StatusCode.PERMISSION_DENIED, ". is a directory, not a file"),
        # A trailing "/" names a directory (POSIX: ENOTDIR for a file), on every method.
        ("stat file/", StatusCode.FAILED_PRECONDITION, NOT_A_DIRECTORY.format("file/")),
        ("stat file/.", StatusCode.FAILED_PRECONDITION, NOT_A_DIRECTORY.format("file/.")),
        ("stat missing/", StatusCode.NOT_FOUND, "missing/ does not exist"),
        ("list file/", StatusCode.FAILED_PRECONDITION, NOT_A_DIRECTORY.format("file/")),
        *(
            (f"{method} {name}", StatusCode.INVALID_ARGUMENT, NOT_A_FILE_NAME.format(name))
            for method in ("read", "readstream", "write", "writestream", "delete")
            for name in ("file/", "dir/", "new/", "file/.")
        ),
    ],
)
async def test_refusals_of_what_a_name_leads_to(
    serve_files: Serve, call: str, status: StatusCode, message: str
) -> None:
    async with serve_files() as client:
        await client.write("file", "x")
        await client.write("dir/inside", "x")
        method, name = call.split(" ")
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "read": lambda: client.read(name),
            "readstream": lambda: client.read_bytes(name),
            "stat": lambda: client.stat(name),
            "list": lambda: names(client, name),
            "write": lambda: client.write(name, "new"),
            "writestream": lambda: client.write_bytes(name, b"new"),
            "delete": lambda: client.delete(name),
        }
        refused = await refusal(calls[method]())
        assert (refused.status, refused.message) == (status, message)
        assert (await client.read("dir/inside")).text == "x"
        assert (await client.read("file")).text == "x"
        assert await names(client) == {"file": (1, False), "dir": (0, True)}


async def test_a_name_ending_in_a_slash_names_a_directory(serve_files: Serve) -> None:
    async with serve_files() as client:
        await client.write("dir/inside", "x")
        for name in ("dir/", "dir/.", "dir//"):
            assert (await client.stat(name)).is_dir
            assert await names(client, name) == {"inside": (1, False)}


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("", StatusCode.INVALID_ARGUMENT),
        ("/etc/passwd", StatusCode.INVALID_ARGUMENT),
        ("a\0b", StatusCode.INVALID_ARGUMENT),
        ("x" * 256, StatusCode.INVALID_ARGUMENT),
        ("a/" * 2100, StatusCode.INVALID_ARGUMENT),
        (f"{TEMP_PREFIX}0123", StatusCode.INVALID_ARGUMENT),
        ("..", StatusCode.PERMISSION_DENIED),
        ("sub/../../outside/secret", StatusCode.PERMISSION_DENIED),
    ],
    ids=["empty", "absolute", "NUL", "long component", "long name", "reserved", "dotdot", "zigzag"],
)
async def test_the_name_rules_are_the_same_refusals(
    serve_files: Serve, name: str, status: StatusCode
) -> None:
    async with serve_files() as client:
        calls = [client.read(name), client.stat(name), client.delete(name), client.write(name, "x")]
        if name:  # a WriteStream naming no file is the service's own refusal
            calls.append(client.write_bytes(name, b"x"))
        for call in calls:
            refused = await refusal(call)
            assert refused.status is status
            [details] = [d for d in refused.details if isinstance(d, BadRequest)]
            assert details.field_violations[0].field == "filename"
        assert await names(client) == {}


async def test_writes_can_be_kept_from_creating_directories(serve_files: Serve) -> None:
    async with serve_files() as client:
        await client.write("old/f", "x")
    async with serve_files(create_dirs=False) as client:
        for call in (client.write("new/f", "x"), client.write_bytes("new/f", b"x")):
            refused = await refusal(call)
            assert refused.status is StatusCode.NOT_FOUND
            assert refused.message == "a parent directory of new/f does not exist"
        assert (await client.write("old/g", "x")).code == 0


async def test_a_write_over_the_file_limit_leaves_the_old_file(serve_files: Serve) -> None:
    limit = PART + 5  # past the first part
    async with serve_files(max_file_bytes=limit) as client:
        await client.write("f", "old")
        refused = await refusal(client.write_bytes("f", b"x" * (limit + 1)))
        assert refused.status is StatusCode.RESOURCE_EXHAUSTED
        assert (await client.read("f")).text == "old"


async def test_seed_style_read_failures_are_the_seed_text(serve_files: Serve) -> None:
    async with serve_files(error_style="seed") as client:
        for name in ("missing.txt", "../escape", ""):
            assert (await client.read(name)).text == "Error: read failed"


# S3 only: an upload that does not end cleanly leaves neither an object nor a multipart upload.


async def stalled(parts: int) -> AsyncIterator[bytes]:
    """``parts`` parts' worth of bytes (a multipart upload begins), then nothing ever again."""
    for _ in range(parts * PART // 65536 + 1):
        yield b"a" * 65536
    await asyncio.Event().wait()


@asynccontextmanager
async def s3_client(settings: ServerSettings) -> AsyncIterator[Client]:
    store = S3Bucket(settings)
    try:
        async with ChannelFor(build_services(settings, store)) as channel:
            yield Client("in-memory:0", channel=channel)
    finally:
        await store.aclose()


@pytest.mark.parametrize("ending", ["cancelled", "deadline", "broken"])
async def test_an_unfinished_upload_leaves_no_object_and_no_multipart_upload(
    s3_engine: S3Engine, ending: str
) -> None:
    settings = s3_engine.settings(s3_part_bytes=PART, s3_parts_in_flight=2)
    prefix = settings.storage.removeprefix(f"s3://{s3_engine.bucket}/") if settings.storage else ""
    async with s3_client(settings) as client:
        await client.write("kept", "old")

        async def source() -> AsyncIterator[bytes]:
            async for chunk in stalled(parts=2):
                yield chunk
                if ending == "broken" and s3_engine.multipart_uploads(prefix):
                    raise ValueError("the source broke")

        timeout = 5 if ending == "deadline" else None
        upload = asyncio.create_task(client.write_chunks("kept", source(), timeout=timeout))
        await until(lambda: bool(s3_engine.multipart_uploads(prefix)) or upload.done(), bound=30)
        if ending == "cancelled":
            upload.cancel()
        elif ending == "deadline":
            await until(upload.done, bound=60)
        with pytest.raises((asyncio.CancelledError, RpcError, ValueError)):
            await upload
        assert (await client.read("kept")).text == "old"
    # A handler cancelled twice (the reset, then the server's close) leaves the abort to finish
    # in the background: it does, soon.
    await until(lambda: s3_engine.multipart_uploads(prefix) == [], bound=20)
    assert s3_engine.keys(prefix) == [f"{prefix}/kept"]
