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
from muxs.tls import is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_ROOT = Path("data")
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
    tls_cert: Path | None = option(None, "PEM certificate (chain): serve TLS 1.2+ only")
    tls_key: Path | None = option(None, "PEM private key of tls_cert (unencrypted)")
    tls_client_ca: Path | None = option(
        None, "PEM CA certificates: require a client certificate they signed (mutual TLS)"
    )
    auth_jwks: Path | None = option(
        None, "JWKS file of the public keys that sign accepted JWT access tokens"
    )
    auth_issuer: str | None = option(None, "the `iss` every JWT access token must have")
    auth_audience: str | None = option(None, "the `aud` every JWT access token must include")
    auth_tokens: Path | None = option(
        None, "TOML file of static API tokens (SHA-256 digests; see `muxs token new`)"
    )
    allow_insecure_auth: bool = option(
        False, "allow auth over plaintext on a non-loopback address (tokens cross in clear)"
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        for name in _PATHS:
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        _validate(self)

    @property
    def auth_enabled(self) -> bool:
        """Whether calls need a bearer token (a JWKS or a tokens file is configured)."""
        return self.auth_jwks is not None or self.auth_tokens is not None

    @property
    def plaintext_remote_auth(self) -> bool:
        """Whether bearer tokens would reach a non-loopback address without TLS."""
        return self.auth_enabled and self.tls_cert is None and not is_loopback(self.host)


_PATHS = ("tls_cert", "tls_key", "tls_client_ca", "auth_jwks", "auth_tokens")


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
    _validate_security(settings)
    for field in dataclasses.fields(settings):
        choices = field.metadata["choices"]
        if choices and getattr(settings, field.name) not in choices:
            allowed = ", ".join(choices)
            raise ConfigError(
                field.name, f"{getattr(settings, field.name)!r} is not one of {allowed}"
            )


def _validate_security(settings: ServerSettings) -> None:
    if (settings.tls_cert is None) != (settings.tls_key is None):
        missing = "tls_key" if settings.tls_key is None else "tls_cert"
        raise ConfigError(missing, "tls_cert and tls_key must be given together")
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise ConfigError("tls_client_ca", "needs tls_cert and tls_key (mutual TLS is TLS)")
    jwt_claims = {"auth_issuer": settings.auth_issuer, "auth_audience": settings.auth_audience}
    for name, value in jwt_claims.items():
        if settings.auth_jwks is not None and not value:
            raise ConfigError(name, "is required with auth_jwks")
        if settings.auth_jwks is None and value is not None:
            raise ConfigError(name, "is only used with auth_jwks")
    if settings.plaintext_remote_auth and not settings.allow_insecure_auth:
        raise ConfigError(
            "host",
            f"{settings.host} is not a loopback address: bearer tokens would cross the network "
            "in plaintext; give tls_cert and tls_key (or allow_insecure_auth)",
        )
