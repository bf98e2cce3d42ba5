"""Static API tokens: a file of SHA-256 digests, `muxs token new`, and both sources at once."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from muxs import Client, ConfigError, RpcError, RunningServer, ServerSettings, StatusCode, serve
from muxs.api import GreeterStub, HelloRequest
from muxs.cli import main
from muxs.server.verification.static_tokens import StaticTokens, digest
from tests.security.conftest import AUDIENCE, ISSUER, SigningKeys, claims


async def test_a_valid_token_is_served_within_its_scopes(
    token_server: RunningServer, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    (token_server.root / "notes.txt").write_text("hi")
    tokens = static_tokens[1]
    async with Client(token_server.target, token=tokens["all"]) as client:
        assert (await client.say_hello("static")).message == "Hello, static!"
        assert (await client.read("notes.txt")).text == "hi"


@pytest.mark.parametrize(
    ("subject", "call", "scope"),
    [
        ("reader", ("say_hello", "x"), "greeter"),
        ("greeter", ("read", "notes.txt"), "files:read"),
        ("all", ("write", "notes.txt", "text"), "files:write"),
    ],
)
async def test_a_token_without_the_scope_is_permission_denied(
    token_server: RunningServer,
    static_tokens: tuple[Path, dict[str, str]],
    subject: str,
    call: tuple[str, ...],
    scope: str,
) -> None:
    async with Client(token_server.target, token=static_tokens[1][subject]) as client:
        with pytest.raises(RpcError) as caught:
            await getattr(client, call[0])(*call[1:])
    assert caught.value.status == StatusCode.PERMISSION_DENIED
    assert caught.value.message == f"this call needs the {scope!r} scope"
    assert not (token_server.root / "notes.txt").exists()


async def test_a_wrong_token_is_unauthenticated(
    token_server: RunningServer, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    wrong = static_tokens[1]["all"][:-1] + "x"
    async with Client(token_server.target, token=wrong) as client:
        with pytest.raises(RpcError) as caught:
            await client.say_hello("x")
    assert caught.value.status == StatusCode.UNAUTHENTICATED
    assert caught.value.message == "the token is not a known API token"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (["Basic dXNlcjpwYXNz"], "authorization must be 'Bearer <token>'"),
        (["Bearer "], "authorization must be 'Bearer <token>'"),
        (["Bearer a", "Bearer b"], "send one authorization metadata entry, not several"),
    ],
)
async def test_malformed_authorization_is_unauthenticated(
    token_server: RunningServer, authorization: list[str], message: str
) -> None:
    channel = Channel("127.0.0.1", token_server.port)
    try:
        with pytest.raises(GRPCError) as caught:
            await GreeterStub(channel).say_hello(
                HelloRequest(name="x"), metadata=[("authorization", a) for a in authorization]
            )
    finally:
        channel.close()
    assert caught.value.status == StatusCode.UNAUTHENTICATED
    assert caught.value.message == message


async def test_the_scheme_is_case_insensitive(
    token_server: RunningServer, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    channel = Channel("127.0.0.1", token_server.port)
    try:
        reply = await GreeterStub(channel).say_hello(
            HelloRequest(name="x"), metadata={"authorization": f"bearer {static_tokens[1]['all']}"}
        )
    finally:
        channel.close()
    assert reply.message == "Hello, x!"


async def test_static_tokens_and_jwts_work_side_by_side(
    settings: ServerSettings,
    static_tokens: tuple[Path, dict[str, str]],
    signing_keys: SigningKeys,
) -> None:
    both = replace(
        settings,
        auth_tokens=static_tokens[0],
        auth_jwks=signing_keys.jwks,
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
    )
    async with serve(settings=both) as running:
        for token in (static_tokens[1]["greeter"], signing_keys.sign(claims())):
            async with Client(running.target, token=token) as client:
                assert (await client.say_hello("both")).message == "Hello, both!"
        async with Client(running.target, token="muxs_not-a-token") as client:
            with pytest.raises(RpcError) as caught:
                await client.say_hello("both")
    assert caught.value.status == StatusCode.UNAUTHENTICATED


async def test_muxs_token_new_prints_a_token_and_an_entry_the_server_accepts(
    settings: ServerSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "new", "--subject", "ci bot", "--scopes", "greeter", "files:read"]) == 0
    out = capsys.readouterr().out
    token = out.splitlines()[0].removeprefix("token: ")
    entry = out[out.index("[[token]]") :]
    assert tomllib.loads(entry) == {
        "token": [
            {"sha256": digest(token), "subject": "ci bot", "scopes": ["greeter", "files:read"]}
        ]
    }
    assert token not in entry
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text(entry)
    async with (
        serve(settings=replace(settings, auth_tokens=tokens_file)) as running,
        Client(running.target, token=token) as client,
    ):
        assert (await client.say_hello("ci")).message == "Hello, ci!"


def test_each_new_token_is_different(capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert main(["token", "new", "--subject", "s", "--scopes", "greeter"]) == 0
    tokens = [line for line in capsys.readouterr().out.splitlines() if line.startswith("token:")]
    assert len(set(tokens)) == 2
    assert all(len(token) > 40 for token in tokens)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "cannot read {path}: No such file or directory"),
        ("[[token]\n", "{path} is not valid TOML"),
        ("", "{path} has no [[token]] entry"),
        ('colour = "red"\n', "{path}: unknown key(s) colour"),
        ('[[token]]\nsha256 = "abc"\nsubject = "s"\nscopes = []\n', "{path}: token 1: sha256 must"),
        (f'[[token]]\nsha256 = "{"0" * 64}"\nscopes = []\n', "{path}: token 1: subject must"),
        (
            f'[[token]]\nsha256 = "{"0" * 64}"\nsubject = "s"\nscopes = "greeter"\n',
            "{path}: token 1: scopes must be a list of strings",
        ),
        (
            f'[[token]]\nsha256 = "{"0" * 64}"\nsubject = "s"\nscopes = ["admin"]\n',
            "{path}: token 1: unknown scope(s) admin (known: greeter, files:read, files:write)",
        ),
        (
            f'[[token]]\nsha256 = "{"0" * 64}"\nsubject = "s"\nscopes = []\ntoken = "x"\n',
            "{path}: token 1: unknown key(s) token",
        ),
    ],
)
def test_an_unusable_tokens_file_is_a_config_error(
    tmp_path: Path, text: str | None, message: str
) -> None:
    path = tmp_path / "tokens.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        StaticTokens.load(path)
    assert caught.value.option == "auth_tokens"
    assert caught.value.problem.startswith(message.format(path=path))


def test_muxs_token_new_grants_a_hosted_services_own_scope(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "new", "--subject", "s", "--scopes", "orders:write", "greeter"]) == 0
    entry = capsys.readouterr().out.split("[[token]]")[1]
    assert tomllib.loads(entry)["scopes"] == ["orders:write", "greeter"]


@pytest.mark.parametrize("scope", ["", "has space", "-flag", "x" * 129, "new\nline"])
def test_muxs_token_new_refuses_what_cannot_be_a_scope(
    scope: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "new", "--subject", "s", "--scopes", scope])
    assert exited.value.code == 2
    assert "(see --help)" in capsys.readouterr().err
