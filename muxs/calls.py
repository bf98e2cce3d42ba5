"""Client-side call plumbing for every gRPC cardinality, over a grpclib ``Channel``.

Each function opens one call, translates grpclib and transport errors to ``RpcError``
(``muxs.errors.translate_errors``) and lets an exception raised by the caller's own
request iterator through unchanged and at once (grpclib's generated stubs run that
iterator in a background task and lose its error until the deadline).

A call sends the client-wide metadata merged with its own (``muxs.metadata``), runs behind
the client's interceptors (``muxs.interceptors``) when it has any, and records the server's
headers, trailers and status on its ``CallInfo`` (``_Outcome``) however it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Self, TypeVar

from grpclib.client import Channel
from grpclib.client import Stream as GrpcStream
from grpclib.const import Cardinality
from h2.exceptions import StreamClosedError

from muxs import interceptors
from muxs._internals import SHORT_READ
from muxs.errors import Metadata, RpcError, StatusCode, translate_errors
from muxs.interceptors import CallKind, ClientCall, Interceptor
from muxs.metadata import CallInfo, MetadataLike, checked, merged
from muxs.retries import Attempts, RetryPolicy, unprocessed

Request = TypeVar("Request")
Reply = TypeVar("Reply")

Requests = Iterable[Request] | AsyncIterable[Request]


class RequestsFailed(Exception):
    """The caller's request iterator raised; the original error is ``__cause__``."""


async def iterate(requests: Requests[Request]) -> AsyncIterator[Request]:
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request


async def _send_all(stream: GrpcStream[Request, Any], requests: Requests[Request]) -> None:
    """Send every request, then end the request stream; stop early if the server has closed
    the call (its status arrives with the replies)."""
    iterator = aiter(iterate(requests))
    try:
        while True:
            try:
                request = await anext(iterator)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise RequestsFailed from exc
            await stream.send_message(request)
        await stream.end()
    except StreamClosedError:
        return


class ReplyStream(AsyncIterator[Reply]):
    """The replies of a streaming call, as they arrive.

    Iterate with ``async for``. Leaving ``async with`` (or calling ``aclose``) before the
    end cancels the call, which cancels the server's handler.
    """

    def __init__(self, replies: AsyncIterator[Reply]) -> None:
        self._replies = replies

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Reply:
        return await anext(self._replies)

    async def aclose(self) -> None:
        """Cancel the call if it is still running."""
        await self._replies.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Outcome:
    """Records how a call ended on its ``CallInfo``: the server's headers and trailers, and
    the status; an ``RpcError`` gets the same headers and trailers."""

    def __init__(self, info: CallInfo, refused_by_goaway: Callable[[Any], bool]) -> None:
        self.info = info
        self.stream: GrpcStream[Any, Any] | None = None
        self._refused_by_goaway = refused_by_goaway

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        info = self.info
        if self.stream is not None:
            info.headers = _received(self.stream.initial_metadata)
            info.trailers = _received(self.stream.trailing_metadata)
        if exc is None:
            info.status = StatusCode.OK
        elif isinstance(exc, RpcError):
            info.status = exc.status
            exc.headers, exc.trailers = info.headers, info.trailers
            exc.unprocessed = unprocessed(exc, self.stream, self._refused_by_goaway)
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            info.status = StatusCode.CANCELLED


def _received(metadata: Mapping[str, Any] | None) -> Metadata:
    return Metadata(metadata.items()) if metadata else Metadata()


class Caller:
    """Opens calls on one channel with a default timeout, client-wide metadata and
    interceptors."""

    def __init__(
        self,
        channel: Channel,
        target: str,
        timeout: float | None,
        *,
        metadata: MetadataLike | None = None,
        interceptors: Sequence[Interceptor] = (),
        retry_policy: RetryPolicy | None = None,
        method_retry_policies: Mapping[str, RetryPolicy | None] | None = None,
        wait_for_ready: bool = False,
    ) -> None:
        self.channel = channel
        self.target = target
        self.timeout = timeout
        self._metadata = checked(metadata)
        self._interceptors = tuple(interceptors)
        self._retry_policy = retry_policy
        self._method_retry_policies = dict(method_retry_policies or {})
        self._wait_for_ready = wait_for_ready
        refused_by_goaway = getattr(channel, "refused_by_goaway", None)
        self._refused_by_goaway: Callable[[Any], bool] = refused_by_goaway or (lambda _: False)

    def _attempts(self, call: ClientCall) -> Attempts:
        """The attempts of ``call``: its method's retry policy, else the client's; a call
        the server never processed is sent again once per server (``RoundRobin.addresses``)."""
        policy = self._method_retry_policies.get(call.method, self._retry_policy)
        return Attempts(
            call.timeout,
            policy,
            wait_for_ready=call.wait_for_ready,
            transparent_retries=len(getattr(self.channel, "addresses", ())) or 1,
        )

    def _outcome(self, call: ClientCall) -> _Outcome:
        return _Outcome(call.info, self._refused_by_goaway)

    def call(
        self,
        path: str,
        kind: CallKind,
        timeout: float | None,
        metadata: MetadataLike | None,
        info: CallInfo | None,
    ) -> ClientCall:
        """A new call's description, its metadata checked (``ConfigError``)."""
        return ClientCall(
            path,
            kind,
            merged(self._metadata, checked(metadata)),
            self.timeout if timeout is None else timeout,
            CallInfo() if info is None else info,
            target=self.target,
            wait_for_ready=self._wait_for_ready,
        )

    def _open(
        self,
        call: ClientCall,
        cardinality: Cardinality,
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
    ) -> GrpcStream[Request, Reply]:
        return self.channel.request(
            call.method,
            cardinality,
            request_type,
            reply_type,
            timeout=timeout,
            metadata=checked(call.metadata) if self._interceptors else call.metadata,
        )

    async def unary_unary(
        self,
        path: str,
        request: Request,
        reply_type: type[Reply],
        timeout: float | None,
        metadata: MetadataLike | None = None,
        info: CallInfo | None = None,
    ) -> Reply:
        call = self.call(path, "unary", timeout, metadata, info)

        async def send(call: ClientCall) -> Reply:
            async def attempt(timeout: float | None) -> Reply:
                with self._outcome(call) as outcome, translate_errors(self.target):
                    opened = self._open(
                        call, Cardinality.UNARY_UNARY, type(request), reply_type, timeout
                    )
                    outcome.stream = opened
                    async with opened as stream:
                        await stream.send_message(request, end=True)
                        reply = await _recv(stream)
                        return _required(reply)

            return await self._attempts(call).run(attempt)

        if not self._interceptors:
            return await send(call)
        return await interceptors.unary(self._interceptors, call, send)

    def unary_stream(
        self,
        path: str,
        request: Request,
        reply_type: type[Reply],
        timeout: float | None,
        metadata: MetadataLike | None = None,
        info: CallInfo | None = None,
    ) -> ReplyStream[Reply]:
        call = self.call(path, "server_stream", timeout, metadata, info)

        async def replies(call: ClientCall) -> AsyncGenerator[Reply, None]:
            with self._outcome(call) as outcome, translate_errors(self.target):
                opened = self._open(
                    call, Cardinality.UNARY_STREAM, type(request), reply_type, call.timeout
                )
                outcome.stream = opened
                async with opened as stream:
                    await stream.send_message(request, end=True)
                    while (reply := await _recv(stream)) is not None:
                        yield reply

        return self._stream(call, replies)

    async def stream_unary(
        self,
        path: str,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
        metadata: MetadataLike | None = None,
        info: CallInfo | None = None,
    ) -> Reply:
        call = self.call(path, "client_stream", timeout, metadata, info)
        stream = self._stream(
            call,
            lambda call: self._send_while_receiving(
                call, Cardinality.STREAM_UNARY, requests, request_type, reply_type
            ),
        )
        received = [reply async for reply in stream]  # to the end: the trailers are checked
        return _required(received[0] if received else None)

    def stream_stream(
        self,
        path: str,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
        metadata: MetadataLike | None = None,
        info: CallInfo | None = None,
    ) -> ReplyStream[Reply]:
        call = self.call(path, "bidi_stream", timeout, metadata, info)
        return self._stream(
            call,
            lambda call: self._send_while_receiving(
                call, Cardinality.STREAM_STREAM, requests, request_type, reply_type
            ),
        )

    def _stream(
        self, call: ClientCall, open_call: Callable[[ClientCall], AsyncGenerator[Reply, None]]
    ) -> ReplyStream[Reply]:
        if not self._interceptors:
            return ReplyStream(open_call(call))
        return ReplyStream(interceptors.streaming(self._interceptors, call, open_call))

    async def _send_while_receiving(
        self,
        call: ClientCall,
        cardinality: Cardinality,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
    ) -> AsyncGenerator[Reply, None]:
        """Send the requests from a background task while yielding the replies.

        Receiving never waits for the caller's request iterator, so the deadline bounds a
        call whose iterator stalls, and a reply or error the server sends early arrives.
        """
        try:
            with self._outcome(call) as outcome, translate_errors(self.target):
                opened = self._open(call, cardinality, request_type, reply_type, call.timeout)
                outcome.stream = opened
                async with opened as stream:
                    await stream.send_request()
                    sender = asyncio.create_task(_send_all(stream, requests))
                    try:
                        while (reply := await _recv_or_fail(stream, sender)) is not None:
                            yield reply
                        await sender
                    finally:
                        await _stop(sender)
        except RequestsFailed as failed:
            raise _cause(failed) from None


async def _recv(stream: GrpcStream[Any, Reply]) -> Reply | None:
    """The next reply (None at the end); if the server's trailers cut a reply short, as a
    server does when a call ends mid-message (a deadline passed), their status is raised."""
    try:
        return await stream.recv_message()
    except SHORT_READ:  # the stream ended inside a message
        await stream.recv_trailing_metadata()  # raises GRPCError unless the status is OK
        raise RpcError(
            StatusCode.INTERNAL, "the server ended the call in the middle of a reply"
        ) from None


async def _recv_or_fail(stream: GrpcStream[Any, Reply], sender: asyncio.Task[None]) -> Reply | None:
    """The next reply, or the sender's error as soon as it fails, whichever comes first."""
    next_reply = _recv(stream)
    receive = asyncio.ensure_future(next_reply)
    try:
        if not sender.done():
            await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done() and not sender.cancelled() and sender.exception() is not None:
            sender.result()  # raises RequestsFailed (or the transport error)
        return await receive
    finally:
        await _stop(receive)


async def _stop(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; its error, if any, was reported already."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # mark it retrieved


def _required(reply: Reply | None) -> Reply:
    if reply is None:
        raise RpcError(StatusCode.INTERNAL, "the server ended the call without a reply")
    return reply


def _cause(failed: RequestsFailed) -> BaseException:
    assert failed.__cause__ is not None
    return failed.__cause__
