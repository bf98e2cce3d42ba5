"""TLS and mutual TLS with the SDK, and the start-up errors of unusable certificate files."""

from __future__ import annotations

import asyncio
import fnmatch
import ssl
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from grpclib.events import SendTrailingMetadata, listen

from muxs import Client, ConfigError, RpcError, ServerSettings, StatusCode, serve
from muxs.auth import Identity, current_identity
from muxs.cli import main
from muxs.tls import client_context, server_context
from tests.security.conftest import Pki, write_leaf


def tls_settings(settings: ServerSettings, pki: Pki, *, mutual: bool = False) -> ServerSettings:
    return replace(
        settings,
        tls_cert=pki.cert,
        tls_key=pki.key,
        tls_client_ca=pki.client_ca if mutual else None,
    )


async def test_the_sdk_calls_a_tls_server_trusting_a_ca_file(
    settings: ServerSettings, pki: Pki
) -> None:
    async with (
        serve(settings=tls_settings(settings, pki)) as running,
        Client(running.target, tls=pki.ca) as client,
    ):
        assert (await client.say_hello("tls")).message == "Hello, tls!"


async def test_the_sdk_takes_an_ssl_context(settings: ServerSettings, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.set_alpn_protocols(["h2"])
    async with (
        serve(settings=tls_settings(settings, pki)) as running,
        Client(running.target, tls=context) as client,
    ):
        assert (await client.square(4)).value == 2


def test_the_server_context_is_tls_1_2_or_later_and_selects_h2(pki: Pki) -> None:
    context = server_context(pki.cert, pki.key)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE
    assert server_context(pki.cert, pki.key, pki.client_ca).verify_mode == ssl.CERT_REQUIRED


async def test_a_tls_1_2_client_is_served(settings: ServerSettings, pki: Pki) -> None:
    context = client_context(pki.ca)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    async with (
        serve(settings=tls_settings(settings, pki)) as running,
        Client(running.target, tls=context) as client,
    ):
        assert (await client.say_hello("1.2")).message == "Hello, 1.2!"


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (None, "closed the connection before answering"),  # plaintext HTTP/2 to a TLS port
        (True, "certificate is not trusted"),  # the system's CAs do not know the test CA
    ],
)
async def test_a_client_that_cannot_do_this_tls_is_unavailable(
    settings: ServerSettings, pki: Pki, tls: bool | None, message: str
) -> None:
    async with (
        serve(settings=tls_settings(settings, pki)) as running,
        Client(running.target, tls=tls, timeout=10) as client,
    ):
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
    assert caught.value.status == StatusCode.UNAVAILABLE
    assert message in caught.value.message


async def caller_identities(running_server: object) -> list[Identity | None]:
    """Record ``current_identity()`` as each call ends, as an access log would."""
    seen: list[Identity | None] = []

    async def record(event: SendTrailingMetadata) -> None:
        seen.append(current_identity())

    listen(running_server, SendTrailingMetadata, record)  # type: ignore[arg-type]
    return seen


async def test_mutual_tls_serves_a_client_certificate_and_knows_its_subject(
    settings: ServerSettings, pki: Pki
) -> None:
    async with serve(settings=tls_settings(settings, pki, mutual=True)) as running:
        seen = await caller_identities(running.server)
        async with Client(
            running.target, tls=pki.ca, cert=pki.client_cert, key=pki.client_key
        ) as client:
            assert (await client.say_hello("alice")).message == "Hello, alice!"
    assert len(seen) == 1
    assert seen[0] is not None
    assert seen[0].peer is not None
    assert seen[0].peer.startswith("CN=alice,OU=Testing cert #")
    assert seen[0].peer.endswith(",O=Ex")
    assert seen[0].subject is None


async def first_byte(port: int, context: ssl.SSLContext) -> bytes:
    """The first byte the server sends after the handshake (an HTTP/2 SETTINGS frame)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        return await reader.read(1)
    finally:
        writer.close()


async def test_mutual_tls_speaks_http2_to_a_trusted_client_certificate(
    settings: ServerSettings, pki: Pki
) -> None:
    context = client_context(pki.ca, pki.client_cert, pki.client_key)
    async with serve(settings=tls_settings(settings, pki, mutual=True)) as running:
        assert await first_byte(running.port, context) == b"\x00"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
@pytest.mark.parametrize("certificate", ["none", "stranger"])
async def test_mutual_tls_refuses_a_client_without_a_trusted_certificate_at_the_handshake(
    settings: ServerSettings, pki: Pki, version: ssl.TLSVersion, certificate: str
) -> None:
    context = client_context(pki.ca)
    if certificate == "stranger":
        context.load_cert_chain(pki.stranger_cert, pki.stranger_key)
    context.minimum_version = context.maximum_version = version
    async with serve(settings=tls_settings(settings, pki, mutual=True)) as running:
        if version == ssl.TLSVersion.TLSv1_2:
            # The server aborts the handshake: the client never completes it.
            with pytest.raises(OSError):  # noqa: PT011 (reset or EOF, as the OS reports it)
                await first_byte(running.port, context)
        else:
            # TLS 1.3 clients finish before the server checks them; the server then closes
            # without a single HTTP/2 byte.
            assert await first_byte(running.port, context) == b""


async def test_mutual_tls_refuses_an_sdk_client_without_a_certificate(
    settings: ServerSettings, pki: Pki
) -> None:
    async with (
        serve(settings=tls_settings(settings, pki, mutual=True)) as running,
        Client(running.target, tls=pki.ca, timeout=10) as client,
    ):
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
    assert caught.value.status == StatusCode.UNAVAILABLE


async def test_a_client_certificate_file_may_hold_its_key(
    settings: ServerSettings, pki: Pki, tmp_path: Path
) -> None:
    combined = tmp_path / "alice-with-key.pem"
    combined.write_bytes(pki.pem("client_key") + pki.pem("client_cert"))
    async with (
        serve(settings=tls_settings(settings, pki, mutual=True)) as running,
        Client(running.target, tls=pki.ca, cert=combined) as client,
    ):
        assert (await client.say_hello("one file")).message == "Hello, one file!"


@pytest.fixture
def expired_cert(tmp_path: Path) -> tuple[Path, Path]:
    ca = trustme.CA()
    past = datetime.now(UTC) - timedelta(days=30)
    leaf = ca.issue_cert("127.0.0.1", not_before=past, not_after=past + timedelta(days=1))
    return write_leaf(leaf, tmp_path, "expired")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tls_cert": "missing.pem"}, "tls_cert: cannot read {tmp}/missing.pem: No such file"),
        ({"tls_key": "missing.key"}, "tls_key: cannot read {tmp}/missing.key: No such file"),
        ({"tls_cert": "junk.pem"}, "tls_cert: {tmp}/junk.pem holds no PEM certificate"),
        ({"tls_key": "junk.pem"}, "tls_key: {tmp}/junk.pem is not a PEM private key"),
        ({"tls_key": "STRANGER"}, "tls_key: {stranger} is not the key of {cert}"),
        ({"tls_client_ca": "junk.pem"}, "tls_client_ca: {tmp}/junk.pem holds no PEM CA"),
        ({"tls_cert": "EXPIRED"}, "tls_cert: the certificate OU=* in {expired} expired on 20* UTC"),
    ],
)
async def test_unusable_tls_files_stop_the_server_with_one_clear_error(
    settings: ServerSettings,
    pki: Pki,
    tmp_path: Path,
    expired_cert: tuple[Path, Path],
    change: dict[str, str],
    message: str,
) -> None:
    (tmp_path / "junk.pem").write_text("not PEM\n")
    special = {"STRANGER": pki.stranger_key, "EXPIRED": expired_cert[0]}
    values = {name: special.get(value, tmp_path / value) for name, value in change.items()}
    if "tls_cert" in values and values["tls_cert"] == expired_cert[0]:
        values["tls_key"] = expired_cert[1]
    broken = replace(tls_settings(settings, pki), **values)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as caught:
        async with serve(settings=broken):
            pass
    expected = message.format(
        tmp=tmp_path, stranger=pki.stranger_key, cert=pki.cert, expired=expired_cert[0]
    )
    assert fnmatch.fnmatchcase(str(caught.value), expected + "*")


def test_muxs_serve_exits_2_with_one_line_for_a_mismatched_key(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--port", "0", "--root", str(tmp_path / "data")]
    argv += ["--tls-cert", str(pki.cert), "--tls-key", str(pki.client_key)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"muxs serve: cannot start: tls_key: {pki.client_key} is not the key of {pki.cert}\n"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls_cert": "c.pem"}, "tls_key: tls_cert and tls_key must be given together"),
        ({"tls_key": "k.pem"}, "tls_cert: tls_cert and tls_key must be given together"),
        ({"tls_client_ca": "ca.pem"}, "tls_client_ca: needs tls_cert and tls_key"),
    ],
)
def test_incomplete_tls_settings_are_refused(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(**values)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tls": "missing-ca.pem"}, "ca: cannot read missing-ca.pem: No such file"),
        ({"cert": "missing.pem"}, "cert: cannot read missing.pem: No such file"),
        ({"key": "k.pem"}, "key: a client key needs its certificate (cert)"),
        ({"tls": ssl.create_default_context(), "cert": "c.pem"}, "cert: with an SSLContext"),
    ],
)
def test_unusable_client_tls_options_raise_config_error(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Client("127.0.0.1:1", **options)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
