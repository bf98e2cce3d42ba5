"""The client commands' limits (``--timeout``, ``--connect-timeout``) and ``MUXS_TARGET``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from muxs import RunningServer
from muxs.cli import build_parser, main
from muxs.cli.failures import DEADLINE_HINT
from tests.listeners import listening, never_answer

NO_ANSWER = (
    "UNAVAILABLE: cannot reach {target}: no answer within 0.2 s (the connect timeout: "
    "--connect-timeout, SDK: connect_timeout=): the server is likely overloaded, or not a "
    "gRPC server\n"
)
QUICK = [["hello", "x"], ["read", "a.txt"], ["ls"], ["health"], ["greet", "a", "b"]]
STREAMING = [["replies", "x"], ["chat"], ["upload", "LOCAL", "x"], ["download", "x", "LOCAL"]]


@pytest.mark.parametrize("argv", QUICK + STREAMING, ids=lambda argv: argv[0])
async def test_no_command_waits_forever_on_a_server_that_never_answers(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(b"data")
    argv = [str(local) if arg == "LOCAL" else arg for arg in argv]
    async with listening(never_answer) as target:
        code = await asyncio.to_thread(
            main, [*argv, "--target", target, "--connect-timeout", "0.2"]
        )
    assert code == 1
    assert capsys.readouterr().err == f"muxs {argv[0]}: " + NO_ANSWER.format(target=target)


async def test_the_deadline_ends_a_call_when_the_connect_timeout_is_off(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with listening(never_answer) as target:
        argv = ["hello", "x", "--target", target, "--connect-timeout", "0", "--timeout", "0.2"]
        code = await asyncio.to_thread(main, argv)
    assert code == 1
    assert capsys.readouterr().err == (
        f"muxs hello: DEADLINE_EXCEEDED: deadline exceeded\n{DEADLINE_HINT}\n"
    )


@pytest.mark.parametrize(
    ("argv", "timeout"),
    [*[(argv, 30.0) for argv in QUICK], *[(argv, None) for argv in STREAMING]],
    ids=lambda value: value[0] if isinstance(value, list) else str(value),
)
def test_quick_commands_have_a_deadline_and_streams_only_a_connect_timeout(
    argv: list[str], timeout: float | None
) -> None:
    args = build_parser().parse_args(argv)
    assert args.timeout == timeout
    assert args.connect_timeout == 10.0


@pytest.mark.parametrize("option", ["--timeout", "--connect-timeout"])
def test_zero_turns_a_limit_off(option: str) -> None:
    assert (
        getattr(
            build_parser().parse_args(["hello", "x", option, "0"]), option[2:].replace("-", "_")
        )
        is None
    )


@pytest.mark.parametrize("value", ["-1", "soon", "inf", "nan"])
@pytest.mark.parametrize("option", ["--timeout", "--connect-timeout"])
def test_a_limit_that_is_not_seconds_is_exit_2(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["hello", "x", option, value])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        f"muxs hello: error: argument {option}: {value!r} is not a number of seconds "
        "(0: no limit) (see --help)\n"
    )


async def test_muxs_target_sets_the_default_target(
    live_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MUXS_TARGET", live_server.target)
    assert await asyncio.to_thread(main, ["hello", "env"]) == 0
    assert capsys.readouterr().out == "Hello, env!\n"


async def test_the_target_flag_wins_over_muxs_target(
    live_server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MUXS_TARGET", "bad target")
    assert await asyncio.to_thread(main, ["hello", "flag", "--target", live_server.target]) == 0
    assert capsys.readouterr().out == "Hello, flag!\n"


def test_a_malformed_muxs_target_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MUXS_TARGET", "nowhere")
    assert main(["hello", "x"]) == 2
    assert capsys.readouterr().err == (
        "muxs hello: MUXS_TARGET: target 'nowhere' is not HOST:PORT (from the environment)\n"
    )


def test_help_shows_the_limits_and_muxs_target(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MUXS_TARGET", "example.test:443")
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["hello", "--help"])
    out = capsys.readouterr().out
    assert "default: env MUXS_TARGET, else 127.0.0.1:50051; now example.test:443" in out
    assert "deadline of the call (default: 30; 0: none)" in out
    assert "(default: 10; 0: wait forever)" in out
    with pytest.raises(SystemExit):
        main(["download", "--help"])
    assert "deadline of the call (default: none; 0: none)" in capsys.readouterr().out
