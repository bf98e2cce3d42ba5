"""How a client command reports a failure: details, escaping, deadlines, a closed stdout."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from google.rpc.error_details_pb2 import BadRequest, QuotaFailure

from muxs.cli import main
from muxs.cli.failures import DEADLINE_HINT, describe
from muxs.errors import RpcError, StatusCode
from tests.processes import die_with_parent


async def test_a_refusal_prints_its_details_under_the_status_line(
    echo_target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await asyncio.to_thread(main, ["square", "-1", "--target", echo_target])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        "muxs square: INVALID_ARGUMENT: value is negative",
        "  value: is negative",
        "  reason: NEGATIVE (muxs.test)",
    ]


def test_what_a_server_wrote_is_escaped_before_the_terminal() -> None:
    violation = BadRequest.FieldViolation(field="name\x1b[2J", description="bad\nline")
    quota = QuotaFailure.Violation(subject="size", description="\u202etoo big")
    error = RpcError(
        StatusCode.INVALID_ARGUMENT,
        "hidden\x1b]0;title\x07",
        details=[BadRequest(field_violations=[violation]), QuotaFailure(violations=[quota])],
    )
    assert describe("hello", error).splitlines() == [
        "muxs hello: INVALID_ARGUMENT: hidden\\x1b]0;title\\x07",
        "  name\\x1b[2J: bad\\nline",
        "  limit size: \\u202etoo big",
    ]


def test_a_deadline_that_ran_out_says_how_to_give_the_call_longer() -> None:
    error = RpcError(StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded")
    assert describe("read", error).splitlines() == [
        "muxs read: DEADLINE_EXCEEDED: Deadline exceeded",
        DEADLINE_HINT,
    ]
    assert "--timeout" in DEADLINE_HINT


def test_a_reader_that_went_away_stops_the_command_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `muxs token new ... | head` once head has exited
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "muxs",
                "token",
                "new",
                "--subject",
                "ci",
                "--scopes",
                "greeter",
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (1, b"")
