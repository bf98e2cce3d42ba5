"""Server settings: one frozen object, validated when it is built."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from muxs.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_ROOT = Path("data")
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServerSettings:
    """Everything a muxs server needs to start. Invalid values raise ``ConfigError``."""

    host: str = DEFAULT_HOST
    #: TCP port; 0 picks a free ephemeral port.
    port: int = DEFAULT_PORT
    #: Directory every FileController path is confined to; created if missing.
    root: Path = DEFAULT_ROOT
    #: Largest file a unary Read returns or a unary Write accepts, in bytes.
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if not self.host:
            raise ConfigError("host: must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: {self.port} is not between 0 and 65535")
        if not str(self.root):
            raise ConfigError("root: must not be empty")
        if self.max_message_bytes < 1024:
            raise ConfigError(f"max_message_bytes: {self.max_message_bytes} is below 1024")
        object.__setattr__(self, "root", Path(self.root))
