"""The server's TLS handshakes, run by muxs so that a refused one is logged.

Given an ``SSLContext``, asyncio runs each connection's handshake itself and drops a failed
one silently (it logs it only in debug mode): a plaintext client on the TLS port, or a
client refused for its certificate, left no trace. So a TLS server listens in plaintext
and starts TLS on each connection itself (``loop.start_tls``, in asyncio and uvloop); a
refused handshake is logged once, at INFO (as nginx logs the handshake errors clients
cause: the server is fine, a client is misconfigured), with the peer and the likely
reason. A client that hangs up mid-handshake (a port scan, a TCP health check, and also a
client that distrusts this server's certificate: asyncio's clients close without an alert)
is logged at DEBUG only. A handshake not done within ``handshake_timeout`` is aborted
(logged at INFO: a client that connects and stalls holds a connection slot no longer).
Once the handshake is done, the HTTP/2 protocol takes the connection over.

uvloop starts reading a connection after ``connection_made`` whatever the protocol
paused, so there the ClientHello can reach this protocol before ``start_tls`` has put its
TLS protocol in place (MagicStack/uvloop#707); those bytes are handed to the TLS protocol
once it has started, through its public ``BufferedProtocol`` methods, as the transport
would have (``muxs._internals.feed_tls_protocol``). asyncio's loop honours the pause and
never needs it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import cast

from grpclib.protocol import Peer

from muxs._internals import feed_tls_protocol
from muxs.server.hooks import format_peer

log = logging.getLogger(__name__)

# OpenSSL's reasons, and what they mean on a server's side of a handshake.
_NOT_TLS = {"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"}
_NO_CERTIFICATE = "PEER_DID_NOT_RETURN_A_CERTIFICATE"
_SERVER_CERT_REFUSED = {
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
}
_NOTHING_IN_COMMON = {
    "NO_SHARED_CIPHER",
    "UNSUPPORTED_PROTOCOL",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "VERSION_TOO_LOW",
}
_NO_HTTP2 = "NO_APPLICATION_PROTOCOL"
_HUNG_UP = {"UNEXPECTED_EOF_WHILE_READING"}


def refusal(exc: OSError) -> str | None:
    """Why a client's handshake failed, in words; None if the client just hung up."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"its certificate is not trusted ({exc.verify_message}): it is likely not "
            "signed by a CA in --tls-client-ca"
        )
    reason = getattr(exc, "reason", None)
    if reason in _NOT_TLS:
        return "it did not speak TLS: likely a plaintext client (it needs --tls or --ca)"
    if reason == _NO_CERTIFICATE:
        return "it sent no client certificate, which --tls-client-ca makes mandatory"
    if reason in _SERVER_CERT_REFUSED:
        return (
            f"it refused this server's certificate ({exc.strerror or reason}): it likely "
            "does not trust the CA that signed --tls-cert (its --ca)"
        )
    if reason in _NOTHING_IN_COMMON:
        return f"no TLS version or cipher in common ({reason}): muxs needs TLS 1.2 or later"
    if reason == _NO_HTTP2:
        return "it does not offer HTTP/2 (ALPN h2): likely not a gRPC client"
    if reason in _HUNG_UP or isinstance(exc, ConnectionResetError | ssl.SSLEOFError):
        return None
    if isinstance(exc, ConnectionAbortedError):  # asyncio's handshake timeout
        return str(exc)
    return str(reason or exc)


class TlsHandshake(asyncio.Protocol):
    """One accepted connection until its TLS handshake is done; then ``inner`` (the HTTP/2
    protocol) gets the TLS transport, with any bytes that arrived before it took over."""

    def __init__(self, inner: asyncio.Protocol, context: ssl.SSLContext, timeout: float) -> None:
        self._inner = inner
        self._context = context
        self._timeout = timeout
        self._raw: list[bytes] = []  # read before start_tls (uvloop only)
        self._early: list[bytes] = []  # decrypted, after the handshake, before the hand-over
        self._tls_started = False
        self._lost = False
        self._handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()  # type: ignore[attr-defined]  # start_tls reads the hello
        self._handshake = asyncio.ensure_future(self._start_tls(transport))

    async def _start_tls(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        if self._lost:  # the client left before its handshake could start
            return
        self._tls_started = True
        if self._raw:
            # start_tls installs its protocol now and starts it on the loop's next turn:
            # the bytes go to it one turn later, once it has started.
            loop.call_soon(loop.call_soon, feed_tls_protocol, transport, b"".join(self._raw))
        try:
            tls = await loop.start_tls(
                cast(asyncio.WriteTransport, transport),
                self,
                self._context,
                server_side=True,
                ssl_handshake_timeout=self._timeout,
            )
        except OSError as exc:
            peer = format_peer(Peer(cast(asyncio.Transport, transport)))
            why = refusal(exc)
            if why is None:
                log.debug("%s hung up during the TLS handshake: %r", peer, exc)
            else:
                log.info("refused a TLS handshake from %s: %s", peer, why)
            transport.close()
            return
        if self._lost or tls is None:
            return
        tls.set_protocol(self._inner)
        self._inner.connection_made(tls)
        for data in self._early:
            self._inner.data_received(data)

    def data_received(self, data: bytes) -> None:
        (self._early if self._tls_started else self._raw).append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
