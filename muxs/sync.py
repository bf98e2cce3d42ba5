"""The blocking SDK: ``SyncClient``, a facade over the async ``Client`` for code that is not async.

A ``SyncClient`` owns a private event loop running in a background thread (``_LoopThread``)
with one async ``Client`` on it. Each method submits the matching async method to that loop
and blocks until it is done, so any number of threads can share one ``SyncClient``.

Each method is derived from ``Client``'s in one line, keeping its parameters, types and
docstring: ``_blocking`` for a method that returns a result, ``_iterating`` for one that
returns a ``ReplyStream`` (here a plain iterator, ``ReplyIterator``). The parameter named
by ``requests=`` is a request stream: a list or tuple is sent as it is, and any other
iterable (a generator, ``iter(queue.get, None)``, a file) is pulled by a helper thread, one
item when the call is ready to send it, so it may block without holding up the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import queue
import ssl
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypedDict, TypeVar, Unpack

from muxs.auth.bearer import TokenProvider
from muxs.calls import ReplyStream
from muxs.client import DEFAULT_TARGET, Client
from muxs.errors import ConfigError, RpcError, StatusCode
from muxs.event_loops import EVENT_LOOPS, loop_factory, uvloop_installed
from muxs.interceptors import Interceptor
from muxs.metadata import MetadataLike
from muxs.retries import RetryPolicy
from muxs.tls import PathLike

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class ClientOptions(TypedDict, total=False):
    """The keyword options of ``Client`` that ``SyncClient`` takes and passes on.

    All of them but ``channel`` (a grpclib channel belongs to one event loop); a test
    checks that the two lists agree.
    """

    timeout: float | None
    connect_timeout: float | None
    tls: bool | PathLike | ssl.SSLContext | None
    cert: PathLike | None
    key: PathLike | None
    token: str | None
    token_provider: TokenProvider | None
    allow_insecure_token: bool
    metadata: MetadataLike | None
    interceptors: Sequence[Interceptor]
    compression: str | None
    retry_policy: RetryPolicy | None
    method_retry_policies: Mapping[str, RetryPolicy | None] | None
    wait_for_ready: bool
    keepalive_time: float | None
    keepalive_timeout: float
    keepalive_permit_without_calls: bool


class _LoopThread:
    """An event loop running in a daemon thread until ``close``; ``call`` runs a coroutine there.

    ``event_loop`` is ``muxs.event_loops``' choice: uvloop for ``auto`` when it is installed
    (its thread-safe submission and I/O are cheaper: docs/performance-history.md, "The
    SyncClient's hand-off").
    """

    def __init__(self, event_loop: str = "auto") -> None:
        self._lock = threading.Lock()
        self._closed = False
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._main(ready), loop_factory(event_loop)),
            name="muxs-sync-client",
            daemon=True,
        )
        self._thread.start()
        ready.wait()

    @staticmethod
    def _run(
        main: Coroutine[Any, Any, None], factory: Callable[[], asyncio.AbstractEventLoop] | None
    ) -> None:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main)

    async def _main(self, ready: threading.Event) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop: asyncio.Future[Callable[[], object]] = self.loop.create_future()
        ready.set()
        finish = await self._stop
        # Cancel the calls in flight before ``finish`` (which closes the connection), so that
        # none of them can open a connection again; asyncio.run then closes abandoned
        # streams and the loop.
        calls = asyncio.all_tasks() - {asyncio.current_task()}
        for call in calls:
            call.cancel()
        if calls:
            await asyncio.wait(calls)
        finish()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the loop and wait for its result (or exception)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a SyncClient cannot be used from its own event loop thread")
        outcome: _Outcome[T] = _Outcome()
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("the SyncClient is closed")
            self.loop.call_soon_threadsafe(outcome.start, self.loop, coro)
        try:
            return outcome.wait()
        except asyncio.CancelledError:
            raise RpcError(
                StatusCode.CANCELLED, "the SyncClient was closed during the call"
            ) from None
        except BaseException:
            # e.g. KeyboardInterrupt while waiting: cancel the call too (started by now,
            # as the loop runs callbacks in order; a closed loop has no call left)
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(outcome.cancel)
            raise

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, finish: Callable[[], object] = lambda: None) -> None:
        """Cancel the calls in flight, run ``finish`` in the loop, stop it and end its thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.loop.call_soon_threadsafe(self._stop.set_result, finish)
        self._thread.join()


class _Outcome(Generic[T]):
    """A call's result or exception, handed from the loop thread to the one thread waiting.

    Cheaper than ``asyncio.run_coroutine_threadsafe``: one plain lock, held until the call
    ends, and the task sets the outcome itself, so there is no ``concurrent.futures.Future``
    (a condition and its own lock per wait) and no callbacks chaining two futures.
    """

    __slots__ = ("_ended", "_error", "_result", "_task")

    def __init__(self) -> None:
        self._ended = threading.Lock()
        self._ended.acquire()
        self._result: T
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> None:
        """Run ``coro`` as a task of ``loop`` (called in the loop)."""
        self._task = loop.create_task(self._settle(coro))

    async def _settle(self, coro: Coroutine[Any, Any, T]) -> None:
        try:
            self._result = await coro
        except Exception as exc:
            self._error = exc
        except BaseException as exc:  # cancelled (the client closed): the task is too
            self._error = exc
            raise
        finally:
            self._ended.release()

    def cancel(self) -> None:
        """Cancel the call (called in the loop)."""
        if self._task is not None:
            self._task.cancel()

    def wait(self) -> T:
        """Block until the call has ended: its result, or raise its exception."""
        self._ended.acquire()
        if self._error is not None:
            error, self._error = self._error, None  # no cycle through the traceback
            raise error
        return self._result


class _Closing:
    """``with`` closes it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Ended:
    """What the pump puts in the queue after the last reply: the call's error (None: OK)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class _Pipe(Generic[R]):
    """Replies carried from the event loop to the reading thread through a thread-safe
    queue: a task on the loop (``pump``) reads ahead up to ``READ_AHEAD`` replies, so a
    reply costs the reader one ``queue.get``, not a round trip to the loop.

    It holds no reference to its ``ReplyIterator``, so that dropping the iterator can
    cancel the call.
    """

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[R | _Ended] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._buffered = 0
        self._paused = False
        self.resume = asyncio.Event()

    async def pump(self, replies: ReplyStream[R]) -> None:
        """Read ``replies`` into the queue (runs in the loop), pausing while it holds
        ``READ_AHEAD`` of them; the end, the call's error or its cancellation go last."""
        try:
            async with replies:
                async for reply in replies:
                    with self._lock:
                        self.queue.put(reply)
                        self._buffered += 1
                        if self._buffered >= READ_AHEAD:
                            self._paused = True
                            self.resume.clear()
                    if self._paused:
                        await self.resume.wait()
        except Exception as exc:
            self.queue.put(_Ended(exc))
        except BaseException as exc:
            self.queue.put(_Ended(exc))
            raise
        else:
            self.queue.put(_Ended(None))

    def get(self, loop: asyncio.AbstractEventLoop) -> R | _Ended:
        """The next item (blocks); lets the pump go on once half the read-ahead is read."""
        item = self.queue.get()
        with self._lock:
            self._buffered -= 1
            if self._paused and self._buffered <= READ_AHEAD // 2:
                self._paused = False
                with contextlib.suppress(RuntimeError):  # the loop is closed: no pump left
                    loop.call_soon_threadsafe(self.resume.set)
        return item


#: Replies a streaming call reads ahead of a ``SyncClient`` caller.
READ_AHEAD = 64


class ReplyIterator(_Closing, Iterator[R]):
    """The replies of a streaming call, as they arrive: iterate with ``for``.

    Leaving ``with`` (or calling ``close``) before the end cancels the call, and so does
    dropping the iterator. One thread at a time may read it. Up to ``READ_AHEAD`` replies
    are read ahead of the caller (``_Pipe``).
    """

    def __init__(self, loop: _LoopThread, pipe: _Pipe[R], pump: asyncio.Task[None]) -> None:
        self._loop = loop
        self._pipe = pipe
        self._pump = pump
        self._ended = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> R:
        if self._ended:
            raise StopIteration
        try:
            item = self._pipe.get(self._loop.loop)
        except BaseException:
            self.close()  # e.g. KeyboardInterrupt while waiting: cancel the call too
            raise
        if not isinstance(item, _Ended):
            return item
        self._ended = True
        if item.error is None:
            raise StopIteration
        if isinstance(item.error, asyncio.CancelledError):
            raise RpcError(StatusCode.CANCELLED, "the SyncClient was closed during the call")
        raise item.error

    def close(self) -> None:
        """Cancel the call if it is still running (closing the client cancelled it already)."""
        self._ended = True
        if not self._loop.closed and not self._pump.done():
            self._loop.call(_cancel(self._pump))

    def __del__(self) -> None:
        if not self._pump.done():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing runs
                self._loop.loop.call_soon_threadsafe(self._pump.cancel)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def iterate_in_thread(items: Iterable[T]) -> AsyncIterator[T]:
    """The items of a blocking iterable (stdin, a queue), each pulled by a helper thread when
    asked for, so that waiting for one does not hold up the event loop."""
    loop = asyncio.get_running_loop()
    asks: queue.SimpleQueue[asyncio.Future[tuple[T] | None] | None] = queue.SimpleQueue()
    threading.Thread(
        target=_pull, args=(items, asks, loop), name="muxs-sync-requests", daemon=True
    ).start()
    try:
        while True:
            answer: asyncio.Future[tuple[T] | None] = loop.create_future()
            asks.put(answer)
            item = await answer
            if item is None:
                return
            yield item[0]
    finally:
        asks.put(None)  # the thread ends once the item it may be waiting for comes


def _pull(
    items: Iterable[T],
    asks: queue.SimpleQueue[asyncio.Future[tuple[T] | None] | None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    iterator = iter(items)
    while (answer := asks.get()) is not None:
        try:
            item = next(iterator)
        except StopIteration:
            _settle(loop, answer, None)
            return
        except Exception as exc:
            _settle(loop, answer, exc)
            return
        _settle(loop, answer, (item,))


def _settle(
    loop: asyncio.AbstractEventLoop,
    answer: asyncio.Future[tuple[T] | None],
    outcome: tuple[T] | Exception | None,
) -> None:
    def settle() -> None:
        if answer.done():  # the call was cancelled meanwhile
            return
        if isinstance(outcome, Exception):
            answer.set_exception(outcome)
        else:
            answer.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(settle)


def _pulling(
    method: Callable[Concatenate[Client, P], T], requests: str | None
) -> Callable[Concatenate[Client, P], T]:
    """``method``, its ``requests`` argument pulled by a helper thread if it is a lazy iterable."""
    if requests is None:
        return method
    signature = inspect.signature(method)

    def call(client: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        bound = signature.bind(client, *args, **kwargs)
        stream = bound.arguments[requests]
        if isinstance(stream, Iterable) and not isinstance(stream, Collection):
            bound.arguments[requests] = iterate_in_thread(stream)
        return method(*bound.args, **bound.kwargs)

    return call


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, R]],
    *,
    requests: str | None = None,
) -> Callable[Concatenate[SyncClient, P], R]:
    """A ``SyncClient`` method that runs the async ``method`` and returns its result."""
    call = _pulling(method, requests)

    @functools.wraps(method)
    def blocking(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._loop.call(call(self._client, *args, **kwargs))

    return blocking


def _iterating(
    method: Callable[Concatenate[Client, P], ReplyStream[R]], *, requests: str | None = None
) -> Callable[Concatenate[SyncClient, P], ReplyIterator[R]]:
    """A ``SyncClient`` method that opens the async streaming ``method`` as an iterator."""
    call = _pulling(method, requests)

    @functools.wraps(method)
    def iterating(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> ReplyIterator[R]:
        async def open_stream() -> tuple[_Pipe[R], asyncio.Task[None]]:
            replies = call(self._client, *args, **kwargs)
            pipe: _Pipe[R] = _Pipe()
            return pipe, asyncio.create_task(pipe.pump(replies))

        return ReplyIterator(self._loop, *self._loop.call(open_stream()))

    return iterating


async def _connect(target: str | Sequence[str], options: ClientOptions) -> Client:
    return Client(target, **options)


class SyncClient(_Closing):
    """A blocking connection to a muxs server: ``with SyncClient(target) as client``.

    The same methods, parameters and options as ``Client``, without ``await``: a call
    returns its reply, a streaming call returns an iterator of replies (``ReplyIterator``),
    and a failed call raises the same ``muxs.RpcError``. Request streams take any iterable;
    a bidi call's iterator can be read while the requests are still being produced (send,
    read the reply, send again). Safe to share between threads.
    """

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        event_loop: str = "auto",
        **options: Unpack[ClientOptions],
    ) -> None:
        """Connect to ``target`` (``host:port``, several, or ``dns:///name:port``); ``options``
        are ``Client``'s. ``event_loop`` is what the client's thread runs: ``auto`` (uvloop
        when installed, else asyncio), ``asyncio`` or ``uvloop``."""
        if event_loop not in EVENT_LOOPS:
            raise ConfigError(
                "event_loop", f"{event_loop!r} is not one of {', '.join(EVENT_LOOPS)}"
            )
        if event_loop == "uvloop" and not uvloop_installed():
            raise ConfigError("event_loop", "uvloop is not installed: pip install 'muxs[uvloop]'")
        self.target = target if isinstance(target, str) else ",".join(target)
        self._loop = _LoopThread(event_loop)
        try:
            self._client = self._loop.call(_connect(target, options))
        except BaseException:
            self._loop.close()
            raise

    @property
    def timeout(self) -> float | None:
        """The default deadline of every call, in seconds (None: no deadline)."""
        return self._client.timeout

    def close(self) -> None:
        """Close the connection and stop the client's thread.

        A call still in flight is cancelled: it raises ``RpcError`` with CANCELLED.
        """
        self._loop.close(self._client.close)

    say_hello = _blocking(Client.say_hello)
    square = _blocking(Client.square)
    lots_of_replies = _iterating(Client.lots_of_replies)
    lots_of_greetings = _blocking(Client.lots_of_greetings, requests="names")
    bidi_hello = _iterating(Client.bidi_hello, requests="names")
    read = _blocking(Client.read)
    write = _blocking(Client.write)
    read_chunks = _iterating(Client.read_chunks)
    write_chunks = _blocking(Client.write_chunks, requests="chunks")
    read_bytes = _blocking(Client.read_bytes)
    write_bytes = _blocking(Client.write_bytes)
    upload = _blocking(Client.upload)
    download = _blocking(Client.download)
    check_health = _blocking(Client.check_health)
    stat = _blocking(Client.stat)
    delete = _blocking(Client.delete)
    list = _iterating(Client.list)  # last: it shadows the builtin in the class body
