"""muxs's own refusals carry ``google.rpc`` details where they help a program act: a path
rule names the field (BadRequest), a limit names its setting (QuotaFailure); the drain's
RetryInfo is checked in test_drain.py. Read through the SDK's ``RpcError.details``."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace

import pytest
from google.rpc.error_details_pb2 import BadRequest, QuotaFailure

from muxs import Client, RpcError, ServerSettings, StatusCode, serve


@pytest.mark.parametrize(
    ("filename", "status"),
    [
        ("", StatusCode.INVALID_ARGUMENT),
        ("/etc/passwd", StatusCode.INVALID_ARGUMENT),
        ("a\0b", StatusCode.INVALID_ARGUMENT),
        ("x" * 256, StatusCode.INVALID_ARGUMENT),
        (".muxs-tmp-x", StatusCode.INVALID_ARGUMENT),
        ("../x", StatusCode.PERMISSION_DENIED),
        ("a/../../x", StatusCode.PERMISSION_DENIED),
    ],
)
async def test_a_path_rule_violation_names_the_field(
    settings: ServerSettings, filename: str, status: StatusCode
) -> None:
    async with serve(settings=settings) as running, Client(running.target, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await client.read(filename)
    assert caught.value.status is status
    bad = caught.value.detail(BadRequest)
    assert bad is not None
    [violation] = bad.field_violations
    assert violation.field == "filename"
    assert violation.description == caught.value.message


@pytest.mark.parametrize(
    ("path", "status"),
    [("/etc", StatusCode.INVALID_ARGUMENT), ("../x", StatusCode.PERMISSION_DENIED)],
)
async def test_a_list_path_rule_violation_names_its_field_path(
    settings: ServerSettings, path: str, status: StatusCode
) -> None:
    async with serve(settings=settings) as running, Client(running.target, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            [entry async for entry in client.list(path)]
    assert caught.value.status is status
    bad = caught.value.detail(BadRequest)
    assert bad is not None
    assert [violation.field for violation in bad.field_violations] == ["path"]


async def test_a_refusal_that_is_no_rule_has_no_details(settings: ServerSettings) -> None:
    async with serve(settings=settings) as running, Client(running.target, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await client.read("missing.txt")
    assert caught.value.status is StatusCode.NOT_FOUND
    assert caught.value.details == ()


def over_limit(client: Client, what: str) -> Awaitable[object]:
    """A call past one of the server's limits."""
    if what == "write":
        return client.write("f.txt", "x" * 2048)
    if what == "file":
        return client.write_chunks("f.bin", [b"x" * 1000] * 3)
    if what == "greeting":
        return client.lots_of_greetings(["x" * 600, "y" * 600])
    return client.say_hello("x" * 2048)  # a request message over the wire limit


@pytest.mark.parametrize(
    ("what", "limit"),
    [
        ("write", "max_message_bytes"),
        ("file", "max_file_bytes"),
        ("greeting", "max_message_bytes"),
        ("wire", "max_message_bytes"),
    ],
)
async def test_resource_exhausted_names_the_limit(
    settings: ServerSettings, what: str, limit: str
) -> None:
    small = replace(settings, max_message_bytes=1024, max_file_bytes=1024)
    async with serve(settings=small) as running, Client(running.target, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await over_limit(client, what)
    error = caught.value
    assert error.status is StatusCode.RESOURCE_EXHAUSTED
    quota = error.detail(QuotaFailure)
    assert quota is not None
    [violation] = quota.violations
    assert violation.subject == limit
    assert violation.description == error.message
