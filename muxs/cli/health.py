"""``muxs health``: a probe for scripts and orchestrators (exit 0 only when SERVING)."""

from __future__ import annotations

import argparse

from muxs.cli._common import EXIT_FAILED, EXIT_OK, Subparsers, add_client_command
from muxs.client import Client


async def _health(client: Client, args: argparse.Namespace) -> int:
    status = await client.check_health(args.service)
    print(status)
    return EXIT_OK if status == "SERVING" else EXIT_FAILED


def register(subparsers: Subparsers) -> None:
    health = add_client_command(
        subparsers,
        "health",
        "print the server's health (grpc.health.v1); exit 0 only when SERVING",
        _health,
    )
    health.add_argument(
        "--service",
        default="",
        help="a service such as muxs.FileController (default: the whole server)",
    )
