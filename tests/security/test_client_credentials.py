"""ClientCredentials against a real OAuth 2.0 token endpoint served here, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

from muxs import Client, ConfigError, ServerSettings, TokenError, serve
from muxs.auth import ClientCredentials
from tests.security.conftest import AUDIENCE, ISSUER, SigningKeys, claims


@dataclass
class TokenEndpoint:
    """A token endpoint: records each request, answers with ``answer(number)``."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[[int], tuple[int, dict[str, Any]]] = lambda n: (
        200,
        {"access_token": f"token-{n}", "token_type": "Bearer", "expires_in": 300},
    )


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    state = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            state.requests.append(
                {"authorization": self.headers["Authorization"], "form": dict(parse_qsl(body))}
            )
            status, answer = state.answer(len(state.requests))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read ``state.requests`` instead."""

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        state.url = f"http://127.0.0.1:{server.server_address[1]}/oauth/token"
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        try:
            yield state
        finally:
            server.shutdown()
            thread.join()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def test_the_first_call_fetches_a_token_with_the_client_credentials_grant(
    endpoint: TokenEndpoint,
) -> None:
    credentials = ClientCredentials(endpoint.url, "muxs-cli", "s3cret", ["greeter", "files:read"])
    assert await credentials() == "token-1"
    assert endpoint.requests == [
        {
            "authorization": basic("muxs-cli", "s3cret"),
            "form": {"grant_type": "client_credentials", "scope": "greeter files:read"},
        }
    ]


async def test_client_secret_post_sends_the_credentials_in_the_form(
    endpoint: TokenEndpoint,
) -> None:
    credentials = ClientCredentials(endpoint.url, "id", "s3cret", auth_method="client_secret_post")
    assert await credentials() == "token-1"
    assert endpoint.requests == [
        {
            "authorization": None,
            "form": {
                "grant_type": "client_credentials",
                "client_id": "id",
                "client_secret": "s3cret",
            },
        }
    ]


async def test_a_cached_token_is_reused_then_refreshed_before_it_expires(
    endpoint: TokenEndpoint,
) -> None:
    clock = Clock()
    credentials = ClientCredentials(endpoint.url, "id", "secret", refresh_margin=30, clock=clock)
    assert await credentials() == "token-1"
    clock.now += 269  # 300 s lifetime, refreshed 30 s early: still fresh
    assert await credentials() == "token-1"
    assert len(endpoint.requests) == 1
    clock.now += 1
    assert await credentials() == "token-2"
    assert await credentials() == "token-2"
    assert len(endpoint.requests) == 2


async def test_concurrent_calls_share_one_fetch(endpoint: TokenEndpoint) -> None:
    credentials = ClientCredentials(endpoint.url, "id", "secret")
    tokens = await asyncio.gather(*(credentials() for _ in range(5)))
    assert tokens == ["token-1"] * 5
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize(
    ("status", "answer", "message"),
    [
        (
            401,
            {"error": "invalid_client", "error_description": "unknown client"},
            "the token endpoint {url} refused the client-credentials grant: HTTP 401: "
            "invalid_client unknown client",
        ),
        (
            400,
            {"error": "invalid_scope"},
            "the token endpoint {url} refused the client-credentials grant: HTTP 400: "
            "invalid_scope",
        ),
        (
            200,
            {"token_type": "Bearer"},
            "the token endpoint {url} answered without an access_token",
        ),
        (
            200,
            {"access_token": "t", "token_type": "mac"},
            "the token endpoint {url} gave a 'mac' token, not Bearer",
        ),
        (
            200,
            {"access_token": "t", "token_type": "Bearer", "expires_in": -5},
            "the token endpoint {url} gave an invalid expires_in",
        ),
    ],
)
async def test_an_endpoint_error_is_a_clear_token_error(
    endpoint: TokenEndpoint, status: int, answer: dict[str, Any], message: str
) -> None:
    endpoint.answer = lambda n: (status, answer)
    credentials = ClientCredentials(endpoint.url, "id", "the-secret")
    with pytest.raises(TokenError) as caught:
        await credentials()
    assert str(caught.value) == message.format(url=endpoint.url)
    assert "the-secret" not in str(caught.value)


async def test_an_unreachable_endpoint_is_a_token_error() -> None:
    with socket.socket() as bound:  # bound, not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/token"
        credentials = ClientCredentials(url, "id", "secret", timeout=10)
        with pytest.raises(TokenError) as caught:
            await credentials()
    assert (
        str(caught.value)
        == f"cannot reach the token endpoint {url}: All connection attempts failed"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://auth.example/token", "refusing to send client credentials in plaintext to"),
        ("ftp://127.0.0.1/token", "'ftp://127.0.0.1/token' is not an http(s) URL"),
    ],
)
def test_an_unsafe_or_invalid_token_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ClientCredentials(url, "id", "secret")
    assert caught.value.option == "token_url"
    assert caught.value.problem.startswith(message)


async def test_the_sdk_calls_muxs_with_tokens_from_the_endpoint(
    endpoint: TokenEndpoint, settings: ServerSettings, signing_keys: SigningKeys
) -> None:
    endpoint.answer = lambda n: (
        200,
        {
            "access_token": signing_keys.sign(claims(sub="svc", scope="greeter")),
            "token_type": "Bearer",
            "expires_in": 300,
        },
    )
    jwt_settings = replace(
        settings, auth_jwks=signing_keys.jwks, auth_issuer=ISSUER, auth_audience=AUDIENCE
    )
    credentials = ClientCredentials(endpoint.url, "svc", "secret", ["greeter"])
    async with (
        serve(settings=jwt_settings) as running,
        Client(running.target, token_provider=credentials) as client,
    ):
        assert (await client.say_hello("a")).message == "Hello, a!"
        assert (await client.square(4)).value == 2
    assert len(endpoint.requests) == 1


async def test_an_endpoint_failure_during_a_call_is_raised_as_is(
    endpoint: TokenEndpoint, live_server: Any
) -> None:
    endpoint.answer = lambda n: (503, {})
    credentials = ClientCredentials(endpoint.url, "svc", "secret")
    async with Client(live_server.target, token_provider=credentials, timeout=10) as client:
        with pytest.raises(TokenError) as caught:
            await client.say_hello("a")
    assert str(caught.value) == (
        f"the token endpoint {endpoint.url} refused the client-credentials grant: HTTP 503"
    )
