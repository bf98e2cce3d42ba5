"""The ``muxs`` command: run a server, call one, or run the reference's demo.

The only place that reads command-line arguments and environment variables and
configures logging. Each module here registers its commands; a command's handler
returns the exit code. Registering is cheap: a module imports what only its handler
needs (the server, its workers, the demo) inside the handler, so a client command
starts without loading the server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from muxs import __version__
from muxs.cli import demo, files, health, serve, streams, token, unary
from muxs.cli._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Parser, Subparsers
from muxs.cli.failures import describe
from muxs.errors import RpcError

#: Modules of the commands after serve's, in the order ``muxs --help`` lists them.
OTHER_COMMAND_MODULES = [demo, unary, streams, files, health, token]


def build_parser(command: str | None = None) -> Parser:
    """The ``muxs`` parser; for another ``command`` than the server's, without the server
    options (whose definition imports ``muxs.server.settings``)."""
    parser = Parser(prog="muxs", description="A typed, async gRPC service and its SDK.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers: Subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(subparsers, options=command is None or command in serve.COMMANDS)
    for module in OTHER_COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``muxs`` console script; returns the exit code.

    A bare ``muxs`` prints the help, like ``muxs --help`` (stdout, exit 0): asking the
    command for nothing is how one discovers it, as with git, pip or docker.
    """
    argv = sys.argv[1:] if argv is None else argv
    # `muxs` itself takes no option with a value: its first other word is the command.
    parser = build_parser(next((word for word in argv if not word.startswith("-")), None))
    if not argv:
        parser.print_help()
        return EXIT_OK
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # here, where a reader that went away is caught, not at exit
    except RpcError as exc:
        print(describe(args.command, exc), file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of stdout went away (`muxs ... | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:  # a local file (calls translate their own errors to RpcError)
        print(f"muxs {args.command}: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code
