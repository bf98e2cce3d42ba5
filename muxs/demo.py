"""The reference's client sequence, run through the SDK against an in-process server."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

from muxs.client import Client
from muxs.errors import RpcError
from muxs.server.serving import serve


async def run_demo(out: Callable[[str], None] = print) -> None:
    """Start a server on an ephemeral port with a temporary root and print the transcript."""
    with tempfile.TemporaryDirectory(prefix="muxs-demo-") as root:
        async with serve("127.0.0.1", 0, root=root) as running, Client(running.target) as client:
            reply = await client.say_hello("you")
            out(f"Greeter client received: {reply.message}")
            number = await client.square(231)
            out(f"client Square 231 get :{number.value}")
            try:
                out(f"File Read: {(await client.read('aaaa.txt')).text}")
            except RpcError as exc:
                out(f"File Read: {exc}")
            status = await client.write("aaaa2.txt", "37183714ghgjh243")
            out(f"File Write: {status.code}")
            out(f"File Read: {(await client.read('aaaa2.txt')).text}")
