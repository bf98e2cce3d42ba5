"""The ``muxs`` command: run a server, call one, or run the reference's demo.

The only place that reads command-line arguments and environment variables and
configures logging. Each module here registers its commands; a command's handler
returns the exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from muxs.cli import calls, demo, files, health, serve, streams, token
from muxs.cli._common import EXIT_FAILED, EXIT_INTERRUPTED, Parser
from muxs.errors import RpcError

COMMAND_MODULES = [serve, demo, calls, streams, files, health, token]


def build_parser() -> Parser:
    parser = Parser(prog="muxs", description="A typed, async gRPC service and its SDK.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``muxs`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except RpcError as exc:
        print(f"muxs {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # a local file (calls translate their own errors to RpcError)
        print(f"muxs {args.command}: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
