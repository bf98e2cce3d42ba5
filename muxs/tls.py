"""TLS contexts: the server's (TLS 1.2+, ALPN ``h2``, optional client certificates) and the SDK's.

Certificate and key problems surface here, before anything listens or connects, as one
``ConfigError`` naming the option at fault: a missing file, a file that is not PEM, a key
that does not match its certificate, an encrypted key, an expired certificate.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from datetime import UTC, datetime
from pathlib import Path

from muxs.errors import ConfigError

ALPN_PROTOCOLS = ["h2"]

PathLike = str | os.PathLike[str]


# The first bytes of a TLS record: handshake (22) or alert (21), then the major version 3
# of every SSL/TLS version.
_TLS_RECORD_TYPES = (21, 22)
_TLS_MAJOR_VERSION = 3


def is_tls_record(data: bytes) -> bool:
    """Whether ``data`` starts like a TLS record (a ClientHello, a server's alert...)."""
    return len(data) >= 2 and data[0] in _TLS_RECORD_TYPES and data[1] == _TLS_MAJOR_VERSION


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name, an IP address or ``[v6]``) can only reach this machine."""
    host = host.removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """The server's context; with ``client_ca``, a client certificate it signed is mandatory."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(context)
    _load_chain(context, cert, key, cert_option="tls_cert", key_option="tls_key")
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_ca(context, client_ca, "tls_client_ca")
    return context


def client_context(
    ca: PathLike | None = None, cert: PathLike | None = None, key: PathLike | None = None
) -> ssl.SSLContext:
    """The SDK's context: trust ``ca`` (default: the system's CAs), present ``cert`` if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is None:
        context.load_default_certs()
    else:
        _load_ca(context, Path(ca), "ca")
    _harden(context)
    if cert is not None:
        _load_chain(context, Path(cert), Path(key or cert), cert_option="cert", key_option="key")
    elif key is not None:
        raise ConfigError("key", "a client key needs its certificate (cert)")
    return context


def tls_client_context(
    tls: bool | PathLike | ssl.SSLContext | None,
    cert: PathLike | None = None,
    key: PathLike | None = None,
) -> ssl.SSLContext | None:
    """The SDK's context from its options (None: plaintext); see ``muxs.Client``."""
    if isinstance(tls, ssl.SSLContext):
        if cert is not None or key is not None:
            raise ConfigError("cert", "with an SSLContext, load the client certificate into it")
        return tls
    if not tls and cert is None and key is None:
        return None
    return client_context(None if isinstance(tls, bool) else tls, cert, key)


def _harden(context: ssl.SSLContext) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # gRPC runs over HTTP/2; grpcio peers refuse a handshake that does not select it.
    context.set_alpn_protocols(ALPN_PROTOCOLS)


def _load_chain(
    context: ssl.SSLContext, cert: Path, key: Path, *, cert_option: str, key_option: str
) -> None:
    _check_validity(cert, cert_option)

    def refuse_encrypted() -> bytes:
        raise ConfigError(key_option, f"{key} is encrypted; give an unencrypted PEM key")

    try:
        context.load_cert_chain(cert, key, password=refuse_encrypted)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise ConfigError(key_option, f"{key} is not the key of {cert}") from None
            raise ConfigError(key_option, f"{key} is not a PEM private key") from None
        raise ConfigError(key_option, f"cannot read {key}: {exc.strerror}") from None


def _check_validity(cert: Path, option: str) -> None:
    """Refuse a certificate file that is unreadable, not PEM, expired or not yet valid."""
    # Imported here: cryptography is loaded only by a process that loads a certificate.
    from cryptography import x509

    try:
        data = cert.read_bytes()
    except OSError as exc:
        raise ConfigError(option, f"cannot read {cert}: {exc.strerror}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(option, f"{cert} holds no PEM certificate") from None
    now = datetime.now(UTC)
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string()
        if certificate.not_valid_after_utc < now:
            expired = f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
            raise ConfigError(option, f"the certificate {subject} in {cert} expired on {expired}")
        if certificate.not_valid_before_utc > now:
            start = f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            raise ConfigError(option, f"the certificate {subject} in {cert} is valid from {start}")


def _load_ca(context: ssl.SSLContext, ca: Path, option: str) -> None:
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError:
        raise ConfigError(option, f"{ca} holds no PEM CA certificate") from None
    except OSError as exc:
        raise ConfigError(option, f"cannot read {ca}: {exc.strerror}") from None
