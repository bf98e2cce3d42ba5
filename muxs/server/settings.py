"""Server settings: one frozen, typed object, validated when it is built.

Each field is declared once, with its help text; ``muxs.server.config`` derives the command-line
flag (``--max-message-bytes``), the environment variable (``MUXS_MAX_MESSAGE_BYTES``)
and the TOML key (``max_message_bytes``) from it. To add an option, add a field here
(and its check in ``_validate``).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from muxs.errors import ConfigError
from muxs.server.loops import EVENT_LOOPS, uvloop_installed
from muxs.server.storage.s3_location import S3Location, check_endpoint
from muxs.tls import is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 50051
DEFAULT_ROOT = Path("data")
MAX_WORKERS = 256
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ERROR_STYLES = ("status", "seed")
# gRPC clients refuse messages over 4 MiB by default; a chunk and its framing must fit.
MAX_CHUNK_BYTES = 4 * 1024 * 1024 - 1024
LOG_FORMATS = ("text", "json")
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
UDS_ACCESS = ("owner", "group", "anyone")
#: Linux's ``sun_path`` holds 108 bytes, the last a NUL (macOS: 104).
MAX_UDS_PATH_BYTES = 107
#: S3's limits on a multipart upload's parts (all but the last).
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PART_BYTES = 5 * 1024**3
MAX_PARTS_IN_FLIGHT = 64


def option(default: Any, help: str, *, choices: tuple[str, ...] = (), secret: bool = False) -> Any:
    """A settings field: its default and the help shown by ``muxs serve --help``;
    ``choices`` restricts a string; a ``secret`` is never shown (repr, ``muxs config show``)."""
    metadata = {"help": help, "choices": choices, "secret": secret}
    return dataclasses.field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class ServerSettings:
    """Everything a muxs server needs to start. Invalid values raise ``ConfigError``."""

    host: str = option(DEFAULT_HOST, "address to listen on")
    port: int = option(DEFAULT_PORT, "TCP port to listen on; 0 picks a free one")
    uds: Path | None = option(
        None,
        "listen on this Unix domain socket path instead of host and port (a stale socket file "
        "is replaced; the file is removed on stop)",
    )
    uds_access: str = option(
        "owner",
        "who may connect to the uds socket: its owner (mode 0600), its group (0660) or anyone "
        "(0666)",
        choices=UDS_ACCESS,
    )
    root: Path = option(
        DEFAULT_ROOT, "directory every file path is confined to (created if missing)"
    )
    max_message_bytes: int = option(
        4 * 1024 * 1024,
        "largest request message accepted (refused before it is buffered), largest reply a "
        "unary Read sends (its text and a few bytes of framing), and largest file a unary "
        "Write accepts, in bytes",
    )
    max_stream_replies: int = option(100_000, "largest count a LotsOfReplies call may ask for")
    max_call_seconds: float | None = option(
        None,
        "longest any call may run, in seconds, with or without a client deadline (none: no limit)",
    )
    stream_idle_timeout: float = option(
        60.0,
        "seconds a client-streaming call (WriteStream, LotsOfGreetings, BidiHello) waits for "
        "the client's next message, and a server stream (ReadStream, LotsOfReplies, List, "
        "BidiHello) for the client to grant flow-control window; then DEADLINE_EXCEEDED (an "
        "upload leaves the file as it was). A connection that takes too little of its replies "
        "for as long is closed",
    )
    max_file_bytes: int = option(
        1024**3, "largest file any FileController call reads or writes, in bytes"
    )
    chunk_bytes: int = option(64 * 1024, "size of the chunks ReadStream sends, in bytes")
    create_dirs: bool = option(True, "let writes create missing parent directories")
    error_style: str = option(
        "status",
        "how Read and Write report failures: gRPC status codes, or as the seed server did "
        "(Read: text 'Error: read failed', Write: code 1)",
        choices=ERROR_STYLES,
    )
    max_concurrent_streams: int = option(
        100, "most calls one connection may have open at once (HTTP/2 setting)"
    )
    max_connections: int = option(1024, "most client connections served at once; more get GOAWAY")
    idle_timeout: float = option(
        300.0, "seconds a connection with no call open is kept before GOAWAY; 0: forever"
    )
    handshake_timeout: float = option(
        10.0,
        "seconds a new connection gets to finish its TLS handshake, then as long again to "
        "send its HTTP/2 preface; one that does not is closed",
    )
    request_header_timeout: float = option(
        10.0,
        "seconds a client gets to finish a request's headers (HEADERS and CONTINUATION "
        "frames), or any frame it has begun; a connection that does not is closed",
    )
    compression: str = option(
        "none",
        "compress reply messages of 1 KiB or more with this encoding when the client accepts it "
        "(grpc-accept-encoding) and it makes them smaller; requests in gzip or deflate are "
        "always accepted",
        choices=("gzip", "deflate", "none"),
    )
    keepalive_time: float = option(
        7200.0, "seconds between pings on a connection with calls open, to find dead peers; 0: off"
    )
    keepalive_timeout: float = option(
        20.0, "seconds to wait for a ping's answer before closing the connection"
    )
    max_connection_age: float = option(
        0.0,
        "seconds (give or take a tenth, at random) a connection is served before GOAWAY, so "
        "that clients reconnect and rebalance behind a load balancer; 0: forever",
    )
    max_connection_age_grace: float = option(
        0.0,
        "seconds the calls open on a connection past its max_connection_age get to finish "
        "before they are cancelled and it is closed; 0: as long as they take",
    )
    min_ping_interval: float = option(
        300.0,
        "least seconds between a client's pings while the server sends it no data; a third "
        "ping sooner gets GOAWAY ENHANCE_YOUR_CALM too_many_pings; 0: no limit",
    )
    keepalive_permit_without_calls: bool = option(
        False,
        "let clients ping while they have no call open (to keep an idle connection alive) "
        "as often as min_ping_interval allows; off: such pings may come once per two hours, "
        "more are struck (grpc-go's PermitWithoutStream)",
    )
    reset_budget: int = option(
        10_000,
        "most RST_STREAM frames one connection may send per budget_window; more get GOAWAY "
        "ENHANCE_YOUR_CALM (Rapid Reset); 0: no limit",
    )
    control_frame_budget: int = option(
        1_000,
        "most PING, SETTINGS, PRIORITY, WINDOW_UPDATE, empty DATA, small DATA on closed streams "
        "and unknown frames one connection may send per budget_window, plus two per stream it "
        "opens, two per write of the server's own and one per 4 KiB the server writes to it; "
        "more get GOAWAY ENHANCE_YOUR_CALM; 0: no limit",
    )
    budget_window: float = option(
        10.0, "seconds over which reset_budget and control_frame_budget are counted"
    )
    log_level: str = option("INFO", "log level of `muxs serve`", choices=LOG_LEVELS)
    log_format: str = option(
        "text", "log lines as text, or as one JSON object per line", choices=LOG_FORMATS
    )
    access_log: bool = option(True, "log one line per call (logger muxs.access_log, at INFO)")
    reflection: bool = option(True, "serve gRPC server reflection (v1 and v1alpha)")
    services: str | None = option(
        None,
        "your own services, hosted beside muxs's: module:factory, a callable that returns "
        "them (muxs.HostedService or grpclib services); the module is imported when serving",
    )
    shutdown_grace: float = option(
        10.0, "seconds calls in flight get to finish on SIGTERM/SIGINT before they are cancelled"
    )
    metrics_port: int | None = option(
        None, "serve Prometheus metrics on this port at /metrics (needs muxs[metrics]); 0 picks one"
    )
    otel: bool = option(
        False,
        "trace every call with OpenTelemetry (needs muxs[otel]); OTEL_TRACES_EXPORTER (otlp, "
        "console or none; setting it turns tracing on too), OTEL_EXPORTER_OTLP_ENDPOINT and "
        "OTEL_SERVICE_NAME say where spans go and under which name",
    )
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
    workers: int = option(
        1, "server processes sharing the port (SO_REUSEPORT); one that dies is restarted"
    )
    event_loop: str = option(
        "auto",
        "event loop: uvloop (the `uvloop` extra) if installed for auto, else asyncio",
        choices=EVENT_LOOPS,
    )
    storage: str | None = option(
        None,
        "keep FileController's files in this S3 bucket, s3://bucket/prefix (needs muxs[s3]), "
        "instead of under root",
    )
    s3_endpoint: str | None = option(
        None,
        "S3 endpoint URL (an S3-compatible store; plain http only on a loopback address); "
        "else AWS_ENDPOINT_URL, else AWS's",
    )
    s3_region: str | None = option(None, "S3 region; else AWS_REGION")
    s3_access_key_id: str | None = option(None, "S3 access key id; else AWS_ACCESS_KEY_ID")
    s3_secret_access_key: str | None = option(
        None,
        "S3 secret access key; else AWS_SECRET_ACCESS_KEY (never shown)",
        secret=True,
    )
    s3_part_bytes: int = option(
        8 * 1024 * 1024,
        "size of the parts a WriteStream uploads to S3; an upload holds at most "
        "s3_parts_in_flight + 1 of them in memory",
    )
    s3_parts_in_flight: int = option(4, "parts of one upload sent to S3 at once")

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.uds is not None:
            object.__setattr__(self, "uds", Path(self.uds))
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
        return (
            self.auth_enabled
            and self.tls_cert is None
            and self.uds is None
            and not is_loopback(self.host)
        )


#: Options naming a file. No option but s3_secret_access_key holds a secret itself: the
#: secrets are in the files (``tls_key``'s private key), which are read only to serve. A value
#: holding a file's contents instead of its path (a key pasted into ``MUXS_TLS_KEY``) is refused
#: without being shown, so that neither ``muxs config show`` nor an error message prints it.
_PATHS = ("tls_cert", "tls_key", "tls_client_ca", "auth_jwks", "auth_tokens")


def _validate(settings: ServerSettings) -> None:
    if not settings.host:
        raise ConfigError("host", "must not be empty")
    if not 0 <= settings.port <= 65535:
        raise ConfigError("port", f"{settings.port} is not between 0 and 65535")
    if settings.uds is not None:
        _validate_uds(settings.uds, settings.workers)
    if not str(settings.root):
        raise ConfigError("root", "must not be empty")
    if settings.max_message_bytes < 1024:
        raise ConfigError("max_message_bytes", f"{settings.max_message_bytes} is below 1024")
    if settings.max_stream_replies < 1:
        raise ConfigError("max_stream_replies", f"{settings.max_stream_replies} is below 1")
    seconds = settings.max_call_seconds
    if seconds is not None and not (0 < seconds < math.inf):
        raise ConfigError("max_call_seconds", f"{seconds} is not a positive number of seconds")
    if settings.max_file_bytes < 1:
        raise ConfigError("max_file_bytes", f"{settings.max_file_bytes} is below 1")
    if not 1024 <= settings.chunk_bytes <= MAX_CHUNK_BYTES:
        raise ConfigError(
            "chunk_bytes", f"{settings.chunk_bytes} is not between 1024 and {MAX_CHUNK_BYTES}"
        )
    if not settings.shutdown_grace >= 0:
        raise ConfigError("shutdown_grace", f"{settings.shutdown_grace} is not a number >= 0")
    if settings.metrics_port is not None:
        _validate_metrics_port(settings.metrics_port)
    if settings.otel:
        _needs("otel", "opentelemetry.sdk.trace", "OpenTelemetry SDK", "otel")
    _validate_limits(settings)
    _validate_security(settings)
    _validate_storage(settings)
    if settings.services is not None and not _IMPORT_PATH.fullmatch(settings.services):
        raise ConfigError("services", f"{settings.services!r} is not module:factory")
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


def _validate_storage(settings: ServerSettings) -> None:
    if not MIN_PART_BYTES <= settings.s3_part_bytes <= MAX_PART_BYTES:
        raise ConfigError(
            "s3_part_bytes",
            f"{settings.s3_part_bytes} is not between {MIN_PART_BYTES} and {MAX_PART_BYTES}",
        )
    if not 1 <= settings.s3_parts_in_flight <= MAX_PARTS_IN_FLIGHT:
        raise ConfigError(
            "s3_parts_in_flight",
            f"{settings.s3_parts_in_flight} is not between 1 and {MAX_PARTS_IN_FLIGHT}",
        )
    if settings.storage is None:
        return
    for name, check in (("storage", S3Location.parse), ("s3_endpoint", check_endpoint)):
        value = getattr(settings, name)
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise ConfigError(name, str(exc)) from None
    if (settings.s3_access_key_id is None) != (settings.s3_secret_access_key is None):
        raise ConfigError(
            "s3_secret_access_key", "s3_access_key_id and s3_secret_access_key go together"
        )
    _needs("storage", "obstore", "obstore package", "s3")


def _validate_uds(path: Path, workers: int) -> None:
    if not str(path):
        raise ConfigError("uds", "must not be empty")
    length = len(os.fsencode(path.absolute()))
    if length > MAX_UDS_PATH_BYTES:
        raise ConfigError(
            "uds",
            f"{path} is {length} bytes long as an absolute path; a Unix socket path holds at "
            f"most {MAX_UDS_PATH_BYTES}: choose a shorter one",
        )
    if workers > 1:
        raise ConfigError(
            "uds",
            "cannot be shared by several workers (a Unix socket has one listener): "
            "use workers = 1, or TCP",
        )


def _validate_metrics_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError("metrics_port", f"{port} is not between 0 and 65535")
    _needs("metrics_port", "prometheus_client", "prometheus-client package", "metrics")


def _needs(option: str, module: str, what: str, extra: str) -> None:
    """``ConfigError`` naming ``extra`` unless ``module`` can be imported."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(option, f"needs the {what}: pip install 'muxs[{extra}]'") from None


def _validate_limits(settings: ServerSettings) -> None:
    if not 1 <= settings.max_concurrent_streams <= 2**31 - 1:
        raise ConfigError(
            "max_concurrent_streams",
            f"{settings.max_concurrent_streams} is not between 1 and 2^31-1",
        )
    if settings.max_connections < 1:
        raise ConfigError("max_connections", f"{settings.max_connections} is below 1")
    for name in (
        "idle_timeout",
        "keepalive_time",
        "max_connection_age",
        "max_connection_age_grace",
        "min_ping_interval",
    ):
        if not 0 <= getattr(settings, name) < math.inf:
            raise ConfigError(name, f"{getattr(settings, name)} is not a number of seconds >= 0")
    for name in ("reset_budget", "control_frame_budget"):
        if getattr(settings, name) < 0:
            raise ConfigError(name, f"{getattr(settings, name)} is below 0")
    timeouts = ("keepalive_timeout", "handshake_timeout", "request_header_timeout")
    for name in ("budget_window", *timeouts, "stream_idle_timeout"):
        if not 0 < getattr(settings, name) < math.inf:
            raise ConfigError(name, f"{getattr(settings, name)} is not a number of seconds > 0")


def _validate_paths(settings: ServerSettings) -> None:
    for name in _PATHS:
        value = getattr(settings, name)
        if value is not None and _holds_contents(str(value)):
            raise ConfigError(
                name,
                "must be the path of a file, not the file's contents (the value is not shown: "
                "it may be a secret)",
            )


def _holds_contents(text: str) -> bool:
    """Whether an option's value is a file's contents (PEM, JSON, TOML), not a path."""
    return "\n" in text or "-----BEGIN" in text


def _validate_security(settings: ServerSettings) -> None:
    _validate_paths(settings)
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
