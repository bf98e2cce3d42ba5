"""JWT access tokens: every way a token can be wrong gets its exact status and message."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from muxs import Client, ConfigError, RpcError, RunningServer, ServerSettings, StatusCode, serve
from muxs.server.verification.jwt_tokens import JwtVerifier
from tests.security.conftest import AUDIENCE, ISSUER, SigningKeys, b64, claims, compact


@pytest.fixture
async def jwt_server(
    settings: ServerSettings, signing_keys: SigningKeys
) -> AsyncIterator[RunningServer]:
    jwt_settings = replace(
        settings, auth_jwks=signing_keys.jwks, auth_issuer=ISSUER, auth_audience=AUDIENCE
    )
    async with serve(settings=jwt_settings) as running:
        yield running


async def say_hello(target: str, token: str) -> str:
    async with Client(target, token=token, timeout=10) as client:
        return (await client.say_hello("jwt")).message


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda keys: keys.sign(claims(), "rsa"), id="RS256"),
        pytest.param(lambda keys: keys.sign(claims(), "ec"), id="ES256"),
        pytest.param(lambda keys: keys.sign(claims(), "ed25519"), id="EdDSA"),
        pytest.param(lambda keys: keys.sign(claims(scope=None, scp=["greeter"])), id="scp-list"),
        pytest.param(lambda keys: keys.sign(claims(exp=int(time.time()) - 5)), id="in-leeway"),
        pytest.param(lambda keys: keys.sign(claims(aud=["other", AUDIENCE])), id="aud-list"),
    ],
)
async def test_a_valid_token_is_served(
    jwt_server: RunningServer,
    signing_keys: SigningKeys,
    token: Callable[[SigningKeys], str],
) -> None:
    assert await say_hello(jwt_server.target, token(signing_keys)) == "Hello, jwt!"


def alg_none(keys: SigningKeys) -> str:
    return compact({"alg": "none", "kid": "rsa"}, claims(), lambda _: b"")


def hs256_with_the_public_key(keys: SigningKeys) -> str:
    """The classic confusion attack: an HMAC keyed with the RSA public key's PEM."""
    public_pem = keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return compact(
        {"alg": "HS256", "kid": "rsa"},
        claims(),
        lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )


def tampered(keys: SigningKeys) -> str:
    header, _, signature = keys.sign(claims(scope="files:read")).split(".")
    payload = b64(json.dumps(claims(scope="greeter")).encode())
    return f"{header}.{payload}.{signature}"


def es256_claiming_the_rsa_key(keys: SigningKeys) -> str:
    return keys.sign(claims(), "ec", kid="rsa")


REFUSED: list[tuple[str, Callable[[SigningKeys], str], StatusCode, str]] = [
    (
        "expired",
        lambda keys: keys.sign(claims(iat=int(time.time()) - 600, exp=int(time.time()) - 120)),
        StatusCode.UNAUTHENTICATED,
        "the token has expired",
    ),
    (
        "not-yet-valid",
        lambda keys: keys.sign(claims(nbf=int(time.time()) + 120)),
        StatusCode.UNAUTHENTICATED,
        "the token is not valid yet",
    ),
    (
        "wrong-issuer",
        lambda keys: keys.sign(claims(iss="https://evil.test")),
        StatusCode.UNAUTHENTICATED,
        "the token's issuer is not accepted",
    ),
    (
        "wrong-audience",
        lambda keys: keys.sign(claims(aud="another-service")),
        StatusCode.UNAUTHENTICATED,
        "the token's audience is not accepted",
    ),
    (
        "alg-none",
        alg_none,
        StatusCode.UNAUTHENTICATED,
        "the token's algorithm is not one of RS256, ES256, EdDSA",
    ),
    (
        "hs256-with-public-key",
        hs256_with_the_public_key,
        StatusCode.UNAUTHENTICATED,
        "the token's algorithm is not one of RS256, ES256, EdDSA",
    ),
    (
        "unknown-kid",
        lambda keys: keys.sign(claims(), kid="retired-2019"),
        StatusCode.UNAUTHENTICATED,
        "the token's key id (kid) is not a known key",
    ),
    (
        "key-of-another-algorithm",
        es256_claiming_the_rsa_key,
        StatusCode.UNAUTHENTICATED,
        "the token's algorithm is not its key's",
    ),
    (
        "tampered-payload",
        tampered,
        StatusCode.UNAUTHENTICATED,
        "the token's signature is invalid",
    ),
    (
        "no-exp",
        lambda keys: keys.sign(claims(exp=None)),
        StatusCode.UNAUTHENTICATED,
        "the token lacks a required claim (exp, iss, aud, sub)",
    ),
    (
        "no-sub",
        lambda keys: keys.sign(claims(sub=None)),
        StatusCode.UNAUTHENTICATED,
        "the token lacks a required claim (exp, iss, aud, sub)",
    ),
    (
        "not-a-jwt",
        lambda keys: "opaque-token",
        StatusCode.UNAUTHENTICATED,
        "the token is not a well-formed JWT",
    ),
    (
        "missing-scope",
        lambda keys: keys.sign(claims(scope="files:read files:write")),
        StatusCode.PERMISSION_DENIED,
        "this call needs the 'greeter' scope",
    ),
]


@pytest.mark.parametrize(
    ("token", "status", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in REFUSED],
)
async def test_an_invalid_token_is_refused_with_its_exact_status(
    jwt_server: RunningServer,
    signing_keys: SigningKeys,
    token: Callable[[SigningKeys], str],
    status: StatusCode,
    message: str,
) -> None:
    value = token(signing_keys)
    with pytest.raises(RpcError) as caught:
        await say_hello(jwt_server.target, value)
    assert (caught.value.status, caught.value.message) == (status, message)
    assert value not in str(caught.value)


async def test_a_call_without_a_token_is_unauthenticated(jwt_server: RunningServer) -> None:
    async with Client(jwt_server.target) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello("anonymous")
    assert caught.value.status == StatusCode.UNAUTHENTICATED
    assert caught.value.message == "send the metadata 'authorization: Bearer <token>'"


def jwk_of(keys: SigningKeys, **changes: Any) -> dict[str, Any]:
    jwks: dict[str, Any] = json.loads(keys.jwks.read_text())
    return {**jwks["keys"][0], **changes}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, "cannot read {path}: No such file or directory"),
        ("{", "{path} is not JSON"),
        ('{"keys": []}', '{path} has no "keys" list'),
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, "{path}: key 1: HS256 is not one of"),
        ("PRIVATE", "{path}: key 1: holds a private key; the JWKS file takes public keys only"),
        ({"kty": "RSA", "kid": "r"}, "{path}: key 1: is not a usable key"),
    ],
)
def test_an_unusable_jwks_file_is_a_config_error(
    tmp_path: Path, signing_keys: SigningKeys, document: object, message: str
) -> None:
    path = tmp_path / "jwks.json"
    if document == "PRIVATE":
        document = jwk_of(signing_keys, d="c2VjcmV0")
    if isinstance(document, dict):
        document = json.dumps({"keys": [document]})
    if isinstance(document, str):
        path.write_text(document)
    with pytest.raises(ConfigError) as caught:
        JwtVerifier.load(path, ISSUER, AUDIENCE)
    assert caught.value.option == "auth_jwks"
    assert caught.value.problem.startswith(message.format(path=path))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth_jwks": "jwks.json", "auth_audience": "a"}, "auth_issuer: is required with"),
        ({"auth_jwks": "jwks.json", "auth_issuer": "i"}, "auth_audience: is required with"),
        ({"auth_issuer": "i"}, "auth_issuer: is only used with auth_jwks"),
    ],
)
def test_jwt_settings_come_together(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(**values)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
