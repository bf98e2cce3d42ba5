"""``muxs demo``: the reference's client sequence against an in-process server."""

from __future__ import annotations

import argparse
import asyncio

from muxs.cli._common import EXIT_OK, Subparsers


def _demo(args: argparse.Namespace) -> int:
    from muxs.demo import run_demo  # the server: imported only by this command

    asyncio.run(run_demo())
    return EXIT_OK


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the reference's client sequence against an in-process server",
        description="Start a server with a temporary root and run the reference's client calls.",
    )
    parser.set_defaults(handler=_demo)
