"""A call's replies compressed as its interceptor (or handler) chooses
(``CallContext.set_compression``), seen from the wire (a raw HTTP/2 client)."""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from muxs import (
    CallContext,
    HostedService,
    RunningServer,
    ServerProceed,
    ServerSettings,
    StatusCode,
    serve,
)
from muxs.api import Content, Files, HelloRequest
from muxs.server.context import current
from muxs.server.reply_compression import ReplyCompression
from tests.installed.check_install import readme_block
from tests.rawh2 import RawConnection, Reply, framed, grpc_frame
from tests.server.orders import Order, OrderRequest, Orders

README = Path(__file__).parents[2] / "README.md"
READ = "/muxs.FileController/Read"
READ_STREAM = "/muxs.FileController/ReadStream"
SAY_HELLO = "/muxs.Greeter/SayHello"
TEXT = "muxs " * 1000
DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
}


class Choosing:
    """An interceptor that chooses ``compression`` for every call, keeping what each call's
    ``set_compression`` returned (or raised)."""

    def __init__(self, compression: str) -> None:
        self.compression = compression
        self.chosen: list[ReplyCompression | Exception] = []

    async def __call__(self, context: CallContext, proceed: ServerProceed) -> None:
        try:
            self.chosen.append(context.set_compression(self.compression))  # type: ignore[arg-type]
        except (RuntimeError, ValueError) as exc:
            self.chosen.append(exc)
        await proceed()


@asynccontextmanager
async def serving(
    settings: ServerSettings, choosing: Choosing, compression: str = "none"
) -> AsyncIterator[RunningServer]:
    settings = replace(settings, compression=compression)
    async with serve(settings=settings, interceptors=[choosing]) as running:
        (running.root / "big.txt").write_text(TEXT)
        yield running


async def call(server: RunningServer, path: str, request: bytes, **headers: str) -> Reply:
    """One call of ``path`` on a connection of its own (``request``: a message's bytes)."""
    async with await RawConnection.open(server.host, server.port) as conn:
        return await conn.call(path, grpc_frame(request), **headers)


async def read_big(server: RunningServer, **headers: str) -> tuple[dict[str, str], list[bool]]:
    """A Read of ``big.txt``: its response headers and its messages' compressed flags (each
    checked to decode to the file's text)."""
    reply = await call(server, READ, bytes(Files(filename="big.txt")), **headers)
    assert reply.grpc_status == StatusCode.OK.value
    flags = []
    for flag, message in framed(reply.data):
        if flag:
            message = DECOMPRESS[reply.headers["grpc-encoding"]](message)
        assert Content().parse(message).text == TEXT
        flags.append(flag)
    return reply.headers, flags


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_an_interceptor_compresses_a_calls_replies(
    settings: ServerSettings, encoding: str
) -> None:
    choosing = Choosing(encoding)
    async with serving(settings, choosing) as server:
        headers, flags = await read_big(server, grpc_accept_encoding="identity,deflate,gzip")
    assert headers["grpc-encoding"] == encoding
    assert flags == [True]
    assert choosing.chosen == [encoding]


@pytest.mark.parametrize("accepted", [None, "identity", "deflate"])
async def test_replies_are_plain_for_a_client_that_does_not_accept_the_chosen_encoding(
    settings: ServerSettings, accepted: str | None
) -> None:
    choosing = Choosing("gzip")
    headers = {} if accepted is None else {"grpc_accept_encoding": accepted}
    async with serving(settings, choosing) as server:
        response, flags = await read_big(server, **headers)
    assert "grpc-encoding" not in response
    assert flags == [False]
    assert choosing.chosen == ["identity"]


@pytest.mark.parametrize(("chosen", "flags"), [("identity", [False]), ("deflate", [True])])
async def test_a_call_overrides_the_servers_compression(
    settings: ServerSettings, chosen: str, flags: list[bool]
) -> None:
    choosing = Choosing(chosen)
    async with serving(settings, choosing, compression="gzip") as server:
        headers, sent = await read_big(server, grpc_accept_encoding="gzip,deflate")
    assert headers.get("grpc-encoding") == (None if chosen == "identity" else chosen)
    assert sent == flags


async def test_small_replies_of_a_compressing_call_go_plain(settings: ServerSettings) -> None:
    async with serving(settings, Choosing("gzip")) as server:
        request = bytes(HelloRequest(name="x"))
        reply = await call(server, SAY_HELLO, request, grpc_accept_encoding="gzip")
    assert reply.headers["grpc-encoding"] == "gzip"
    assert framed(reply.data) == [(False, bytes(HelloRequest(name="Hello, x!")))]


async def test_a_server_streams_replies_are_compressed(settings: ServerSettings) -> None:
    async with serving(settings, Choosing("gzip")) as server:
        request = bytes(Files(filename="big.txt"))
        reply = await call(server, READ_STREAM, request, grpc_accept_encoding="gzip")
    assert reply.grpc_status == StatusCode.OK.value
    [(flag, message)] = framed(reply.data)
    assert flag
    assert TEXT.encode() in gzip.decompress(message)


async def test_each_call_chooses_for_itself(settings: ServerSettings) -> None:
    """Calls on one connection: only the one whose interceptor chose is compressed."""

    async def reads_gzipped(context: CallContext, proceed: ServerProceed) -> None:
        if context.metadata.get("x-compress") == "yes":
            context.set_compression("gzip")
        await proceed()

    async with serve(settings=settings, interceptors=[reads_gzipped]) as server:
        (server.root / "big.txt").write_text(TEXT)
        async with await RawConnection.open(server.host, server.port) as conn:
            body = grpc_frame(bytes(Files(filename="big.txt")))
            flags = []
            for compress in ("no", "yes", "no"):
                reply = await conn.call(
                    READ, body, grpc_accept_encoding="gzip", x_compress=compress
                )
                flags += [flag for flag, _ in framed(reply.data)]
    assert flags == [False, True, False]


async def test_choosing_after_the_response_headers_is_a_runtime_error(
    settings: ServerSettings,
) -> None:
    errors: list[str] = []

    async def too_late(context: CallContext, proceed: ServerProceed) -> None:
        await context.send_headers()
        with pytest.raises(RuntimeError) as raised:
            context.set_compression("gzip")
        errors.append(str(raised.value))
        await proceed()

    async with serve(settings=settings, interceptors=[too_late]) as server:
        request = bytes(HelloRequest(name="x"))
        reply = await call(server, SAY_HELLO, request, grpc_accept_encoding="gzip")
    assert reply.grpc_status == StatusCode.OK.value
    assert "grpc-encoding" not in reply.headers
    assert errors == [
        "set_compression() comes too late: the response headers are sent; "
        "choose before the first reply (or send_headers())"
    ]


async def test_an_unknown_compression_is_a_value_error(settings: ServerSettings) -> None:
    choosing = Choosing("br")
    async with serving(settings, choosing) as server:
        headers, flags = await read_big(server, grpc_accept_encoding="br,gzip")
    [error] = choosing.chosen
    assert isinstance(error, ValueError)
    assert str(error) == "'br' is not a reply compression: use gzip, deflate or identity"
    assert "grpc-encoding" not in headers
    assert flags == [False]


class GzippedOrders(Orders):
    """A user's handler that chooses its replies' compression itself."""

    async def get(self, message: OrderRequest) -> Order:
        current().set_compression("gzip")
        return Order(id=message.id, item=TEXT)


async def test_a_handler_compresses_its_replies(settings: ServerSettings) -> None:
    async with serve(settings=settings, services=[HostedService(GzippedOrders())]) as server:
        request = bytes(OrderRequest(id="1"))
        reply = await call(server, "/orders.Orders/Get", request, grpc_accept_encoding="gzip")
    assert reply.grpc_status == StatusCode.OK.value
    assert reply.headers["grpc-encoding"] == "gzip"
    [(flag, message)] = framed(reply.data)
    assert flag
    assert Order().parse(gzip.decompress(message)).item == TEXT


def test_the_readme_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = readme_block(README.read_text(), "Compressing replies per call", "python")
    monkeypatch.setattr(sys, "argv", ["example.py"])
    exec(compile(source, "README.md", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == "Read replies with gzip\n5000\n"
