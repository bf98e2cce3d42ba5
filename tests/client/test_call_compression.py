"""A call's own ``compression=`` overrides the client's, as a raw HTTP/2 server sees it."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from muxs import Client, ConfigError, SyncClient
from muxs.call_compression import USE_CLIENT_DEFAULT
from tests.polling import until

NAME = "muxs " * 300  # compressible, over 1 KiB
AUTODETECT = 32 + zlib.MAX_WBITS  # zlib's wbits for gzip or deflate (zlib format)


@dataclass
class Request:
    """One call as the server received it."""

    headers: dict[str, str]
    data: bytes = b""

    def messages(self) -> list[tuple[bool, bytes]]:
        """Each request message's compressed flag and body."""
        out, pos = [], 0
        while pos < len(self.data):
            size = int.from_bytes(self.data[pos + 1 : pos + 5], "big")
            out.append((self.data[pos] == 1, self.data[pos + 5 : pos + 5 + size]))
            pos += 5 + size
        return out


@dataclass
class Recorder:
    """A raw HTTP/2 server that records every request and answers each call, once its
    request stream ends, with one empty message and status OK."""

    requests: list[Request] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        connection = h2.connection.H2Connection(config)
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        calls: dict[int, Request] = {}
        try:
            while data := await reader.read(65536):
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        calls[event.stream_id] = Request(dict(event.headers))  # type: ignore[arg-type]
                        self.requests.append(calls[event.stream_id])
                    elif isinstance(event, h2.events.DataReceived):
                        calls[event.stream_id].data += event.data
                        connection.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        _answer(connection, event.stream_id)
                writer.write(connection.data_to_send())
        finally:
            writer.close()


def _answer(connection: h2.connection.H2Connection, stream_id: int) -> None:
    connection.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
    connection.send_data(stream_id, b"\x00\x00\x00\x00\x00")
    connection.send_headers(stream_id, [("grpc-status", "0")], end_stream=True)


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, Recorder]]:
    """(the target of a ``Recorder``, the recorder)."""
    recording = Recorder()
    server = await asyncio.start_server(recording.handle, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}", recording
        server.close()


async def _ignore(replies: AsyncIterator[Any]) -> None:
    async for _ in replies:
        pass


def _calls(tmp_path: Path) -> dict[str, Callable[[Client, Any], Awaitable[object]]]:
    """Every call method of ``Client``, each sending a compressible request (file
    transfers included) with the ``compression`` given."""
    local = tmp_path / "local.txt"  # written by the test
    return {
        "say_hello": lambda c, compression: c.say_hello(NAME, compression=compression),
        "square": lambda c, compression: c.square(2, compression=compression),
        "check_health": lambda c, compression: c.check_health(NAME, compression=compression),
        "lots_of_replies": lambda c, compression: _ignore(
            c.lots_of_replies(NAME, compression=compression)
        ),
        "lots_of_greetings": lambda c, compression: c.lots_of_greetings(
            [NAME, NAME], compression=compression
        ),
        "bidi_hello": lambda c, compression: _ignore(
            c.bidi_hello([NAME, NAME], compression=compression)
        ),
        "read": lambda c, compression: c.read(NAME, compression=compression),
        "write": lambda c, compression: c.write("a.txt", NAME, compression=compression),
        "read_chunks": lambda c, compression: _ignore(c.read_chunks(NAME, compression=compression)),
        "write_chunks": lambda c, compression: c.write_chunks(
            "a.txt", [NAME.encode()], compression=compression
        ),
        "read_bytes": lambda c, compression: c.read_bytes(NAME, compression=compression),
        "write_bytes": lambda c, compression: c.write_bytes(
            "a.txt", NAME.encode(), compression=compression
        ),
        "upload": lambda c, compression: c.upload(local, "a.txt", compression=compression),
        "download": lambda c, compression: c.download(
            NAME, tmp_path / "copy.txt", compression=compression
        ),
        "list": lambda c, compression: _ignore(c.list(NAME, compression=compression)),
        "stat": lambda c, compression: c.stat(NAME, compression=compression),
        "delete": lambda c, compression: c.delete(NAME, compression=compression),
    }


METHODS = list(_calls(Path(".")))


def _check(request: Request, encoding: str | None, method: str = "say_hello") -> None:
    """``request`` says ``encoding`` (None: none), and its messages of 1 KiB or more (all
    but Square's) are compressed with it, the others not."""
    assert request.headers.get("grpc-encoding") == encoding
    assert request.headers["grpc-accept-encoding"] == "gzip,deflate,identity"
    sizes = []
    for compressed, body in request.messages():
        assert compressed == (encoding is not None and method != "square")
        sizes.append(len(zlib.decompress(body, AUTODETECT) if compressed else body))
    assert sizes
    assert all(size > 1024 for size in sizes) == (method != "square")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("client_compression", "call_compression"), [(None, "gzip"), ("gzip", None)]
)
async def test_a_calls_compression_overrides_the_clients_on_every_method(
    recorder: tuple[str, Recorder],
    tmp_path: Path,
    method: str,
    client_compression: str | None,
    call_compression: str | None,
) -> None:
    target, recording = recorder
    (tmp_path / "local.txt").write_text(NAME)
    async with Client(target, compression=client_compression, timeout=10) as client:
        await _calls(tmp_path)[method](client, call_compression)
    assert recording.requests
    for request in recording.requests:
        _check(request, call_compression, method)


@pytest.mark.parametrize(
    ("client_compression", "call_compression", "sent"),
    [
        (None, "deflate", "deflate"),
        ("gzip", "identity", None),
        ("gzip", USE_CLIENT_DEFAULT, "gzip"),
        ("deflate", "gzip", "gzip"),
        ("identity", USE_CLIENT_DEFAULT, None),
        (None, USE_CLIENT_DEFAULT, None),
    ],
)
async def test_a_call_without_its_own_compression_uses_the_clients(
    recorder: tuple[str, Recorder],
    client_compression: str | None,
    call_compression: Any,
    sent: str | None,
) -> None:
    target, recording = recorder
    async with Client(target, compression=client_compression, timeout=10) as client:
        await client.say_hello(NAME, compression=call_compression)
        await client.say_hello(NAME)
    first, second = recording.requests
    _check(first, sent)
    _check(second, None if client_compression == "identity" else client_compression)


async def test_the_sync_client_takes_a_calls_compression(
    recorder: tuple[str, Recorder],
) -> None:
    target, recording = recorder

    def calls() -> None:
        with SyncClient(target, compression="gzip", timeout=10) as client:
            client.say_hello(NAME, compression=None)
            client.lots_of_greetings([NAME], compression="deflate")
            list(client.bidi_hello([NAME], compression=None))

    await asyncio.to_thread(calls)
    await until(lambda: len(recording.requests) == 3)
    for request, sent in zip(recording.requests, [None, "deflate", None], strict=True):
        _check(request, sent)


async def test_an_unknown_call_compression_is_a_config_error_and_sends_nothing(
    recorder: tuple[str, Recorder],
) -> None:
    target, recording = recorder
    async with Client(target, timeout=10) as client:
        with pytest.raises(ConfigError, match="'br' is not gzip, deflate, identity or None"):
            await client.say_hello(NAME, compression="br")
        with pytest.raises(ConfigError, match="'br' is not gzip"):
            client.bidi_hello([NAME], compression="br")
        await client.say_hello("after")
    assert len(recording.requests) == 1
