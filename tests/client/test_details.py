"""``RpcError.details``: the server's ``google.rpc.Status`` details, typed, decoded only
when read (a client that never reads them never loads protobuf)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from google.protobuf.any_pb2 import Any as AnyMessage
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo, RetryInfo
from google.rpc.status_pb2 import Status

from muxs import Client, RpcError, StatusCode
from muxs.details import decode_details


async def test_the_sdk_reads_a_handlers_details_typed(echo_target: str) -> None:
    async with Client(echo_target, timeout=10) as client:
        with pytest.raises(RpcError) as caught:
            await client.square(-1)
    error = caught.value
    assert error.status is StatusCode.INVALID_ARGUMENT
    assert [type(d) for d in error.details] == [BadRequest, ErrorInfo]
    bad = error.detail(BadRequest)
    assert bad is not None
    assert bad.field_violations[0].field == "value"
    info = error.detail(ErrorInfo)
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "NEGATIVE",
        "muxs.test",
        {"value": "-1"},
    )
    assert error.detail(RetryInfo) is None


def test_a_detail_of_an_unknown_type_stays_an_any() -> None:
    packed = AnyMessage(type_url="type.googleapis.com/acme.Unknown", value=b"\x08\x01")
    status = Status(code=3, message="m", details=[packed])
    assert list(decode_details(status.SerializeToString())) == [packed]


def test_bytes_that_are_no_status_give_no_details() -> None:
    error = RpcError(StatusCode.INTERNAL, "m", details=b"\xff\xff\xff")
    assert error.details == ()


def test_details_load_protobuf_only_when_read() -> None:
    status = Status(code=3, details=[AnyMessage()])
    status.details[0].Pack(BadRequest())
    code = (
        "import sys, muxs\n"
        f"error = muxs.RpcError(muxs.StatusCode.INVALID_ARGUMENT, 'm', "
        f"details={status.SerializeToString()!r})\n"
        "before = 'google.protobuf' in sys.modules\n"
        "kinds = [type(d).__name__ for d in error.details]\n"
        "print(before, 'google.protobuf' in sys.modules, kinds)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False True ['BadRequest']"
