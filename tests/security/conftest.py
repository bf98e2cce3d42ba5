"""Security fixtures: certificates made with trustme, signing keys and tokens made here."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from muxs import RunningServer, ServerSettings, serve
from muxs.server.verification.static_tokens import new_token

ISSUER = "https://issuer.test"
AUDIENCE = "muxs"


@dataclass(frozen=True)
class Pki:
    """A server certificate for 127.0.0.1 and localhost, and client certificates."""

    ca: Path
    cert: Path
    key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    def pem(self, name: str) -> bytes:
        path: Path = getattr(self, name)
        return path.read_bytes()


def write_leaf(leaf: trustme.LeafCert, directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    server_ca = trustme.CA(organization_name="Server CA")
    client_ca = trustme.CA(organization_name="Client CA")
    stranger_ca = trustme.CA(organization_name="Stranger CA")
    server_ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
    cert, key = write_leaf(server_ca.issue_cert("127.0.0.1", "localhost"), directory, "server")
    alice = client_ca.issue_cert("alice@example.test", common_name="alice", organization_name="Ex")
    client_cert, client_key = write_leaf(alice, directory, "alice")
    stranger = stranger_ca.issue_cert("mallory@example.test", common_name="mallory")
    stranger_cert, stranger_key = write_leaf(stranger, directory, "mallory")
    return Pki(
        directory / "ca.pem",
        cert,
        key,
        directory / "client-ca.pem",
        client_cert,
        client_key,
        stranger_cert,
        stranger_key,
    )


@dataclass(frozen=True)
class SigningKeys:
    """One private key per accepted algorithm, and the JWKS file of their public halves."""

    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    ed25519: ed25519.Ed25519PrivateKey
    jwks: Path

    def sign(self, claims: dict[str, Any], key: str = "rsa", **headers: Any) -> str:
        """``claims`` signed with the named key, its algorithm, and ``kid`` = the key's name."""
        keys: dict[str, tuple[Any, str]] = {
            "rsa": (self.rsa, "RS256"),
            "ec": (self.ec, "ES256"),
            "ed25519": (self.ed25519, "EdDSA"),
        }
        private_key, algorithm = keys[key]
        return jwt.encode(claims, private_key, algorithm, headers={"kid": key, **headers})


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    keys = [
        {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "rsa"},
        {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec"},
        {**OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True), "kid": "ed25519"},
    ]
    jwks = tmp_path_factory.mktemp("jwks") / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    return SigningKeys(rsa_key, ec_key, ed_key, jwks)


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid access-token claims for ``alice`` with every scope, changed by ``overrides``."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "scope": "greeter files:read files:write",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS assembled by hand, for tokens PyJWT refuses to make."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


@pytest.fixture(scope="session")
def static_tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A tokens file made by ``new_token``, and its tokens by name (``greeter``, ``reader``)."""
    grants = {"greeter": ["greeter"], "reader": ["files:read"], "all": ["greeter", "files:read"]}
    tokens, entries = {}, []
    for subject, scopes in grants.items():
        tokens[subject], entry = new_token(subject, scopes)
        entries.append(entry)
    path = tmp_path_factory.mktemp("tokens") / "tokens.toml"
    path.write_text("\n\n".join(entries) + "\n")
    return path, tokens


@pytest.fixture
async def token_server(
    settings: ServerSettings, static_tokens: tuple[Path, dict[str, str]]
) -> AsyncIterator[RunningServer]:
    """A muxs server on 127.0.0.1 that takes the ``static_tokens``."""
    async with serve(settings=replace(settings, auth_tokens=static_tokens[0])) as running:
        yield running
