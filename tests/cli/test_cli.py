"""The ``muxs`` command, run in-process."""

import asyncio
import socket
from collections.abc import Iterator

import pytest

from muxs import RunningServer
from muxs.cli import main

SEED_TRANSCRIPT = """\
Greeter client received: Hello, you!
client Square 231 get :15.198683738708496
File Read: NOT_FOUND: aaaa.txt does not exist
File Write: 0
File Read: 37183714ghgjh243
"""


def test_demo_prints_the_reference_transcript(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert capsys.readouterr().out == SEED_TRANSCRIPT


async def test_client_commands_call_the_server(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", live_server.target]
    commands = [
        ["hello", "you", *target],
        ["square", "231", *target],
        ["write", "notes/a.txt", "hi there", *target],
        ["read", "notes/a.txt", *target],
    ]
    for argv in commands:
        assert await asyncio.to_thread(main, argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Hello, you!",
        "15.198683738708496",
        "0",
        "hi there",
    ]


async def test_a_refused_call_is_one_line_and_exit_1(
    live_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(main, ["read", "missing.txt", "--target", live_server.target])
    assert code == 1
    err = capsys.readouterr().err
    assert err == "muxs read: NOT_FOUND: missing.txt does not exist\n"


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_an_unreachable_target_is_one_line_and_exit_1(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["hello", "x", "--target", f"127.0.0.1:{closed_port}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("muxs hello: UNAVAILABLE: cannot reach 127.0.0.1:")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["square", "abc"], "invalid float value: 'abc'"),
        (["hello", "x", "--target", "nowhere"], "is not HOST:PORT"),
        (["serve", "--port", "http"], "argument --port: 'http' is not an integer"),
        (["replies", "x", "--count", "-1"], "'-1' is not a count from 0 to 4294967295"),
        (["replies", "x", "--count", "4294967296"], "is not a count from 0 to 4294967295"),
        (["bogus"], "invalid choice"),
        (
            ["serve", "--compression", "br"],
            "argument --compression: invalid choice: 'br' (choose from 'gzip', 'deflate', 'none')",
        ),
        (
            ["hello", "x", "--compression", "br"],
            "argument --compression: invalid choice: 'br' (choose from 'gzip', 'deflate', 'none')",
        ),
        (["token"], "required"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert err.count("\n") == 1


def test_serve_with_an_invalid_port_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert capsys.readouterr().err == (
        "muxs serve: invalid setting: port: 70000 is not between 0 and 65535 (from flag --port)\n"
    )


@pytest.mark.parametrize(
    "command",
    ["serve", "demo", "hello", "square", "read", "write", "replies", "greet", "chat"],
)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "usage: muxs" in capsys.readouterr().out
