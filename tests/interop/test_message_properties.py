"""Property tests: every message type, any field values, through grpcio's codec and our server.

Field values come from each type's own metadata, so a message added to the proto is
covered without a change here: extreme floats (NaN, infinities, -0.0, subnormals),
empty and huge strings and bytes, every Unicode plane, integers at their bounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import betterproto2
import grpc
import hypothesis
import pytest
from hypothesis import strategies as st

import muxs_api.muxs
from muxs import RunningServer, ServerSettings
from muxs.server.codec import Codec
from muxs.server.services.greeter import greeting
from muxs.server.storage import TEMP_PREFIX

#: Every message type of the muxs proto.
MESSAGE_TYPES: list[type[betterproto2.Message]] = [
    cls
    for name in muxs_api.muxs.__all__
    for cls in (getattr(muxs_api.muxs, name),)
    if issubclass(cls, betterproto2.Message)
]
HUGE = 1_000_000


def huge(small: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``small`` values, sometimes repeated up to a megabyte long."""
    return st.one_of(small, st.builds(lambda v, n: v * n, small.filter(bool), st.integers(1, HUGE)))


TEXT = huge(st.text(st.characters(exclude_categories=["Cs"]), max_size=50)).filter(
    lambda s: len(s) <= HUGE
)
STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    betterproto2.TYPE_STRING: TEXT,
    betterproto2.TYPE_BYTES: huge(st.binary(max_size=50)).filter(lambda b: len(b) <= HUGE),
    betterproto2.TYPE_BOOL: st.booleans(),
    betterproto2.TYPE_UINT32: st.integers(0, 2**32 - 1),
    betterproto2.TYPE_UINT64: st.integers(0, 2**64 - 1),
    betterproto2.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    betterproto2.TYPE_FLOAT: st.floats(width=32),
    betterproto2.TYPE_DOUBLE: st.floats(),
}
FILENAME = st.lists(
    st.text(
        st.characters(exclude_categories=["Cs"], exclude_characters="/\0"), min_size=1, max_size=20
    ).filter(lambda p: p not in (".", "..") and not p.startswith(TEMP_PREFIX)),
    min_size=1,
    max_size=3,
).map("/".join)
PROPERTY_SETTINGS = hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.large_base_example,
        hypothesis.HealthCheck.data_too_large,
    ],
)


def fields_of(cls: type[betterproto2.Message]) -> dict[str, str]:
    """Field name -> proto type."""
    assert dataclasses.is_dataclass(cls)
    return {
        field.name: betterproto2.FieldMetadata.get(field).proto_type
        for field in dataclasses.fields(cls)
    }


def values(cls: type[betterproto2.Message]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({name: STRATEGIES[kind] for name, kind in fields_of(cls).items()})


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return bool(a == b)


def float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@PROPERTY_SETTINGS
@hypothesis.given(data=st.data())
def test_every_message_round_trips_through_grpcio(
    cls: type[betterproto2.Message], data: st.DataObject, pb: tuple[Any, Any]
) -> None:
    fields = data.draw(values(cls))
    pb_cls = getattr(pb[0], cls.__name__)
    ours = cls(**fields)
    theirs = pb_cls.FromString(bytes(ours))
    assert all(same(getattr(theirs, name), value) for name, value in fields.items())
    decoded = Codec().decode(pb_cls(**fields).SerializeToString(), cls)
    assert all(same(getattr(decoded, name), value) for name, value in fields.items())


@pytest.fixture
def settings(root_dir: Path) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, root=root_dir, max_stream_replies=50)


@pytest.fixture
def channel(live_server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(live_server.target) as channel:
        yield channel


@PROPERTY_SETTINGS
@hypothesis.given(name=TEXT, count=st.integers(0, 50))
async def test_greetings_of_any_name(
    channel: grpc.Channel, pb: tuple[Any, Any], name: str, count: int
) -> None:
    pb2, pb2_grpc = pb
    stub = pb2_grpc.GreeterStub(channel)
    reply = await asyncio.to_thread(stub.SayHello, pb2.HelloRequest(name=name))
    assert reply.message == f"Hello, {name}!"
    request = pb2.HelloRequest(name=name, count=count)
    replies = await asyncio.to_thread(lambda: list(stub.LotsOfReplies(request)))
    assert [(r.message, r.index) for r in replies] == [
        (f"Hello, {name}!", i) for i in range(1, (count or 10) + 1)
    ]


@PROPERTY_SETTINGS
@hypothesis.given(names=st.lists(TEXT.filter(lambda s: len(s) < 10_000), max_size=8))
async def test_streams_of_any_names(
    channel: grpc.Channel, pb: tuple[Any, Any], names: list[str]
) -> None:
    pb2, pb2_grpc = pb
    stub = pb2_grpc.GreeterStub(channel)
    requests = [pb2.HelloRequest(name=name) for name in names]
    reply = await asyncio.to_thread(stub.LotsOfGreetings, iter(requests))
    assert reply.message == greeting(names)
    replies = await asyncio.to_thread(lambda: list(stub.BidiHello(iter(requests))))
    assert [(r.message, r.index) for r in replies] == [
        (f"Hello, {name}!", i) for i, name in enumerate(names, 1)
    ]


@PROPERTY_SETTINGS
@hypothesis.given(value=st.floats(width=32))
async def test_square_of_any_float(
    channel: grpc.Channel, pb: tuple[Any, Any], value: float
) -> None:
    pb2, pb2_grpc = pb
    stub = pb2_grpc.GreeterStub(channel)
    call = asyncio.to_thread(stub.Square, pb2.Number(value=value))
    if math.isnan(value) or value < 0:
        with pytest.raises(grpc.RpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert (await call).value == float32(math.sqrt(value))


@PROPERTY_SETTINGS
@hypothesis.given(filename=FILENAME, text=TEXT)
async def test_any_text_written_reads_back(
    channel: grpc.Channel, pb: tuple[Any, Any], live_server: RunningServer, filename: str, text: str
) -> None:
    pb2, pb2_grpc = pb
    stub = pb2_grpc.FileControllerStub(channel)
    filename = f"{uuid.uuid4().hex}/{filename}"  # files of earlier examples stay out of the way
    status = await asyncio.to_thread(stub.Write, pb2.Files(filename=filename, text=text))
    assert status.code == 0
    assert (await asyncio.to_thread(stub.Read, pb2.Files(filename=filename))).text == text
    assert (live_server.root / filename).read_bytes() == text.encode()
