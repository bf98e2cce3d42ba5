"""The SDK and CLI side: tokens on every call, never in plaintext to another host, TLS options."""

from __future__ import annotations

import asyncio
import sys
from asyncio.subprocess import PIPE
from dataclasses import replace
from pathlib import Path

import pytest

from muxs import (
    Client,
    ConfigError,
    RpcError,
    RunningServer,
    ServerSettings,
    StatusCode,
    TokenError,
    serve,
)
from muxs.cli import main
from tests.security.conftest import Pki


@pytest.mark.parametrize("target", ["192.0.2.1:50051", "muxs.example:443", "[2001:db8::1]:1"])
def test_a_token_is_never_sent_in_plaintext_to_another_host(target: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Client(target, token="secret-token")
    host = target.rpartition(":")[0].strip("[]")
    assert str(caught.value) == (
        f"token: refusing to send a token in plaintext to {host}: use tls "
        "(or allow_insecure_token=True)"
    )
    assert "secret-token" not in str(caught.value)


async def test_plaintext_tokens_to_another_host_need_explicit_consent() -> None:
    client = Client("192.0.2.1:50051", token_provider=lambda: "t", allow_insecure_token=True)
    client.close()
    assert client.target == "192.0.2.1:50051"


def test_token_and_token_provider_exclude_each_other() -> None:
    with pytest.raises(ConfigError) as caught:
        Client("127.0.0.1:1", token="a", token_provider=lambda: "b")
    assert str(caught.value) == "token: give token or token_provider, not both"


async def test_a_sync_or_async_provider_is_asked_before_every_call(
    token_server: RunningServer, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    asked: list[str] = []

    def sync_provider() -> str:
        asked.append("sync")
        return static_tokens[1]["greeter"]

    async def async_provider() -> str:
        asked.append("async")
        return static_tokens[1]["greeter"]

    for provider in (sync_provider, async_provider):
        async with Client(token_server.target, token_provider=provider) as client:
            await client.say_hello("a")
            await client.square(4)
    assert asked == ["sync", "sync", "async", "async"]


async def test_a_provider_failure_surfaces_as_raised_and_sends_nothing(
    token_server: RunningServer,
) -> None:
    async def failing() -> str:
        raise TokenError("the token endpoint is down")

    async with Client(token_server.target, token_provider=failing, timeout=10) as client:
        with pytest.raises(TokenError, match=r"^the token endpoint is down$"):
            await client.say_hello("a")


async def test_every_streaming_call_carries_the_token(
    token_server: RunningServer, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    async with Client(token_server.target, token=static_tokens[1]["greeter"]) as client:
        replies = [reply.index async for reply in client.lots_of_replies("s", 2)]
        greeting = await client.lots_of_greetings(["a", "b"])
        bidi = [reply.message async for reply in client.bidi_hello(["c"])]
    assert (replies, greeting.message, bidi) == ([1, 2], "Hello, a and b!", ["Hello, c!"])


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_cli_commands_take_a_token_from_the_flag_or_the_environment(
    token_server: RunningServer,
    static_tokens: tuple[Path, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = ["--target", token_server.target]
    assert await cli("hello", "flag", *target, "--token", static_tokens[1]["greeter"]) == 0
    monkeypatch.setenv("MUXS_TOKEN", static_tokens[1]["greeter"])
    assert await cli("hello", "env", *target) == 0
    monkeypatch.setenv("MUXS_TOKEN", static_tokens[1]["reader"])
    assert await cli("hello", "scope", *target) == 1
    monkeypatch.delenv("MUXS_TOKEN")
    assert await cli("hello", "none", *target) == 1
    captured = capsys.readouterr()
    assert captured.out == "Hello, flag!\nHello, env!\n"
    assert captured.err == (
        "muxs hello: PERMISSION_DENIED: this call needs the 'greeter' scope\n"
        "muxs hello: UNAUTHENTICATED: send the metadata 'authorization: Bearer <token>'\n"
    )


async def test_cli_commands_speak_tls_and_mutual_tls(settings: ServerSettings, pki: Pki) -> None:
    # In a process of its own: the CLI's loop ends right after the call, before the TLS
    # close_notify exchange, which a test process would report as an unclosed transport.
    mutual = replace(settings, tls_cert=pki.cert, tls_key=pki.key, tls_client_ca=pki.client_ca)
    async with serve(settings=mutual) as running:
        tls = ["--target", running.target, "--ca", str(pki.ca), "--timeout", "10"]
        client_cert = ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
        served = await cli_process("square", "9", *tls, *client_cert)
        refused = await cli_process("square", "9", *tls)
    assert served == (0, "3.0\n", "")
    assert refused[:2] == (1, "")
    assert refused[2].startswith(f"muxs square: UNAVAILABLE: cannot reach {running.target}")


async def cli_process(*argv: str) -> tuple[int | None, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "muxs", *argv, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_cli_refuses_unusable_tls_files_and_plaintext_tokens_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("hello", "x", "--ca", str(tmp_path / "missing.pem")) == 2
    assert await cli("hello", "x", "--target", "192.0.2.1:50051", "--token", "t") == 2
    assert capsys.readouterr().err.splitlines() == [
        f"muxs hello: ca: cannot read {tmp_path}/missing.pem: No such file or directory",
        "muxs hello: token: refusing to send a token in plaintext to 192.0.2.1: use tls "
        "(or allow_insecure_token=True)",
    ]


async def test_a_token_reaches_the_server_over_tls(
    settings: ServerSettings, pki: Pki, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    secure = replace(settings, tls_cert=pki.cert, tls_key=pki.key, auth_tokens=static_tokens[0])
    async with (
        serve(settings=secure) as running,
        Client(running.target, tls=pki.ca, token=static_tokens[1]["greeter"]) as client,
    ):
        assert (await client.say_hello("tls")).message == "Hello, tls!"
        with pytest.raises(RpcError) as caught:
            await client.read("x")
    assert caught.value.status == StatusCode.PERMISSION_DENIED
