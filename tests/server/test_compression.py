"""Compressed requests (gRPC's compression spec), seen from the wire (a raw HTTP/2 client)."""

from __future__ import annotations

import gzip
import os
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from muxs import RunningServer, ServerSettings, StatusCode, serve
from muxs.api import Chunk, Content, Files, HelloRequest
from muxs.compression import ACCEPT_ENCODING, MAX_GZIP_MEMBERS
from tests.rawh2 import RawConnection, framed, grpc_frame, request_headers

LIMIT = 64 * 1024
SAY_HELLO = "/muxs.Greeter/SayHello"
LOTS_OF_GREETINGS = "/muxs.Greeter/LotsOfGreetings"
READ = "/muxs.FileController/Read"
READ_STREAM = "/muxs.FileController/ReadStream"
COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
}
DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
}


@pytest.fixture
def settings(root_dir: Path) -> ServerSettings:
    return ServerSettings(host="127.0.0.1", port=0, root=root_dir, max_message_bytes=LIMIT)


async def raw(server: RunningServer) -> RawConnection:
    return await RawConnection.open(server.host, server.port)


def compressed(encoding: str, body: bytes) -> bytes:
    return grpc_frame(COMPRESS[encoding](body), compressed=True)


@pytest.mark.parametrize("encoding", COMPRESS)
async def test_a_compressed_request_is_inflated(live_server: RunningServer, encoding: str) -> None:
    async with await raw(live_server) as conn:
        body = compressed(encoding, bytes(HelloRequest(name="zip")))
        reply = await conn.call(SAY_HELLO, body, grpc_encoding=encoding)
        assert reply.grpc_status == StatusCode.OK.value
        assert reply.messages() == [bytes(HelloRequest(name="Hello, zip!"))]
        assert reply.headers["grpc-accept-encoding"] == ACCEPT_ENCODING


@pytest.mark.parametrize("encoding", COMPRESS)
async def test_a_stream_mixes_compressed_and_plain_messages(
    live_server: RunningServer, encoding: str
) -> None:
    names = [f"n{i}" for i in range(4)]
    frames = [
        (
            compressed(encoding, bytes(HelloRequest(name=name)))
            if i % 2
            else grpc_frame(bytes(HelloRequest(name=name)))
        )
        for i, name in enumerate(names)
    ]
    async with await raw(live_server) as conn:
        reply = await conn.call(LOTS_OF_GREETINGS, b"".join(frames), grpc_encoding=encoding)
        assert reply.grpc_status == StatusCode.OK.value
        assert reply.messages() == [bytes(HelloRequest(name="Hello, n0, n1, n2 and n3!"))]


async def test_a_message_inflating_to_the_limit_is_served(live_server: RunningServer) -> None:
    name = "a" * (LIMIT - 4)  # field tag, 3-byte length, the name: LIMIT bytes
    body = bytes(HelloRequest(name=name))
    assert len(body) == LIMIT
    async with await raw(live_server) as conn:
        reply = await conn.call(SAY_HELLO, compressed("gzip", body), grpc_encoding="gzip")
        assert reply.grpc_status == StatusCode.OK.value


@pytest.mark.parametrize("encoding", COMPRESS)
async def test_a_message_inflating_past_the_limit_is_resource_exhausted(
    live_server: RunningServer, encoding: str
) -> None:
    body = bytes(HelloRequest(name="a" * (LIMIT - 3)))
    assert len(body) == LIMIT + 1
    async with await raw(live_server) as conn:
        reply = await conn.call(SAY_HELLO, compressed(encoding, body), grpc_encoding=encoding)
        assert reply.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
        assert f"more than {LIMIT} bytes" in reply.grpc_message


async def test_a_gzip_bomb_is_refused_with_memory_flat(live_server: RunningServer) -> None:
    """A message under the limit that inflates to a thousand times it (deflate's most):
    refused once the output passes the limit, the server never holding much more than the
    limit (traced in this process, which runs the server)."""
    inflated = 1000 * LIMIT
    bomb = gzip.compress(bytes(inflated), compresslevel=9)
    assert len(bomb) < LIMIT
    tracemalloc.start()
    try:
        async with await raw(live_server) as conn:
            reply = await conn.call(
                SAY_HELLO, grpc_frame(bomb, compressed=True), grpc_encoding="gzip"
            )
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
    assert peak < 16 * LIMIT < inflated // 50


def gzip_members(*parts: bytes) -> bytes:
    """``parts`` gzipped each as a member of its own, one after the other (RFC 1952)."""
    return b"".join(gzip.compress(part) for part in parts)


async def test_a_request_of_several_gzip_members_is_inflated(live_server: RunningServer) -> None:
    body = bytes(HelloRequest(name="two members"))
    data = gzip_members(body[:5], body[5:])
    assert gzip.decompress(data) == body  # as grpc-go and Python's gzip read it
    async with await raw(live_server) as conn:
        reply = await conn.call(SAY_HELLO, grpc_frame(data, compressed=True), grpc_encoding="gzip")
        assert reply.grpc_status == StatusCode.OK.value
        assert reply.messages() == [bytes(HelloRequest(name="Hello, two members!"))]


@pytest.mark.parametrize("extra", [0, 1], ids=["to the limit", "past it"])
async def test_the_limit_is_on_all_the_members_together(
    live_server: RunningServer, extra: int
) -> None:
    body = bytes(HelloRequest(name="a" * (LIMIT - 4 + extra)))
    half = len(body) // 2
    data = gzip_members(body[:half], body[half:])
    async with await raw(live_server) as conn:
        reply = await conn.call(SAY_HELLO, grpc_frame(data, compressed=True), grpc_encoding="gzip")
    if extra:
        assert reply.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
        assert reply.grpc_message == (
            f"the message inflates to more than {LIMIT} bytes, this server's limit"
        )
    else:
        assert reply.grpc_status == StatusCode.OK.value


async def test_a_gzip_bomb_in_members_is_refused_as_one_in_one_member(
    live_server: RunningServer,
) -> None:
    bomb = gzip.compress(bytes(20 * LIMIT))
    member = gzip.compress(bytes(2 * LIMIT))
    async with await raw(live_server) as conn:
        replies = [
            await conn.call(SAY_HELLO, grpc_frame(data, compressed=True), grpc_encoding="gzip")
            for data in (bomb, member * 10)
        ]
    assert [(reply.grpc_status, reply.grpc_message) for reply in replies] == [
        (
            StatusCode.RESOURCE_EXHAUSTED.value,
            f"the message inflates to more than {LIMIT} bytes, this server's limit",
        )
    ] * 2


async def test_more_gzip_members_than_the_most_is_resource_exhausted(
    live_server: RunningServer,
) -> None:
    empty = gzip.compress(b"")
    body = bytes(HelloRequest(name="x"))
    async with await raw(live_server) as conn:
        data = empty * (MAX_GZIP_MEMBERS - 1) + gzip.compress(body)
        reply = await conn.call(SAY_HELLO, grpc_frame(data, compressed=True), grpc_encoding="gzip")
        assert reply.grpc_status == StatusCode.OK.value
        data = empty * MAX_GZIP_MEMBERS + gzip.compress(body)
        reply = await conn.call(SAY_HELLO, grpc_frame(data, compressed=True), grpc_encoding="gzip")
        assert reply.grpc_status == StatusCode.RESOURCE_EXHAUSTED.value
        assert reply.grpc_message == (
            f"the message has more than {MAX_GZIP_MEMBERS} gzip members, this server's limit"
        )


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [
        (grpc_frame(b"\x1f\x8b\x08", compressed=True), "gzip", StatusCode.INTERNAL),
        (grpc_frame(b"not deflate", compressed=True), "deflate", StatusCode.INTERNAL),
        (grpc_frame(zlib.compress(b"x"), compressed=True), "gzip", StatusCode.INTERNAL),
        (
            grpc_frame(gzip.compress(b"x") + b"trailing", compressed=True),
            "gzip",
            StatusCode.INTERNAL,
        ),
        (
            grpc_frame(gzip_members(b"x", b"y") + bytes(3), compressed=True),
            "gzip",
            StatusCode.INTERNAL,
        ),
        (grpc_frame(zlib.compress(b"x") * 2, compressed=True), "deflate", StatusCode.INTERNAL),
        (grpc_frame(gzip.compress(b"x"), compressed=True), "identity", StatusCode.INTERNAL),
    ],
    ids=[
        "truncated gzip",
        "garbage deflate",
        "zlib as gzip",
        "trailing bytes",
        "zeros after the last member",
        "two deflate streams",
        "identity",
    ],
)
async def test_a_bad_compressed_message_is_internal(
    live_server: RunningServer, body: bytes, encoding: str, status: StatusCode
) -> None:
    async with await raw(live_server) as conn:
        reply = await conn.call(SAY_HELLO, body, grpc_encoding=encoding)
        assert reply.grpc_status == status.value
        reply = await conn.call(SAY_HELLO, compressed("gzip", b""), grpc_encoding="gzip")
        assert reply.grpc_status == StatusCode.OK.value


async def test_an_unsupported_encoding_is_unimplemented_with_the_accepted_ones(
    live_server: RunningServer,
) -> None:
    async with await raw(live_server) as conn:
        reply = await conn.call(SAY_HELLO, grpc_frame(b"\x00", compressed=True), grpc_encoding="br")
        assert reply.grpc_status == StatusCode.UNIMPLEMENTED.value
        assert reply.grpc_message == (
            f"grpc-encoding 'br' is not supported; use one of {ACCEPT_ENCODING} "
            "(grpc-accept-encoding)"
        )
        assert reply.headers["grpc-accept-encoding"] == ACCEPT_ENCODING


async def test_an_unsupported_encoding_of_uncompressed_messages_is_served(
    live_server: RunningServer,
) -> None:
    async with await raw(live_server) as conn:
        body = grpc_frame(bytes(HelloRequest(name="plain")))
        reply = await conn.call(SAY_HELLO, body, grpc_encoding="br")
        assert reply.grpc_status == StatusCode.OK.value


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (SAY_HELLO, {}),
        ("/muxs.Greeter/NoSuchMethod", {}),
        (SAY_HELLO, {"grpc_timeout": "nonsense"}),
    ],
    ids=["served", "unknown method", "refused request headers"],
)
async def test_every_response_advertises_the_accepted_encodings(
    live_server: RunningServer, path: str, headers: dict[str, str]
) -> None:
    async with await raw(live_server) as conn:
        stream = conn.start(request_headers(path, **headers))
        await conn.send(stream, grpc_frame(bytes(HelloRequest(name="x"))), end=True)
        reply = await conn.reply(stream)
        assert reply.headers["grpc-accept-encoding"] == ACCEPT_ENCODING


# --- replies -------------------------------------------------------------------------------


@pytest.fixture
async def compressing(
    settings: ServerSettings, request: pytest.FixtureRequest
) -> AsyncIterator[RunningServer]:
    async with serve(settings=replace(settings, compression=request.param)) as running:
        yield running


@pytest.mark.parametrize("compressing", ["gzip", "deflate"], indirect=True)
async def test_replies_are_compressed_when_configured_and_accepted(
    compressing: RunningServer,
) -> None:
    encoding = compressing.settings.compression
    text = "muxs " * 1000
    (compressing.root / "big.txt").write_text(text)
    async with await raw(compressing) as conn:
        body = grpc_frame(bytes(Files(filename="big.txt")))
        reply = await conn.call(READ, body, grpc_accept_encoding=f"identity,{encoding}")
        assert reply.grpc_status == StatusCode.OK.value
        assert reply.headers["grpc-encoding"] == encoding
        [(flag, message)] = framed(reply.data)
        assert flag
        assert len(message) < len(text) // 10
        assert Content().parse(DECOMPRESS[encoding](message)).text == text
        # Too small to gain: sent as it is.
        hello = grpc_frame(bytes(HelloRequest(name="x")))
        reply = await conn.call(SAY_HELLO, hello, grpc_accept_encoding=encoding)
        assert framed(reply.data) == [(False, bytes(HelloRequest(name="Hello, x!")))]


@pytest.mark.parametrize("compressing", ["gzip"], indirect=True)
@pytest.mark.parametrize("accepted", [None, "identity", "deflate"])
async def test_replies_are_plain_for_a_client_that_does_not_accept_the_encoding(
    compressing: RunningServer, accepted: str | None
) -> None:
    (compressing.root / "big.txt").write_text("muxs " * 1000)
    headers = {} if accepted is None else {"grpc_accept_encoding": accepted}
    async with await raw(compressing) as conn:
        reply = await conn.call(READ, grpc_frame(bytes(Files(filename="big.txt"))), **headers)
        assert reply.grpc_status == StatusCode.OK.value
        assert "grpc-encoding" not in reply.headers
        assert [flag for flag, _ in framed(reply.data)] == [False]


async def test_replies_are_plain_by_default(live_server: RunningServer) -> None:
    (live_server.root / "big.txt").write_text("muxs " * 1000)
    async with await raw(live_server) as conn:
        body = grpc_frame(bytes(Files(filename="big.txt")))
        reply = await conn.call(READ, body, grpc_accept_encoding="gzip,deflate")
        assert "grpc-encoding" not in reply.headers
        assert [flag for flag, _ in framed(reply.data)] == [False]


@pytest.mark.parametrize("compressing", ["gzip"], indirect=True)
async def test_an_incompressible_reply_is_sent_as_it_is(compressing: RunningServer) -> None:
    noise = os.urandom(8192)
    (compressing.root / "noise.bin").write_bytes(noise)
    async with await raw(compressing) as conn:
        body = grpc_frame(bytes(Files(filename="noise.bin")))
        reply = await conn.call(READ_STREAM, body, grpc_accept_encoding="gzip")
        assert reply.grpc_status == StatusCode.OK.value
        [(flag, message)] = framed(reply.data)
        assert not flag
        assert Chunk().parse(message).data == noise


@pytest.mark.parametrize(
    ("encoding", "named"), [(None, "no grpc-encoding"), ("identity", "grpc-encoding identity")]
)
async def test_a_message_flagged_compressed_without_a_compression_says_what_the_call_has(
    live_server: RunningServer, encoding: str | None, named: str
) -> None:
    headers = {} if encoding is None else {"grpc_encoding": encoding}
    async with await raw(live_server) as conn:
        body = grpc_frame(gzip.compress(b"x"), compressed=True)
        reply = await conn.call(SAY_HELLO, body, **headers)
    assert reply.grpc_status == StatusCode.INTERNAL.value
    assert reply.grpc_message == f"a message is flagged compressed but the call has {named}"


@pytest.mark.parametrize(
    ("data", "encoding", "message"),
    [
        (
            gzip_members(b"x", b"y") + b"junk",
            "gzip",
            "the message has 4 bytes after its last gzip member",
        ),
        (
            zlib.compress(b"x") * 2,
            "deflate",
            "the message has 9 bytes after its last deflate stream",
        ),
    ],
    ids=["gzip", "deflate"],
)
async def test_bytes_after_the_last_member_are_internal_and_say_so(
    live_server: RunningServer, data: bytes, encoding: str, message: str
) -> None:
    """grpc-go answers INTERNAL ("grpc: failed to decompress the received message") too, as
    gRPC's status codes say for a message that does not decompress (doc/statuscodes.md)."""
    async with await raw(live_server) as conn:
        reply = await conn.call(
            SAY_HELLO, grpc_frame(data, compressed=True), grpc_encoding=encoding
        )
    assert (reply.grpc_status, reply.grpc_message) == (StatusCode.INTERNAL.value, message)
