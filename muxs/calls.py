"""Client-side call plumbing for every gRPC cardinality, over a grpclib ``Channel``.

Each function opens one call, translates grpclib and transport errors to ``RpcError``
(``muxs.errors.translate_errors``) and lets an exception raised by the caller's own
request iterator through unchanged and at once (grpclib's generated stubs run that
iterator in a background task and lose its error until the deadline).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from grpclib.client import Channel
from grpclib.client import Stream as GrpcStream
from grpclib.const import Cardinality
from h2.exceptions import StreamClosedError

from muxs._internals import SHORT_READ
from muxs.errors import RpcError, StatusCode, translate_errors

if TYPE_CHECKING:
    from muxs._internals import MetadataLike

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


class Caller:
    """Opens calls on one channel with a default timeout and per-call metadata."""

    def __init__(
        self,
        channel: Channel,
        target: str,
        timeout: float | None,
        metadata: Callable[[], MetadataLike | None] = lambda: None,
    ) -> None:
        self.channel = channel
        self.target = target
        self.timeout = timeout
        self._metadata = metadata

    def _open(
        self,
        path: str,
        cardinality: Cardinality,
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
    ) -> GrpcStream[Request, Reply]:
        return self.channel.request(
            path,
            cardinality,
            request_type,
            reply_type,
            timeout=self.timeout if timeout is None else timeout,
            metadata=self._metadata(),
        )

    async def unary_unary(
        self, path: str, request: Request, reply_type: type[Reply], timeout: float | None
    ) -> Reply:
        with translate_errors(self.target):
            opened = self._open(path, Cardinality.UNARY_UNARY, type(request), reply_type, timeout)
            async with opened as stream:
                await stream.send_message(request, end=True)
                reply = await _recv(stream)
                return _required(reply)

    def unary_stream(
        self, path: str, request: Request, reply_type: type[Reply], timeout: float | None
    ) -> ReplyStream[Reply]:
        async def replies() -> AsyncIterator[Reply]:
            with translate_errors(self.target):
                opened = self._open(
                    path, Cardinality.UNARY_STREAM, type(request), reply_type, timeout
                )
                async with opened as stream:
                    await stream.send_message(request, end=True)
                    while (reply := await _recv(stream)) is not None:
                        yield reply

        return ReplyStream(replies())

    async def stream_unary(
        self,
        path: str,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
    ) -> Reply:
        call = self._send_while_receiving(
            path, Cardinality.STREAM_UNARY, requests, request_type, reply_type, timeout
        )
        replies = [reply async for reply in call]  # to the end: the trailers are checked
        return _required(replies[0] if replies else None)

    def stream_stream(
        self,
        path: str,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
    ) -> ReplyStream[Reply]:
        return ReplyStream(
            self._send_while_receiving(
                path, Cardinality.STREAM_STREAM, requests, request_type, reply_type, timeout
            )
        )

    async def _send_while_receiving(
        self,
        path: str,
        cardinality: Cardinality,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
    ) -> AsyncIterator[Reply]:
        """Send the requests from a background task while yielding the replies.

        Receiving never waits for the caller's request iterator, so the deadline bounds a
        call whose iterator stalls, and a reply or error the server sends early arrives.
        """
        try:
            with translate_errors(self.target):
                opened = self._open(path, cardinality, request_type, reply_type, timeout)
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
