"""Access logs: one line per call, from the shared per-call bookkeeping of ``muxs.server.hooks``."""

import asyncio
import copy
import gc
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.server import Stream
from h2.errors import ErrorCodes
from hyperframe.frame import RstStreamFrame

from muxs import (
    Client,
    HelloReply,
    HelloRequest,
    RpcError,
    RunningServer,
    ServerSettings,
    StatusCode,
)
from muxs.calls import Caller
from muxs.cli._logging import TEXT_FORMAT, TextFormatter, TurnFlushingHandler
from muxs.server import access_log as access_log_module
from muxs.server.access_log import BATCH_LINES, AccessLog
from muxs.server.context import CallContext
from muxs.server.lifecycle import Lifecycle
from muxs.server.services import GreeterService
from muxs.server.serving import bind, serve
from muxs.server.storage import LocalRoot, Root
from tests.access import access_records
from tests.polling import until
from tests.rawh2 import HeldPings, RawConnection, grpc_frame, request_headers

GREETINGS = "/muxs.Greeter/LotsOfGreetings"
BIDI = "/muxs.Greeter/BidiHello"


#: Operators filter on these names: they must not follow the modules around.
ACCESS_LOGGER = "muxs.access_log"
ERROR_LOGGER = "muxs.hooks"


async def test_access_lines_go_to_the_muxs_access_log_logger_by_that_exact_name(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with access_records() as logs:
        async with Client(live_server.target) as client:
            await client.say_hello("you")
        await logs.finished("/muxs.Greeter/SayHello")
    lines = [record for record in caplog.records if record.getMessage().startswith("method=")]
    assert [record.name for record in lines] == [ACCESS_LOGGER]


async def test_one_line_per_call_with_its_method_peer_status_time_and_messages(
    live_server: RunningServer,
) -> None:
    with access_records() as logs:
        async with Client(live_server.target) as client:
            await client.say_hello("you")
            with pytest.raises(RpcError):
                await client.read("missing.txt")
            assert len([reply async for reply in client.lots_of_replies("x", 3)]) == 3
            await client.lots_of_greetings(["a", "b"])
        hello = await logs.finished("/muxs.Greeter/SayHello")
        read = await logs.finished("/muxs.FileController/Read")
        replies = await logs.finished("/muxs.Greeter/LotsOfReplies")
        greetings = await logs.finished("/muxs.Greeter/LotsOfGreetings")
    assert str(hello["peer"]).startswith("127.0.0.1:")
    assert isinstance(hello["duration_ms"], float)
    assert hello["duration_ms"] >= 0
    assert (hello["status"], hello["code"], hello["messages_in"], hello["messages_out"]) == (
        "OK",
        0,
        1,
        1,
    )
    assert (read["status"], read["code"], read["messages_out"]) == ("NOT_FOUND", 5, 0)
    assert (replies["messages_in"], replies["messages_out"]) == (1, 3)
    assert (greetings["messages_in"], greetings["messages_out"]) == (2, 1)
    line = logs.records[0].getMessage()
    assert line.startswith(f"method=/muxs.Greeter/SayHello peer={hello['peer']} status=OK ")
    assert line.endswith(" messages_in=1 messages_out=1")
    assert [record.levelno for record in logs.records] == [logging.INFO] * 4


async def test_an_access_record_has_what_loggings_own_records_have(
    live_server: RunningServer,
) -> None:
    with access_records() as logs:
        async with Client(live_server.target) as client:
            await client.say_hello("you")
        fields = await logs.finished("/muxs.Greeter/SayHello")
    record = logs.records[0]
    own = logging.getLogger(ACCESS_LOGGER).makeRecord(
        ACCESS_LOGGER, logging.INFO, __file__, 0, "", (), None
    )
    assert set(vars(own)) <= set(vars(record))
    assert (record.name, record.levelname, record.processName) == (
        own.name,
        own.levelname,
        own.processName,
    )
    assert own.created - 60 < record.created <= own.created
    assert 0 <= record.msecs < 1000
    copied = copy.copy(record)  # as QueueHandler does, before it sets msg to the text
    copied.msg, copied.args = copied.getMessage(), None
    assert logging.Formatter("%(name)s: %(message)s").format(copied) == (
        f"{ACCESS_LOGGER}: {record.getMessage()}"
    )
    assert record.getMessage().startswith(f"method=/muxs.Greeter/SayHello peer={fields['peer']} ")
    # A handler that keeps records (a test's capture) keeps these values, not the call.
    held = gc.get_referents(*vars(record).values(), *gc.get_referents(*vars(record).values()))
    assert not [thing for thing in held if isinstance(thing, CallContext | Stream)]


@pytest.mark.parametrize("on", [True, False])
async def test_the_access_log_can_be_turned_off(settings: ServerSettings, on: bool) -> None:
    with access_records() as logs:
        async with (
            serve(settings=replace(settings, access_log=on)) as running,
            Client(running.target) as client,
        ):
            await client.say_hello("you")
        # Leaving serve() drained the server: the call has ended there too.
    assert len(logs.records) == (1 if on else 0)


async def test_a_client_cancel_is_logged_as_cancelled(live_server: RunningServer) -> None:
    waiting = asyncio.Event()

    async def names() -> AsyncIterator[str]:
        yield "first"
        await waiting.wait()  # never set: the server waits for a second name

    with access_records() as logs:
        async with (
            Client(live_server.target) as client,
            client.bidi_hello(names()) as replies,
        ):
            await anext(replies)
        cancelled = await logs.finished("/muxs.Greeter/BidiHello")
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["code"] == StatusCode.CANCELLED.value
    assert (cancelled["messages_in"], cancelled["messages_out"]) == (1, 1)


async def end_then_reset(client: HeldPings, *, trailers_first: bool) -> None:
    """A BidiHello whose ``client`` half-closes after one name, then resets the stream
    (CANCEL) once it has read the trailers (``trailers_first``) or in the write that answers
    the server's PING settling the end (``_LimitedProtocol.settle``), as grpc-go's CloseSend
    and its cancel may follow one another."""
    client.h2.send_headers(1, request_headers(BIDI))
    client.h2.send_data(1, grpc_frame(bytes(HelloRequest(name="a"))), end_stream=True)
    client.writer.write(client.h2.data_to_send())
    await client.read_until("ping")  # the server saw the end and waits for the answer
    answer = client.h2.data_to_send()
    if trailers_first:
        client.writer.write(answer)
        await client.read_until("end")
        client.writer.write(RstStreamFrame(1, error_code=ErrorCodes.CANCEL).serialize())
    else:
        client.h2.reset_stream(1, ErrorCodes.CANCEL)
        client.writer.write(answer + client.h2.data_to_send())  # read in one turn


async def test_a_call_reset_after_its_end_before_its_trailers_is_logged_as_cancelled(
    live_server: RunningServer,
) -> None:
    # The server had not finished when it read the reset: CANCELLED, as gRPC has it.
    with access_records() as logs:
        async with HeldPings.open(live_server.host, live_server.port) as client:
            await end_then_reset(client, trailers_first=False)
            ended = await logs.finished(BIDI)
    assert ended["status"] == "CANCELLED"


async def test_a_call_reset_after_its_trailers_is_logged_as_ok(live_server: RunningServer) -> None:
    # The server had finished: its OK stands, whatever the client reports.
    with access_records() as logs:
        async with HeldPings.open(live_server.host, live_server.port) as client:
            await end_then_reset(client, trailers_first=True)
            ended = await logs.finished(BIDI)
    assert client.status[b"grpc-status"] == b"0"
    assert ended["status"] == "OK"


async def test_a_deadline_is_logged_as_deadline_exceeded(live_server: RunningServer) -> None:
    # A raw client that sends one name with a 200 ms deadline and then waits, never
    # resetting the stream: only the server's deadline can end the call (an SDK client
    # resets the stream at its own deadline, which races the server's).
    first = grpc_frame(bytes(HelloRequest(name="first")))
    with access_records() as logs:
        async with await RawConnection.open(live_server.host, live_server.port) as raw:
            stream_id = raw.start(request_headers(GREETINGS, grpc_timeout="200m"))
            await raw.send(stream_id, first)
            reply = await raw.reply(stream_id)
        expired = await logs.finished(GREETINGS)
    assert reply.grpc_status == StatusCode.DEADLINE_EXCEEDED.value
    assert (expired["status"], expired["messages_in"]) == ("DEADLINE_EXCEEDED", 1)


async def test_tokens_and_file_contents_never_reach_the_log(
    live_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="muxs")
    caplog.set_level(logging.DEBUG, logger="grpclib")
    channel = Channel("127.0.0.1", live_server.port)
    caller = Caller(channel, live_server.target, None)
    with access_records() as logs:
        try:
            await caller.unary_unary(
                "/muxs.Greeter/SayHello",
                HelloRequest(name="you"),
                HelloReply,
                None,
                {"authorization": "Bearer s3cret"},
            )
        finally:
            channel.close()
        async with Client(live_server.target) as client:
            await client.write("diary.txt", "my private thoughts")
        await logs.finished("/muxs.FileController/Write")
    everything = caplog.text + repr(logs.fields())
    assert "method=/muxs.FileController/Write" in caplog.text
    for secret in ("s3cret", "authorization", "my private thoughts"):
        assert secret not in everything


class BrokenGreeter(GreeterService):
    async def say_hello(self, hello_request: HelloRequest) -> HelloReply:
        raise RuntimeError("cannot open /srv/secret/db")


async def test_an_unexpected_error_is_logged_once_and_the_client_gets_internal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServerSettings(host="127.0.0.1", port=0, root=tmp_path)
    store = LocalRoot(Root(tmp_path))
    lifecycle = Lifecycle(
        settings,
        [BrokenGreeter(max_stream_replies=10, max_message_bytes=1024, stream_idle_timeout=1)],
        store,
    )
    sock = bind("127.0.0.1", 0)
    await lifecycle.start(sock)
    try:
        async with Client(f"127.0.0.1:{sock.getsockname()[1]}") as client:
            with pytest.raises(RpcError) as caught:
                await client.say_hello("you")
    finally:
        await lifecycle.stop()
        await store.aclose()
    assert caught.value.status is StatusCode.INTERNAL
    assert "/srv" not in caught.value.message
    assert "RuntimeError" not in caught.value.message
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert [(record.name, record.getMessage()) for record in tracebacks] == [
        (ERROR_LOGGER, "unexpected error in /muxs.Greeter/SayHello")
    ]


def ended_call(method: str) -> CallContext:
    # A call that started and ended now (the line's time is its start plus its duration).
    started = time.monotonic()
    call = CallContext("muxs.Greeter", method, "unary", "127.0.0.1:1", started, None)  # type: ignore[arg-type]
    call.status, call.received, call.sent = StatusCode.OK, 1, 1
    return call


async def test_lines_wait_for_their_batch_each_with_the_time_its_call_ended() -> None:
    access_log = AccessLog()
    with access_records() as logs:
        before = time.time()
        for method in ("A", "B", "C"):
            access_log.finished(ended_call(method))
        ended = time.time()
        assert logs.records == []  # a call pays only for keeping its line
        await until(lambda: len(logs.records) == 3)
    assert [record.getMessage().split()[0] for record in logs.records] == [
        "method=/muxs.Greeter/A",
        "method=/muxs.Greeter/B",
        "method=/muxs.Greeter/C",
    ]
    created = [record.created for record in logs.records]
    assert before <= created[0] <= created[1] <= created[2] <= ended


async def test_a_full_batch_is_logged_at_once() -> None:
    access_log = AccessLog()
    with access_records() as logs:
        for _ in range(BATCH_LINES - 1):
            access_log.finished(ended_call("A"))
        assert logs.records == []
        access_log.finished(ended_call("A"))
        assert len(logs.records) == BATCH_LINES


async def test_flush_logs_the_waiting_lines_at_once() -> None:
    access_log = AccessLog()
    with access_records() as logs:
        access_log.finished(ended_call("A"))
        access_log.flush()  # as the server does when it stops
        assert len(logs.records) == 1
        access_log.finished(ended_call("B"))
        await until(lambda: len(logs.records) == 2)
    assert [record.getMessage().split()[0] for record in logs.records] == [
        "method=/muxs.Greeter/A",
        "method=/muxs.Greeter/B",
    ]


async def test_a_stopping_server_logs_its_calls_last_lines(
    settings: ServerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_log_module, "BATCH_SECONDS", 3600.0)
    with access_records() as logs:
        async with serve(settings=settings) as running, Client(running.target) as client:
            await client.say_hello("you")
        assert len(logs.records) == 1  # no wait: stopping handed the waiting line over


@pytest.mark.parametrize("filtered", [False, True])
async def test_muxs_serves_handler_takes_a_batch_whole_unless_a_filter_must_see_records(
    filtered: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    handler = TurnFlushingHandler(io.StringIO())
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    if filtered:
        handler.addFilter(lambda record: True)
    emitted: list[logging.LogRecord] = []  # records: none when the batch goes whole
    emit = handler.emit

    def counted(record: logging.LogRecord) -> None:
        emitted.append(record)
        emit(record)

    monkeypatch.setattr(handler, "emit", counted)
    monkeypatch.setattr(logger, "handlers", [handler])
    monkeypatch.setattr(logger, "propagate", False)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        access_log = AccessLog()
        for method in ("A", "B"):
            access_log.finished(ended_call(method))
        access_log.flush()
        await asyncio.sleep(0)  # the handler writes at the end of the loop's turn
    finally:
        logger.setLevel(level)
    written = handler.stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1].split()[0] for line in written] == [
        "method=/muxs.Greeter/A",
        "method=/muxs.Greeter/B",
    ]
    assert len(emitted) == (2 if filtered else 0)
