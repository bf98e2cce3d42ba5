"""The one place where the server authenticates and authorizes calls: ``Authenticator``, the
server's first interceptor (``muxs.server.interceptors``) when auth or mutual TLS is on.

For each call it names the caller (``muxs.auth.current_identity()``): the verified client
certificate's subject under mutual TLS, and, when auth is on, the bearer token's subject and
scopes. A missing or invalid token is UNAUTHENTICATED, a valid token without the method's
scope is PERMISSION_DENIED, and so is any call to a method no scope is declared for (muxs's own in
``muxs.auth.scopes``, a hosted service's in ``muxs.server.hosting``); health and reflection need no
token. The ``authorization``
metadata is removed once read, so nothing after it can log it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from muxs.auth.identity import ANONYMOUS, Identity, InvalidToken, set_identity
from muxs.auth.scopes import SCOPES, UnmappedMethod, required_scope
from muxs.errors import StatusCode
from muxs.server.context import CallContext
from muxs.server.interceptors import ServerProceed
from muxs.server.settings import ServerSettings
from muxs.server.verification.jwt_tokens import JwtVerifier
from muxs.server.verification.static_tokens import StaticTokens

log = logging.getLogger(__name__)

BEARER = "bearer"


class Authenticator:
    """Checks each call's bearer token with the configured verifiers (none: auth is off)."""

    def __init__(
        self,
        static_tokens: StaticTokens | None = None,
        jwt: JwtVerifier | None = None,
        *,
        mutual_tls: bool = False,
        scopes: Mapping[str, str | None] | None = None,
    ) -> None:
        self._static_tokens = static_tokens
        self._jwt = jwt
        self._mutual_tls = mutual_tls
        self._scopes = scopes or {}

    @classmethod
    def from_settings(
        cls, settings: ServerSettings, scopes: Mapping[str, str | None] | None = None
    ) -> Authenticator:
        """Load the tokens file and the JWKS the settings name (``ConfigError`` if unusable).

        ``scopes`` maps hosted services' methods (``/package.Service/Method``) to the scope
        each needs (None: public), beside muxs's own."""
        static_tokens = jwt = None
        if settings.auth_tokens is not None:
            own = [scope for scope in (scopes or {}).values() if scope and scope not in SCOPES]
            static_tokens = StaticTokens.load(settings.auth_tokens, [*SCOPES, *dict.fromkeys(own)])
        if settings.auth_jwks is not None:
            assert settings.auth_issuer is not None
            assert settings.auth_audience is not None
            jwt = JwtVerifier.load(settings.auth_jwks, settings.auth_issuer, settings.auth_audience)
        _log_settings(settings)
        return cls(static_tokens, jwt, mutual_tls=settings.tls_client_ca is not None, scopes=scopes)

    @property
    def enabled(self) -> bool:
        """Whether calls need a bearer token."""
        return self._static_tokens is not None or self._jwt is not None

    @property
    def active(self) -> bool:
        """Whether there is anything to check (auth or mutual TLS is on)."""
        return self.enabled or self._mutual_tls

    async def __call__(self, call: CallContext, proceed: ServerProceed) -> None:
        """As an interceptor: name the caller (or refuse the call), then proceed."""
        set_identity(self.identify(call.path, call.stream))
        await proceed()

    def identify(self, method: str, stream: Stream[Any, Any]) -> Identity:
        """Who makes this call to ``method``; ``GRPCError`` if they may not.

        The ``authorization`` metadata is removed from the stream's once read.
        """
        if not (self.enabled or self._mutual_tls):
            return ANONYMOUS
        metadata = stream.metadata
        values = metadata.popall("authorization", []) if metadata is not None else []
        peer = _peer_subject(stream.peer.cert()) if self._mutual_tls else None
        identity = Identity(peer=peer)
        if self.enabled:
            identity = self._authorize(method, values, identity)
        return identity

    def _authorize(
        self, method: str, values: Sequence[str | bytes], identity: Identity
    ) -> Identity:
        try:
            scope = self._scopes[method] if method in self._scopes else required_scope(method)
        except UnmappedMethod:
            log.info("refused %s: no scope grants it", method)
            raise GRPCError(StatusCode.PERMISSION_DENIED, "no scope grants this method") from None
        if scope is None:
            return identity
        try:
            granted = self._verify(values)
        except InvalidToken as exc:
            log.info("refused %s: %s", method, exc)
            raise GRPCError(StatusCode.UNAUTHENTICATED, str(exc)) from None
        if scope not in granted.scopes:
            log.info("refused %s to %s: no %r scope", method, granted.subject, scope)
            raise GRPCError(StatusCode.PERMISSION_DENIED, f"this call needs the {scope!r} scope")
        return replace(granted, peer=identity.peer)

    def _verify(self, values: Sequence[str | bytes]) -> Identity:
        if not values:
            raise InvalidToken("send the metadata 'authorization: Bearer <token>'")
        if len(values) > 1:
            raise InvalidToken("send one authorization metadata entry, not several")
        scheme, _, token = str(values[0]).strip().partition(" ")
        token = token.strip()
        if scheme.lower() != BEARER or not token:
            raise InvalidToken("authorization must be 'Bearer <token>'")
        if self._static_tokens is not None:
            identity = self._static_tokens.verify(token)
            if identity is not None:
                return identity
        if self._jwt is None:
            raise InvalidToken("the token is not a known API token")
        return self._jwt.verify(token)


def _log_settings(settings: ServerSettings) -> None:
    if settings.auth_enabled:
        sources = [f"API tokens of {settings.auth_tokens}"] if settings.auth_tokens else []
        if settings.auth_jwks is not None:
            sources.append(f"JWTs from {settings.auth_issuer} for {settings.auth_audience}")
        log.info("calls need a bearer token: %s", ", ".join(sources))
    if settings.plaintext_remote_auth:
        log.warning(
            "auth without TLS on %s (allow_insecure_auth): bearer tokens cross the network "
            "in plaintext",
            settings.host,
        )


# Short names of the subject attributes ``ssl.SSLSocket.getpeercert`` reports (RFC 4514).
_ATTRIBUTE_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
    "userId": "UID",
}


def _peer_subject(cert: dict[str, Any] | None) -> str | None:
    """``CN=alice,O=Example`` from a verified peer certificate (None without one)."""
    if not cert or "subject" not in cert:
        return None
    parts = [
        f"{_ATTRIBUTE_NAMES.get(name, name)}={value}"
        for rdn in reversed(cert["subject"])
        for name, value in rdn
    ]
    return ",".join(parts) or None
