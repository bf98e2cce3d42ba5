"""The official grpcio client over TLS and mutual TLS, with access-token call credentials."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.security.conftest import AUDIENCE, ISSUER, Pki, SigningKeys, claims


@pytest.fixture(scope="module")
def secure_server(
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
    signing_keys: SigningKeys,
    static_tokens: tuple[Path, dict[str, str]],
) -> Iterator[str]:
    """``muxs serve`` with TLS, client certificates required, JWTs and static tokens accepted.

    In a process of its own: grpcio closes its connections in the background, after a call
    returns, and a TLS connection still closing when a test's event loop ends would be
    reported as an unclosed transport.
    """
    root = tmp_path_factory.mktemp("root")
    argv = [sys.executable, "-m", "muxs", "serve", "--port", "0", "--root", str(root)]
    argv += ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    argv += ["--tls-client-ca", str(pki.client_ca), "--auth-tokens", str(static_tokens[0])]
    argv += ["--auth-jwks", str(signing_keys.jwks)]
    argv += ["--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    with subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            head = ""
            while not (match := re.search(r"muxs listening on (127\.0\.0\.1:\d+)", head)):
                line = process.stderr.readline()
                assert line, head
                head += line
            yield match.group(1)
        finally:
            process.terminate()
            process.wait(30)


def grpcio_hello(
    target: str,
    pb: tuple[Any, Any],
    *,
    ca: bytes,
    client: tuple[bytes, bytes] | None = None,
    token: str | None = None,
) -> str:
    pb2, pb2_grpc = pb
    key, chain = client or (None, None)
    credentials = grpc.ssl_channel_credentials(ca, key, chain)
    if token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    with grpc.secure_channel(target, credentials) as channel:
        reply = pb2_grpc.GreeterStub(channel).SayHello(pb2.HelloRequest(name="grpcio"), timeout=10)
    return str(reply.message)


def test_grpcio_calls_with_tls_a_client_certificate_and_a_jwt(
    secure_server: str, pb: tuple[Any, Any], pki: Pki, signing_keys: SigningKeys
) -> None:
    client = (pki.pem("client_key"), pki.pem("client_cert"))
    message = grpcio_hello(
        secure_server,
        pb,
        ca=pki.pem("ca"),
        client=client,
        token=signing_keys.sign(claims()),
    )
    assert message == "Hello, grpcio!"


def test_grpcio_calls_with_a_static_token(
    secure_server: str,
    pb: tuple[Any, Any],
    pki: Pki,
    static_tokens: tuple[Path, dict[str, str]],
) -> None:
    client = (pki.pem("client_key"), pki.pem("client_cert"))
    token = static_tokens[1]["greeter"]
    message = grpcio_hello(secure_server, pb, ca=pki.pem("ca"), client=client, token=token)
    assert message == "Hello, grpcio!"


@pytest.mark.parametrize(
    ("case", "code", "details"),
    [
        ("no-token", grpc.StatusCode.UNAUTHENTICATED, "send the metadata 'authorization: Bearer"),
        ("no-scope", grpc.StatusCode.PERMISSION_DENIED, "this call needs the 'greeter' scope"),
        ("no-client-cert", grpc.StatusCode.UNAVAILABLE, ""),
    ],
)
def test_grpcio_sees_each_refusal_with_its_status(
    secure_server: str,
    pb: tuple[Any, Any],
    pki: Pki,
    static_tokens: tuple[Path, dict[str, str]],
    case: str,
    code: grpc.StatusCode,
    details: str,
) -> None:
    client: tuple[bytes, bytes] | None = (pki.pem("client_key"), pki.pem("client_cert"))
    token: str | None = static_tokens[1]["reader"]
    if case == "no-token":
        token = None
    if case == "no-client-cert":
        client = None
    with pytest.raises(grpc.RpcError) as caught:
        grpcio_hello(secure_server, pb, ca=pki.pem("ca"), client=client, token=token)
    assert caught.value.code() == code
    assert (caught.value.details() or "").startswith(details)
