"""Server settings: one frozen, typed object, validated when it is built.

Each field is declared once, with its help text; ``muxs.config`` derives the command-line
flag (``--max-message-bytes``), the environment variable (``MUXS_MAX_MESSAGE_BYTES``)
and the TOML key (``max_message_bytes``) from it. To add an option, add a field here
(and its check in ``_validate``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxs.errors import ConfigError
from muxs.loops import EVENT_LOOPS, uvloop_installed

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_ROOT = Path("data")
MAX_WORKERS = 256
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def option(default: Any, help: str, *, secret: bool = False, choices: tuple[str, ...] = ()) -> Any:
    """A settings field: its default and the help shown by ``muxs serve --help``.

    ``secret`` values are redacted by ``muxs config show``; ``choices`` restricts a string.
    """
    return dataclasses.field(
        default=default, metadata={"help": help, "secret": secret, "choices": choices}
    )


@dataclass(frozen=True)
class ServerSettings:
    """Everything a muxs server needs to start. Invalid values raise ``ConfigError``."""

    host: str = option(DEFAULT_HOST, "address to listen on")
    port: int = option(DEFAULT_PORT, "TCP port to listen on; 0 picks a free one")
    root: Path = option(
        DEFAULT_ROOT, "directory every file path is confined to (created if missing)"
    )
    max_message_bytes: int = option(
        4 * 1024 * 1024, "largest file a unary Read returns or a unary Write accepts, in bytes"
    )
    max_stream_replies: int = option(100_000, "largest count a LotsOfReplies call may ask for")
    log_level: str = option("INFO", "log level of `muxs serve`", choices=LOG_LEVELS)
    workers: int = option(
        1, "server processes sharing the port (SO_REUSEPORT); one that dies is restarted"
    )
    event_loop: str = option(
        "auto",
        "event loop: uvloop (the `uvloop` extra) if installed for auto, else asyncio",
        choices=EVENT_LOOPS,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        _validate(self)


def _validate(settings: ServerSettings) -> None:
    if not settings.host:
        raise ConfigError("host", "must not be empty")
    if not 0 <= settings.port <= 65535:
        raise ConfigError("port", f"{settings.port} is not between 0 and 65535")
    if not str(settings.root):
        raise ConfigError("root", "must not be empty")
    if settings.max_message_bytes < 1024:
        raise ConfigError("max_message_bytes", f"{settings.max_message_bytes} is below 1024")
    if settings.max_stream_replies < 1:
        raise ConfigError("max_stream_replies", f"{settings.max_stream_replies} is below 1")
    if not 1 <= settings.workers <= MAX_WORKERS:
        raise ConfigError("workers", f"{settings.workers} is not between 1 and {MAX_WORKERS}")
    if settings.event_loop == "uvloop" and not uvloop_installed():
        raise ConfigError("event_loop", "uvloop is not installed: pip install 'muxs[uvloop]'")
    for field in dataclasses.fields(settings):
        choices = field.metadata["choices"]
        if choices and getattr(settings, field.name) not in choices:
            allowed = ", ".join(choices)
            raise ConfigError(
                field.name, f"{getattr(settings, field.name)!r} is not one of {allowed}"
            )
