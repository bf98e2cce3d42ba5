"""Running out of file descriptors: the calls that need one are RESOURCE_EXHAUSTED, the
others are served, and `muxs serve` starts with the most descriptors the system allows.

The server runs as a process with a low RLIMIT_NOFILE (soft and hard), so that stalled
uploads (each holds its directory and its temp file open) can use up what is left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from muxs import Client, RpcError, StatusCode
from muxs.server.storage import MAX_DEPTH, TEMP_PREFIX, shown
from tests.polling import until
from tests.processes import muxs_process

OPEN_FILES = 64
NO_DESCRIPTOR = "the server has no file descriptor left; retry later"


async def test_the_soft_limit_is_raised_to_the_hard_one_at_start(tmp_path: Path) -> None:
    lines: list[str] = []
    async with muxs_process(tmp_path / "root", open_files=(100, 300), lines=lines):
        pass
    assert (
        lines[-1].rstrip().endswith(f"(root {(tmp_path / 'root').resolve()}, up to 300 open files)")
    )


async def stalled(client: Client, name: str, release: asyncio.Event) -> StatusCode:
    """An upload that sends a chunk, then waits for ``release``; its final status."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        await release.wait()

    try:
        await client.write_chunks(name, chunks())
    except RpcError as exc:
        if exc.status is StatusCode.RESOURCE_EXHAUSTED and exc.message != NO_DESCRIPTOR:
            raise
        return exc.status
    return StatusCode.OK


def temp_files(root: Path) -> int:
    return len(list(root.glob(f"{TEMP_PREFIX}*")))


async def hold_every_descriptor(
    client: Client, root: Path, release: asyncio.Event
) -> list[asyncio.Task[StatusCode]]:
    """Stalled uploads started one at a time, each holding its temp file, until one is refused:
    then the server has no descriptor left (started at once, some could be refused while a
    descriptor another one released was still free)."""
    uploads: list[asyncio.Task[StatusCode]] = []
    while not uploads or not uploads[-1].done():
        upload = asyncio.create_task(stalled(client, f"upload-{len(uploads)}.bin", release))
        uploads.append(upload)
        await until(lambda: uploads[-1].done() or temp_files(root) == len(uploads))
    return uploads


async def test_out_of_descriptors_is_resource_exhausted_and_others_are_served(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    async with (
        muxs_process(root, open_files=(OPEN_FILES, OPEN_FILES)) as (_, target),
        Client(target, timeout=60) as client,
    ):
        deep = "d/" * 30 + "deep.txt"  # resolving it holds 31 descriptors
        await client.write(deep, "deep")
        release = asyncio.Event()
        uploads = await hold_every_descriptor(client, root, release)
        refused = uploads[-1].result()
        assert refused is StatusCode.RESOURCE_EXHAUSTED
        for call in (client.write("other.txt", "text"), client.read(deep), client.stat(".")):
            with pytest.raises(RpcError) as caught:
                await call
            assert (caught.value.status, caught.value.message) == (
                StatusCode.RESOURCE_EXHAUSTED,
                NO_DESCRIPTOR,
            )
        assert (await client.say_hello("still here")).message == "Hello, still here!"
        release.set()
        finished = await asyncio.gather(*uploads)
        assert finished.count(StatusCode.OK) == len(uploads) - 1
        await client.write("other.txt", "text")  # descriptors are back
        assert (await client.read(deep)).text == "deep"


async def test_a_name_too_deep_is_resource_exhausted(client: Client, root_dir: Path) -> None:
    (root_dir / ("d/" * (MAX_DEPTH + 1))).mkdir(parents=True)
    name = "d/" * (MAX_DEPTH + 1) + "f.txt"
    with pytest.raises(RpcError) as caught:
        await client.read(name)
    assert (caught.value.status, caught.value.message) == (
        StatusCode.RESOURCE_EXHAUSTED,
        f"{shown(name)} is more than {MAX_DEPTH} directories deep",
    )
    with pytest.raises(RpcError) as caught:
        await client.read("d/" * MAX_DEPTH + "f.txt")  # as deep as allowed: looked up
    assert caught.value.status is StatusCode.NOT_FOUND
