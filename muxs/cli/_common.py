"""What the ``muxs`` commands share: the parser, exit codes and client connection options."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn, TypeAlias

from muxs.client import DEFAULT_TARGET, Client, parse_target
from muxs.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

TOKEN_ENV = "MUXS_TOKEN"

Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _target(value: str) -> str:
    try:
        parse_target(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_client_command(
    subparsers: Subparsers,
    name: str,
    help: str,
    call: Callable[[Client, argparse.Namespace], Awaitable[int | None]],
) -> argparse.ArgumentParser:
    """A command that connects to a server and runs ``call`` (which prints its result and
    may return an exit code)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
    parser.add_argument(
        "--target", type=_target, default=DEFAULT_TARGET, help="server HOST:PORT (%(default)s)"
    )
    parser.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
    security = parser.add_argument_group("security")
    security.add_argument(
        "--tls", action="store_true", help="use TLS, trusting the system's CAs (--ca: yours)"
    )
    security.add_argument("--ca", type=Path, metavar="FILE", help="PEM CA file to trust (TLS)")
    security.add_argument(
        "--cert", type=Path, metavar="FILE", help="PEM client certificate (mutual TLS)"
    )
    security.add_argument("--key", type=Path, metavar="FILE", help="PEM key of --cert")
    security.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"bearer token sent with the call [env {TOKEN_ENV}, which keeps it out of `ps`]",
    )

    async def run(args: argparse.Namespace) -> int | None:
        async with Client(
            args.target,
            timeout=args.timeout,
            tls=args.ca or args.tls,
            cert=args.cert,
            key=args.key,
            token=args.token or os.environ.get(TOKEN_ENV) or None,
        ) as client:
            return await call(client, args)

    def handle(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(run(args)) or EXIT_OK
        except ConfigError as exc:
            print(f"muxs {args.command}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    parser.set_defaults(handler=handle)
    return parser
