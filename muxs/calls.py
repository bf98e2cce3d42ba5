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
from typing import Any, Self, TypeVar

from grpclib.client import Channel
from grpclib.client import Stream as GrpcStream
from grpclib.const import Cardinality
from grpclib.metadata import _MetadataLike

from muxs.errors import RpcError, StatusCode, translate_errors

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
    """Send every request, then end the request stream."""
    iterator = aiter(iterate(requests))
    while True:
        try:
            request = await anext(iterator)
        except StopAsyncIteration:
            break
        except Exception as exc:
            raise RequestsFailed from exc
        await stream.send_message(request)
    await stream.end()


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
        metadata: Callable[[], _MetadataLike | None] = lambda: None,
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
                return _required(await stream.recv_message())

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
                    async for reply in stream:
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
        try:
            with translate_errors(self.target):
                opened = self._open(
                    path, Cardinality.STREAM_UNARY, request_type, reply_type, timeout
                )
                async with opened as stream:
                    await stream.send_request()
                    sender = asyncio.create_task(_send_all(stream, requests))
                    try:  # the deadline and an early reply also end a stalled request stream
                        reply = await _recv_or_fail(stream, sender)
                    finally:
                        sender.cancel()
                    return _required(reply)
        except RequestsFailed as failed:
            raise _cause(failed) from None

    def stream_stream(
        self,
        path: str,
        requests: Requests[Request],
        request_type: type[Request],
        reply_type: type[Reply],
        timeout: float | None,
    ) -> ReplyStream[Reply]:
        async def replies() -> AsyncIterator[Reply]:
            try:
                with translate_errors(self.target):
                    opened = self._open(
                        path, Cardinality.STREAM_STREAM, request_type, reply_type, timeout
                    )
                    async with opened as stream:
                        await stream.send_request()
                        sender = asyncio.create_task(_send_all(stream, requests))
                        try:
                            while (reply := await _recv_or_fail(stream, sender)) is not None:
                                yield reply
                            await sender
                        finally:
                            sender.cancel()
            except RequestsFailed as failed:
                raise _cause(failed) from None

        return ReplyStream(replies())


async def _recv_or_fail(stream: GrpcStream[Any, Reply], sender: asyncio.Task[None]) -> Reply | None:
    """The next reply, or the sender's error as soon as it fails, whichever comes first."""
    receive = asyncio.ensure_future(stream.recv_message())
    try:
        if not sender.done():
            await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
        if sender.done() and not sender.cancelled() and sender.exception() is not None:
            sender.result()  # raises RequestsFailed (or the transport error)
        return await receive
    finally:
        receive.cancel()


def _required(reply: Reply | None) -> Reply:
    if reply is None:
        raise RpcError(StatusCode.INTERNAL, "the server ended the call without a reply")
    return reply


def _cause(failed: RequestsFailed) -> BaseException:
    assert failed.__cause__ is not None
    return failed.__cause__
