"""An upload is committed only when its client really finished: a reset after its end wins.

A WriteStream's end of stream reaches the handler only once the client has answered a
PING the server sends on seeing it (``muxs.server.limits``): frames arrive in order, so a
RST_STREAM the client sent before that answer cancels the upload, and the file stays
as it was. grpc-js gives up on a stream this way (tests/interop/test_grpcjs.py).
"""

from __future__ import annotations

from dataclasses import replace

from h2.errors import ErrorCodes

from muxs import RunningServer, ServerSettings, StatusCode, serve
from muxs.api import Chunk
from muxs.server.storage import TEMP_PREFIX
from tests.polling import until
from tests.rawh2 import HeldPings, RawConnection, grpc_frame, request_headers
from tests.reliability.test_misbehaving import Usage, assert_back_to, assert_others_served

WRITE_STREAM = "/muxs.FileController/WriteStream"
UPLOAD = grpc_frame(bytes(Chunk(filename="kept.bin", data=b"new" * 1000)))


async def test_end_of_stream_then_reset_in_one_write_is_not_committed(
    live_server: RunningServer,
) -> None:
    kept = live_server.root / "kept.bin"
    kept.write_bytes(b"old")
    baseline = Usage.now()
    async with await RawConnection.open(live_server.host, live_server.port) as conn:
        stream = conn.start(request_headers(WRITE_STREAM))
        await conn.send(stream, UPLOAD)
        await until(lambda: any(live_server.root.glob(f"{TEMP_PREFIX}*")))  # under way
        conn.h2.send_data(stream, b"", end_stream=True)
        conn.h2.reset_stream(stream, ErrorCodes.CANCEL)
        conn.write_raw(conn.h2.data_to_send())
        await until(lambda: not any(live_server.root.glob(f"{TEMP_PREFIX}*")))
        assert kept.read_bytes() == b"old"
    await assert_back_to(baseline, live_server)
    await assert_others_served(live_server)


async def test_a_reset_before_the_ping_answer_is_not_committed(
    live_server: RunningServer,
) -> None:
    kept = live_server.root / "kept.bin"
    kept.write_bytes(b"old")
    baseline = Usage.now()
    async with HeldPings.open(live_server.host, live_server.port) as client:
        client.h2.send_headers(1, request_headers(WRITE_STREAM))
        client.h2.send_data(1, UPLOAD, end_stream=True)
        client.writer.write(client.h2.data_to_send())
        await client.read_until("ping")  # the server saw the end and waits for the answer
        assert kept.read_bytes() == b"old"
        assert any(live_server.root.glob(f"{TEMP_PREFIX}*"))
        ping_ack = client.h2.data_to_send()
        client.h2.reset_stream(1, ErrorCodes.CANCEL)
        client.writer.write(client.h2.data_to_send())  # the reset, then the answer
        client.writer.write(ping_ack)
        await until(lambda: not any(live_server.root.glob(f"{TEMP_PREFIX}*")))
        assert kept.read_bytes() == b"old"
    await assert_back_to(baseline, live_server)


async def test_the_ping_answered_the_upload_is_committed(live_server: RunningServer) -> None:
    kept = live_server.root / "kept.bin"
    kept.write_bytes(b"old")
    async with HeldPings.open(live_server.host, live_server.port) as client:
        client.h2.send_headers(1, request_headers(WRITE_STREAM))
        client.h2.send_data(1, UPLOAD, end_stream=True)
        client.writer.write(client.h2.data_to_send())
        await client.read_until("ping")
        assert kept.read_bytes() == b"old"  # not before the answer
        client.writer.write(client.h2.data_to_send())
        await client.read_until("end")
        assert client.status[b"grpc-status"] == b"0"
        assert kept.read_bytes() == b"new" * 1000


async def test_a_client_that_never_answers_the_ping_commits_nothing(
    settings: ServerSettings,
) -> None:
    async with serve(settings=replace(settings, keepalive_timeout=0.2)) as server:
        kept = server.root / "kept.bin"
        kept.write_bytes(b"old")
        async with HeldPings.open(server.host, server.port) as client:
            client.h2.send_headers(1, request_headers(WRITE_STREAM))
            client.h2.send_data(1, UPLOAD, end_stream=True)
            client.writer.write(client.h2.data_to_send())
            await client.read_until("end")  # never answering the PING
            assert client.status[b"grpc-status"] == str(StatusCode.UNAVAILABLE.value).encode()
            assert client.status[b"grpc-message"] == (
                b"the client did not answer a PING confirming its request's end"
            )
        assert kept.read_bytes() == b"old"
        assert not any(server.root.glob(f"{TEMP_PREFIX}*"))
