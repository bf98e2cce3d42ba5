"""``muxs replies``, ``muxs greet`` and ``muxs chat``, run in-process against a real server."""

import asyncio
import io
import os
from collections.abc import Iterator
from typing import TextIO

import pytest

from muxs import RunningServer
from muxs.cli import main
from muxs.cli.failures import DEADLINE_HINT


async def test_replies_prints_each_numbered_greeting(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replies", "you", "--count", "3", "--target", live_server.target]
    assert await asyncio.to_thread(main, argv) == 0
    assert capsys.readouterr().out == "1 Hello, you!\n2 Hello, you!\n3 Hello, you!\n"


async def test_replies_prints_what_arrived_before_the_deadline(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["replies", "you", "--count", "100000", "--timeout", "0.5"]
    assert await asyncio.to_thread(main, [*argv, "--target", live_server.target]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert 0 < len(lines) < 100_000
    assert lines == [f"{i} Hello, you!" for i in range(1, len(lines) + 1)]
    assert err == (f"muxs replies: DEADLINE_EXCEEDED: deadline exceeded\n{DEADLINE_HINT}\n")


@pytest.mark.parametrize(
    ("names", "greeting"), [(["a", "b", "c"], "Hello, a, b and c!"), ([], "Hello!")]
)
async def test_greet_sends_every_name_in_one_stream(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str], names: list[str], greeting: str
) -> None:
    assert await asyncio.to_thread(main, ["greet", *names, "--target", live_server.target]) == 0
    assert capsys.readouterr().out == f"{greeting}\n"


async def test_chat_greets_each_line_of_stdin(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a\n\nb c\n"))
    assert await asyncio.to_thread(main, ["chat", "--target", live_server.target]) == 0
    assert capsys.readouterr().out == "Hello, a!\nHello, b c!\n"


@pytest.fixture
def pipes() -> Iterator[tuple[TextIO, TextIO, TextIO, TextIO]]:
    """Two pipes: (the command's stdin, what the test writes to it, the command's stdout,
    what the test reads from it)."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    with (
        open(stdin_r) as stdin,
        open(stdin_w, "w", buffering=1) as to_command,
        open(stdout_w, "w") as stdout,
        open(stdout_r) as from_command,
    ):
        yield stdin, to_command, stdout, from_command


async def test_chat_prints_each_reply_before_the_next_line_is_read(
    live_server: RunningServer,
    pipes: tuple[TextIO, TextIO, TextIO, TextIO],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stdin, to_command, stdout, from_command = pipes
    # Here, not in the fixture: pytest's output capture resets sys.stdout before the test.
    monkeypatch.setattr("sys.stdin", stdin)
    monkeypatch.setattr("sys.stdout", stdout)
    command = asyncio.create_task(
        asyncio.to_thread(main, ["chat", "--target", live_server.target, "--timeout", "20"])
    )
    for name in ["a", "b", "c"]:
        to_command.write(f"{name}\n")
        # The reply comes while stdin is still open and holds no further line.
        assert await asyncio.to_thread(from_command.readline) == f"Hello, {name}!\n"
    to_command.close()
    assert await command == 0
