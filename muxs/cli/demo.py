"""``muxs demo``: the reference's client sequence, run through the SDK against an in-process
server with a temporary root."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable

from muxs.cli._common import EXIT_OK, Subparsers
from muxs.client import Client
from muxs.errors import RpcError


async def run_demo(out: Callable[[str], None] = print) -> None:
    """Start a server on an ephemeral port with a temporary root and print the transcript."""
    from muxs.server.serving import serve  # the server: imported only by this command

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


def _demo(args: argparse.Namespace) -> int:
    asyncio.run(run_demo())
    return EXIT_OK


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the reference's client sequence against an in-process server",
        description="Start a server with a temporary root and run the reference's client calls.",
    )
    parser.set_defaults(handler=_demo)
