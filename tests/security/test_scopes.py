"""Per-method scopes, public services, and the caller's identity as handlers see it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler
from grpclib.health.service import Health
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.server import Server, Stream

from muxs import Client, ConfigError, RpcError, RunningServer, ServerSettings, StatusCode
from muxs.api import GreeterStub, HelloReply, HelloRequest
from muxs.auth import current_identity, required_scope
from muxs.calls import Caller
from muxs.server.hooks import CallHooks
from muxs.server.serving import bind, build_services
from muxs.server.storage import LocalRoot
from muxs.server.verification import authenticator as auth
from tests.access import access_records

MUXS_METHODS = {
    "/muxs.Greeter/SayHello": "greeter",
    "/muxs.Greeter/Square": "greeter",
    "/muxs.Greeter/LotsOfReplies": "greeter",
    "/muxs.Greeter/LotsOfGreetings": "greeter",
    "/muxs.Greeter/BidiHello": "greeter",
    "/muxs.FileController/Read": "files:read",
    "/muxs.FileController/ReadStream": "files:read",
    "/muxs.FileController/List": "files:read",
    "/muxs.FileController/Stat": "files:read",
    "/muxs.FileController/Write": "files:write",
    "/muxs.FileController/WriteStream": "files:write",
    "/muxs.FileController/Delete": "files:write",
}


def test_every_muxs_method_needs_its_scope(settings: ServerSettings, storage: LocalRoot) -> None:
    served = {
        name for service in build_services(settings, storage) for name in service.__mapping__()
    }
    assert served == set(MUXS_METHODS)
    assert {name: required_scope(name) for name in served} == MUXS_METHODS


@pytest.mark.parametrize(
    "method",
    [
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ],
)
def test_health_and_reflection_are_public(method: str) -> None:
    assert required_scope(method) is None


class Whoami:
    """A service outside muxs's scope table that answers with the caller's identity."""

    def __mapping__(self) -> Mapping[str, Handler]:
        return {
            "/test.Whoami/Ask": Handler(
                self.ask, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            ),
            "/muxs.Greeter/SayHello": Handler(
                self.ask, Cardinality.UNARY_UNARY, HelloRequest, HelloReply
            ),
        }

    async def ask(self, stream: Stream[HelloRequest, HelloReply]) -> None:
        await stream.recv_message()
        identity = current_identity()
        assert identity is not None
        scopes = " ".join(sorted(identity.scopes))
        await stream.send_message(HelloReply(message=f"{identity.subject} [{scopes}]"))


@asynccontextmanager
async def channel_to(settings: ServerSettings, *services: Any) -> AsyncIterator[Channel]:
    """A real server on 127.0.0.1 with muxs's auth and ``services``, and a channel to it."""
    hooks = CallHooks(authenticator=auth.Authenticator.from_settings(settings))
    server = Server(hooks.wrap(services))
    sock = bind("127.0.0.1", 0)
    await server.start(sock=sock)
    channel = Channel("127.0.0.1", sock.getsockname()[1])
    try:
        yield channel
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def auth_settings(settings: ServerSettings, static_tokens: tuple[Path, dict[str, str]]) -> Any:
    return replace(settings, auth_tokens=static_tokens[0])


async def test_health_answers_without_a_token_when_auth_is_on(
    auth_settings: ServerSettings,
) -> None:
    async with channel_to(auth_settings, Health()) as channel:
        reply = await HealthStub(channel).Check(HealthCheckRequest())
    assert reply.status == HealthCheckResponse.SERVING


async def test_handlers_read_the_callers_identity(
    auth_settings: ServerSettings, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    metadata = {"authorization": f"Bearer {static_tokens[1]['all']}"}
    async with channel_to(auth_settings, Whoami()) as channel:
        reply = await GreeterStub(channel).say_hello(HelloRequest(), metadata=metadata)
    assert reply.message == "all [files:read greeter]"


async def ask_whoami(channel: Channel, token: str | None = None) -> str:
    metadata = {"authorization": f"Bearer {token}"} if token else None
    caller = Caller(channel, "whoami", None)
    reply = await caller.unary_unary("/test.Whoami/Ask", HelloRequest(), HelloReply, None, metadata)
    return reply.message


async def test_the_token_subject_is_in_the_access_log(
    token_server: RunningServer, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    with access_records() as logs:
        async with Client(token_server.target, token=static_tokens[1]["greeter"]) as client:
            await client.say_hello("you")
        hello = await logs.finished("/muxs.Greeter/SayHello")
    assert hello["subject"] == "greeter"
    assert " subject=greeter status=OK " in logs.records[0].getMessage()


async def test_a_method_without_a_declared_scope_is_refused_when_auth_is_on(
    auth_settings: ServerSettings, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    async with channel_to(auth_settings, Whoami()) as channel:
        with pytest.raises(RpcError) as caught:
            await ask_whoami(channel, static_tokens[1]["all"])
    assert caught.value.status == StatusCode.PERMISSION_DENIED
    assert caught.value.message == "no scope grants this method"


async def test_without_auth_every_method_is_open_and_the_identity_is_anonymous(
    settings: ServerSettings,
) -> None:
    async with channel_to(settings, Whoami()) as channel:
        assert await ask_whoami(channel) == "None []"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_auth_over_plaintext_on_loopback_is_allowed(host: str) -> None:
    assert not ServerSettings(host=host, auth_tokens=Path("t.toml")).plaintext_remote_auth


def test_auth_on_any_address_is_allowed_with_tls() -> None:
    settings = ServerSettings(
        host="0.0.0.0", auth_tokens=Path("t.toml"), tls_cert=Path("c"), tls_key=Path("k")
    )
    assert not settings.plaintext_remote_auth


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "muxs.example"])
def test_auth_over_plaintext_on_a_non_loopback_address_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ServerSettings(host=host, auth_tokens=Path("tokens.toml"))
    assert str(caught.value) == (
        f"host: {host} is not a loopback address: bearer tokens would cross the network in "
        "plaintext; give tls_cert and tls_key (or allow_insecure_auth)"
    )


def test_allow_insecure_auth_starts_with_a_warning(
    static_tokens: tuple[Path, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServerSettings(
        host="0.0.0.0", auth_tokens=static_tokens[0], allow_insecure_auth=True
    )
    with caplog.at_level(logging.WARNING, logger="muxs.server.verification.authenticator"):
        assert auth.Authenticator.from_settings(settings).enabled
    assert [record.getMessage() for record in caplog.records] == [
        "auth without TLS on 0.0.0.0 (allow_insecure_auth): bearer tokens cross the network "
        "in plaintext"
    ]
