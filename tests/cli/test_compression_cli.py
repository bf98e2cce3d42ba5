"""The client commands' ``--compression``, as the server sees their requests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from muxs import RunningServer
from muxs.cli import main

NAME = "muxs " * 300  # compressible, over 1 KiB


@pytest.mark.parametrize(
    ("option", "sent"), [("gzip", ["gzip"]), ("deflate", ["deflate"]), ("none", [])]
)
async def test_a_client_commands_compression_is_what_the_server_inflates(
    live_server: RunningServer, inflated: list[str], option: str, sent: list[str]
) -> None:
    argv = ["hello", NAME, "--target", live_server.target, "--compression", option]
    assert await asyncio.to_thread(main, argv) == 0
    assert inflated == sent


async def test_an_upload_compresses_each_chunk(
    live_server: RunningServer, inflated: list[str], tmp_path: Path
) -> None:
    local = tmp_path / "big.txt"
    local.write_text(NAME * 100)  # 150 KB: three chunks
    argv = ["upload", str(local), "big.txt", "--target", live_server.target]
    assert await asyncio.to_thread(main, [*argv, "--compression", "gzip"]) == 0
    assert inflated == ["gzip"] * 3
    assert (live_server.root / "big.txt").read_text() == NAME * 100


async def test_without_the_option_requests_are_not_compressed(
    live_server: RunningServer, inflated: list[str]
) -> None:
    assert await asyncio.to_thread(main, ["hello", NAME, "--target", live_server.target]) == 0
    assert inflated == []
