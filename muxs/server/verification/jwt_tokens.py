"""JWT access tokens (RFC 9068 style) signed by keys of a local JWKS file, verified with PyJWT.

Accepted algorithms: RS256, ES256 and EdDSA, each bound to its key (``none`` and HMAC are
never accepted, so a public key cannot be used as an HMAC secret). ``exp``, ``iss``, ``aud``
and ``sub`` are required; ``exp``, ``nbf`` and ``iat`` get ``LEEWAY_SECONDS`` of clock skew.
Scopes come from ``scope`` (space-separated) or ``scp`` (a list, or space-separated).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt

from muxs.auth.identity import Identity, InvalidToken
from muxs.errors import ConfigError

ALGORITHMS = ("RS256", "ES256", "EdDSA")
LEEWAY_SECONDS = 30
OPTION = "auth_jwks"

# What the caller is told for each failure: never the token, nor anything taken from it.
_REASONS: list[tuple[type[jwt.InvalidTokenError], str]] = [
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidIssuerError, "the token's issuer is not accepted"),
    (jwt.InvalidAudienceError, "the token's audience is not accepted"),
    (jwt.MissingRequiredClaimError, "the token lacks a required claim (exp, iss, aud, sub)"),
    (jwt.InvalidSignatureError, "the token's signature is invalid"),
    (jwt.DecodeError, "the token is not a well-formed JWT"),
]


class JwtVerifier:
    """Verifies access tokens against the keys of a JWKS, an issuer and an audience."""

    def __init__(self, keys: Mapping[str | None, jwt.PyJWK], issuer: str, audience: str) -> None:
        self._keys = dict(keys)
        self._issuer = issuer
        self._audience = audience

    @classmethod
    def load(cls, path: Path, issuer: str, audience: str) -> JwtVerifier:
        """Read the JWKS file; any problem is a ``ConfigError`` naming the key."""
        try:
            document = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(OPTION, f"cannot read {path}: {exc.strerror}") from None
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(OPTION, f"{path} is not JSON") from None
        jwks = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(jwks, list) or not jwks:
            raise ConfigError(OPTION, f'{path} has no "keys" list')
        keys: dict[str | None, jwt.PyJWK] = {}
        for number, jwk in enumerate(jwks, 1):
            try:
                kid, key = _parse_key(jwk)
            except ValueError as exc:
                raise ConfigError(OPTION, f"{path}: key {number}: {exc}") from None
            if kid in keys:
                raise ConfigError(OPTION, f"{path}: key {number}: kid {kid!r} is not unique")
            keys[kid] = key
        if len(keys) > 1 and None in keys:
            raise ConfigError(OPTION, f"{path}: with several keys, each needs a kid")
        return cls(keys, issuer, audience)

    def verify(self, token: str) -> Identity:
        """The identity a valid token grants; ``InvalidToken`` says why another is refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("the token is not a well-formed JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"the token's algorithm is not one of {', '.join(ALGORITHMS)}")
        key = self._key(header.get("kid"))
        if algorithm != key.algorithm_name:
            raise InvalidToken("the token's algorithm is not its key's")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            reason = next((text for kind, text in _REASONS if isinstance(exc, kind)), None)
            raise InvalidToken(reason or "the token is invalid") from None
        subject = claims["sub"]
        if not isinstance(subject, str):
            raise InvalidToken("the token's sub is not a string")
        return Identity(subject=subject, scopes=_scopes(claims))

    def _key(self, kid: object) -> jwt.PyJWK:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("the token's key id (kid) is not a known key")
        return key


def _parse_key(jwk: Any) -> tuple[str | None, jwt.PyJWK]:
    if not isinstance(jwk, dict):
        raise ValueError("is not a JSON object")
    if "d" in jwk:
        raise ValueError("holds a private key; the JWKS file takes public keys only")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ValueError("kid is not a string")
    try:
        key = jwt.PyJWK(jwk)
    except jwt.PyJWTError as exc:
        raise ValueError(f"is not a usable key ({exc})") from None
    if key.algorithm_name not in ALGORITHMS:
        raise ValueError(f"{key.algorithm_name} is not one of {', '.join(ALGORITHMS)}")
    return kid, key


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    granted = claims.get("scope", claims.get("scp", ""))
    if isinstance(granted, str):
        return frozenset(granted.split())
    if isinstance(granted, list):
        return frozenset(scope for scope in granted if isinstance(scope, str))
    return frozenset()
