"""Listeners on 127.0.0.1 that misbehave as servers do: never answer, hang up, answer in TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# What an OpenSSL server sends a client whose first bytes are not TLS: a fatal alert
# record (21), TLS 1.0 framing, protocol_version (70).
TLS_ALERT = bytes([21, 3, 1, 0, 2, 2, 70])


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept and read everything; never write a byte."""
    while await reader.read(65536):
        pass


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close the connection as soon as it is accepted."""
    writer.close()


async def answer_in_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer whatever comes with a TLS alert, then close (as a TLS server does to a
    client that speaks plaintext)."""
    await reader.read(65536)
    writer.write(TLS_ALERT)
    await writer.drain()
    writer.close()


@asynccontextmanager
async def listening(behaviour: Behaviour) -> AsyncIterator[str]:
    """A listener on an ephemeral port of 127.0.0.1 that treats every connection with
    ``behaviour``; yields its ``host:port``."""
    writers: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        try:
            await behaviour(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            writers.discard(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        await server.wait_closed()
