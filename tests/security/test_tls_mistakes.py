"""TLS mistakes explain themselves: the client names the likely cause and the option that
fixes it; the server logs the refused handshake once, with the peer and the reason."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from muxs import Client, RpcError, ServerSettings, StatusCode, serve
from muxs.cli import main
from muxs.server.handshakes import refusal
from muxs.tls import client_context
from tests.polling import until
from tests.security.conftest import Pki

ADD_TLS = "add --tls or --ca FILE (SDK: tls=True or tls=CA_FILE)"


@dataclass(frozen=True)
class Mistake:
    """A client/server pairing that cannot work, and what each side must say about it."""

    server: str  # "plain", "tls" or "mutual"
    client: list[str]  # the CLI's security options
    says: str  # the client's message after "cannot reach HOST:PORT: "
    logs: str | None  # the server's line after "... from 127.0.0.1:PORT: " (None: no line)


MISTAKES = {
    "plaintext client, TLS server": Mistake(
        "tls",
        [],
        f"the server closed the connection before answering: if it uses TLS, {ADD_TLS}",
        "it did not speak TLS: likely a plaintext client (it needs --tls or --ca)",
    ),
    "TLS client, plaintext server": Mistake(
        "plain",
        ["--ca", "{ca}"],
        "the server answered without TLS: it likely serves plaintext: drop --tls and --ca "
        "(SDK: tls=None)",
        "this server is plaintext (likely a client with --tls or --ca; or serve TLS with "
        "--tls-cert and --tls-key)",
    ),
    "mutual TLS, no client certificate": Mistake(
        "mutual",
        ["--ca", "{ca}"],
        "the server closed the connection after the TLS handshake without answering: it "
        "likely requires a client certificate (mutual TLS): add --cert FILE --key FILE "
        "(SDK: cert=, key=)",
        "it sent no client certificate, which --tls-client-ca makes mandatory",
    ),
    "mutual TLS, a certificate from another CA": Mistake(
        "mutual",
        ["--ca", "{ca}", "--cert", "{stranger_cert}", "--key", "{stranger_key}"],
        "the server closed the connection after the TLS handshake without answering: it "
        "likely does not trust this client certificate (mutual TLS): use one signed by a CA "
        "the server trusts (--cert FILE --key FILE)",
        "its certificate is not trusted (unable to get local issuer certificate): it is "
        "likely not signed by a CA in --tls-client-ca",
    ),
    "a server certificate the client does not trust": Mistake(
        "tls",
        ["--ca", "{client_ca}"],
        "the server's certificate is not trusted (unable to get local issuer certificate): "
        "give the CA that signed it with --ca FILE (SDK: tls=CA_FILE)",
        None,  # the client hangs up without an alert: a DEBUG line only, as for a TCP probe
    ),
}


def server_settings(settings: ServerSettings, pki: Pki, kind: str) -> ServerSettings:
    if kind == "plain":
        return settings
    client_ca = pki.client_ca if kind == "mutual" else None
    return replace(settings, tls_cert=pki.cert, tls_key=pki.key, tls_client_ca=client_ca)


def option_value(options: list[str], flag: str) -> str | None:
    return options[options.index(flag) + 1] if flag in options else None


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.INFO and "refused a TLS handshake" in record.getMessage()
    ]


@pytest.mark.parametrize("name", MISTAKES)
async def test_each_tls_mistake_is_named_by_the_cli_the_sdk_and_the_server_log(
    name: str,
    settings: ServerSettings,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mistake = MISTAKES[name]
    options = [option.format(**vars(pki)) for option in mistake.client]
    caplog.set_level(logging.INFO)
    async with serve(settings=server_settings(settings, pki, mistake.server)) as running:
        argv = ["hello", "x", "--target", running.target, *options]
        code = await asyncio.to_thread(main, argv)
        if mistake.logs is not None:
            await until(lambda: len(refusals(caplog)) == 1)
        ca, cert, key = (option_value(options, flag) for flag in ("--ca", "--cert", "--key"))
        async with Client(running.target, tls=ca, cert=cert, key=key) as client:
            with pytest.raises(RpcError) as caught:
                await client.say_hello("x")
        if mistake.logs is not None:
            await until(lambda: len(refusals(caplog)) == 2)
    expected = f"cannot reach {running.target}: {mistake.says}"
    assert code == 1
    assert capsys.readouterr().err == f"muxs hello: UNAVAILABLE: {expected}\n"
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert caught.value.message == expected
    lines = refusals(caplog)
    if mistake.logs is None:
        assert lines == []
    else:
        # once per refused connection: the CLI's and the SDK's
        assert len(lines) == 2
        for line in lines:
            peer, reason = line.removeprefix("refused a TLS handshake from ").split(": ", 1)
            assert peer.startswith("127.0.0.1:")
            assert reason == mistake.logs


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_a_refused_client_certificate_is_explained_with_any_tls_version(
    settings: ServerSettings, pki: Pki, version: ssl.TLSVersion, caplog: pytest.LogCaptureFixture
) -> None:
    """TLS 1.2 servers cut the handshake; TLS 1.3 ones close after it. With its own
    ``SSLContext`` the SDK does not know whether it offered a certificate."""
    context = client_context(pki.ca)
    context.minimum_version = context.maximum_version = version
    caplog.set_level(logging.INFO)
    async with (
        serve(settings=server_settings(settings, pki, "mutual")) as running,
        Client(running.target, tls=context) as client,
    ):
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
        await until(lambda: len(refusals(caplog)) == 1)
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert caught.value.message.endswith(
        "it likely requires a client certificate that it trusts (mutual TLS): give one with "
        "--cert FILE --key FILE (SDK: cert=, key=)"
    )
    assert refusals(caplog)[0].endswith(
        ": it sent no client certificate, which --tls-client-ca makes mandatory"
    )


async def test_a_client_hanging_up_mid_handshake_is_logged_at_debug_only(
    settings: ServerSettings, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="muxs.server.handshakes")
    async with serve(settings=server_settings(settings, pki, "tls")) as running:
        _, writer = await asyncio.open_connection("127.0.0.1", running.port)
        writer.close()
        await writer.wait_closed()
        await until(lambda: any("hung up" in r.getMessage() for r in caplog.records))
    handshake_records = [r for r in caplog.records if r.name == "muxs.server.handshakes"]
    assert [r.levelno for r in handshake_records] == [logging.DEBUG]
    assert (
        handshake_records[0]
        .getMessage()
        .endswith("hung up during the TLS handshake: ConnectionResetError()")
    )


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("NO_SHARED_CIPHER", "no TLS version or cipher in common"),
        ("NO_APPLICATION_PROTOCOL", "does not offer HTTP/2 (ALPN h2)"),
        ("TLSV1_ALERT_UNKNOWN_CA", "it refused this server's certificate"),
        ("SOMETHING_ELSE", "SOMETHING_ELSE"),
    ],
)
def test_other_handshake_refusals_are_worded(reason: str, words: str) -> None:
    error = ssl.SSLError(1, reason)
    error.reason = reason
    assert words in (refusal(error) or "")


def test_handshakes_are_run_and_logged_on_uvloop_too(
    settings: ServerSettings, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """uvloop reads a connection before ``start_tls`` can take it; the ClientHello it read
    must still reach the handshake."""
    uvloop = pytest.importorskip("uvloop")
    caplog.set_level(logging.INFO)

    async def calls() -> tuple[str, RpcError]:
        async with serve(settings=server_settings(settings, pki, "mutual")) as running:
            async with Client(
                running.target, tls=pki.ca, cert=pki.client_cert, key=pki.client_key
            ) as client:
                message = (await client.say_hello("uv")).message
            async with Client(running.target, tls=pki.ca) as client:
                with pytest.raises(RpcError) as caught:
                    await client.say_hello("x")
            await until(lambda: len(refusals(caplog)) == 1)
        return message, caught.value

    message, error = uvloop.run(calls())
    assert message == "Hello, uv!"
    assert error.status is StatusCode.UNAVAILABLE
    assert refusals(caplog)[0].endswith(
        ": it sent no client certificate, which --tls-client-ca makes mandatory"
    )


@pytest.mark.parametrize(
    ("leaf", "says"),
    [
        (
            "other name",
            "the server's certificate is not valid for this host (IP address mismatch, "
            "certificate is not valid for '127.0.0.1'.): connect by a name or address the "
            "certificate holds",
        ),
        ("expired", "the server's certificate has expired"),
    ],
)
async def test_a_server_certificate_for_another_name_or_expired_is_named(
    leaf: str, says: str, tmp_path: Path
) -> None:
    ca = trustme.CA()
    if leaf == "expired":
        past = datetime.now(UTC) - timedelta(days=30)
        issued = ca.issue_cert("127.0.0.1", not_before=past, not_after=past + timedelta(days=1))
    else:
        issued = ca.issue_cert("other.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    issued.configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0, ssl=context)
    target = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with Client(target, tls=tmp_path / "ca.pem") as client:
            with pytest.raises(RpcError) as caught:
                await client.say_hello("x")
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.status is StatusCode.UNAVAILABLE
    assert caught.value.message == f"cannot reach {target}: {says}"


async def test_a_tls_record_whose_bytes_read_as_a_large_header_block_is_still_a_handshake(
    settings: ServerSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """A ClientHello's random bytes can read, past where a preface would end, as the header
    of a HEADERS frame over the header-block budget: the server told that flood first (a
    GOAWAY ENHANCE_YOUR_CALM, a WARNING) and missed the handshake, 1 run in about 100. The
    first bytes a client sends are looked at for TLS before they are read as frames."""
    caplog.set_level(logging.INFO)
    huge_headers_frame = (1 << 20).to_bytes(3, "big") + b"\x01\x00\x00\x00\x00\x01"
    record = b"\x16\x03\x01" + b"\x00" * 21 + huge_headers_frame + b"\x00" * 64
    async with serve(settings=settings) as running:
        host, port = running.target.rsplit(":", 1)
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(record)
        await until(lambda: len(refusals(caplog)) == 1)
        writer.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
