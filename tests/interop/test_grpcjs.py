"""grpc-js clients: every RPC with compression on (``grpcjs/compressed.js``), and WriteStream
uploads cancelled or timed out, which never replace the file.

Node's HTTP/2 gives up on a stream with an empty END_STREAM DATA frame and then, a moment
later, a RST_STREAM; muxs once committed on the end of stream before it saw the reset
(docs/RELIABILITY.md, "Uploads"). grpcio and the SDK send only the reset, so only a
grpc-js client shows it. The client is ``grpcjs/upload.js``; ``.ci/run`` installs node and
its packages (``npm ci``), and this module installs the packages if they are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from muxs import RunningServer, ServerSettings, StatusCode, serve
from muxs.server.storage import TEMP_PREFIX
from tests.polling import until

CLIENT_DIR = Path(__file__).parent / "grpcjs"
PROTO = Path(__file__).resolve().parents[2] / "proto" / "muxs.proto"
CHUNKS = 20  # of 16 KiB: the upload is under way on the server before the client gives up
ROUNDS = 5  # before the fix, about half of the rounds replaced the file


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with the client's packages installed."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing: .ci/run installs it")
        pytest.skip(
            "node is not installed: the grpc-js interop tests need it (apt install nodejs npm)"
        )
    if not (CLIENT_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: it installs the grpc-js client's packages")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(CLIENT_DIR)],
            check=True,
            capture_output=True,
        )
    return node


async def upload(node: str, server: RunningServer, name: str, mode: str) -> dict[str, Any]:
    """Run the grpc-js client; its JSON answer."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT_DIR / "upload.js"),
        f"{server.host}:{server.port}",
        str(PROTO),
        name,
        mode,
        str(CHUNKS),
        stdout=subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    answer: dict[str, Any] = json.loads(out)
    return answer


@pytest.mark.parametrize(
    ("mode", "status"),
    [("cancel", StatusCode.CANCELLED), ("deadline", StatusCode.DEADLINE_EXCEEDED)],
)
async def test_a_grpcjs_upload_given_up_leaves_the_file_as_it_was(
    node: str, live_server: RunningServer, mode: str, status: StatusCode
) -> None:
    kept = live_server.root / "kept.bin"
    kept.write_bytes(b"old")
    for _ in range(ROUNDS):
        assert (await upload(node, live_server, "kept.bin", mode))["code"] == status.value
        await until(lambda: not any(live_server.root.glob(f"{TEMP_PREFIX}*")))
        assert kept.read_bytes() == b"old"


async def test_a_grpcjs_upload_that_ends_is_committed(
    node: str, live_server: RunningServer
) -> None:
    answer = await upload(node, live_server, "new.bin", "finish")
    content = b"a" * 16384 * CHUNKS
    assert answer == {"code": 0, "sha256": hashlib.sha256(content).hexdigest()}
    assert (live_server.root / "new.bin").read_bytes() == content


@pytest.mark.parametrize("server_encoding", ["none", "gzip", "deflate"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_grpcjs_client_with_compression_calls_every_rpc(
    node: str,
    settings: ServerSettings,
    inflated: list[str],
    compressed_replies: list[int],
    encoding: str,
    server_encoding: str,
) -> None:
    async with serve(settings=replace(settings, compression=server_encoding)) as server:
        process = await asyncio.create_subprocess_exec(
            node,
            str(CLIENT_DIR / "compressed.js"),
            server.target,
            str(PROTO),
            encoding,
            stdout=subprocess.PIPE,
        )
        out, _ = await process.communicate()
    assert process.returncode == 0
    name = "muxs " * 200
    data = b"0123456789abcdef" * 4096
    assert json.loads(out) == {
        "SayHello": len(f"Hello, {name}!"),
        "Square": 3,
        "LotsOfReplies": [1, 2, 3],
        "LotsOfGreetings": len(f"Hello, {name}, {name} and {name}!"),
        "BidiHello": 3,
        "Write": hashlib.sha256((name * 10).encode()).hexdigest(),
        "Read": len(name * 10),
        "WriteStream": hashlib.sha256(data * 3).hexdigest(),
        "ReadStream": len(data) * 3,
        "Stat": len(data) * 3,
        "List": ["big.bin", "small.txt"],
        "Delete": 0,
    }
    # grpc-js compresses every request message: 18 over the 12 calls.
    assert inflated == [encoding] * 18
    # LotsOfGreetings, Read, 3 ReadStream chunks: the replies of 1 KiB or more.
    assert len(compressed_replies) == (0 if server_encoding == "none" else 5)


async def test_a_grpcjs_client_loses_no_call_while_a_server_drains(
    node: str, settings: ServerSettings
) -> None:
    """grpc-js calls round robin over two servers while one stops: it sends no call to the
    stopping one once it has read its GOAWAY, and none is lost as it closes."""
    async with contextlib.AsyncExitStack() as stopping, serve(settings=settings) as staying:
        stopped = await stopping.enter_async_context(serve(settings=settings))
        process = await asyncio.create_subprocess_exec(
            node,
            str(CLIENT_DIR / "drain.js"),
            stopped.target,
            staying.target,
            str(PROTO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 60) == b"ready\n"
        await stopping.aclose()  # drains while grpc-js keeps calling
        process.stdin.write(b"stopped\n")
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    answer = json.loads(out.splitlines()[-1])
    assert answer["lost"] == []
    assert answer["replies"] >= 80
