"""A TLS client that connects and never finishes its handshake is closed after
``handshake_timeout`` (0.2 s here), logged once at INFO with its peer."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from muxs import ServerSettings, serve
from muxs.server.limits import LimitedServer
from tests.polling import until
from tests.rawh2 import WAIT
from tests.security.conftest import Pki

TIMEOUT = 0.2


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01"], ids=["nothing", "part-of-a-hello"])
async def test_a_stalled_tls_handshake_is_aborted(
    settings: ServerSettings, pki: Pki, sent: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="muxs.server.handshakes")
    tls = replace(settings, tls_cert=pki.cert, tls_key=pki.key, handshake_timeout=TIMEOUT)
    async with serve(settings=tls) as running:
        assert isinstance(running.server, LimitedServer)
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        try:
            writer.write(sent)
            async with asyncio.timeout(WAIT):
                assert await reader.read() == b""  # closed without a byte of TLS
        finally:
            writer.close()
        await until(lambda: "refused a TLS handshake" in caplog.text)
    assert "taking longer than 0.2 seconds" in caplog.text
    assert not running.server.connections
