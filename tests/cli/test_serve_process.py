"""``muxs serve`` as a real process: it says where it listens and stops cleanly on signals."""

import asyncio
import re
import signal
import sys
from pathlib import Path

import pytest

from muxs import Client


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_logs_its_address_and_stops_on_signal(tmp_path: Path, signum: int) -> None:
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(tmp_path / "data")],
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = (await process.stderr.readline()).decode()
        match = re.search(r"muxs listening on (127\.0\.0\.1:\d+)", line)
        assert match, line
        async with Client(match.group(1)) as client:
            assert (await client.say_hello("process")).message == "Hello, process!"
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert b"Traceback" not in await process.stderr.read()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
