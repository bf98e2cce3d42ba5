"""Values from a client or a token are escaped in log lines, text and JSON alike.

A token's subject, a file name, a header: whatever a client controls may hold a newline
(a forged line after it), an ANSI escape sequence (a terminal that obeys it) or an
invisible character. `muxs serve` escapes every log line in one place
(``muxs.cli._logging``): a record is one line, and nothing in it is a control character.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from muxs import Client, RpcError
from tests.processes import logged_muxs
from tests.security.conftest import AUDIENCE, ISSUER, SigningKeys, claims

FORGED = "\n2030-01-01 00:00:00,000 INFO muxs.access_log: method=/forged"
# A subject that ends a line, colours the terminal and hides text behind a bidi override.
SUBJECT = f"mallory{FORGED}\x1b[31m\u202eevil"
ESCAPED = r"mallory\n2030-01-01 00:00:00,000 INFO muxs.access_log: method=/forged\x1b[31m\u202eevil"


async def serve_and_call(tmp_path: Path, signing_keys: SigningKeys, log_format: str) -> str:
    """Run `muxs serve`, call it with tokens for SUBJECT (with and without the scope), and
    read a file under a hostile name; the server's stderr."""
    options = ["--log-level", "DEBUG", "--auth-jwks", str(signing_keys.jwks)]
    options += ["--log-format", log_format, "--auth-issuer", ISSUER, "--auth-audience", AUDIENCE]
    async with logged_muxs(tmp_path / "data", *options, "--error-style", "seed") as (target, log):
        token = signing_keys.sign(claims(sub=SUBJECT))
        async with Client(target, token=token, timeout=10) as client:
            await client.say_hello("you")
            await client.read(f"missing{FORGED}\x1b[2J.txt")  # the seed style logs its name
        no_scope = signing_keys.sign(claims(sub=SUBJECT, scope="files:read"))
        async with Client(target, token=no_scope, timeout=10) as client:
            with pytest.raises(RpcError):
                await client.say_hello("you")
    return "".join(log)


def assert_no_control_characters(log: str) -> None:
    assert not [char for char in log if not char.isprintable() and char != "\n"]


async def test_text_lines_escape_what_clients_and_tokens_send(
    tmp_path: Path, signing_keys: SigningKeys
) -> None:
    log = await serve_and_call(tmp_path, signing_keys, "text")
    assert_no_control_characters(log)
    for line in log.splitlines():  # every line is a record of its own: none forged
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", line), line
    assert "2030-01-01" not in log.replace(r"\n2030-01-01", "")
    assert f"subject={ESCAPED} status=OK" in log  # the access log
    assert f"refused /muxs.Greeter/SayHello to {ESCAPED}: no 'greeter' scope" in log  # auth
    assert r"\x1b[2J.txt" in log  # a warning naming the client's file


async def test_json_lines_escape_what_clients_and_tokens_send(
    tmp_path: Path, signing_keys: SigningKeys
) -> None:
    log = await serve_and_call(tmp_path, signing_keys, "json")
    assert_no_control_characters(log)
    records = [json.loads(line) for line in log.splitlines()]
    access = [r for r in records if r["logger"] == "muxs.access_log" and "subject" in r]
    assert [r["subject"] for r in access] == [ESCAPED, ESCAPED]
    assert all(ESCAPED in r["message"] for r in access)
    refusals = [r["message"] for r in records if "no 'greeter' scope" in r["message"]]
    assert refusals == [f"refused /muxs.Greeter/SayHello to {ESCAPED}: no 'greeter' scope"]
