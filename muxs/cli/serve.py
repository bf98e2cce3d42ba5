"""``muxs serve`` and ``muxs config show``: settings from flags, environment and file.

Their options come from ``muxs.server.settings``; the server stack is imported by ``_serve``. A
parser built for another command leaves the options out, so it imports neither.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import TYPE_CHECKING

from muxs.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Subparsers
from muxs.errors import ConfigError

if TYPE_CHECKING:
    from muxs.server.config import LoadedSettings
    from muxs.server.settings import ServerSettings

#: The commands registered here: the ones that need the server options.
COMMANDS = ("serve", "config")


def _load(args: argparse.Namespace) -> LoadedSettings:
    from muxs.server.config import load_settings

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "config")}
    return load_settings(flags, os.environ, getattr(args, "config", None))


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = _load(args).settings
    except ConfigError as exc:
        print(f"muxs serve: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # The server stack: imported only when a server runs (not for --help or other commands).
    from muxs.cli._logging import configure_logging
    from muxs.server import loops
    from muxs.server.serving import run
    from muxs.server.workers import supervise

    configure_logging(settings.log_level, settings.log_format)
    try:
        if settings.workers > 1:
            loops.run(supervise(settings, _serve_worker), "asyncio")
        else:
            loops.run(run(settings), settings.event_loop)
    except ConfigError as exc:
        print(f"muxs serve: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"muxs serve: cannot start: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _serve_worker(settings: ServerSettings, sock: socket.socket) -> None:
    """One process of ``muxs serve --workers N`` (started by ``muxs.server.workers``)."""
    from muxs.cli._logging import configure_logging
    from muxs.server import loops
    from muxs.server.serving import run

    configure_logging(settings.log_level, settings.log_format, worker=True)
    loops.run(run(settings, sock), settings.event_loop)


def _config_show(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args)
    except ConfigError as exc:
        print(f"muxs config: invalid setting: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print("\n".join(loaded.describe()))
    return EXIT_OK


def register(subparsers: Subparsers, *, options: bool = True) -> None:
    """Add ``serve`` and ``config show``; with ``options=False``, without their options (for a
    parser that will parse another command)."""
    serve = subparsers.add_parser(
        "serve",
        help="run the server",
        description="Run the server. Each option can also come from an environment variable "
        "or a TOML file (--config); a flag wins over the environment, which wins over the file.",
    )
    serve.set_defaults(handler=_serve)

    config = subparsers.add_parser("config", help="inspect server settings")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser(
        "show",
        help="print the effective server settings and where each came from",
        description="Print the settings `muxs serve` would use with the same options.",
    )
    show.set_defaults(handler=_config_show)
    if options:
        from muxs.server.config import add_server_options

        add_server_options(serve)
        add_server_options(show)
