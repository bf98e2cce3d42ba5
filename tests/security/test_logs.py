"""No token reaches a log line, even with `muxs serve --log-level DEBUG`."""

from __future__ import annotations

import time
from pathlib import Path

from muxs import Client, RpcError
from tests.processes import logged_muxs
from tests.security.conftest import AUDIENCE, ISSUER, SigningKeys, claims


async def test_tokens_never_reach_the_servers_logs(
    tmp_path: Path, signing_keys: SigningKeys, static_tokens: tuple[Path, dict[str, str]]
) -> None:
    tokens = static_tokens[1]
    now = int(time.time())
    sent = {
        "static": tokens["greeter"],
        "static-without-scope": tokens["reader"],
        "near-miss": tokens["greeter"][:-2] + "zz",
        "jwt": signing_keys.sign(claims()),
        "jwt-expired": signing_keys.sign(claims(iat=now - 900, exp=now - 600)),
        "jwt-without-scope": signing_keys.sign(claims(scope="files:read")),
    }
    options = ["--log-level", "DEBUG", "--auth-tokens", str(static_tokens[0])]
    options += ["--auth-jwks", str(signing_keys.jwks)]
    options += ["--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    async with logged_muxs(tmp_path / "data", *options) as (target, lines):
        outcomes = {}
        for name, token in sent.items():
            async with Client(target, token=token, timeout=10) as client:
                try:
                    await client.say_hello(name)
                    outcomes[name] = "OK"
                except RpcError as exc:
                    outcomes[name] = exc.status.name
    log = "".join(lines)
    assert outcomes == {
        "static": "OK",
        "static-without-scope": "PERMISSION_DENIED",
        "near-miss": "UNAUTHENTICATED",
        "jwt": "OK",
        "jwt-expired": "UNAUTHENTICATED",
        "jwt-without-scope": "PERMISSION_DENIED",
    }
    assert "DEBUG" in log
    assert "refused /muxs.Greeter/SayHello: the token has expired" in log
    assert "refused /muxs.Greeter/SayHello to reader: no 'greeter' scope" in log
    for token in sent.values():
        for part in token.split("."):  # a JWT's header, payload and signature alike
            assert part not in log
