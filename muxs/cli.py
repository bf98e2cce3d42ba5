"""The ``muxs`` command: run a server, call one, or run the reference's demo.

The only place that reads command-line arguments and configures logging.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import NoReturn

from muxs.client import DEFAULT_TARGET, Client, parse_target
from muxs.demo import run_demo
from muxs.errors import ConfigError, RpcError
from muxs.server import run
from muxs.settings import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_ROOT, ServerSettings

log = logging.getLogger("muxs")

EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _target(value: str) -> str:
    try:
        parse_target(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _client_command(
    subparsers: argparse._SubParsersAction[_Parser], name: str, help: str
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.add_argument(
        "--target", type=_target, default=DEFAULT_TARGET, help="server HOST:PORT (%(default)s)"
    )
    parser.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="muxs", description="A typed, async gRPC service and its SDK.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = subparsers.add_parser("serve", help="run the server", description="Run the server.")
    serve.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port, 0 for any (%(default)s)"
    )
    serve.add_argument(
        "--root",
        type=Path,
        default=DEFAULT_ROOT,
        help="directory files are confined to (%(default)s)",
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    subparsers.add_parser(
        "demo",
        help="run the reference's client sequence against an in-process server",
        description="Start a server with a temporary root and run the reference's client calls.",
    )

    hello = _client_command(subparsers, "hello", "call Greeter.SayHello")
    hello.add_argument("name")
    square = _client_command(subparsers, "square", "call Greeter.Square (returns the square root)")
    square.add_argument("value", type=float)
    read = _client_command(subparsers, "read", "print a file's text (FileController.Read)")
    read.add_argument("path")
    write = _client_command(subparsers, "write", "replace a file's text (FileController.Write)")
    write.add_argument("path")
    write.add_argument("text")
    return parser


def _client_call(args: argparse.Namespace) -> Callable[[Client], Awaitable[str]]:
    async def hello(client: Client) -> str:
        return (await client.say_hello(args.name)).message

    async def square(client: Client) -> str:
        return str((await client.square(args.value)).value)

    async def read(client: Client) -> str:
        return (await client.read(args.path)).text

    async def write(client: Client) -> str:
        return str((await client.write(args.path, args.text)).code)

    calls: dict[str, Callable[[Client], Awaitable[str]]] = {
        "hello": hello,
        "square": square,
        "read": read,
        "write": write,
    }
    return calls[args.command]


async def _run_client(args: argparse.Namespace) -> str:
    async with Client(args.target, timeout=args.timeout) as client:
        return await _client_call(args)(client)


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = ServerSettings(host=args.host, port=args.port, root=args.root)
        asyncio.run(run(settings))
    except ConfigError as exc:
        print(f"muxs serve: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"muxs serve: cannot start: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``muxs`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "demo":
            asyncio.run(run_demo())
            return 0
        print(asyncio.run(_run_client(args)))
    except RpcError as exc:
        print(f"muxs {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
