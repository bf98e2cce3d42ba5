"""The errors muxs raises, and the one place where lower-level errors become them.

    MuxsError            anything muxs raises on purpose
     ├── RpcError        a call failed: ``.status`` (a ``StatusCode``), ``.message``, the
     │                   server's ``.headers`` and ``.trailers``, and ``.details`` (the
     │                   ``google.rpc.Status`` details of ``grpc-status-details-bin``)
     ├── ConfigError     a server setting or client option is invalid (raised before anything
     │                   starts or connects: bad values, unusable certificate, key or token files)
     └── TokenError      no bearer token could be obtained for a call (the OAuth 2.0 token
                         endpoint failed or refused); the call was not sent

The SDK never lets a ``grpclib`` or transport exception through: ``translated`` (and
``translate_errors``, its context manager) maps them to ``RpcError``. grpclib reports an
expired client deadline as the builtin ``TimeoutError`` and an unreachable or dropped peer
as ``StreamTerminatedError``, ``ConnectionError`` or another ``OSError``; those become
DEADLINE_EXCEEDED and UNAVAILABLE. A call whose stream the server reset gets the status gRPC
gives the reset's code (REFUSED_STREAM: UNAVAILABLE, CANCEL: CANCELLED, ENHANCE_YOUR_CALM:
RESOURCE_EXHAUSTED, INADEQUATE_SECURITY: PERMISSION_DENIED, any other: INTERNAL). A
connection that could not be made (``ConnectFailure``, from ``muxs.channel``) becomes
UNAVAILABLE with its likely cause and the option that fixes it.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from grpclib.const import Status as StatusCode
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError
from h2.errors import ErrorCodes

from muxs._internals import reset_code

if TYPE_CHECKING:
    from google.protobuf.message import Message

    M = TypeVar("M", bound=Message)

__all__ = [
    "ConfigError",
    "Metadata",
    "MuxsError",
    "RpcError",
    "StatusCode",
    "TokenError",
    "translate_errors",
]


class MuxsError(Exception):
    """Base class of every error muxs raises on purpose."""


class Metadata:
    """Metadata a call received (headers or trailers): read-only ``(key, value)`` pairs in
    the order they came; a ``-bin`` key's value is ``bytes``, any other's ``str``.

    ``metadata["key"]`` and ``get`` give a key's first value, ``get_all`` every value.
    """

    __slots__ = ("_pairs",)

    def __init__(self, pairs: Iterable[tuple[str, str | bytes]] = ()) -> None:
        self._pairs = tuple(pairs)

    def get(self, key: str, default: str | bytes | None = None) -> str | bytes | None:
        return next((v for k, v in self._pairs if k == key), default)

    def get_all(self, key: str) -> list[str | bytes]:
        return [v for k, v in self._pairs if k == key]

    def __getitem__(self, key: str) -> str | bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self._pairs)

    def __iter__(self) -> Iterator[tuple[str, str | bytes]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Metadata) and self._pairs == other._pairs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Metadata({list(self._pairs)!r})"


class RpcError(MuxsError):
    """A call failed with a gRPC ``status`` and a human-readable ``message``.

    ``headers`` and ``trailers``: the metadata the server sent with the failure (empty when
    it never answered). ``details``: the messages of its ``google.rpc.Status`` details
    (``BadRequest``, ``ErrorInfo``, ``RetryInfo``, ``QuotaFailure``...), decoded when first
    read; ``detail(BadRequest)`` is the first of one type. ``unprocessed``: the server
    refused the call before its handler ran (a GOAWAY or REFUSED_STREAM, a drain, or no
    connection): it is safe to send again.
    """

    def __init__(
        self,
        status: StatusCode,
        message: str,
        *,
        headers: Metadata | None = None,
        trailers: Metadata | None = None,
        details: bytes | Sequence[Any] | None = None,
    ) -> None:
        super().__init__(f"{status.name}: {message}" if message else status.name)
        self.status = status
        self.message = message
        self.headers = headers or Metadata()
        self.trailers = trailers or Metadata()
        self._details = details
        self.unprocessed = False

    @property
    def details(self) -> tuple[Message, ...]:
        """The status details the server sent, each as its own message type when
        ``google.rpc`` or the caller's imports know it, else as a ``google.protobuf.Any``."""
        if self._details is None:
            return ()
        if isinstance(self._details, bytes):
            from muxs.details import decode_details  # loads protobuf: only when asked

            self._details = decode_details(self._details)
        return tuple(self._details)

    @overload
    def detail(self, kind: type[M]) -> M | None: ...
    @overload
    def detail(self, kind: type[M], default: M) -> M: ...
    def detail(self, kind: type[M], default: M | None = None) -> M | None:
        """The first detail of type ``kind`` (e.g. ``google.rpc.error_details_pb2.BadRequest``)."""
        return next((d for d in self.details if isinstance(d, kind)), default)


class ConfigError(MuxsError):
    """A setting or option is invalid: ``.option`` names it, ``.problem`` says why."""

    def __init__(self, option: str, problem: str, source: str = "") -> None:
        super().__init__(f"{option}: {problem}" + (f" (from {source})" if source else ""))
        self.option = option
        self.problem = problem
        self.source = source


class TokenError(MuxsError):
    """No bearer token could be obtained; the message says from where and why."""


ConnectFailureReason = Literal["timeout", "closed", "tls_answer", "tls_handshake"]


class ConnectFailure(ConnectionError):
    """A connection was not made (internal: ``translated`` makes it an ``RpcError``).

    ``reason``: no answer within ``connect_timeout``, the connection ``closed`` before the
    server answered, the server answered in TLS (``tls_answer``) to a plaintext client, or
    the TLS handshake failed (``tls_handshake``, the ``ssl`` or socket error as
    ``__cause__``). ``client_cert``: whether a client certificate was offered (None: not
    known, as with a caller's own ``SSLContext``).
    """

    def __init__(
        self,
        reason: ConnectFailureReason,
        *,
        tls: bool,
        client_cert: bool | None,
        connect_timeout: float | None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tls = tls
        self.client_cert = client_cert
        self.connect_timeout = connect_timeout


_DEADLINE_EXCEEDED = "deadline exceeded"
_ADD_TLS = "add --tls or --ca FILE (SDK: tls=True or tls=CA_FILE)"
_DROP_TLS = "drop --tls and --ca (SDK: tls=None)"
_CA = "give the CA that signed it with --ca FILE (SDK: tls=CA_FILE)"
# What OpenSSL says when the bytes that came back are not TLS records.
_NOT_TLS = {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
# Alerts a server sends when it refuses the client's certificate or its absence.
_CERT_REQUIRED = {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"}
_CERT_REFUSED = {
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_ACCESS_DENIED",
}
# X509_V_ERR_*: the server's certificate chain does not lead to a CA the client trusts.
_UNTRUSTED = {18, 19, 20, 21}
_EXPIRED = 10
_NAME_MISMATCH = {62, 64}  # the host name, the IP address


def _client_cert_hint(client_cert: bool | None) -> str:
    """Why a TLS server likely closed on the client at the handshake, and the fix."""
    if client_cert is None:
        return (
            "it likely requires a client certificate that it trusts (mutual TLS): "
            "give one with --cert FILE --key FILE (SDK: cert=, key=)"
        )
    if client_cert:
        return (
            "it likely does not trust this client certificate (mutual TLS): use one "
            "signed by a CA the server trusts (--cert FILE --key FILE)"
        )
    return (
        "it likely requires a client certificate (mutual TLS): "
        "add --cert FILE --key FILE (SDK: cert=, key=)"
    )


def _refused_handshake(failure: ConnectFailure) -> str:
    """The likely cause of a failed TLS handshake, from the ``ssl`` error, and its fix."""
    cause = failure.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        detail = cause.verify_message
        if cause.verify_code in _UNTRUSTED:
            return f"the server's certificate is not trusted ({detail}): {_CA}"
        if cause.verify_code in _NAME_MISMATCH:
            return (
                f"the server's certificate is not valid for this host ({detail}): "
                "connect by a name or address the certificate holds"
            )
        if cause.verify_code == _EXPIRED:
            return "the server's certificate has expired"
        return f"the server's certificate was refused ({detail})"
    reason = getattr(cause, "reason", None)
    if reason in _NOT_TLS:
        return f"the server answered without TLS: it likely serves plaintext: {_DROP_TLS}"
    if reason in _CERT_REQUIRED:
        return f"the server refused the TLS handshake: {_client_cert_hint(failure.client_cert)}"
    if reason in _CERT_REFUSED:
        return (
            "the server refused the client certificate: use one signed by a CA the server "
            "trusts (--cert FILE --key FILE)"
        )
    if isinstance(cause, ssl.SSLError):
        return f"the TLS handshake failed: {cause.reason or cause}"
    return (
        f"the connection was cut during the TLS handshake: {_client_cert_hint(failure.client_cert)}"
    )


def _explain(failure: ConnectFailure) -> str:
    """What a user reads about a connection that was not made."""
    if failure.reason == "timeout":
        return (
            f"no answer within {failure.connect_timeout:g} s (the connect timeout: "
            "--connect-timeout, SDK: connect_timeout=): the server is likely overloaded, or not a "
            "gRPC server"
        )
    if failure.reason == "tls_answer":
        return f"the server answered in TLS: {_ADD_TLS}"
    if failure.reason == "tls_handshake":
        return _refused_handshake(failure)
    if failure.tls:
        return (
            "the server closed the connection after the TLS handshake without answering: "
            + _client_cert_hint(failure.client_cert)
        )
    return f"the server closed the connection before answering: if it uses TLS, {_ADD_TLS}"


@contextmanager
def translate_errors(target: str) -> Iterator[None]:
    """Re-raise grpclib and transport errors from a call to ``target`` as ``RpcError``."""
    try:
        yield
    except Exception as exc:
        error = translated(exc, target)
        if error is None:
            raise
        raise error from exc


def translated(exc: BaseException, target: str) -> RpcError | None:
    """``exc``, a grpclib or transport error from a call to ``target``, as an ``RpcError``
    (None: any other error)."""
    if isinstance(exc, GRPCError):
        # A deadline reads the same whether the client's timer or the server's trailers
        # (which grpclib sends without a message) reported it.
        missing = _DEADLINE_EXCEEDED if exc.status is StatusCode.DEADLINE_EXCEEDED else ""
        return RpcError(exc.status, exc.message or missing, details=exc.details)
    if isinstance(exc, TimeoutError):
        return RpcError(StatusCode.DEADLINE_EXCEEDED, _DEADLINE_EXCEEDED)
    if isinstance(exc, ConnectFailure):
        return RpcError(StatusCode.UNAVAILABLE, f"cannot reach {target}: {_explain(exc)}")
    code = reset_code(exc) if isinstance(exc, StreamTerminatedError) else None
    if code is not None:
        return _reset(code, target)
    if isinstance(exc, StreamTerminatedError | ProtocolError | OSError):
        reason = str(exc) or type(exc).__name__
        return RpcError(StatusCode.UNAVAILABLE, f"cannot reach {target}: {reason}")
    return None


#: The status of a call whose stream the server reset, by the reset's HTTP/2 error code (gRPC's
#: PROTOCOL-HTTP2.md, "Errors"); any other code: INTERNAL.
_RESET_STATUS: dict[int, StatusCode] = {
    ErrorCodes.REFUSED_STREAM: StatusCode.UNAVAILABLE,  # not processed: may be sent again
    ErrorCodes.CANCEL: StatusCode.CANCELLED,
    ErrorCodes.ENHANCE_YOUR_CALM: StatusCode.RESOURCE_EXHAUSTED,
    ErrorCodes.INADEQUATE_SECURITY: StatusCode.PERMISSION_DENIED,
}


def _reset(code: int, target: str) -> RpcError:
    """The error of a call whose stream the server at ``target`` reset with ``code``."""
    try:
        name = ErrorCodes(code).name
    except ValueError:  # a code HTTP/2 does not define
        name = str(code)
    status = _RESET_STATUS.get(code, StatusCode.INTERNAL)
    return RpcError(status, f"the server at {target} reset the call's stream ({name})")
