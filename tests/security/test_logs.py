"""No token reaches a log line, even with `muxs serve --log-level DEBUG`."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from pathlib import Path

from muxs import Client, RpcError
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
    argv = ["serve", "--port", "0", "--root", str(tmp_path / "data"), "--log-level", "DEBUG"]
    argv += ["--auth-tokens", str(static_tokens[0]), "--auth-jwks", str(signing_keys.jwks)]
    argv += ["--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "muxs", *argv, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        head = b""
        while not (match := re.search(rb"muxs listening on (127\.0\.0\.1:\d+)", head)):
            line = await asyncio.wait_for(process.stderr.readline(), 30)
            assert line, head
            head += line
        outcomes = {}
        for name, token in sent.items():
            async with Client(match.group(1).decode(), token=token, timeout=10) as client:
                try:
                    await client.say_hello(name)
                    outcomes[name] = "OK"
                except RpcError as exc:
                    outcomes[name] = exc.status.name
        process.send_signal(signal.SIGTERM)
        log = (head + await asyncio.wait_for(process.stderr.read(), 30)).decode()
        assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
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
