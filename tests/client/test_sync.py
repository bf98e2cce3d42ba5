"""``muxs.SyncClient``: the blocking SDK, called from worker threads against a real server."""

import asyncio
import inspect
import queue
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import uvloop

from muxs import (
    Client,
    ConfigError,
    HelloReply,
    RpcError,
    RunningServer,
    ServerSettings,
    StatusCode,
    SyncClient,
    event_loops,
    serve,
)
from muxs.sync import READ_AHEAD, ClientOptions, ReplyIterator
from tests.polling import until
from tests.probe import COUNT, NAME, CallProbe
from tests.test_typing import run_mypy


def sync_threads() -> list[str]:
    """The SyncClient threads still alive, once request-pulling threads could end."""
    for thread in threading.enumerate():
        if thread.name == "muxs-sync-requests":
            thread.join(timeout=10)  # it ends when the iterator it pulls from has returned
    return [t.name for t in threading.enumerate() if t.name.startswith("muxs-sync")]


@pytest.mark.parametrize(
    ("event_loop", "loop_type"), [("asyncio", asyncio.SelectorEventLoop), ("uvloop", uvloop.Loop)]
)
async def test_every_call_kind(
    live_server: RunningServer, event_loop: str, loop_type: type[asyncio.AbstractEventLoop]
) -> None:
    def calls() -> None:
        with SyncClient(live_server.target, timeout=10, event_loop=event_loop) as client:
            assert isinstance(client._loop.loop, loop_type)
            assert client.say_hello("you") == HelloReply(message="Hello, you!")
            replies = client.lots_of_replies("you", 3)
            assert isinstance(replies, ReplyIterator)
            assert [(r.message, r.index) for r in replies] == [
                ("Hello, you!", i) for i in (1, 2, 3)
            ]
            assert client.lots_of_greetings(["a", "b", "c"]).message == "Hello, a, b and c!"
            assert client.lots_of_greetings(name for name in "ab").message == "Hello, a and b!"
            assert client.lots_of_greetings([]).message == "Hello!"
            assert [r.message for r in client.bidi_hello(("a", "b"))] == ["Hello, a!", "Hello, b!"]

    await asyncio.to_thread(calls)
    assert sync_threads() == []


async def test_every_file_call(live_server: RunningServer, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(bytes(range(256)) * 1000)
    progress: list[tuple[int, int]] = []

    def calls() -> None:
        with SyncClient(live_server.target, timeout=10) as client:
            assert client.write_bytes("a/b.bin", b"\x00\xff" * 70_000).code == 0
            assert client.read_bytes("a/b.bin") == b"\x00\xff" * 70_000
            assert b"".join(client.read_chunks("a/b.bin")) == b"\x00\xff" * 70_000
            assert client.write_chunks("c.bin", iter([b"x", b"y"])).sha256 != ""
            client.upload(
                local, "up.bin", progress=lambda sent, total: progress.append((sent, total))
            )
            assert client.download("up.bin", tmp_path / "down.bin") == 256_000
            assert client.stat("up.bin").size == 256_000
            assert sorted(info.name for info in client.list("")) == ["a", "c.bin", "up.bin"]
            assert client.delete("c.bin").code == 0
            with pytest.raises(RpcError) as caught:
                client.stat("c.bin")
            assert caught.value.status is StatusCode.NOT_FOUND

    await asyncio.to_thread(calls)
    assert (tmp_path / "down.bin").read_bytes() == local.read_bytes()
    assert progress[0] == (0, 256_000)
    assert progress[-1] == (256_000, 256_000)
    assert sync_threads() == []


async def test_a_bidi_call_interleaves_with_a_blocking_request_iterator(
    live_server: RunningServer,
) -> None:
    def conversation() -> None:
        outbox: queue.Queue[str | None] = queue.Queue()
        with (
            SyncClient(live_server.target, timeout=10) as client,
            client.bidi_hello(iter(outbox.get, None)) as replies,
        ):
            for index, name in enumerate(["a", "b", "c"], 1):
                outbox.put(name)  # the next name exists only once the last reply has come
                assert next(replies) == HelloReply(message=f"Hello, {name}!", index=index)
            outbox.put(None)
            assert list(replies) == []

    await asyncio.to_thread(conversation)
    assert sync_threads() == []


async def test_eight_threads_share_one_client(live_server: RunningServer) -> None:
    start = threading.Barrier(8)

    def worker(client: SyncClient, n: int) -> list[object]:
        start.wait(timeout=10)
        name = f"thread{n}"
        return [
            client.say_hello(name).message,
            [r.index for r in client.lots_of_replies(name, 50)],
            client.lots_of_greetings([name, name]).message,
            [r.message for r in client.bidi_hello(iter([name]))],
        ]

    def run() -> list[list[object]]:
        with (
            SyncClient(live_server.target, timeout=20) as client,
            ThreadPoolExecutor(8) as pool,
        ):
            return list(pool.map(worker, [client] * 8, range(8)))

    results = await asyncio.to_thread(run)
    assert results == [
        [
            f"Hello, thread{n}!",
            list(range(1, 51)),
            f"Hello, thread{n} and thread{n}!",
            [f"Hello, thread{n}!"],
        ]
        for n in range(8)
    ]
    assert sync_threads() == []


async def test_errors_are_the_async_sdks(live_server: RunningServer) -> None:
    def calls() -> list[tuple[StatusCode, str]]:
        errors = []
        with SyncClient(live_server.target) as client:
            for call in (
                lambda: client.square(-1),
                lambda: list(client.lots_of_replies("you", 100_001)),
            ):
                with pytest.raises(RpcError) as caught:
                    call()
                errors.append((caught.value.status, caught.value.message))
        return errors

    errors = await asyncio.to_thread(calls)
    assert [status for status, _ in errors] == [StatusCode.INVALID_ARGUMENT] * 2
    assert "limit of 100000" in errors[1][1]


async def test_a_blocked_request_iterator_is_bounded_by_the_deadline(
    live_server: RunningServer, probe: CallProbe
) -> None:
    outbox: queue.Queue[str | None] = queue.Queue()

    def call() -> RpcError:
        with SyncClient(live_server.target) as client, pytest.raises(RpcError) as caught:
            client.lots_of_greetings(iter(outbox.get, None), timeout=0.3)
        return caught.value

    outbox.put("a")
    error = await asyncio.to_thread(call)
    assert error.status is StatusCode.DEADLINE_EXCEEDED
    assert await probe.finished() == ["cancelled"]
    outbox.put(None)  # releases the helper thread still waiting in the iterator


async def test_an_error_in_the_request_iterator_is_raised_as_it_is(
    live_server: RunningServer,
) -> None:
    def names() -> Iterator[str]:
        yield "a"
        raise LookupError("the caller's own bug")

    def call() -> None:
        with SyncClient(live_server.target, timeout=10) as client:
            with pytest.raises(LookupError, match="the caller's own bug"):
                list(client.bidi_hello(names()))
            with pytest.raises(LookupError, match="the caller's own bug"):
                client.lots_of_greetings(names())

    await asyncio.to_thread(call)


@pytest.mark.parametrize("leave", ["close", "with", "drop"])
async def test_leaving_a_stream_early_cancels_the_call(
    live_server: RunningServer, probe: CallProbe, leave: str
) -> None:
    def call() -> None:
        with SyncClient(live_server.target) as client:
            replies = client.lots_of_replies(NAME, COUNT)
            if leave == "with":
                with replies:
                    next(replies)
            else:
                next(replies)
                if leave == "close":
                    replies.close()
                else:
                    del replies  # the async stream is closed when it is collected
            asyncio.run_coroutine_threadsafe(probe.finished(), loop).result(timeout=10)

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(call)
    assert probe.outcomes == ["cancelled"]


async def test_an_unreachable_server_is_unavailable(closed_port: int) -> None:
    def call() -> RpcError:
        with SyncClient(f"127.0.0.1:{closed_port}") as client, pytest.raises(RpcError) as caught:
            client.say_hello("x")
        return caught.value

    error = await asyncio.to_thread(call)
    assert error.status is StatusCode.UNAVAILABLE


def test_a_malformed_target_is_refused_and_leaves_no_thread() -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        SyncClient("nowhere")
    assert sync_threads() == []


def test_the_loop_is_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    with SyncClient("127.0.0.1:1") as client:
        assert isinstance(client._loop.loop, uvloop.Loop)
    monkeypatch.setattr(event_loops, "uvloop_installed", lambda: False)
    with SyncClient("127.0.0.1:1") as client:
        assert isinstance(client._loop.loop, asyncio.SelectorEventLoop)


def test_an_unknown_or_missing_event_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as unknown:
        SyncClient("127.0.0.1:1", event_loop="trio")
    assert unknown.value.option == "event_loop"
    assert "'trio' is not one of auto, asyncio, uvloop" in str(unknown.value)
    monkeypatch.setattr("muxs.sync.uvloop_installed", lambda: False)
    with pytest.raises(ConfigError) as missing:
        SyncClient("127.0.0.1:1", event_loop="uvloop")
    assert "pip install 'muxs[uvloop]'" in str(missing.value)
    assert sync_threads() == []


def test_a_closed_client_refuses_calls() -> None:
    client = SyncClient("127.0.0.1:1")
    client.close()
    client.close()  # closing twice is fine
    assert sync_threads() == []
    with pytest.raises(RuntimeError, match="the SyncClient is closed"):
        client.say_hello("x")


async def test_the_client_cannot_be_called_from_its_own_loop(live_server: RunningServer) -> None:
    def call() -> None:
        with SyncClient(live_server.target, timeout=10) as client:

            async def names() -> AsyncIterator[str]:
                yield client.say_hello("inner").message  # runs in the client's own loop

            with pytest.raises(RuntimeError, match="cannot be used from its own event loop"):
                client.lots_of_greetings(names())

    await asyncio.to_thread(call)


def test_the_client_takes_every_client_option() -> None:
    parameters = inspect.signature(Client).parameters.values()
    options = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY} - {"channel"}
    assert set(ClientOptions.__annotations__) == options


def test_the_client_has_every_client_method_with_its_signature() -> None:
    methods = {
        name
        for name, member in inspect.getmembers(Client, inspect.isfunction)
        if not name.startswith("_") and name != "close"
    }
    for name in methods:
        assert inspect.signature(getattr(SyncClient, name)) == inspect.signature(
            getattr(Client, name)
        ), name
        assert getattr(SyncClient, name).__doc__ == getattr(Client, name).__doc__


SYNC_USER_SCRIPT = """
import muxs

with muxs.SyncClient("127.0.0.1:50051", timeout=5) as client:
    reply: muxs.HelloReply = client.say_hello("you", timeout=1)
    indexes: list[int] = [r.index for r in client.lots_of_replies("you", 3)]
    greeting: str = client.lots_of_greetings(n for n in ["a", "b"]).message
    for r in client.bidi_hello(["a"]):
        message: str = r.message
    client.say_hello(1)
"""


@pytest.mark.slow
def test_a_sync_user_script_type_checks(tmp_path: Path) -> None:
    output, code = run_mypy(tmp_path, SYNC_USER_SCRIPT)
    assert code == 1
    assert output.count("error:") == 1, output
    assert 'user.py:10: error: Argument 1 has incompatible type "int"; expected "str"' in output


async def test_closing_the_client_cancels_a_call_in_flight(
    live_server: RunningServer, probe: CallProbe
) -> None:
    loop = asyncio.get_running_loop()

    def call() -> RpcError:
        outbox: queue.Queue[str | None] = queue.Queue()
        client = SyncClient(live_server.target)
        replies = client.bidi_hello(iter(outbox.get, None))
        with ThreadPoolExecutor(1) as waiting:
            reply = waiting.submit(next, replies)  # no name is sent: it waits until the close
            asyncio.run_coroutine_threadsafe(probe.started.wait(), loop).result(timeout=10)
            client.close()
            with pytest.raises(RpcError) as caught:
                reply.result(timeout=10)
        outbox.put(None)
        replies.close()  # closing a stream of a closed client is fine
        return caught.value

    error = await asyncio.to_thread(call)
    assert error.status is StatusCode.CANCELLED
    assert error.message == "the SyncClient was closed during the call"
    assert await probe.finished() == ["cancelled"]
    assert sync_threads() == []


async def test_a_stream_reads_ahead_of_a_slow_reader_no_more_than_its_bound(
    live_server: RunningServer,
) -> None:
    total = 3 * READ_AHEAD

    def call() -> list[int]:
        with SyncClient(live_server.target, timeout=10) as client:
            replies = client.lots_of_replies(NAME, total)
            asyncio.run_coroutine_threadsafe(
                until(lambda: replies._pipe.queue.qsize() >= READ_AHEAD), loop
            ).result(timeout=20)
            # The pump waits: however long the reader dawdles, no more than the bound.
            assert replies._pipe.queue.qsize() == READ_AHEAD
            return [reply.index for reply in replies]

    loop = asyncio.get_running_loop()
    assert await asyncio.to_thread(call) == list(range(1, total + 1))


async def test_a_stream_that_fails_raises_its_error_once(
    live_server: RunningServer,
) -> None:
    def call() -> RpcError:
        with SyncClient(live_server.target, timeout=10) as client:
            replies = client.read_chunks("no-such-file")
            with pytest.raises(RpcError) as caught:
                next(replies)
            with pytest.raises(StopIteration):
                next(replies)  # ended: the error is raised once
            return caught.value

    error = await asyncio.to_thread(call)
    assert error.status is StatusCode.NOT_FOUND


def test_an_interrupted_call_is_cancelled(settings: ServerSettings) -> None:
    """Ctrl-C while a call waits (KeyboardInterrupt in the main thread) cancels the call, and
    the client stays usable."""
    hosted: queue.SimpleQueue[tuple[RunningServer, CallProbe, asyncio.AbstractEventLoop]]
    hosted = queue.SimpleQueue()
    stop = threading.Event()

    async def host() -> None:  # the server runs in its own thread: the main one is blocked
        async with serve(settings=settings) as running:
            hosted.put((running, CallProbe(running.server), asyncio.get_running_loop()))
            await asyncio.to_thread(stop.wait)

    server = threading.Thread(target=asyncio.run, args=(host(),))
    server.start()
    running, probe, loop = hosted.get(timeout=10)
    main = threading.main_thread().ident
    assert main is not None
    assert main == threading.get_ident()  # pytest runs tests in the main thread

    def interrupt() -> None:
        asyncio.run_coroutine_threadsafe(probe.started.wait(), loop).result(timeout=10)
        signal.pthread_kill(main, signal.SIGINT)

    names: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    interrupter = threading.Thread(target=interrupt)
    try:
        with SyncClient(running.target) as client:
            interrupter.start()
            with pytest.raises(KeyboardInterrupt):
                client.lots_of_greetings(iter(names.get, None))  # waits for names, never sent
            # cancelled while the client is open (closing it would cancel the call too)
            finished = asyncio.run_coroutine_threadsafe(probe.finished(), loop)
            assert finished.result(timeout=10) == ["cancelled"]
            assert client.say_hello("again").message == "Hello, again!"
    finally:
        names.put(None)
        interrupter.join()
        stop.set()
        server.join()
