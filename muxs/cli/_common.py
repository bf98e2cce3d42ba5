"""What the ``muxs`` commands share: the parser, exit codes and client connection options."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeAlias

from muxs.client import DEFAULT_TARGET, Client, parse_target

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


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

    async def run(args: argparse.Namespace) -> int | None:
        async with Client(args.target, timeout=args.timeout) as client:
            return await call(client, args)

    parser.set_defaults(handler=lambda args: asyncio.run(run(args)) or EXIT_OK)
    return parser
