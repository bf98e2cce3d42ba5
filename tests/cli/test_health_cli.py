"""``muxs health``: prints the status; exit 0 only when SERVING."""

import asyncio

import pytest

from muxs import RunningServer
from muxs.cli import main


async def test_serving_exits_0(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["health", "--target", live_server.target]
    assert await asyncio.to_thread(main, argv) == 0
    assert await asyncio.to_thread(main, [*argv, "--service", "muxs.FileController"]) == 0
    assert capsys.readouterr().out == "SERVING\nSERVING\n"


async def test_a_draining_server_is_not_serving_and_exits_1(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    live_server.lifecycle.health.drain()
    assert await asyncio.to_thread(main, ["health", "--target", live_server.target]) == 1
    assert capsys.readouterr().out == "NOT_SERVING\n"


async def test_an_unknown_service_exits_1(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["health", "--target", live_server.target, "--service", "muxs.Nope"]
    assert await asyncio.to_thread(main, argv) == 1
    assert capsys.readouterr().err == "muxs health: NOT_FOUND\n"
