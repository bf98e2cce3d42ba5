"""What the ``muxs`` commands share: the parser, exit codes and client connection options.

A client command never waits forever on a server that does not answer: every command
gives up on a connection after ``--connect-timeout`` (TCP, TLS and the server's first
HTTP/2 frame), and a quick command's call has a deadline, ``--timeout``. Streams and
transfers (replies, chat, upload, download) have no deadline by default, so that a long
one is never cut; 0 turns either limit off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn, TypeAlias

from muxs.client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TARGET, Client, check_target
from muxs.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

TOKEN_ENV = "MUXS_TOKEN"
TARGET_ENV = "MUXS_TARGET"
# A quick call (hello, read, ls, health...) that has no answer within this is not coming:
# long enough for a max-size (4 MiB) message over a slow link and a busy server, short
# enough for someone waiting at a terminal or a script with its own retries.
DEFAULT_DEADLINE = 30.0

Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _target(value: str) -> str:
    try:
        check_target(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _seconds(value: str) -> float | None:
    """A limit in seconds from the command line; 0 means none."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0: no limit)")
    return seconds or None


def _env_target() -> str:
    """The target set by ``MUXS_TARGET``, else the default one."""
    target = os.environ.get(TARGET_ENV) or DEFAULT_TARGET
    try:
        check_target(target)
    except ValueError as exc:
        raise ConfigError(TARGET_ENV, str(exc), "the environment") from None
    return target


def add_client_command(
    subparsers: Subparsers,
    name: str,
    help: str,
    call: Callable[[Client, argparse.Namespace], Awaitable[int | None]],
    *,
    streaming: bool = False,
) -> argparse.ArgumentParser:
    """A command that connects to a server and runs ``call`` (which prints its result and
    may return an exit code); a ``streaming`` one has no deadline unless given one."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
    env_target = os.environ.get(TARGET_ENV)
    parser.add_argument(
        "--target",
        type=_target,
        help=f"server HOST:PORT or unix:///PATH (default: env {TARGET_ENV}, else {DEFAULT_TARGET}"
        + (f"; now {env_target}" if env_target else "")
        + ")",
    )
    deadline = None if streaming else DEFAULT_DEADLINE
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=deadline,
        metavar="SECONDS",
        help=f"deadline of the call (default: {f'{deadline:g}' if deadline else 'none'}; 0: none)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help="give up if the server has not answered the connection within this "
        f"(default: {DEFAULT_CONNECT_TIMEOUT:g}; 0: wait forever)",
    )
    parser.add_argument(
        "--compression",
        choices=("gzip", "deflate", "none"),
        default="none",
        help="compress request messages (uploads too) of 1 KiB or more with this encoding "
        "when it makes them smaller; compressed replies are always read (default: none)",
    )
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
            args.target or _env_target(),
            timeout=args.timeout,
            connect_timeout=args.connect_timeout,
            tls=args.ca or args.tls,
            cert=args.cert,
            key=args.key,
            token=args.token or os.environ.get(TOKEN_ENV) or None,
            compression=None if args.compression == "none" else args.compression,
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
