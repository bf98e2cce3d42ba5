"""``muxs serve`` stops on SIGTERM while a peer that reads nothing holds a connection, and
can start again on the same port at once (on Python 3.12+ its stop used to wait forever
for that connection to finish closing)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from muxs import Client
from tests.processes import die_with_parent, listening_target, logged_muxs
from tests.reliability.dos.attacks import PING, WAIT, Attacker

#: Far more PINGs than the sockets' buffers hold: the server's replies fill its write buffer.
FLOOD_BYTES = 32 * 1024 * 1024


async def read_until(process: asyncio.subprocess.Process, text: str, lines: list[str]) -> None:
    """Read ``process``'s log into ``lines`` until a line holds ``text``."""
    assert process.stderr is not None
    async with asyncio.timeout(WAIT):
        while line := (await process.stderr.readline()).decode():
            lines.append(line)
            if text in line:
                return
    raise AssertionError(f"no {text!r} in the log: {''.join(lines)}")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_a_peer_that_does_not_read_does_not_hold_muxs_serve_on_sigterm(
    root_dir: Path, loop: str
) -> None:
    # Neither the budget nor the ping policy may cut the flood: it must fill the buffer.
    options = ["--event-loop", loop, "--control-frame-budget", "0", "--min-ping-interval", "0"]
    options += ["--log-level", "DEBUG"]
    command = [sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(root_dir)]
    process = await asyncio.create_subprocess_exec(
        *command, *options, stderr=asyncio.subprocess.PIPE, preexec_fn=die_with_parent
    )
    lines: list[str] = []
    try:
        target = await listening_target(process, lines=lines)
        host, port = target.rsplit(":", 1)
        attacker = await Attacker.connect(host, int(port), read_replies=False)
        attacker.write(PING * (FLOOD_BYTES // len(PING)))
        await read_until(process, "its replies cannot be written", lines)
        process.send_signal(signal.SIGTERM)
        await read_until(process, "aborted 1 connection(s) whose peer did not read", lines)
        assert await asyncio.wait_for(process.wait(), WAIT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    async with logged_muxs(root_dir, "--event-loop", loop, "--port", port) as (again, _):
        assert again == target
        async with Client(again, timeout=WAIT) as client:
            assert (await client.say_hello("again")).message == "Hello, again!"
    await attacker.aclose()
